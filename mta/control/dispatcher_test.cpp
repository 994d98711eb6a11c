// dispatcher_test.cpp — requests against a real Scheduler (through the
// in-memory QueueAdmin): list, show, every action, unknown ids changing
// nothing, status, and a list of 10,000 messages.
#include <catch2/catch.hpp>

#include <chrono>

#include "mta/auth/sasl.hpp"
#include "mta/control/dispatcher.hpp"
#include "mta/control/memory_admin.hpp"

using namespace sluice;
using namespace sluice::control;
using namespace sluice::control::testing;
using nlohmann::json;

namespace {

json call(MemoryAdmin& admin, std::string_view line, std::vector<std::string>* changes = nullptr) {
  Outcome o = handle_request(line, admin);
  CHECK(o.response.find('\n') == std::string::npos);
  if (changes) *changes = o.changes;
  return json::parse(o.response);  // must always be valid JSON
}

struct Queue {
  MemoryAdmin admin;
  std::string a, b, c;
  Queue() {
    // Arrived in the last seconds before "now" (kT0): due at once.
    a = make_id(kT0 - 2'000'000, 1);
    b = make_id(kT0 - 1'000'000, 2);
    c = make_id(kT0, 3);
    admin.add(make_envelope(a, kT0 - 2'000'000, "alice@example.org", {"x@example.net"}, 1000), "A\r\n");
    admin.add(make_envelope(b, kT0 - 1'000'000, "", {"y@example.com", "z@example.com"}, 2000),
              "B\r\n");
    admin.add(make_envelope(c, kT0, "carol@example.org", {"w@example.info"}, 3000), "C\r\n");
  }
};

const queue::Verdict kDefer{queue::Action::defer, "4.7.1", "451 4.7.1 greylisted", "mx.example.net"};

std::string ids_json(std::initializer_list<std::string> ids) { return json(ids).dump(); }

}  // namespace

TEST_CASE("dispatcher: list of an empty queue") {
  MemoryAdmin admin;
  auto j = call(admin, R"({"command":"queue.list"})");
  CHECK(j["ok"] == true);
  CHECK(j["messages"] == json::array());
  CHECK(j["total"] == json({{"messages", 0}, {"bytes", 0}, {"queued", 0}, {"deferred", 0}, {"held", 0}}));
}

TEST_CASE("dispatcher: list shows every message in arrival order with its state") {
  Queue q;
  q.admin.complete_all(kDefer);  // every message deferred once
  REQUIRE(q.admin.hold(q.c));
  auto j = call(q.admin, R"({"command":"queue.list"})");
  REQUIRE(j["messages"].size() == 3);
  const auto& m = j["messages"];
  CHECK(m[0]["id"] == q.a);
  CHECK(m[1]["id"] == q.b);
  CHECK(m[2]["id"] == q.c);
  CHECK(m[0]["state"] == "deferred");
  CHECK(m[0]["attempts"] == 1);
  CHECK(m[0]["size"] == 1000);
  CHECK(m[0]["sender"] == "alice@example.org");
  CHECK(m[0]["arrival_time"] == "2025-12-03T06:02:21Z");
  CHECK(m[0]["next_attempt"] == "2025-12-03T06:07:23Z");  // the 5-minute retry
  CHECK(m[0]["last_error"] == "451 4.7.1 greylisted");
  CHECK(m[0]["recipients"][0] == json({{"address", "x@example.net"}, {"status", "deferred"},
                                       {"last_reply", "451 4.7.1 greylisted"}}));
  CHECK(m[1]["sender"] == "");
  CHECK(m[1]["recipients"].size() == 2);
  CHECK(m[2]["state"] == "held");
  CHECK(m[2]["next_attempt"] == nullptr);
  CHECK(j["total"] == json({{"messages", 3}, {"bytes", 6000}, {"queued", 0}, {"deferred", 2}, {"held", 1}}));

  j = call(q.admin, R"({"command":"queue.list","state":"held"})");
  REQUIRE(j["messages"].size() == 1);
  CHECK(j["messages"][0]["id"] == q.c);
  CHECK(j["total"]["messages"] == 1);
  CHECK(j["total"]["bytes"] == 3000);
  j = call(q.admin, R"({"command":"queue.list","state":"queued"})");
  CHECK(j["messages"].empty());
}

TEST_CASE("dispatcher: show gives the whole envelope, and the content on request") {
  Queue q;
  q.admin.complete_all(kDefer);
  auto j = call(q.admin, R"({"command":"queue.show","id":")" + q.a + "\"}");
  REQUIRE(j["ok"] == true);
  const auto& m = j["message"];
  CHECK(m["id"] == q.a);
  CHECK(m["state"] == "deferred");
  CHECK(m["recipients"][0]["attempts"] == 1);
  CHECK(m["recipients"][0]["remote_host"] == "mx.example.net");
  CHECK(m["recipients"][0]["dsn_status"] == "4.7.1");
  CHECK(m["history"].size() == 1);
  CHECK(m["history"][0]["host"] == "mx.example.net");
  CHECK_FALSE(m.contains("body_base64"));
  CHECK(q.admin.body_reads == 0);

  // Content that is not UTF-8 (8-bit, NUL) survives the trip unchanged.
  const std::string content("Subject: \xe9t\xe9\r\n\r\n\x00\xff\r\n", 19);
  std::string id = make_id(kT0 + 5'000'000, 9);
  q.admin.add(make_envelope(id, kT0 + 5'000'000, "s\xff@x", {"r@y"}, content.size()), content);
  j = call(q.admin, R"({"command":"queue.show","body":true,"id":")" + id + "\"}");
  REQUIRE(j["ok"] == true);
  CHECK(j["message"]["sender"] == "s\xEF\xBF\xBD@x");
  auto body = auth::base64_decode(j["message"]["body_base64"].get<std::string>());
  REQUIRE(body);
  CHECK(*body == content);
  CHECK(j["message"]["body_truncated"] == false);

  // Lower-case ids work too.
  std::string lower = q.b;
  for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  j = call(q.admin, R"({"command":"queue.show","id":")" + lower + "\"}");
  CHECK(j["message"]["id"] == q.b);

  j = call(q.admin, R"({"command":"queue.show","id":"0000000000000000"})");
  CHECK(j["ok"] == false);
  CHECK(j["error"] == "unknown_id");
  CHECK(j["ids"] == json({"0000000000000000"}));
  CHECK(j["message"].get<std::string>().find("0000000000000000") != std::string::npos);
}

TEST_CASE("dispatcher: show reports a content read failure") {
  MemoryAdmin admin;
  std::string id = make_id(kT0, 1);
  admin.scheduler().add(make_envelope(id, kT0, "s@x", {"r@y"}, 10));  // no content stored
  auto j = call(admin, R"({"command":"queue.show","id":")" + id + "\"}");
  CHECK(j["ok"] == true);  // without the body nothing is read
  j = call(admin, R"({"command":"queue.show","body":true,"id":")" + id + "\"}");
  CHECK(j["ok"] == false);
  CHECK(j["error"] == "io_error");
  CHECK(j["message"].get<std::string>().find(id) != std::string::npos);
  CHECK(j["message"].get<std::string>().find("no such message in the spool") != std::string::npos);
}

TEST_CASE("dispatcher: hold and release") {
  Queue q;
  std::vector<std::string> changes;
  auto j = call(q.admin, R"({"command":"queue.hold","ids":)" + ids_json({q.a, q.b}) + "}", &changes);
  CHECK(j == json({{"ok", true}, {"action", "held"}, {"count", 2}, {"ids", {q.a, q.b}}}));
  CHECK(changes == std::vector<std::string>{q.a + ": held", q.b + ": held"});
  CHECK(q.admin.find(q.a)->held);
  CHECK(q.admin.find(q.b)->held);
  CHECK_FALSE(q.admin.find(q.c)->held);
  CHECK(q.admin.completions.size() == 2);  // the held flag is to be persisted
  // Held messages get no jobs.
  auto jobs = q.admin.scheduler().take_jobs(q.admin.now);
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].message_id == q.c);

  j = call(q.admin, R"({"command":"queue.release","ids":)" + ids_json({q.a}) + "}", &changes);
  CHECK(j["action"] == "released");
  CHECK(j["ids"] == json({q.a}));
  CHECK(changes == std::vector<std::string>{q.a + ": released"});
  CHECK_FALSE(q.admin.find(q.a)->held);
  CHECK(q.admin.find(q.b)->held);
}

TEST_CASE("dispatcher: an unknown id among known ones changes nothing") {
  Queue q;
  const std::string u1 = "00000000000000AA", u2 = "not-an-id";
  for (std::string cmd : {"queue.hold", "queue.release", "queue.flush", "queue.bounce", "queue.delete"}) {
    INFO(cmd);
    std::vector<std::string> changes;
    auto j = call(q.admin, R"({"command":")" + cmd + R"(","ids":)" + ids_json({q.a, u1, q.b, u2}) + "}",
                  &changes);
    CHECK(j["ok"] == false);
    CHECK(j["error"] == "unknown_id");
    CHECK(j["ids"] == json({u1, u2}));
    const auto msg = j["message"].get<std::string>();
    CHECK(msg.find(u1) != std::string::npos);
    CHECK(msg.find(u2) != std::string::npos);
    CHECK(msg.find(q.a) == std::string::npos);
    CHECK(changes.empty());
    CHECK(q.admin.ids().size() == 3);
    CHECK_FALSE(q.admin.find(q.a)->held);
    CHECK(q.admin.completions.empty());
  }
}

TEST_CASE("dispatcher: flush makes deferred messages due now; held ones stay held") {
  Queue q;
  q.admin.complete_all(kDefer);
  CHECK(q.admin.scheduler().take_jobs(q.admin.now).empty());  // all wait 5 minutes
  REQUIRE(q.admin.hold(q.c));
  std::vector<std::string> changes;
  auto j = call(q.admin, R"({"command":"queue.flush","ids":)" + ids_json({q.a, q.c}) + "}", &changes);
  CHECK(j["action"] == "flushed");
  CHECK(j["ids"] == json({q.a, q.c}));
  CHECK(j["held"] == json({q.c}));
  CHECK(changes.size() == 2);
  auto jobs = q.admin.scheduler().take_jobs(q.admin.now);
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].message_id == q.a);
}

TEST_CASE("dispatcher: flush without ids flushes every message") {
  Queue q;
  q.admin.complete_all(kDefer);
  std::vector<std::string> changes;
  auto j = call(q.admin, R"({"command":"queue.flush"})", &changes);
  CHECK(j == json({{"ok", true}, {"action", "flushed"}, {"count", 3}}));
  CHECK(changes == std::vector<std::string>{"all messages flushed (3)"});
  CHECK(q.admin.scheduler().take_jobs(q.admin.now).size() == 3);  // one job per message: all due
}

TEST_CASE("dispatcher: bounce returns the message to its sender and removes it") {
  Queue q;
  std::vector<std::string> changes;
  auto j = call(q.admin, R"({"command":"queue.bounce","ids":)" + ids_json({q.a, q.b}) + "}", &changes);
  CHECK(j["action"] == "bounced");
  CHECK(j["count"] == 2);
  CHECK(changes == std::vector<std::string>{q.a + ": bounced", q.b + ": bounced"});
  CHECK(q.admin.ids() == std::vector<std::string>{q.c});
  REQUIRE(q.admin.completions.size() == 2);
  CHECK(q.admin.completions[0].persist == queue::Completion::Persist::remove);
  CHECK(q.admin.completions[0].bounce.size() == 1);  // alice gets a DSN
  CHECK(q.admin.completions[1].bounce.empty());      // the null sender never does
}

TEST_CASE("dispatcher: delete by id and delete all") {
  Queue q;
  std::vector<std::string> changes;
  auto j = call(q.admin, R"({"command":"queue.delete","ids":)" + ids_json({q.b}) + "}", &changes);
  CHECK(j == json({{"ok", true}, {"action", "deleted"}, {"count", 1}, {"ids", {q.b}}}));
  CHECK(q.admin.ids() == std::vector<std::string>{q.a, q.c});
  CHECK(q.admin.completions.at(0).bounce.empty());  // without notice

  j = call(q.admin, R"({"command":"queue.delete","all":true})", &changes);
  CHECK(j["ids"] == json({q.a, q.c}));
  CHECK(changes == std::vector<std::string>{q.a + ": deleted", q.c + ": deleted"});
  CHECK(q.admin.ids().empty());
  j = call(q.admin, R"({"command":"queue.delete","all":true})");
  CHECK(j == json({{"ok", true}, {"action", "deleted"}, {"count", 0}, {"ids", json::array()}}));
}

TEST_CASE("dispatcher: status") {
  Queue q;
  q.admin.hold(q.a);
  q.admin.daemon_status.connections_in = 4;
  q.admin.daemon_status.connections_in_total = 1234;
  q.admin.daemon_status.connections_out = 7;
  q.admin.daemon_status.spool.commits = 99;
  q.admin.daemon_status.warnings.relayhost_auth = 2;
  q.admin.daemon_status.warnings.config = 1;
  auto j = call(q.admin, R"({"command":"status"})");
  CHECK(j["ok"] == true);
  CHECK(j["version"] == "0.1.0-test");
  CHECK(j["time"] == "2025-12-03T06:02:23Z");
  CHECK(j["started"] == "2025-12-03T05:02:23Z");
  CHECK(j["uptime_seconds"] == 3600);
  CHECK(j["connections"] == json({{"in", 4}, {"in_total", 1234}, {"out", 7}}));
  CHECK(j["queue"]["messages"] == 3);
  CHECK(j["queue"]["queued"] == 2);
  CHECK(j["queue"]["held"] == 1);
  CHECK(j["queue"]["deferred"] == 0);
  CHECK(j["spool"]["commits"] == 99);
  CHECK(j["warnings"] == json({{"total", 3}, {"relayhost_auth", 2}, {"tls_verify", 0}, {"config", 1}}));
}

TEST_CASE("dispatcher: malformed requests get an error response") {
  MemoryAdmin admin;
  for (std::string_view line : {"", "{", "nonsense", "[1,2]", R"({"command":"queue.zap"})",
                                R"({"command":"queue.hold"})", "\xff\xfe"}) {
    INFO(line);
    auto j = call(admin, line);
    CHECK(j["ok"] == false);
    CHECK(j["error"].is_string());
    CHECK(j["message"].is_string());
  }
}

TEST_CASE("dispatcher: a list of 10,000 messages is built quickly") {
  MemoryAdmin admin;
  for (unsigned i = 0; i < 10'000; ++i) {
    int64_t t = kT0 - 10'000'000 + int64_t(i) * 1000;
    admin.add(make_envelope(make_id(t, i), t, "sender@example.org",
                            {"rcpt" + std::to_string(i) + "@example.net"}, 4096),
              "");
  }
  admin.complete_all(kDefer);
  auto start = std::chrono::steady_clock::now();
  Outcome o = handle_request(R"({"command":"queue.list"})", admin);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  WARN("queue.list of 10,000 messages: " << ms.count() << " ms, " << o.response.size() << " bytes");
  CHECK(ms.count() < 2000);  // generous: a loaded, shared test machine
  auto j = json::parse(o.response);
  CHECK(j["messages"].size() == 10'000);
  CHECK(j["total"]["deferred"] == 10'000);
}

TEST_CASE("dispatcher: tls-reports.list shows the counts per day and domain") {
  MemoryAdmin admin;
  json j = call(admin, R"({"command":"tls-reports.list"})");
  CHECK(j["ok"] == true);
  CHECK(j["enabled"] == false);
  CHECK(j["days"].empty());

  admin.tls_enabled = true;
  tlsrpt::Day d;
  d.day = 20000;
  tlsrpt::Session ok{"example.net", {tlsrpt::PolicyType::no_policy_found, {}, {}}, std::nullopt};
  tlsrpt::Session bad = ok;
  bad.failure = tlsrpt::FailureKey{tlsrpt::ResultType::starttls_not_supported, "", "mx.example.net", "127.0.0.2", ""};
  tlsrpt::add(d, ok, {"r@example.net"});
  tlsrpt::add(d, ok, {"r@example.net"});
  tlsrpt::add(d, bad, {"r@example.net"});
  admin.tls_days.push_back(d);
  j = call(admin, R"({"command":"tls-reports.list"})");
  CHECK(j["enabled"] == true);
  REQUIRE(j["days"].size() == 1);
  CHECK(j["days"][0]["day"] == "2024-10-04");
  auto& dom = j["days"][0]["domains"][0];
  CHECK(dom["domain"] == "example.net");
  CHECK(dom["rua"][0] == "r@example.net");
  CHECK(dom["successful"] == 2);
  CHECK(dom["failed"] == 1);
  CHECK(dom["policies"][0]["type"] == "no-policy-found");
  CHECK(dom["policies"][0]["failures"][0]["result"] == "starttls-not-supported");
  CHECK(dom["policies"][0]["failures"][0]["receiving_ip"] == "127.0.0.2");
  CHECK(call(admin, R"({"command":"tls-reports.list","all":true})")["error"] == "bad_request");
}

TEST_CASE("dispatcher: tls-reports.send") {
  MemoryAdmin admin;
  json j = call(admin, R"({"command":"tls-reports.send"})");
  CHECK(j["ok"] == false);
  CHECK(j["error"] == "bad_request");
  admin.tls_enabled = true;
  admin.tls_days.push_back(tlsrpt::Day{});
  admin.tls_days.back().domains["example.net"];
  std::vector<std::string> changes;
  j = call(admin, R"({"command":"tls-reports.send","include_today":true})", &changes);
  CHECK(j["ok"] == true);
  CHECK(j["action"] == "sent");
  CHECK(j["count"] == 1);
  CHECK(admin.tls_sends == std::vector<bool>{true});
  CHECK(changes.size() == 1);
  CHECK(call(admin, R"({"command":"tls-reports.send","include_today":1})")["error"] == "bad_request");
  Request r;
  r.command = Command::tls_reports_send;
  r.include_today = true;
  CHECK(encode_request(r) == R"({"command":"tls-reports.send","include_today":true})");
}

TEST_CASE("dispatcher: shaping lists the active sites by name, with the automation in force") {
  MemoryAdmin admin;
  json j = call(admin, R"({"command":"shaping"})");
  CHECK(j == json::parse(R"({"ok":true,"store":"local","sites":[]})"));

  admin.sites = sample_sites();
  admin.store = "redis unix:/run/redis.sock";
  j = call(admin, R"({"command":"shaping"})");
  CHECK(j["store"] == "redis unix:/run/redis.sock");
  REQUIRE(j["sites"].size() == 2);
  CHECK(j["sites"][0] == json::parse(R"({"site":"gmail","source":"builtin:12",
      "domains":["gmail.com","googlemail.com"],"connections":2,"concurrency":2,"max_concurrency":10,
      "rate":"5/s","tokens":3,"automation":{"rate":"10/m","connections":1,"suspended":false,
      "until":"2025-12-03T06:31:35Z","expires_in":1752,"reason":"421 4.7.28 rate limited"}})"));
  const json& mx = j["sites"][1];
  CHECK(mx["site"] == "mx:mx1.example.net,mx2.example.net");
  CHECK(mx["source"] == "");
  CHECK(mx["rate"] == "");
  CHECK(mx["automation"] == nullptr);

  // Half a second left is still a second; an override past its end says 0.
  admin.now = kT0 + 1'751'500'000;
  CHECK(call(admin, R"({"command":"shaping"})")["sites"][0]["automation"]["expires_in"] == 1);
  admin.now = kT0 + 1'800'000'000;
  CHECK(call(admin, R"({"command":"shaping"})")["sites"][0]["automation"]["expires_in"] == 0);

  CHECK(call(admin, R"({"command":"shaping","all":true})")["error"] == "bad_request");
}
