// format_test.cpp — sluicectl's output for people (golden text), hostile
// text escaped, odd response shapes, and render()'s exit codes and streams.
#include <catch2/catch.hpp>

#include <sstream>

#include "mta/auth/sasl.hpp"
#include "mta/control/dispatcher.hpp"
#include "mta/control/format.hpp"
#include "mta/control/memory_admin.hpp"

using namespace sluice;
using namespace sluice::control;
using namespace sluice::control::testing;
using nlohmann::json;

namespace {

const char* kListResponse = R"({"ok":true,"messages":[
  {"id":"0123456789ABCDEF","state":"deferred","size":1234,"arrival_time":"2026-12-03T06:02:23Z",
   "next_attempt":"2026-12-03T06:12:23Z","attempts":2,"sender":"alice@example.org",
   "recipients":[{"address":"bob@example.net","status":"deferred","last_reply":"451 4.7.1 greylisted"},
                 {"address":"carol@example.net","status":"pending","last_reply":""},
                 {"address":"dave@example.com","status":"sent","last_reply":"250 ok"}],
   "last_error":"451 4.7.1 greylisted"},
  {"id":"0123456789ABCE00","state":"held","size":1000000,"arrival_time":"2026-12-03T07:00:00Z",
   "next_attempt":null,"attempts":0,"sender":"",
   "recipients":[{"address":"eve@example.org","status":"pending","last_reply":""}],
   "last_error":null}],
  "total":{"messages":2,"bytes":1001234,"queued":0,"deferred":1,"held":1}})";

Request req(Command c) {
  Request r;
  r.command = c;
  return r;
}

}  // namespace

TEST_CASE("format: queue list is a mailq-like table") {
  const std::string expected =
      "Queue ID          State          Size  Arrival (UTC)        Next attempt (UTC)   Sender / recipients\n"
      "\n"
      "0123456789ABCDEF  deferred       1234  2026-12-03 06:02:23  2026-12-03 06:12:23  alice@example.org\n"
      "    bob@example.net  [deferred]\n"
      "    carol@example.net\n"
      "    dave@example.com  [sent]\n"
      "    (451 4.7.1 greylisted)\n"
      "\n"
      "0123456789ABCE00  held        1000000  2026-12-03 07:00:00  -                    <>\n"
      "    eve@example.org\n"
      "\n"
      "-- 2 messages, 978 KB: 0 queued, 1 deferred, 1 held\n";
  CHECK(format_list(json::parse(kListResponse)) == expected);
}

TEST_CASE("format: an empty queue") {
  json empty = {{"ok", true}, {"messages", json::array()},
                {"total", {{"messages", 0}, {"bytes", 0}, {"queued", 0}, {"deferred", 0}, {"held", 0}}}};
  CHECK(format_list(empty) == "Mail queue is empty\n");
  CHECK(format_list(empty, "held") == "No held messages\n");
}

TEST_CASE("format: hostile text cannot drive the terminal") {
  CHECK(printable("plain ü text") == "plain ü text");
  CHECK(printable("a\x1b[2Jb\r\n\x7f") == "a\\x1b[2Jb\\x0d\\x0a\\x7f");
  CHECK(printable("csi \xc2\x9b" "31m") == "csi \\x9b31m");
  json r = json::parse(kListResponse);
  r["messages"][0]["last_error"] = "451 \x1b]0;owned\x07 try later";
  r["messages"][0]["recipients"][0]["address"] = "x\ny@z";
  std::string out = format_list(r);
  CHECK(out.find('\x1b') == std::string::npos);
  CHECK(out.find("(451 \\x1b]0;owned\\x07 try later)") != std::string::npos);
  CHECK(out.find("x\\x0ay@z") != std::string::npos);
}

TEST_CASE("format: odd shapes never throw") {
  for (const char* text :
       {"{}", "[]", "null", R"({"messages":7})", R"({"messages":[1,"x",null,{"id":5}]})",
        R"({"message":"x"})", R"({"message":{"recipients":[1,{}],"history":{},"body_base64":5}})",
        R"({"ids":[1,null,"A"],"held":"A","action":7})", R"({"connections":[],"queue":"q"})"}) {
    INFO(text);
    json j = json::parse(text);
    CHECK_NOTHROW(format_list(j));
    CHECK_NOTHROW(format_show(j));
    CHECK_NOTHROW(format_status(j));
    CHECK_NOTHROW(format_action(j));
    CHECK_NOTHROW(format_error(j));
  }
}

TEST_CASE("format: queue show from a real dispatcher response") {
  MemoryAdmin admin;
  std::string id = make_id(kT0, 1);
  auto env = make_envelope(id, kT0, "alice@example.org", {"bob@example.net", "carol@example.net"}, 21);
  env.message_id = "<m1@example.org>";
  env.client_address = "192.0.2.7";
  env.helo = "laptop.example.org";
  env.auth_user = "alice";
  env.body = queue::BodyType::eight_bit_mime;
  env.recipients[1].notify = 2 | 4;
  admin.add(env, "Subject: hi\r\n\r\nbody\r\n");
  admin.complete_all(queue::Verdict{queue::Action::defer, "4.4.1", "451 4.4.1 connect: refused", ""});
  auto resp = json::parse(handle_request(R"({"command":"queue.show","body":true,"id":")" + id + "\"}", admin).response);
  const std::string out = format_show(resp);
  const std::string expected_head =
      "Queue ID:       " + id + "\n"
      "State:          deferred\n"
      "Size:           21 bytes\n"
      "Arrival:        2025-12-03 06:02:23 UTC\n"
      "Next attempt:   2025-12-03 06:07:23 UTC\n"
      "Attempts:       1\n"
      "Sender:         <alice@example.org>\n"
      "Message-ID:     <m1@example.org>\n"
      "Client:         192.0.2.7 (helo laptop.example.org)\n"
      "Login:          alice\n"
      "Body type:      8BITMIME\n"
      "\n"
      "Recipients:\n"
      "  bob@example.net\n"
      "      status: deferred, 1 attempt, last 2025-12-03 06:02:23 UTC\n"
      "      reply:  451 4.4.1 connect: refused\n"
      "  carol@example.net\n"
      "      status: deferred, 1 attempt, last 2025-12-03 06:02:23 UTC\n"
      "      reply:  451 4.4.1 connect: refused\n"
      "      notify: failure,delay\n"
      "\n"
      "History (oldest first):\n";
  CHECK(out.substr(0, expected_head.size()) == expected_head);
  CHECK(out.find("2025-12-03 06:02:23 UTC  (all recipients)  451 4.4.1 connect: refused\n") !=
        std::string::npos);
  CHECK(out.find("\nMessage:\nSubject: hi\n\nbody\n") != std::string::npos);
  CHECK(out.find('\r') == std::string::npos);

  // Held: no next attempt; without --body, no content.
  REQUIRE(admin.hold(id));
  resp = json::parse(handle_request(R"({"command":"queue.show","id":")" + id + "\"}", admin).response);
  const std::string held = format_show(resp);
  CHECK(held.find("Next attempt:   - (held)\n") != std::string::npos);
  CHECK(held.find("Message:") == std::string::npos);
}

TEST_CASE("format: queue show with REQUIRETLS, TLS-Required: No and tls levels") {
  MemoryAdmin admin;
  std::string id = make_id(kT0, 2);
  auto env = make_envelope(id, kT0, "alice@example.org", {"bob@example.net", "carol@example.net"}, 21);
  env.requiretls = true;
  admin.add(env, "Subject: hi\r\n\r\nbody\r\n");
  // As delivery records it: the verdict's session was DANE-authenticated.
  admin.complete_all(queue::Verdict{queue::Action::defer, "4.7.1", "451 4.7.1 later", "mx.example.net",
                                    queue::TlsLevel::dane});
  auto resp = json::parse(handle_request(R"({"command":"queue.show","id":")" + id + "\"}", admin).response);
  CHECK(resp["message"]["requiretls"] == true);
  CHECK(resp["message"]["tls_optional"] == false);
  CHECK(resp["message"]["recipients"][0]["tls"] == "dane");
  std::string out = format_show(resp);
  CHECK(out.find("TLS:            REQUIRETLS (authenticated TLS to every hop)\n") != std::string::npos);
  CHECK(out.find("      status: deferred, 1 attempt, last 2025-12-03 06:02:23 UTC, tls=dane\n") !=
        std::string::npos);
  // TLS-Required: No; the line is absent when neither is set.
  resp["message"]["requiretls"] = false;
  resp["message"]["tls_optional"] = true;
  CHECK(format_show(resp).find("TLS:            optional (TLS-Required: No)\n") != std::string::npos);
  resp["message"]["tls_optional"] = false;
  CHECK(format_show(resp).find("TLS:") == std::string::npos);
}

TEST_CASE("format: status") {
  json s = json::parse(R"({"ok":true,"version":"0.1.0","time":"2026-12-06T10:14:23Z",
    "started":"2026-12-03T06:02:23Z","uptime_seconds":274320,
    "connections":{"in":12,"in_total":3456,"out":4},
    "queue":{"messages":10,"queued":5,"deferred":3,"held":2,"jobs":4,"destinations":3},
    "spool":{"commits":3456,"updates":120,"syncs":800,"bytes":12897484}})");
  CHECK(format_status(s) ==
        "sluiced 0.1.0\n"
        "Started:          2026-12-03 06:02:23 UTC (up 3d 4h 12m)\n"
        "Connections in:   12 open, 3456 since start\n"
        "Connections out:  4 open\n"
        "Queue:            10 messages: 5 queued, 3 deferred, 2 held\n"
        "Delivery:         4 jobs in flight, 3 destinations with work\n"
        "Spool:            3456 messages committed, 120 updates, 800 syncs, 12.3 MiB written\n");
  // A daemon that counts warnings (an older one sends none: no line).
  s["warnings"] = json::parse(R"({"total":0,"relayhost_auth":0,"tls_verify":0,"config":0})");
  CHECK(format_status(s).ends_with("Warnings:         none\n"));
  s["warnings"] = json::parse(R"({"total":3,"relayhost_auth":2,"tls_verify":1,"config":0})");
  CHECK(format_status(s).ends_with(
      "Warnings:         3 (relayhost login 2, certificate verification 1, configuration 0); "
      "see the log's warning lines\n"));
}

TEST_CASE("format: actions print one line per id") {
  CHECK(format_action(json::parse(R"({"ok":true,"action":"held","count":2,"ids":["A1","B2"]})")) ==
        "A1: held\nB2: held\n");
  CHECK(format_action(json::parse(R"({"ok":true,"action":"flushed","count":2,"ids":["A1","B2"],"held":["B2"]})")) ==
        "A1: flushed\nB2: flushed (but held: no attempt until released)\n");
  CHECK(format_action(json::parse(R"({"ok":true,"action":"flushed","count":7})")) == "flushed 7 messages\n");
  CHECK(format_action(json::parse(R"({"ok":true,"action":"flushed","count":1})")) == "flushed 1 message\n");
  CHECK(format_action(json::parse(R"({"ok":true,"action":"deleted","count":0,"ids":[]})")) ==
        "Mail queue is empty\n");
}

TEST_CASE("render: exit codes, streams and --json") {
  std::ostringstream out, err;
  const std::string unknown =
      R"x({"ok":false,"error":"unknown_id","message":"unknown queue ids: AAAA, BBBB (nothing was changed)","ids":["AAAA","BBBB"]})x";
  CHECK(render(req(Command::hold), unknown, false, out, err) == kExitFailed);
  CHECK(out.str().empty());
  CHECK(err.str() == "sluicectl: unknown queue ids: AAAA, BBBB (nothing was changed)\n");

  out.str(""), err.str("");
  CHECK(render(req(Command::hold), unknown, true, out, err, "mailq") == kExitFailed);
  CHECK(out.str() == unknown + "\n");
  CHECK(err.str() == "mailq: unknown queue ids: AAAA, BBBB (nothing was changed)\n");

  out.str(""), err.str("");
  CHECK(render(req(Command::status), R"({"ok":false,"error":"permission_denied","message":"uid 1000 may not use the control socket"})",
               false, out, err) == kExitUnreachable);
  CHECK(err.str() == "sluicectl: uid 1000 may not use the control socket\n");

  out.str(""), err.str("");
  CHECK(render(req(Command::list), "not json", false, out, err) == kExitFailed);
  CHECK(err.str() == "sluicectl: malformed response from sluiced\n");

  out.str(""), err.str("");
  CHECK(render(req(Command::list), kListResponse, false, out, err) == kExitOk);
  CHECK(out.str() == format_list(json::parse(kListResponse)));
  CHECK(err.str().empty());

  out.str(""), err.str("");
  const std::string line = R"({"ok":true,"action":"held","count":1,"ids":["A1"]})";
  CHECK(render(req(Command::hold), line, true, out, err) == kExitOk);
  CHECK(out.str() == line + "\n");

  out.str(""), err.str("");
  CHECK(render(req(Command::remove), R"({"ok":true,"action":"deleted","count":1,"ids":["A1"],"vanished":["B2"]})",
               false, out, err) == kExitFailed);
  CHECK(out.str() == "A1: deleted\n");
  CHECK(err.str() == "sluicectl: B2: left the queue before it could be deleted\n");
}

TEST_CASE("format: tls-reports, a line per day and domain and one per kind of failure") {
  MemoryAdmin admin;
  auto text = [&] {
    return format_tls_reports(json::parse(handle_request(R"({"command":"tls-reports.list"})", admin).response));
  };
  CHECK(text() == "TLS reports are not enabled ([tls_reports] enabled = false)\nNo TLS sessions counted\n");
  admin.tls_enabled = true;
  tlsrpt::Day d;
  d.day = 20000;
  tlsrpt::Session ok{"example.net", {tlsrpt::PolicyType::no_policy_found, {}, {}}, std::nullopt};
  tlsrpt::Session bad = ok;
  bad.failure = tlsrpt::FailureKey{tlsrpt::ResultType::starttls_not_supported, "", "mx.example.net", "127.0.0.2", ""};
  tlsrpt::add(d, ok, {"r@example.net"});
  tlsrpt::add(d, bad, {"r@example.net"});
  admin.tls_days.push_back(d);
  const std::string t = text();
  CHECK(t.starts_with("DAY         DOMAIN"));
  CHECK(t.find("2024-10-04  example.net                             1        1  r@example.net\n") != std::string::npos);
  CHECK(t.find("1 x starttls-not-supported (no-policy-found) from= mx=mx.example.net ip=127.0.0.2\n") !=
        std::string::npos);
}

TEST_CASE("format: shaping, one block per site with its automation") {
  MemoryAdmin admin;
  auto response = [&] { return handle_request(R"({"command":"shaping"})", admin).response; };
  CHECK(format_shaping(json::parse(response())) == "Store: this node only\nno active sites\n");

  admin.sites = sample_sites();
  CHECK(format_shaping(json::parse(response())) ==
        "Store: this node only\n"
        "\n"
        "gmail (builtin:12)\n"
        "  domains: gmail.com, googlemail.com\n"
        "  connections 2 open, concurrency 2 of 10\n"
        "  rate 5/s, 3 tokens left\n"
        "  automation: rate 10/m, 1 connection until 2025-12-03 06:31:35 UTC (in 29m 12s): "
        "421 4.7.28 rate limited\n"
        "\n"
        "mx:mx1.example.net,mx2.example.net (default for its MX hosts)\n"
        "  domains: example.net\n"
        "  connections 0 open, concurrency 2 of 20\n"
        "  rate unlimited\n");

  // Suspended, a reply with an escape sequence, a shared store.
  admin.sites.resize(1);
  admin.sites[0].automation = shaping::Override{.suspended = true, .until_us = kT0 + 90'000'000,
                                                .reason = "421 \x1b[2Jgo away"};
  admin.store = "redis unix:/run/redis.sock";
  const std::string t = format_shaping(json::parse(response()));
  CHECK(t.starts_with("Store: shared through redis unix:/run/redis.sock\n\nmx:"));
  CHECK(t.ends_with("  automation: suspended until 2025-12-03 06:03:53 UTC (in 1m 30s): 421 \\x1b[2Jgo away\n"));

  // --json prints the daemon's line as it came; odd shapes never throw.
  std::ostringstream out, err;
  CHECK(render(req(Command::shaping), response(), true, out, err) == kExitOk);
  CHECK(out.str() == response() + "\n");
  CHECK_NOTHROW(format_shaping(json::parse(R"({"ok":true,"store":7,"sites":[1,{"automation":"x","domains":[2]}]})")));
}
