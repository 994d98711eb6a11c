// session_test_util.hpp — the recording SessionHost and configurations the
// Session unit tests share (smtp_session_test.cpp, smtp_session_limits_test.cpp).
#pragma once

#include <catch2/catch.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mta/smtp_session.hpp"

namespace sluice::mta::test {

using sluice::mta::Mode;
using sluice::mta::Session;
using sluice::mta::SessionConfig;
using sluice::mta::SessionHost;

struct Host : SessionHost {
  std::string out;
  std::string content;
  bool closed = false;
  int begun = 0, committed = 0, aborted = 0, accepted_n = 0;
  std::vector<std::string> rejects;
  sluice::queue::Envelope last;

  void send(std::string_view b) override { out.append(b); }
  void close() override { closed = true; }
  int64_t clock_us = 1'790'000'000'000'000;
  int64_t now_us() override { return clock_us; }
  sluice::mail::Trace trace;  // the last begin_message's
  // As mta::Intake does: the Received field first. The end of the header
  // section shows as a marker with what the session reported.
  std::string begin_message(const sluice::mail::Trace& t) override {
    ++begun;
    trace = t;
    trace.id = "0123456789ABCDEF";
    content = sluice::mail::received(trace);
    return trace.id;
  }
  void message_data(std::string_view c) override { content.append(c); }
  void end_of_headers(const sluice::mail::Present& have, std::string_view sender) override {
    content += "[eoh date=" + std::to_string(have.date) + " msgid=" + std::to_string(have.message_id) +
               " from=" + std::to_string(have.from) + " sender=" + std::string(sender) + "]";
  }
  void commit_message(sluice::queue::Envelope env) override {
    ++committed;
    last = std::move(env);
  }
  void abort_message() override { ++aborted; }
  int tls_started = 0;
  void start_tls() override { ++tls_started; }
  std::vector<std::string> checked;  // "login:password"
  void check_password(sluice::auth::Credentials c) override {
    checked.push_back(c.login + ":" + c.password);
  }
  bool sender_allowed(std::string_view login, std::string_view sender) override {
    return sender == std::string(login) || sender.ends_with("@allowed.test");
  }
  void rejected(std::string_view what, const sluice::proto::Reply& r) override {
    rejects.push_back(std::string(what) + " " + std::to_string(r.code));
  }
  std::vector<std::string> warnings;  // refusals the admin should see (an unknown local name)
  void rejected_warning(std::string_view what, const sluice::proto::Reply& r) override {
    warnings.push_back(std::string(what) + " " + std::to_string(r.code));
  }
  void accepted(const sluice::queue::Envelope&) override { ++accepted_n; }
  // The shaping store: one GCRA per key at clock_us, as LocalStore keeps
  // them. check_limit answers session->on_limit() at once, or (defer_limits)
  // keeps the answer in `deferred` for the test to give, as Redis would.
  sluice::mta::Session* session = nullptr;
  std::map<std::string, sluice::shaping::Gcra> gcra;
  std::vector<std::string> limit_calls;  // "take login:alice 2/h burst 2", "peek ...", "count ..."
  bool defer_limits = false;
  std::optional<sluice::shaping::Admission> deferred;
  void check_limit(const std::string& key, sluice::shaping::Rate rate, uint32_t burst,
                   bool take) override {
    limit_calls.push_back(std::string(take ? "take " : "peek ") + key + " " +
                          sluice::shaping::to_string(rate) + " burst " + std::to_string(burst));
    auto a = take ? gcra[key].take(rate, burst, clock_us) : gcra[key].peek(rate, burst, clock_us);
    if (defer_limits) {
      deferred = a;
      return;
    }
    session->on_limit(a);
  }
  void count_limit(const std::string& key, sluice::shaping::Rate rate, uint32_t burst) override {
    limit_calls.push_back("count " + key + " " + sluice::shaping::to_string(rate) + " burst " +
                          std::to_string(burst));
    gcra[key].take(rate, burst, clock_us);
  }
  std::vector<std::string> transitions;  // "from -> to"
  void state_changed(std::string_view from, std::string_view to) override {
    transitions.push_back(std::string(from) + " -> " + std::string(to));
  }

  // Reply codes in `out`, one per reply (continuation lines skipped).
  std::vector<int> codes() const {
    std::vector<int> v;
    size_t pos = 0;
    while (pos < out.size()) {
      size_t e = out.find("\r\n", pos);
      if (e == std::string::npos) break;
      std::string line = out.substr(pos, e - pos);
      if (line.size() >= 4 && line[3] == ' ') v.push_back(std::stoi(line.substr(0, 3)));
      pos = e + 2;
    }
    return v;
  }
  std::string take() {
    std::string s;
    s.swap(out);
    return s;
  }
};

inline SessionConfig relay_cfg(bool trusted = true) {
  SessionConfig c;
  c.hostname = "mx.test";
  c.mode = Mode::relay;
  c.trusted = trusted;
  c.client_address = "127.0.0.1";
  c.max_message_size = 1000;
  c.max_recipients = 3;
  return c;
}

}  // namespace sluice::mta::test
