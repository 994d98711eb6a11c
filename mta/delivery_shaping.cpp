// delivery_shaping.cpp — Delivery's side of shaping (delivery.hpp; the
// decisions are shaping::Shaper's, docs/shaping.md).
//
// Where the site is asked:
//   - the scheduler's gate, before a job is handed out: a destination whose
//     site is suspended or has no room for a new connection waits out of the
//     running (gated_) until a connection of the site closes or the next
//     sweep (every second). A destination whose site is not known yet gets
//     one job, whose MX answer names the site (note_site);
//   - before a new connection: a lease (the site's connections, shared
//     through the Store), then the message's token (the site's rate), then
//     connect_now();
//   - before each message on a reused connection: a token;
//   - after each session: feedback (adaptive concurrency, the rules).
// A run that must wait is parked in lease_waiters_ (until a connection of
// its site closes) or waits_ (until a time), both woken by one timer. A
// wait longer than kLongestWait defers the job instead of holding a job
// slot: the message comes back along its retry schedule, and the gate
// keeps its destination waiting while the site is suspended.
#include <fmt/format.h>

#include <algorithm>
#include <memory>

#include "conf/log.hpp"
#include "mta/delivery.hpp"
#include "mta/delivery_job.hpp"
#include "mta/uv/guard.hpp"
#include "mta/uv_util.hpp"

namespace sluice::mta {

namespace {
constexpr int64_t kLongestWait = 60LL * 1'000'000;    // then the job is deferred
constexpr int64_t kSweepEvery = 1'000'000;            // gated destinations reopened, the store synced
constexpr int64_t kSiteKnownFor = 3600LL * 1'000'000; // a destination's site is looked up again after this

std::string when(int64_t us) {
  const int64_t left = std::max<int64_t>(0, us - wall_clock_us()) / 1'000'000;
  return fmt::format("{}s", left);
}
}  // namespace

bool Delivery::gate(std::string_view destination, bool reuse, int64_t now) {
  if (!shaper_) return true;
  const std::string dest(destination);
  auto it = dest_site_.find(dest);
  if (it == dest_site_.end() || it->second.until_us < now) {
    // Its site is learnt from the first job's MX answer; one job at a time until then.
    if (resolving_.contains(dest)) {
      gated_[""].insert(dest);
      return false;
    }
    resolving_.insert(dest);
    return true;
  }
  const std::string& site = it->second.site;
  if (reuse || idle_.contains(dest)) {  // no new connection needed
    if (!shaper_->suspended(site, now)) return true;
  } else if (shaper_->may_start(site, now)) {
    return true;
  }
  gated_[site].insert(dest);
  if (!reuse && !shaper_->suspended(site, now)) {
    // Full: a connection parked idle for another domain of the site makes
    // room (its close wakes this destination).
    for (auto& [idle_dest, conns] : idle_) {
      auto known = dest_site_.find(idle_dest);
      if (idle_dest == dest || conns.empty() || known == dest_site_.end() || known->second.site != site)
        continue;
      Outbound* o = conns.front();
      unpark(*o);
      o->abort();
      break;
    }
  }
  arm_shaping_timer(now + kSweepEvery);
  return false;
}

void Delivery::note_site(JobRun* run, const std::vector<std::string>& hosts) {
  if (!shaper_) return;
  const std::string& dest = run->job.destination;
  run->site = shaper_->site_of(dest, hosts, wall_clock_us());
  dest_site_[dest] = KnownSite{run->site, wall_clock_us() + kSiteKnownFor};
  if (resolving_.erase(dest) > 0) {
    if (auto g = gated_.find(""); g != gated_.end() && g->second.erase(dest) > 0) {
      scheduler_.reopen(dest);
      arm_shaping_timer(wall_clock_us());  // run() from the timer, not inside this answer
    }
  }
}

void Delivery::drop_shaping(JobRun* run) {
  if (!shaper_) return;
  if (run->lease != 0) {
    shaper_->disconnect(run->site, run->lease);
    woken_.insert(run->site);
    run->lease = 0;
    arm_shaping_timer(wall_clock_us());
  }
  if (resolving_.erase(run->job.destination) > 0) {
    // The lookup failed (or never came): the destination's other jobs may try theirs.
    if (auto g = gated_.find(""); g != gated_.end() && g->second.erase(run->job.destination) > 0) {
      scheduler_.reopen(run->job.destination);
      arm_shaping_timer(wall_clock_us());
    }
  }
  if (run->waiting) {
    if (auto w = lease_waiters_.find(run->site); w != lease_waiters_.end())
      std::erase(w->second, run->job.serial);
    run->waiting = false;
  }
}

void Delivery::admit(JobRun* run) {
  if (stopping_) {  // an answer that came after shutdown began: nothing new is opened
    finish(run, false);
    return;
  }
  if (!shaper_ || run->site.empty()) {
    connect_now(run, *run->target, std::move(run->protection), std::exchange(run->lease, 0));
    return;
  }
  const uint64_t serial = run->job.serial;
  const uint64_t wait = ++run->wait;
  run->waiting = false;
  run->conn = 0;
  const std::string site = run->site;
  if (run->lease == 0) {
    shaper_->connect(site, wall_clock_us(), [this, serial, wait, site](shaping::Grant g) {
      JobRun* run = find_run(serial);
      if (!run || run->wait != wait) {  // gone meanwhile (shutdown): the lease goes back
        if (g.ok) shaper_->disconnect(site, g.lease);
        return;
      }
      if (!g.ok) return wait_for_site(run, g.retry_at_us);
      run->lease = g.lease;
      admit(run);
    });
    return;
  }
  if (!run->token) {
    shaper_->message(site, wall_clock_us(), [this, serial, wait](shaping::Admission a) {
      JobRun* run = find_run(serial);
      if (!run || run->wait != wait) return;
      if (!a.allowed) return wait_for_site(run, a.retry_at_us);
      run->token = true;
      admit(run);
    });
    return;
  }
  connect_now(run, *run->target, std::move(run->protection), std::exchange(run->lease, 0));
}

void Delivery::start_on(Outbound& o, JobRun& run, bool from_event) {
  auto lease = leases_.find(o.id());
  if (!shaper_ || lease == leases_.end()) {
    from_event ? o.start(transaction(run)) : o.start_now(transaction(run));
    return;
  }
  run.site = lease->second.site;
  run.conn = o.id();
  dest_site_[run.job.destination] = KnownSite{run.site, wall_clock_us() + kSiteKnownFor};
  const uint64_t serial = run.job.serial;
  const uint64_t wait = ++run.wait;
  run.waiting = false;
  // Answered before message() returns (the local store): still inside the
  // connection's event when from_event; later (Redis): from outside.
  auto inside = std::make_shared<bool>(from_event);
  shaper_->message(run.site, wall_clock_us(), [this, serial, wait, inside](shaping::Admission a) {
    JobRun* r = find_run(serial);
    if (!r || r->wait != wait || stopping_) return;  // shutdown aborts the connection, which ends the run
    auto c = conns_.find(r->conn);
    if (c == conns_.end() || c->second->job() != serial) return;  // the connection failed meanwhile
    if (!a.allowed) return wait_for_site(r, a.retry_at_us);
    r->token = true;
    Outbound& out = *c->second;
    *inside ? out.start(transaction(*r)) : out.start_now(transaction(*r));
  });
  *inside = false;
}

void Delivery::wait_for_site(JobRun* run, int64_t at) {
  const int64_t now = wall_clock_us();
  if (at > now + kLongestWait) {
    // Suspended, or a rate far below the queue: give the job back instead
    // of holding its slot (and any connection) that long.
    log::info("{}: shaping: site {} holds delivery to {} back for {}: deferred", run->job.message_id,
              log::sanitize(run->site), log::sanitize(run->job.destination), when(at));
    if (auto c = conns_.find(run->conn); run->conn != 0 && c != conns_.end()) c->second->abort();
    run->attempt.give_up(queue::Verdict{
        queue::Action::defer, "4.7.0",
        fmt::format("451 4.7.0 delivery to {} held back by shaping (site {}) for {}", run->job.destination,
                    run->site, when(at)),
        ""});
    finish(run, true);
    return;
  }
  run->waiting = true;
  if (at == 0) {
    lease_waiters_[run->site].push_back(run->job.serial);
    arm_shaping_timer(now + kSweepEvery);
    return;
  }
  waits_.emplace(at, run->job.serial, run->wait);
  arm_shaping_timer(at);
}

void Delivery::shaping_closed(const Outbound& o) {
  auto it = leases_.find(o.id());
  if (it == leases_.end()) return;
  if (shaper_) shaper_->disconnect(it->second.site, it->second.lease);
  woken_.insert(it->second.site);
  leases_.erase(it);
  arm_shaping_timer(wall_clock_us());
}

bool Delivery::spent(const Outbound& o) const {
  if (!shaper_) return false;
  auto it = leases_.find(o.id());
  if (it == leases_.end()) return false;
  const uint32_t limit = shaper_->messages_per_connection(it->second.site);
  return limit != 0 && o.transactions() >= limit;
}

void Delivery::shaping_feedback(const Outbound& o, const JobRun* run, const queue::HostReport& report) {
  if (!shaper_) return;
  std::string site;
  if (auto it = leases_.find(o.id()); it != leases_.end()) site = it->second.site;
  else if (run) site = run->site;
  if (site.empty()) return;
  using Kind = shaping::Feedback::Kind;
  using queue::policy::SessionFailure;
  shaping::Feedback f;
  if (report.failure) {
    const auto& e = *report.failure;
    f.reply = e.reply.code != 0 ? e.reply.str() : std::string();
    switch (e.what) {
      case SessionFailure::timeout: f.kind = Kind::timeout; break;
      case SessionFailure::tls_failed:
      case SessionFailure::tls_unavailable: f.kind = Kind::tls_failure; break;
      case SessionFailure::connect_failed:
      case SessionFailure::connection_lost: f.kind = Kind::refused; break;
      default: f.kind = e.reply.code == 421 ? Kind::throttled : Kind::success; break;
    }
  }
  for (const auto& r : report.results) {  // the first remote refusal speaks for the session
    if (!r.remote || r.reply.positive() || !f.reply.empty()) continue;
    f.reply = r.reply.str();
    if (r.reply.code == 421) f.kind = Kind::throttled;
  }
  const int64_t now = wall_clock_us();
  if (auto rule = shaper_->feedback(site, f, now)) {
    log::info("{}: shaping: site={} reply=\"{}\" matched the rule at {}: {}",
              run ? run->job.message_id : std::string("-"), log::sanitize(site), log::sanitize(f.reply, 200),
              rule->source,
              rule->suspend_us > 0
                  ? fmt::format("suspended for {}s", rule->suspend_us / 1'000'000)
                  : fmt::format("rate={} connections={} for {}s",
                                rule->rate.unlimited() ? "-" : shaping::to_string(rule->rate),
                                rule->connections, rule->duration_us / 1'000'000));
  }
}

void Delivery::arm_shaping_timer(int64_t at) {
  if (stopping_ || !shaping_timer_) return;
  if (shaping_timer_at_ != 0 && shaping_timer_at_ <= at) return;  // armed sooner already
  shaping_timer_at_ = at;
  const int64_t delta = at - wall_clock_us();
  uv_timer_start(shaping_timer_.get(), on_shaping_timer, delta <= 0 ? 0 : static_cast<uint64_t>((delta + 999) / 1000), 0);
}

void Delivery::on_shaping_timer(uv_timer_t* t) {
  uv::guard("shaping timer", [t] { static_cast<Delivery*>(t->data)->on_shaping_tick(); });
}

void Delivery::on_shaping_tick() {
  shaping_timer_at_ = 0;
  if (stopping_ || !shaper_) return;
  const int64_t now = wall_clock_us();
  // Runs whose time came: ask again.
  std::vector<uint64_t> due;
  while (!waits_.empty() && std::get<0>(*waits_.begin()) <= now) {
    auto [at, serial, wait] = *waits_.begin();
    waits_.erase(waits_.begin());
    if (JobRun* run = find_run(serial); run && run->wait == wait && run->waiting) due.push_back(serial);
  }
  // Sites with a connection closed: their waiting runs and destinations.
  const bool sweep = now - last_sweep_us_ >= kSweepEvery;
  std::vector<std::string> sites(woken_.begin(), woken_.end());
  woken_.clear();
  if (sweep) {
    last_sweep_us_ = now;
    shaper_->sync(now);
    if (dest_site_.size() > 4096)  // bounded by the destinations of the last hour
      std::erase_if(dest_site_, [now](const auto& e) { return e.second.until_us < now; });
    for (auto& [site, runs] : lease_waiters_) sites.push_back(site);
    scheduler_.reopen_all();
    gated_.clear();
  }
  for (const auto& site : sites) {
    if (auto g = gated_.find(site); g != gated_.end()) {
      for (const auto& dest : g->second) scheduler_.reopen(dest);
      gated_.erase(g);
    }
    if (auto w = lease_waiters_.find(site); w != lease_waiters_.end()) {
      for (uint64_t serial : w->second) due.push_back(serial);
      lease_waiters_.erase(w);
    }
  }
  for (uint64_t serial : due) {
    JobRun* run = find_run(serial);
    if (!run || !run->waiting) continue;
    run->waiting = false;
    if (run->conn != 0) {
      auto c = conns_.find(run->conn);
      if (c != conns_.end() && c->second->job() == serial) start_on(*c->second, *run, false);
    } else if (run->target) {
      admit(run);
    }
  }
  run();
  if (!gated_.empty() || !lease_waiters_.empty()) arm_shaping_timer(now + kSweepEvery);
  if (!waits_.empty()) arm_shaping_timer(std::get<0>(*waits_.begin()));
}

}  // namespace sluice::mta
