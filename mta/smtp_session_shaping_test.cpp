// Submission limits without sockets (docs/shaping.md "Submission limits"):
// messages_per_login at MAIL, auth_failures_per_client around the password
// check, with the store answering at once (LocalStore) or later (Redis).
#include <catch2/catch.hpp>

#include <string>

#include "mta/session_test_util.hpp"

using namespace sluice::mta::test;
using sluice::shaping::Rate;

namespace {

constexpr int64_t kHour = 3600'000'000;

SessionConfig login_cfg() {
  SessionConfig c = relay_cfg(false);
  c.mode = Mode::submission;
  c.auth_offered = true;
  c.in_tls = true;
  c.client_address = "192.0.2.7";
  c.max_auth_failures = 10;
  return c;
}

// \0alice@x.test\0secret
const char* kAuthAlice = "AUTH PLAIN AGFsaWNlQHgudGVzdABzZWNyZXQ=\r\n";

// EHLO and a successful AUTH as alice@x.test.
void log_in(Session& s, Host& h, const std::string& login = "alice@x.test") {
  s.feed(std::string("EHLO c\r\n") + kAuthAlice);
  REQUIRE(s.state() == Session::State::auth_checking);
  s.on_auth_result(true, login);
  h.take();
}

}  // namespace

TEST_CASE("messages_per_login: a period's worth at once, then 450 4.7.1 until one is due") {
  Host h;
  auto cfg = login_cfg();
  cfg.messages_per_login = Rate{2, kHour};
  Session s(cfg, h);
  h.session = &s;
  log_in(s, h);
  s.feed("MAIL FROM:<alice@x.test>\r\nRSET\r\nMAIL FROM:<alice@x.test>\r\nRSET\r\n"
         "MAIL FROM:<alice@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  CHECK(h.take() ==
        "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n"
        "450 4.7.1 Error: too much mail from login alice@x.test (limit 2/h), try again in 1800 s\r\n"
        "503 5.5.1 Error: need MAIL command\r\n");
  CHECK(h.limit_calls.size() == 3);
  CHECK(h.limit_calls[0] == "take login:alice@x.test 2/h burst 2");
  // Logged once, with the login (the host adds the connection id).
  REQUIRE(h.rejects.size() == 2);
  CHECK(h.rejects[0] == "MAIL <alice@x.test> login=alice@x.test 450");
  CHECK(s.state() == Session::State::ready);
  // Half an hour on, one more may go.
  h.clock_us += kHour / 2;
  s.feed("MAIL FROM:<alice@x.test>\r\nRSET\r\nMAIL FROM:<alice@x.test>\r\n");
  CHECK(h.codes() == std::vector<int>{250, 250, 450});
}

TEST_CASE("messages_per_login counts per login, across sessions, and only logins") {
  Host h;
  auto cfg = login_cfg();
  cfg.messages_per_login = Rate{1, kHour};
  {
    Session s(cfg, h);
    h.session = &s;
    log_in(s, h);
    s.feed("MAIL FROM:<alice@x.test>\r\n");
    CHECK(h.take() == "250 2.1.0 Ok\r\n");
  }
  {
    Session s(cfg, h);  // a second connection of the same login
    h.session = &s;
    log_in(s, h);
    s.feed("MAIL FROM:<alice@x.test>\r\n");
    CHECK(h.codes() == std::vector<int>{450});
    h.take();
  }
  {
    Session s(cfg, h);  // another login is not affected
    h.session = &s;
    log_in(s, h, "bob");
    s.feed("MAIL FROM:<bob@allowed.test>\r\n");
    CHECK(h.take() == "250 2.1.0 Ok\r\n");
  }
  // A trusted relay client without AUTH is never counted.
  Host r;
  auto relay = relay_cfg(true);
  relay.messages_per_login = Rate{1, kHour};
  Session s(relay, r);
  r.session = &s;
  s.feed("EHLO c\r\nMAIL FROM:<a@x.test>\r\nRSET\r\nMAIL FROM:<a@x.test>\r\n");
  CHECK(r.codes() == std::vector<int>{250, 250, 250, 250});
  CHECK(r.limit_calls.empty());
}

TEST_CASE("messages_per_login unset: no store call") {
  Host h;
  Session s(login_cfg(), h);
  h.session = &s;
  log_in(s, h);
  for (int i = 0; i < 5; ++i) s.feed("MAIL FROM:<alice@x.test>\r\nRSET\r\n");
  CHECK(h.codes() == std::vector<int>(10, 250));
  CHECK(h.limit_calls.empty());
}

TEST_CASE("a later answer: MAIL waits in mail_limit, pipelined commands keep their order") {
  Host h;
  h.defer_limits = true;
  auto cfg = login_cfg();
  cfg.messages_per_login = Rate{5, kHour};
  Session s(cfg, h);
  h.session = &s;
  log_in(s, h);
  s.feed("MAIL FROM:<alice@x.test>\r\nRCPT TO:<b@y.test>\r\n");
  CHECK(s.state() == Session::State::mail_limit);
  CHECK(s.blocked());
  CHECK(h.out.empty());
  s.feed("NOOP\r\n");  // kept while blocked
  CHECK(h.out.empty());
  REQUIRE(h.deferred);
  s.on_limit(*h.deferred);
  CHECK(h.take() == "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n");
  CHECK(s.state() == Session::State::rcpt);
  // An answer nobody waits for is ignored.
  s.on_limit(*h.deferred);
  CHECK(h.out.empty());
}

TEST_CASE("a later answer after the session ended touches nothing") {
  Host h;
  h.defer_limits = true;
  auto cfg = login_cfg();
  cfg.messages_per_login = Rate{5, kHour};
  Session s(cfg, h);
  h.session = &s;
  log_in(s, h);
  s.feed("MAIL FROM:<alice@x.test>\r\n");
  CHECK(s.state() == Session::State::mail_limit);
  s.on_timeout();
  CHECK(h.closed);
  h.take();
  s.on_limit(*h.deferred);
  CHECK(h.out.empty());
  CHECK(s.state() == Session::State::closed);

  // Shutdown while waiting: 421 at once.
  Host h2;
  h2.defer_limits = true;
  Session s2(cfg, h2);
  h2.session = &s2;
  log_in(s2, h2);
  s2.feed("MAIL FROM:<alice@x.test>\r\n");
  s2.shutdown();
  CHECK(h2.take() == "421 4.3.2 Service shutting down, closing transmission channel\r\n");
  s2.on_limit(*h2.deferred);
  CHECK(h2.out.empty());
}

TEST_CASE("auth_failures_per_client: failures counted across sessions, then 454 without a check") {
  Host h;
  auto cfg = login_cfg();
  cfg.auth_failures_per_client = Rate{2, kHour};
  for (int i = 0; i < 2; ++i) {
    Session s(cfg, h);
    h.session = &s;
    s.feed(std::string("EHLO c\r\n") + kAuthAlice);
    CHECK(s.state() == Session::State::auth_checking);
    s.on_auth_result(false, "alice@x.test");
    CHECK(h.out.ends_with("535 5.7.8 Authentication credentials invalid\r\n"));
    h.take();
  }
  CHECK(h.checked.size() == 2);
  CHECK(h.limit_calls == std::vector<std::string>{
                             "peek authfail:192.0.2.7 2/h burst 2",
                             "count authfail:192.0.2.7 2/h burst 2",
                             "peek authfail:192.0.2.7 2/h burst 2",
                             "count authfail:192.0.2.7 2/h burst 2",
                         });
  // The third attempt (even with the right password) is not checked.
  Session s(cfg, h);
  h.session = &s;
  s.feed(std::string("EHLO c\r\n") + kAuthAlice + "NOOP\r\n");
  CHECK(h.out.ends_with(
      "454 4.7.0 Error: too many failed authentications from 192.0.2.7, try again in 1800 s\r\n"
      "250 2.0.0 Ok\r\n"));
  CHECK(h.checked.size() == 2);
  CHECK(h.rejects.back() == "AUTH login=alice@x.test 454");
  CHECK(s.state() == Session::State::ready);
  CHECK(s.auth_login().empty());
  // Another address is not affected; and it expires by itself.
  h.take();
  auto other = cfg;
  other.client_address = "192.0.2.8";
  Session s2(other, h);
  h.session = &s2;
  s2.feed(std::string("EHLO c\r\n") + kAuthAlice);
  CHECK(s2.state() == Session::State::auth_checking);
  h.clock_us += kHour / 2;
  h.session = &s;
  s.feed(kAuthAlice);
  CHECK(s.state() == Session::State::auth_checking);
  s.on_auth_result(true, "alice@x.test");
  CHECK(s.auth_login() == "alice@x.test");
}

TEST_CASE("auth_failures_per_client: trusted clients are exempt; unset: no store call") {
  auto trusted = relay_cfg(true);
  trusted.auth_offered = true;  // AUTH without TLS for a trusted relay client
  trusted.auth_failures_per_client = Rate{1, kHour};
  auto unset = login_cfg();
  for (const SessionConfig& cfg : {trusted, unset}) {
    Host h;
    Session s(cfg, h);
    h.session = &s;
    for (int i = 0; i < 2; ++i) {
      s.feed(std::string(i == 0 ? "EHLO c\r\n" : "") + kAuthAlice);
      REQUIRE(s.state() == Session::State::auth_checking);
      s.on_auth_result(false, "alice@x.test");
    }
    CHECK(h.checked.size() == 2);
    CHECK(h.limit_calls.empty());
  }
}

TEST_CASE("auth_failures_per_client: a later answer; the connection closes meanwhile") {
  Host h;
  h.defer_limits = true;
  auto cfg = login_cfg();
  cfg.auth_failures_per_client = Rate{2, kHour};
  Session s(cfg, h);
  h.session = &s;
  s.feed(std::string("EHLO c\r\n") + kAuthAlice + "MAIL FROM:<alice@x.test>\r\n");
  CHECK(s.state() == Session::State::auth_limit);
  CHECK(s.blocked());
  h.take();
  s.on_limit(*h.deferred);
  CHECK(s.state() == Session::State::auth_checking);
  CHECK(h.checked == std::vector<std::string>{"alice@x.test:secret"});
  s.on_auth_result(true, "alice@x.test");
  CHECK(h.take() == "235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n");

  Host h2;
  h2.defer_limits = true;
  Session s2(cfg, h2);
  h2.session = &s2;
  s2.feed(std::string("EHLO c\r\n") + kAuthAlice);
  CHECK(s2.state() == Session::State::auth_limit);
  s2.on_timeout();
  s2.on_limit(*h2.deferred);
  CHECK(h2.checked.empty());
  CHECK(s2.state() == Session::State::closed);
}
