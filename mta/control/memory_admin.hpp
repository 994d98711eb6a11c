// memory_admin.hpp — an in-memory QueueAdmin over a real queue::Scheduler,
// for the control tests and the fuzz target (not part of any library).
//
// Envelopes are added with their content; the clock is the public `now`.
// Actions go to the scheduler exactly as the daemon's admin does, so the
// states the dispatcher sees (held, deferred, next attempt) are the real ones;
// the Completions the scheduler returns are kept for the tests to inspect.
#pragma once

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "mta/control/admin.hpp"

namespace sluice::control::testing {

inline constexpr int64_t kT0 = 1'764'741'743'000'000;  // 2025-12-03T06:02:23Z

inline queue::SchedulerOptions memory_scheduler_options() {
  queue::SchedulerOptions o;
  o.max_connections = 1'000'000;  // every message gets its job at once
  o.max_connections_per_destination = 1'000'000;
  o.retry_schedule_us = {5 * queue::kMinuteUs, 10 * queue::kMinuteUs};
  o.jitter = 0;
  o.random = [] { return uint64_t(1) << 63; };
  return o;
}

// A valid queue id for `arrival` (sorted by arrival like the real ones).
inline std::string make_id(int64_t arrival_us, unsigned seq) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llX",
                static_cast<unsigned long long>((uint64_t(arrival_us) << 12) | (seq & 0xFFF)));
  return b;
}

inline queue::Envelope make_envelope(std::string id, int64_t arrival_us, std::string sender,
                                     std::vector<std::string> rcpts, uint64_t size) {
  queue::Envelope e;
  e.id = std::move(id);
  e.arrival_us = arrival_us;
  e.sender = std::move(sender);
  e.size = size;
  for (auto& r : rcpts) {
    queue::Recipient x;
    x.address = std::move(r);
    e.recipients.push_back(std::move(x));
  }
  return e;
}

// Two active sites for the shaping tests: "gmail" configured with a rate
// and a rule's automation in force until kT0 + 29m 12s, and an MX set's
// default site with neither.
inline std::vector<shaping::SiteState> sample_sites() {
  shaping::SiteState gmail{.name = "gmail",
                           .source = "builtin:12",
                           .domains = {"gmail.com", "googlemail.com"},
                           .connections = 2,
                           .concurrency = 2,
                           .max_concurrency = 10,
                           .rate = {5, 1'000'000},
                           .tokens = 3,
                           .automation = shaping::Override{.rate = {10, 60'000'000},
                                                           .connections = 1,
                                                           .until_us = kT0 + 1'752'000'000,
                                                           .reason = "421 4.7.28 rate limited"}};
  shaping::SiteState mx{.name = "mx:mx1.example.net,mx2.example.net",
                        .domains = {"example.net"},
                        .concurrency = 2,
                        .max_concurrency = 20};
  return {mx, gmail};
}

class MemoryAdmin final : public QueueAdmin {
 public:
  MemoryAdmin() : sched_(memory_scheduler_options()) {}

  int64_t now = kT0;
  DaemonStatus daemon_status{.version = "0.1.0-test", .started_us = kT0 - 3'600'000'000};
  std::vector<queue::Completion> completions;  // from hold, release, bounce, remove
  mutable size_t body_reads = 0;

  void add(queue::Envelope env, std::string content) {
    bodies_[env.id] = std::move(content);
    sched_.add(std::move(env));
  }
  // Runs every due job and completes it with `v` for every recipient (e.g. a
  // deferral, to make messages "deferred").
  void complete_all(const queue::Verdict& v) {
    for (const auto& job : sched_.take_jobs(now)) {
      std::vector<queue::Verdict> vs(job.recipients.size(), v);
      sched_.complete(job, vs, now);
    }
  }
  queue::Scheduler& scheduler() { return sched_; }

  int64_t now_us() const override { return now; }
  std::vector<std::string> ids() const override { return sched_.ids(); }
  const queue::Envelope* find(std::string_view id) const override { return sched_.find(id); }
  std::expected<std::string, std::string> read_body(std::string_view id,
                                                    uint64_t max_bytes) const override {
    ++body_reads;
    auto it = bodies_.find(std::string(id));
    if (it == bodies_.end()) return std::unexpected(std::string("no such message in the spool"));
    return it->second.substr(0, max_bytes);
  }
  bool hold(std::string_view id) override { return keep(sched_.hold(id, now)); }
  bool release(std::string_view id) override { return keep(sched_.release(id)); }
  bool flush(std::string_view id) override { return sched_.flush(id, now); }
  size_t flush_all() override { return sched_.flush_all(now); }
  bool bounce(std::string_view id) override { return keep(sched_.bounce_now(id, now)); }
  bool remove(std::string_view id) override { return keep(sched_.remove(id)); }
  DaemonStatus status() const override {
    DaemonStatus s = daemon_status;
    s.counts = sched_.counts();
    return s;
  }
  // TLS-RPT: the days given, and what send_tls_reports() was asked.
  bool tls_enabled = false;
  std::vector<tlsrpt::Day> tls_days;
  std::vector<bool> tls_sends;  // include_today of each send
  bool tls_reports_enabled() const override { return tls_enabled; }
  std::vector<tlsrpt::Day> tls_report_days() const override { return tls_days; }
  std::expected<size_t, std::string> send_tls_reports(bool include_today) override {
    if (!tls_enabled) return std::unexpected(std::string("[tls_reports] enabled is false"));
    tls_sends.push_back(include_today);
    size_t n = 0;
    for (const auto& d : tls_days) n += d.domains.size();
    return n;
  }
  // Shaping: the sites and store given.
  std::vector<shaping::SiteState> sites;
  std::string store = "local";
  std::vector<shaping::SiteState> shaping_sites() const override { return sites; }
  std::string shaping_store() const override { return store; }

 private:
  bool keep(std::optional<queue::Completion> c) {
    if (!c) return false;
    completions.push_back(std::move(*c));
    return true;
  }
  queue::Scheduler sched_;
  std::map<std::string, std::string> bodies_;
};

}  // namespace sluice::control::testing
