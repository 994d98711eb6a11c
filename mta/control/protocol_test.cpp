// protocol_test.cpp — request parsing (every malformed shape is an error,
// never an exception), request encoding, times, message JSON.
#include <catch2/catch.hpp>

#include "mta/control/memory_admin.hpp"
#include "mta/control/protocol.hpp"

using namespace sluice::control;
using namespace sluice;
using nlohmann::json;

namespace {

ErrorCode code_of(std::string_view line) {
  auto r = parse_request(line);
  REQUIRE_FALSE(r);
  return r.error().code;
}

}  // namespace

TEST_CASE("protocol: every command parses and encodes back to the same request") {
  std::vector<std::string> lines = {
      R"({"command":"queue.list"})",
      R"({"command":"queue.list","state":"deferred"})",
      R"({"command":"queue.show","id":"0123456789ABCDEF"})",
      R"({"command":"queue.show","id":"0123456789ABCDEF","body":true})",
      R"({"command":"queue.delete","ids":["0123456789ABCDEF","0123456789ABCDE0"]})",
      R"({"command":"queue.delete","all":true})",
      R"({"command":"queue.hold","ids":["0123456789ABCDEF"]})",
      R"({"command":"queue.release","ids":["0123456789ABCDEF"]})",
      R"({"command":"queue.flush"})",
      R"({"command":"queue.flush","ids":["0123456789ABCDEF"]})",
      R"({"command":"queue.bounce","ids":["0123456789ABCDEF"]})",
      R"({"command":"status"})",
      R"({"command":"tls-reports.list"})",
      R"({"command":"tls-reports.send","include_today":true})",
      R"({"command":"shaping"})",
  };
  for (const auto& line : lines) {
    INFO(line);
    auto r = parse_request(line);
    REQUIRE(r);
    CHECK(encode_request(*r) == line);
  }
}

TEST_CASE("protocol: fields are read into the request") {
  auto r = parse_request(R"( {"ids":["0123456789abcdef","X","0123456789ABCDEF","X"],"command":"queue.hold"} )");
  REQUIRE(r);
  CHECK(r->command == Command::hold);
  // Lower-case hex is accepted, duplicates are dropped, the order is kept.
  CHECK(r->ids == std::vector<std::string>{"0123456789ABCDEF", "X"});

  r = parse_request(R"({"command":"queue.list","state":"held"})");
  REQUIRE(r);
  CHECK(r->state == queue::MessageState::held);
  r = parse_request(R"({"command":"queue.flush","ids":[]})");
  REQUIRE(r);
  CHECK(r->ids.empty());
  r = parse_request("{\"command\":\"status\"}\r");  // a CR before the newline is whitespace
  CHECK(r);
}

TEST_CASE("protocol: malformed requests are errors with a code") {
  CHECK(code_of("") == ErrorCode::bad_json);
  CHECK(code_of("{") == ErrorCode::bad_json);
  CHECK(code_of("status") == ErrorCode::bad_json);
  CHECK(code_of("{\"command\":\"status\"} {}") == ErrorCode::bad_json);
  CHECK(code_of(std::string("{\"command\":\"st\xff\"}")) == ErrorCode::bad_json);  // not UTF-8
  CHECK(code_of("[]") == ErrorCode::bad_request);
  CHECK(code_of("42") == ErrorCode::bad_request);
  CHECK(code_of("{}") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":7})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.explode"})") == ErrorCode::unknown_command);
  CHECK(code_of(R"({"command":"status","ids":[]})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"shaping","site":"gmail"})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.list","state":"lost"})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.list","state":1})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.show"})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.show","id":["A"]})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.show","id":"A","body":"yes"})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.hold"})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.hold","ids":[]})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.hold","ids":"0123456789ABCDEF"})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.hold","ids":[1]})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.delete"})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.delete","all":false})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.delete","all":1})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.delete","all":true,"ids":["A"]})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.bounce","all":true})") == ErrorCode::bad_request);
}

TEST_CASE("protocol: a duplicate key or contradictory fields touch nothing") {
  // The hardening review's requests: the last key used to win, and an empty
  // ids list next to all:true passed as "not both".
  CHECK(code_of(R"({"command":"status","command":"queue.delete","all":true})") ==
        ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.delete","ids":[],"all":true})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.delete","all":false,"ids":["0123456789ABCDEF"]})") ==
        ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.delete","all":true,"all":true})") == ErrorCode::bad_request);
  CHECK(code_of(R"({"command":"queue.hold","ids":["0123456789ABCDEF"],"ids":["0123456789ABCDEE"]})") ==
        ErrorCode::bad_request);
  auto dup = parse_request(R"({"command":"status","command":"queue.delete","all":true})");
  REQUIRE_FALSE(dup);
  CHECK(dup.error().message.find("\"command\" is given more than once") != std::string::npos);
  // The same key in different objects is not a duplicate; keys are compared
  // exactly (JSON keys are case-sensitive).
  CHECK(code_of(R"({"command":"queue.list","x":{"a":1},"y":{"a":1}})") == ErrorCode::bad_request);
  CHECK(parse_request(R"({"command":"queue.show","id":"0123456789ABCDEF","body":true})"));
  CHECK(code_of(R"({"command":"status","Command":"queue.delete"})") == ErrorCode::bad_request);
}

TEST_CASE("protocol: limits on size, ids and nesting") {
  std::string big = R"({"command":"status","x":")" + std::string(kMaxRequestLine, 'a') + "\"}";
  CHECK(code_of(big) == ErrorCode::line_too_long);

  json many = {{"command", "queue.hold"}, {"ids", json::array()}};
  for (size_t i = 0; i <= kMaxIds; ++i) many["ids"].push_back("A");
  CHECK(code_of(many.dump()) == ErrorCode::too_many_ids);
  many["ids"].erase(0);  // exactly kMaxIds
  auto ok = parse_request(many.dump());
  REQUIRE(ok);
  CHECK(ok->ids.size() == 1);

  std::string deep = R"({"command":"status","x":)" + std::string(100'000, '[') + std::string(100'000, ']') + "}";
  CHECK(code_of(deep) == ErrorCode::bad_json);
  // Brackets inside strings do not count.
  std::string in_string = R"({"command":"queue.show","id":"[[[[[[[[[[[[[[[[\"{{{{{{{{{{{{"})";
  CHECK(parse_request(in_string));
}

TEST_CASE("protocol: error responses are one line of JSON") {
  std::string line = error_response(Error{ErrorCode::unknown_id, "unknown queue id: X\n", {"X\xff"}});
  CHECK(line.find('\n') == std::string::npos);
  auto j = json::parse(line);
  CHECK(j["ok"] == false);
  CHECK(j["error"] == "unknown_id");
  CHECK(j["ids"][0] == "X\xEF\xBF\xBD");  // invalid UTF-8 replaced by U+FFFD
  j = json::parse(error_response(Error{ErrorCode::busy, "too many clients", {}}));
  CHECK(j["error"] == "busy");
  CHECK_FALSE(j.contains("ids"));
}

TEST_CASE("protocol: RFC 3339 times in UTC") {
  CHECK(rfc3339(0) == "1970-01-01T00:00:00Z");
  CHECK(rfc3339(testing::kT0) == "2025-12-03T06:02:23Z");
  CHECK(rfc3339(testing::kT0 + 999'999) == "2025-12-03T06:02:23Z");
  CHECK(rfc3339(951'782'400'000'000) == "2000-02-29T00:00:00Z");
  CHECK(rfc3339(-1) == "1970-01-01T00:00:00Z");
  CHECK(rfc3339(INT64_MAX) == "9999-12-31T23:59:59Z");
}

TEST_CASE("protocol: a message's JSON has SPEC's fields") {
  using namespace testing;
  auto env = make_envelope(make_id(kT0, 1), kT0, "s@example.org", {"a@example.net", "b@example.com"}, 1234);
  env.recipients[0].status = queue::RcptStatus::deferred;
  env.recipients[0].last_reply = "451 4.7.1 greylisted";
  env.recipients[0].last_attempt_us = kT0 + 10'000'000;
  env.recipients[1].status = queue::RcptStatus::sent;
  env.recipients[1].last_reply = "250 2.0.0 ok";
  env.attempts = 1;
  env.next_attempt_us = kT0 + 300'000'000;
  env.history.push_back({kT0 + 10'000'000, 0, "mx.example.net", "451 4.7.1 greylisted"});
  env.history.push_back({kT0 + 10'000'000, -1, "", "451 4.4.1 connection refused"});

  Json s = message_summary(env);
  CHECK(s["id"] == env.id);
  CHECK(s["state"] == "deferred");
  CHECK(s["size"] == 1234);
  CHECK(s["arrival_time"] == "2025-12-03T06:02:23Z");
  CHECK(s["next_attempt"] == "2025-12-03T06:07:23Z");
  CHECK(s["attempts"] == 1);
  CHECK(s["sender"] == "s@example.org");
  CHECK(s["recipients"].size() == 2);
  CHECK(s["recipients"][0] == Json({{"address", "a@example.net"}, {"status", "deferred"},
                                    {"last_reply", "451 4.7.1 greylisted"}}));
  CHECK(s["recipients"][1]["status"] == "sent");
  CHECK(s["last_error"] == "451 4.7.1 greylisted");
  CHECK_FALSE(s.contains("history"));

  Json d = message_detail(env);
  CHECK(d["id"] == env.id);
  CHECK(d["recipients"][0]["attempts"] == 0);
  CHECK(d["recipients"][0]["last_attempt"] == "2025-12-03T06:02:33Z");
  CHECK(d["recipients"][1]["last_attempt"] == nullptr);
  CHECK(d["history"].size() == 2);
  CHECK(d["history"][0]["recipient"] == "a@example.net");
  CHECK(d["history"][1]["recipient"] == nullptr);
  CHECK(d["history"][1]["reply"] == "451 4.4.1 connection refused");
  CHECK(d["body_type"] == nullptr);

  env.held = true;
  CHECK(message_summary(env)["state"] == "held");
  CHECK(message_summary(env)["next_attempt"] == nullptr);
  env.held = false;
  env.next_attempt_us = 0;  // due at once: shown as the arrival time
  for (auto& r : env.recipients) r.status = queue::RcptStatus::pending;
  s = message_summary(env);
  CHECK(s["state"] == "queued");
  CHECK(s["next_attempt"] == "2025-12-03T06:02:23Z");
  CHECK(s["last_error"] == nullptr);
}

TEST_CASE("protocol: last_error is the newest deferral") {
  using namespace testing;
  auto env = make_envelope(make_id(kT0, 1), kT0, "s@example.org", {"a@x", "b@y", "c@z"}, 1);
  CHECK(last_error(env).empty());
  env.recipients[0] = {.address = "a@x", .status = queue::RcptStatus::deferred, .last_reply = "451 old", .last_attempt_us = 5};
  env.recipients[1] = {.address = "b@y", .status = queue::RcptStatus::deferred, .last_reply = "452 new", .last_attempt_us = 9};
  env.recipients[2] = {.address = "c@z", .status = queue::RcptStatus::bounced, .last_reply = "550 newest", .last_attempt_us = 10};
  CHECK(last_error(env) == "452 new");
}

TEST_CASE("protocol: JSON strings are escaped and always valid UTF-8") {
  auto lit = [](std::string_view s) {
    std::string out;
    append_json_string(out, s);
    return out;
  };
  CHECK(lit("plain") == "\"plain\"");
  CHECK(lit("a\"b\\c") == R"("a\"b\\c")");
  CHECK(lit("\r\n\t\b\f\x01\x1f\x7f") == R"("\r\n\t\b\f\u0001\u001f)" "\x7f\"");
  CHECK(lit("ü€😀") == "\"ü€😀\"");  // valid UTF-8 is kept as is
  CHECK(lit(std::string("\0", 1)) == R"("\u0000")");
  // Each byte that does not start a valid sequence becomes U+FFFD.
  const std::string fffd = "\xEF\xBF\xBD";
  CHECK(lit("\xff") == "\"" + fffd + "\"");
  CHECK(lit("a\xc3") == "\"a" + fffd + "\"");             // truncated
  CHECK(lit("\xc0\xaf") == "\"" + fffd + fffd + "\"");    // overlong
  CHECK(lit("\xed\xa0\x80") == "\"" + fffd + fffd + fffd + "\"");  // a surrogate
  CHECK(lit("\xf4\x90\x80\x80") == "\"" + fffd + fffd + fffd + fffd + "\"");  // > U+10FFFF
  // Whatever the bytes, the result parses, and valid text survives unchanged.
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(i);
  for (const std::string& s : {all, std::string("x\xe2\x82"), std::string("\xe2\x82\xac\xf0\x9f\x98")}) {
    auto v = json::parse(lit(s), nullptr, false);
    REQUIRE(v.is_string());
  }
  const std::string text = "Grüße \"quoted\" \\ tab\t 😀";
  CHECK(json::parse(lit(text)).get<std::string>() == text);
}
