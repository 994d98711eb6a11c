// policy_test.cpp — the delivery decisions, as tables: every input of
// queue/policy.hpp and what it must lead to.
#include <catch2/catch.hpp>

#include <vector>

#include "queue/policy.hpp"

using namespace sluice::queue;
using namespace sluice::queue::policy;

namespace {

const Context kMx{};
const Context kRelay{.via_relayhost = true};

Outcome reply(int code, std::string enhanced, std::string text) {
  return Outcome{code, std::move(enhanced), std::move(text)};
}

SessionEvent ev(SessionFailure what, std::string host, Outcome r = {}, std::string detail = {},
                bool data_sent = false) {
  return SessionEvent{what, std::move(host), std::move(r), std::move(detail), data_sent};
}

RecipientResult res(Stage st, Outcome r, bool remote = true) { return RecipientResult{st, std::move(r), remote}; }

}  // namespace

TEST_CASE("Outcome renders as a reply line") {
  CHECK(reply(550, "5.1.1", "<a@b>: no such user").str() == "550 5.1.1 <a@b>: no such user");
  CHECK(reply(250, "", "ok").str() == "250 ok");
  CHECK(reply(421, "", "").str() == "421");
  CHECK(reply(250, "", "").positive());
  CHECK(reply(451, "", "").transient());
  CHECK(reply(554, "", "").permanent());
  CHECK_FALSE(reply(354, "", "").positive());
}

TEST_CASE("enhanced status: validation and class forced to the reply's") {
  struct Row {
    int code;
    const char* enhanced;
    const char* fallback;
    const char* want;
  };
  const std::vector<Row> rows = {
      {550, "5.1.1", "0.0", "5.1.1"},
      {550, "4.1.1", "0.0", "5.1.1"},   // class mismatch: the reply code wins
      {451, "5.7.1", "0.0", "4.7.1"},
      {250, "2.1.5", "0.0", "2.1.5"},
      {550, "", "0.0", "5.0.0"},        // none sent
      {451, "", "0.0", "4.0.0"},
      {550, "5.1", "0.0", "5.0.0"},     // malformed
      {550, "5.1.1000", "0.0", "5.0.0"},
      {550, "6.1.1", "0.0", "5.0.0"},
      {550, "5.a.1", "0.0", "5.0.0"},
      {550, "5.123.456", "0.0", "5.123.456"},
      {354, "", "5.0", "4.5.0"},        // unexpected codes are temporary protocol errors
      {0, "", "0.0", "4.0.0"},
  };
  for (const Row& r : rows) {
    INFO(r.code << " " << r.enhanced);
    CHECK(status_of(reply(r.code, r.enhanced, "x"), r.fallback) == r.want);
  }
  CHECK(valid_status("2.0.0"));
  CHECK(valid_status("5.1.10"));
  CHECK_FALSE(valid_status("3.0.0"));
  CHECK_FALSE(valid_status("5.0"));
  CHECK_FALSE(valid_status("5..0"));
  CHECK_FALSE(valid_status("5.0.0 "));
  CHECK_FALSE(valid_status(""));
}

TEST_CASE("DNS failures") {
  struct Row {
    DnsFailure what;
    Action action;
    const char* status;
    const char* reply_starts;
  };
  const std::vector<Row> rows = {
      {DnsFailure::temporary, Action::defer, "4.4.3", "451 4.4.3 example.com MX: timed out"},
      {DnsFailure::nxdomain, Action::bounce, "5.1.2", "550 5.1.2 example.com MX: timed out"},
      {DnsFailure::no_route, Action::bounce, "5.4.4", "550 5.4.4 example.com MX: timed out"},
      {DnsFailure::null_mx, Action::bounce, "5.1.10", "556 5.1.10 example.com does not accept mail (null MX)"},
  };
  for (const Row& r : rows) {
    Verdict v = dns_failure(r.what, "example.com", "example.com MX: timed out", kMx);
    INFO(v.reply);
    CHECK(v.action == r.action);
    CHECK(v.status == r.status);
    CHECK(v.reply == r.reply_starts);
    CHECK(v.remote_host.empty());  // made up by Sluice
  }
  SECTION("with a relayhost nothing DNS says bounces") {
    for (DnsFailure f : {DnsFailure::temporary, DnsFailure::nxdomain, DnsFailure::no_route, DnsFailure::null_mx}) {
      Verdict v = dns_failure(f, "relay.example", "relay.example: domain does not exist (NXDOMAIN)", kRelay);
      CHECK(v.action == Action::defer);
      CHECK(v.status == "4.4.3");
      CHECK(v.reply == "451 4.4.3 relayhost lookup failed: relay.example: domain does not exist (NXDOMAIN)");
    }
  }
  SECTION("an empty reason still says something") {
    CHECK(dns_failure(DnsFailure::temporary, "x.example", "", kMx).reply == "451 4.4.3 x.example: DNS lookup failed");
  }
}

TEST_CASE("session failures: next host or not, and the verdict on their own") {
  const std::string h = "mx1.example.com[192.0.2.1]";
  struct Row {
    SessionEvent e;
    bool next;
    Action action;
    const char* status;
    const char* reply;
    bool remote;  // the reply is the server's
  };
  const std::vector<Row> rows = {
      {ev(SessionFailure::connect_failed, h, {}, "Connection refused"), true, Action::defer, "4.4.1",
       "451 4.4.1 connect to mx1.example.com[192.0.2.1]: Connection refused", false},
      {ev(SessionFailure::connect_failed, h), true, Action::defer, "4.4.1",
       "451 4.4.1 connect to mx1.example.com[192.0.2.1]: connection failed", false},
      {ev(SessionFailure::timeout, h, {}, "after RCPT TO"), true, Action::defer, "4.4.2",
       "451 4.4.2 timeout talking to mx1.example.com[192.0.2.1] after RCPT TO", false},
      {ev(SessionFailure::timeout, h, {}, "after end of data", true), false, Action::defer, "4.4.2",
       "451 4.4.2 timeout talking to mx1.example.com[192.0.2.1] after end of data", false},
      {ev(SessionFailure::connection_lost, h, {}, "while sending the data"), true, Action::defer, "4.4.2",
       "451 4.4.2 lost connection with mx1.example.com[192.0.2.1] while sending the data", false},
      {ev(SessionFailure::protocol_error, h, {}, "Protocol error while sending EHLO: bad reply from server: NUL in reply"),
       true, Action::defer, "4.5.0",
       "451 4.5.0 Protocol error while sending EHLO: bad reply from server: NUL in reply at mx1.example.com[192.0.2.1]",
       false},
      {ev(SessionFailure::protocol_error, h, {}, "", true), false, Action::defer, "4.5.0",
       "451 4.5.0 Protocol error at mx1.example.com[192.0.2.1]", false},
      {ev(SessionFailure::connection_lost, h, {}, "after end of data", true), false, Action::defer, "4.4.2",
       "451 4.4.2 lost connection with mx1.example.com[192.0.2.1] after end of data", false},
      {ev(SessionFailure::greeting, h, reply(421, "4.3.2", "busy")), true, Action::defer, "4.3.2",
       "421 4.3.2 busy", true},
      // On its own (one host) a 5xx greeting bounces; see the next test for several.
      {ev(SessionFailure::greeting, h, reply(554, "5.7.1", "go away")), true, Action::bounce, "5.7.1",
       "554 5.7.1 go away", true},
      {ev(SessionFailure::greeting, h, reply(554, "", "go away")), true, Action::bounce, "5.0.0",
       "554 go away", true},
      {ev(SessionFailure::helo, h, reply(550, "5.7.1", "bad helo")), true, Action::bounce, "5.7.1",
       "550 5.7.1 bad helo", true},
      {ev(SessionFailure::helo, h, reply(451, "", "later")), true, Action::defer, "4.0.0", "451 later", true},
      {ev(SessionFailure::greeting, h, {}, "garbage"), true, Action::defer, "4.5.0",
       "451 4.5.0 no usable greeting from mx1.example.com[192.0.2.1]: garbage", false},
      {ev(SessionFailure::tls_unavailable, h, {}, "no STARTTLS in EHLO"), true, Action::defer, "4.7.4",
       "451 4.7.4 TLS is required, but mx1.example.com[192.0.2.1] does not offer it: no STARTTLS in EHLO", false},
      {ev(SessionFailure::tls_failed, h, {}, "certificate verify failed"), true, Action::defer, "4.7.5",
       "451 4.7.5 TLS with mx1.example.com[192.0.2.1] failed: certificate verify failed", false},
      {ev(SessionFailure::tls_failed, h, reply(454, "4.7.0", "TLS not available")), true, Action::defer,
       "4.7.0", "454 4.7.0 TLS not available", true},
      {ev(SessionFailure::tls_failed, h, reply(554, "", "no TLS for you")), true, Action::defer, "4.7.0",
       "554 no TLS for you", true},
      {ev(SessionFailure::auth_failed, h, reply(535, "5.7.8", "Authentication credentials invalid")), false,
       Action::defer, "4.7.8", "535 5.7.8 Authentication credentials invalid", true},
      {ev(SessionFailure::auth_failed, h, reply(535, "", "no")), false, Action::defer, "4.7.8", "535 no", true},
      {ev(SessionFailure::auth_failed, h, {}, "no common mechanism"), false, Action::defer, "4.7.8",
       "451 4.7.8 authentication at mx1.example.com[192.0.2.1] failed: no common mechanism", false},
      {ev(SessionFailure::mail_from, h, reply(451, "4.3.0", "try later")), true, Action::defer, "4.3.0",
       "451 4.3.0 try later", true},
      {ev(SessionFailure::mail_from, h, reply(553, "5.1.8", "bad sender domain")), false, Action::bounce,
       "5.1.8", "553 5.1.8 bad sender domain", true},
      {ev(SessionFailure::mail_from, h, reply(552, "5.3.4", "too big")), false, Action::bounce, "5.3.4",
       "552 5.3.4 too big", true},
      {ev(SessionFailure::mail_from, h, reply(354, "", "what")), true, Action::defer, "4.5.0", "354 what", true},
      {ev(SessionFailure::too_big, h, {}, "size 40000000 over its limit 10240000"), false, Action::bounce,
       "5.3.4", "552 5.3.4 message too big for mx1.example.com[192.0.2.1]: size 40000000 over its limit 10240000",
       false},
      // The host named itself with our hostname in its EHLO reply: a loop,
      // not certain enough to bounce (Postfix's rule); the next MX is tried.
      {ev(SessionFailure::loop, h, {}, "Server replied to EHLO with my own hostname mx.sluice.test"), true,
       Action::defer, "4.4.6",
       "451 4.4.6 mail loops back to myself at mx1.example.com[192.0.2.1]: Server replied to EHLO with "
       "my own hostname mx.sluice.test",
       false},
  };
  for (const Row& r : rows) {
    INFO(to_string(r.e.what) << " " << r.e.reply.str() << " " << r.e.detail);
    CHECK(try_next_host(r.e, kMx) == r.next);
    SessionEvent one[] = {r.e};
    Verdict v = session_verdict(one, kMx);
    CHECK(v.action == r.action);
    CHECK(v.status == r.status);
    CHECK(v.reply == r.reply);
    CHECK(v.remote_host == (r.remote ? r.e.host : ""));
  }
}

TEST_CASE("session verdict over several hosts: a 5xx greeting bounces only when every host said so") {
  const SessionEvent g554a = ev(SessionFailure::greeting, "mx1", reply(554, "5.7.1", "blocked"));
  const SessionEvent g554b = ev(SessionFailure::greeting, "mx2", reply(554, "5.7.1", "blocked too"));
  const SessionEvent h550 = ev(SessionFailure::helo, "mx3", reply(550, "", "no"));
  const SessionEvent refused = ev(SessionFailure::connect_failed, "mx2", {}, "Connection refused");
  const SessionEvent g421 = ev(SessionFailure::greeting, "mx2", reply(421, "", "busy"));

  SECTION("all refuse for good: bounce with the last reply") {
    std::vector<SessionEvent> t = {g554a, g554b, h550};
    Verdict v = session_verdict(t, kMx);
    CHECK(v.action == Action::bounce);
    CHECK(v.reply == "550 no");
    CHECK(v.status == "5.0.0");
    CHECK(v.remote_host == "mx3");
  }
  SECTION("one could not be reached: defer, the last host's reason") {
    std::vector<SessionEvent> t = {g554a, refused};
    Verdict v = session_verdict(t, kMx);
    CHECK(v.action == Action::defer);
    CHECK(v.status == "4.4.1");
  }
  SECTION("the last one refused for good, an earlier one only for now: defer with class 4") {
    std::vector<SessionEvent> t = {g421, g554b};
    Verdict v = session_verdict(t, kMx);
    CHECK(v.action == Action::defer);
    CHECK(v.status == "4.7.1");
    CHECK(v.reply == "554 5.7.1 blocked too");
    CHECK(v.remote_host == "mx2");
  }
  SECTION("with a relayhost a 5xx greeting defers") {
    std::vector<SessionEvent> t = {g554a};
    Verdict v = session_verdict(t, kRelay);
    CHECK(v.action == Action::defer);
    CHECK(v.status == "4.7.1");
  }
  SECTION("relayhost AUTH failure never bounces, and is never retried elsewhere") {
    SessionEvent a = ev(SessionFailure::auth_failed, "relay[192.0.2.9]", reply(535, "5.7.8", "bad credentials"));
    CHECK_FALSE(try_next_host(a, kRelay));
    std::vector<SessionEvent> t = {refused, a};
    Verdict v = session_verdict(t, kRelay);
    CHECK(v.action == Action::defer);
    CHECK(v.status == "4.7.8");
  }
  SECTION("a later MAIL FROM 5xx decides after earlier connection failures") {
    std::vector<SessionEvent> t = {refused, ev(SessionFailure::mail_from, "mx3", reply(550, "5.7.1", "sender denied"))};
    CHECK(session_verdict(t, kMx).action == Action::bounce);
  }
  SECTION("nothing tried: defer") {
    CHECK(session_verdict({}, kMx).action == Action::defer);
  }
}

TEST_CASE("RCPT TO replies") {
  struct Row {
    Outcome r;
    bool accepted;
    Action action;
    const char* status;
  };
  const std::vector<Row> rows = {
      {reply(250, "2.1.5", "ok"), true, Action::sent, ""},
      {reply(251, "", "will forward"), true, Action::sent, ""},
      {reply(450, "4.2.0", "greylisted"), false, Action::defer, "4.2.0"},
      {reply(452, "4.5.3", "too many recipients"), false, Action::defer, "4.5.3"},
      {reply(421, "", "closing"), false, Action::defer, "4.0.0"},
      {reply(550, "5.1.1", "no such user"), false, Action::bounce, "5.1.1"},
      {reply(553, "", "bad address"), false, Action::bounce, "5.0.0"},
      {reply(554, "4.7.1", "relay denied"), false, Action::bounce, "5.7.1"},
      {reply(354, "", "huh"), false, Action::defer, "4.5.0"},
      {reply(199, "", "huh"), false, Action::defer, "4.5.0"},
      {reply(0, "", ""), false, Action::defer, "4.5.0"},
  };
  for (const Row& row : rows) {
    INFO(row.r.str());
    auto v = rcpt_reply(row.r, "mx.example");
    CHECK(v.has_value() == !row.accepted);
    if (!v) continue;
    CHECK(v->action == row.action);
    CHECK(v->status == row.status);
    CHECK(v->reply == row.r.str());
    CHECK(v->remote_host == "mx.example");
  }
}

TEST_CASE("DATA replies") {
  struct Row {
    Outcome r;
    Action action;
    const char* status;
  };
  const std::vector<Row> rows = {
      {reply(250, "2.0.0", "Ok: queued as ABC"), Action::sent, "2.0.0"},
      {reply(250, "", "ok"), Action::sent, "2.0.0"},
      {reply(451, "4.3.0", "disk full"), Action::defer, "4.3.0"},
      {reply(452, "", "insufficient storage"), Action::defer, "4.0.0"},
      {reply(552, "5.3.4", "message too big"), Action::bounce, "5.3.4"},
      {reply(554, "5.7.1", "spam"), Action::bounce, "5.7.1"},
      {reply(354, "", "go ahead"), Action::defer, "4.5.0"},  // the glue must not pass 354
  };
  for (const Row& row : rows) {
    INFO(row.r.str());
    Verdict v = data_reply(row.r, "mx.example");
    CHECK(v.action == row.action);
    CHECK(v.status == row.status);
    CHECK(v.reply == row.r.str());
    CHECK(v.remote_host == "mx.example");
  }
}

TEST_CASE("transaction results: one verdict per recipient, or the host's failure decides") {
  const std::string h = "mx1.example.com[192.0.2.1]";
  struct Row {
    RecipientResult r;
    bool connection_failed;
    bool decided;
    Action action;
    const char* status;
    bool remote;
  };
  const std::vector<Row> rows = {
      {res(Stage::end_of_data, reply(250, "2.0.0", "queued")), false, true, Action::sent, "2.0.0", true},
      {res(Stage::rcpt, reply(550, "5.1.1", "no such user")), false, true, Action::bounce, "5.1.1", true},
      {res(Stage::rcpt, reply(450, "4.2.0", "greylisted")), false, true, Action::defer, "4.2.0", true},
      {res(Stage::data, reply(554, "5.7.1", "no")), false, true, Action::bounce, "5.7.1", true},
      {res(Stage::end_of_data, reply(452, "", "full")), false, true, Action::defer, "4.0.0", true},
      {res(Stage::message, reply(552, "5.3.4", "too big")), true, true, Action::bounce, "5.3.4", true},
      // Refused here before sending: by class, no remote host.
      {res(Stage::local, reply(553, "5.6.7", "needs SMTPUTF8"), false), false, true, Action::bounce, "5.6.7", false},
      {res(Stage::local, reply(501, "5.1.3", "Invalid recipient address"), false), false, true, Action::bounce,
       "5.1.3", false},
      {res(Stage::local, reply(451, "4.3.0", "not ready"), false), false, true, Action::defer, "4.3.0", false},
      // Made up because the connection failed: the failure decides.
      {res(Stage::rcpt, reply(451, "4.4.2", "timed out"), false), true, false, Action::defer, "", false},
      // A refused MAIL is the host's failure, not the recipient's.
      {res(Stage::mail, reply(550, "5.7.1", "sender denied")), false, false, Action::defer, "", false},
  };
  for (const Row& row : rows) {
    INFO(row.r.reply.str());
    auto v = recipient_verdict(row.r, h, row.connection_failed);
    REQUIRE(v.has_value() == row.decided);
    if (!v) continue;
    CHECK(v->action == row.action);
    CHECK(v->status == row.status);
    CHECK(v->reply == row.r.reply.str());
    CHECK(v->remote_host == (row.remote ? h : ""));
  }
}

TEST_CASE("a refused MAIL FROM is the host's failure") {
  const std::vector<RecipientResult> refused = {
      RecipientResult{Stage::mail, reply(451, "4.3.0", "later"), true},
      RecipientResult{Stage::mail, reply(451, "4.3.0", "later"), true}};
  auto e = refused_mail(refused, "mx1");
  REQUIRE(e.has_value());
  CHECK(e->what == SessionFailure::mail_from);
  CHECK(e->host == "mx1");
  CHECK(e->reply == reply(451, "4.3.0", "later"));
  CHECK(try_next_host(*e, kMx));
  const std::vector<RecipientResult> aborted = {RecipientResult{Stage::mail, reply(451, "4.3.2", "aborted"), false}};
  CHECK_FALSE(refused_mail(aborted, "mx1").has_value());  // made up here: not the server's refusal
  const std::vector<RecipientResult> rcpt = {RecipientResult{Stage::rcpt, reply(550, "5.1.1", "unknown"), true}};
  CHECK_FALSE(refused_mail(rcpt, "mx1").has_value());
}

TEST_CASE("the resolver's status, never its text, says what a DNS failure is") {
  CHECK_FALSE(dns_failure_of(sluice::dns::Status::ok).has_value());
  CHECK(dns_failure_of(sluice::dns::Status::nxdomain) == DnsFailure::nxdomain);
  CHECK(dns_failure_of(sluice::dns::Status::no_route) == DnsFailure::no_route);
  CHECK(dns_failure_of(sluice::dns::Status::null_mx) == DnsFailure::null_mx);
  CHECK(dns_failure_of(sluice::dns::Status::temporary) == DnsFailure::temporary);
}

TEST_CASE("lifetime: a deferral after max_queue_lifetime bounces with 4.4.7 and the last reply") {
  const int64_t day = 86'400'000'000;
  CHECK_FALSE(expired(0, 5 * day, 5 * day - 1));
  CHECK(expired(0, 5 * day, 5 * day));
  CHECK(expired(100, 5 * day, 6 * day));
  Verdict d = *rcpt_reply(reply(451, "4.7.1", "greylisted"), "mx.example");
  Verdict b = expire(d);
  CHECK(b.action == Action::bounce);
  CHECK(b.status == "4.4.7");
  CHECK(b.reply == "451 4.7.1 greylisted");
  CHECK(b.remote_host == "mx.example");
}

TEST_CASE("administrator's bounce") {
  Verdict v = cancelled_by_admin();
  CHECK(v.action == Action::bounce);
  CHECK(v.status == "5.0.0");
  CHECK(v.remote_host.empty());
}

TEST_CASE("a job without its message defers") {
  Verdict v = message_missing();
  CHECK(v.action == Action::defer);
  CHECK(v.reply == "451 4.3.0 message not found");
}

TEST_CASE("loops: every next hop is myself bounces with 5.4.6, also through a relayhost") {
  Verdict v = loops_back("example.com");
  CHECK(v.action == Action::bounce);
  CHECK(v.status == "5.4.6");
  CHECK(v.reply == "554 5.4.6 mail for example.com loops back to myself");
  CHECK(v.remote_host.empty());
  // A loop at the EHLO reply defers even when it is the last host and with
  // a relayhost: it may be a neighbour that shares the name.
  SessionEvent one[] = {ev(SessionFailure::loop, "relay.example[192.0.2.9]", {}, "named")};
  CHECK(session_verdict(one, kRelay).action == Action::defer);
  CHECK(session_verdict(one, kRelay).status == "4.4.6");
  CHECK(try_next_host(one[0], kRelay));
}

TEST_CASE("to_string of actions and failures") {
  CHECK(to_string(Action::sent) == "sent");
  CHECK(to_string(Action::defer) == "deferred");
  CHECK(to_string(Action::bounce) == "bounced");
  CHECK(to_string(SessionFailure::auth_failed) == "authentication failed");
  CHECK(to_string(SessionFailure::loop) == "loops back to myself");
}

TEST_CASE("REQUIRETLS: which host may take the message, and what happens when none does") {
  // Every condition met: send.
  CHECK_FALSE(requiretls_refusal("mx1[192.0.2.1]", true, TlsLevel::dane, true).has_value());
  CHECK_FALSE(requiretls_refusal("mx1[192.0.2.1]", true, TlsLevel::pkix, true).has_value());
  CHECK_FALSE(requiretls_refusal("mx1[192.0.2.1]", true, TlsLevel::mta_sts, true).has_value());
  // The first unmet condition names the reason; the event is the host's.
  struct Row {
    bool name;
    TlsLevel level;
    bool offers;
    std::string_view says;
  };
  const Row rows[] = {
      {false, TlsLevel::dane, true, "name is not authenticated"},
      {false, TlsLevel::none, false, "name is not authenticated"},
      {true, TlsLevel::opportunistic, true, "TLS is opportunistic, not authenticated"},
      {true, TlsLevel::none, true, "TLS is none, not authenticated"},
      {true, TlsLevel::pkix, false, "does not offer REQUIRETLS"},
  };
  for (const Row& r : rows) {
    auto e = requiretls_refusal("mx1[192.0.2.1]", r.name, r.level, r.offers);
    REQUIRE(e.has_value());
    CHECK(e->what == SessionFailure::requiretls);
    CHECK(e->host == "mx1[192.0.2.1]");
    CHECK(e->detail.find(r.says) != std::string::npos);
    CHECK(e->reply.code == 0);
    // Try the next MX, also behind a relayhost (there is none, but the rule
    // is the same), and defer with 4.7.30 when it was the last.
    CHECK(try_next_host(*e, kMx));
    CHECK(try_next_host(*e, kRelay));
    SessionEvent tried[] = {*e};
    Verdict v = session_verdict(tried, kMx);
    CHECK(v.action == Action::defer);
    CHECK(v.status == "4.7.30");
    CHECK(v.reply.starts_with("451 4.7.30 REQUIRETLS support required, not met by mx1[192.0.2.1]: "));
    CHECK(v.remote_host.empty());
    // At the end of the queue lifetime: 550 5.7.30 (RFC 8689 §5).
    Verdict b = expire(v);
    CHECK(b.action == Action::bounce);
    CHECK(b.status == "5.7.30");
    CHECK(b.reply.starts_with("550 5.7.30 REQUIRETLS support required, not met by mx1"));
  }
  // The last host decides, as for any failure: a REQUIRETLS refusal after
  // other failures defers with 4.7.30, one before them does not matter.
  SessionEvent mixed[] = {ev(SessionFailure::connect_failed, "mx1", {}, "refused"),
                          *requiretls_refusal("mx2", true, TlsLevel::opportunistic, true)};
  CHECK(session_verdict(mixed, kMx).status == "4.7.30");
  // No next hop can ever qualify (delivery.tls = "none"): bounce at once.
  Verdict never = requiretls_impossible("delivery.tls is \"none\"");
  CHECK(never.action == Action::bounce);
  CHECK(never.status == "5.7.30");
  CHECK(never.reply == "550 5.7.30 REQUIRETLS support required: delivery.tls is \"none\"");
  CHECK(to_string(SessionFailure::requiretls) == "REQUIRETLS not possible");
}

TEST_CASE("REQUIRETLS: a server that does not offer it is the host's failure, not the recipients'") {
  const std::vector<RecipientResult> held = {
      res(Stage::requiretls, reply(451, "4.7.30", "REQUIRETLS support required"), false),
      res(Stage::requiretls, reply(451, "4.7.30", "REQUIRETLS support required"), false)};
  for (const auto& r : held) {
    CHECK_FALSE(recipient_verdict(r, "mx1", false).has_value());
    CHECK_FALSE(recipient_verdict(r, "mx1", true).has_value());
  }
  auto e = refused_mail(held, "mx1");
  REQUIRE(e.has_value());
  CHECK(e->what == SessionFailure::requiretls);
  CHECK(e->detail == "it does not offer REQUIRETLS");
  CHECK(try_next_host(*e, kMx));
  // Other deferrals still expire with 4.4.7.
  Verdict d = *rcpt_reply(reply(451, "4.7.1", "greylisted"), "mx.example");
  CHECK(expire(d).status == "4.4.7");
}

TEST_CASE("policy: an MTA-STS policy that allows no MX defers with 4.7.5") {
  Verdict v = sts_no_matching_mx("example.com");
  CHECK(v.action == Action::defer);
  CHECK(v.status == "4.7.5");
  CHECK(v.reply == "451 4.7.5 no MX host of example.com is allowed by its MTA-STS policy (mode enforce)");
}
