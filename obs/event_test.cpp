#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "conf/log.hpp"
#include "obs/event.hpp"

using namespace sluice;

TEST_CASE("an event as one JSON object with SPEC's fields") {
  obs::Event e;
  e.type = obs::EventType::delivery;
  e.time_us = 1764979200123456;  // 2025-12-06T00:00:00.123Z
  e.id = "Q1";
  e.sender = "a@example.com";
  e.recipient = "b@example.net";
  e.response = {250, "2.0.0", "ok \xff"};
  e.peer_name = "mx.example.net";
  e.peer_address = "192.0.2.1";
  e.tls = "TLSv1.3";
  e.delay = 1.5;
  e.attempts = 2;
  auto j = nlohmann::json::parse(obs::to_json(e));
  CHECK(j["type"] == "delivery");
  CHECK(j["time"] == "2025-12-06T00:00:00.123Z");
  CHECK(j["id"] == "Q1");
  CHECK(j["sender"] == "a@example.com");
  CHECK(j["recipient"] == "b@example.net");
  CHECK(j["response"]["code"] == 250);
  CHECK(j["response"]["enhanced_code"] == "2.0.0");
  CHECK(j["response"]["text"] == "ok \xef\xbf\xbd");
  CHECK(j["peer"]["name"] == "mx.example.net");
  CHECK(j["peer"]["address"] == "192.0.2.1");
  CHECK(j["tls"] == "TLSv1.3");
  CHECK(j["delay"] == 1.5);
  CHECK(j["attempts"] == 2);
  CHECK(obs::event_type_from("expiry") == obs::EventType::expiry);
  CHECK(!obs::event_type_from("sent"));
}

TEST_CASE("every sink sees every event") {
  std::vector<std::string> seen;
  obs::add_sink([&](const obs::Event& e) { seen.push_back(e.recipient); });
  obs::Event a, b;
  a.recipient = "a@x";
  b.recipient = "b@x";
  std::vector<obs::Event> both{a, b};
  obs::emit(both, "test: two events");
  obs::clear_sinks();
  obs::emit(a, "test: after clear");
  CHECK(seen == std::vector<std::string>{"a@x", "b@x"});
}

TEST_CASE("json_string escapes what JSON needs and replaces bad UTF-8") {
  CHECK(log::json_string("a\"b\\c") == R"("a\"b\\c")");
  CHECK(log::json_string("l1\nl2\x01") == R"("l1\u000al2\u0001")");
  CHECK(log::json_string("\xc3\xa9\xff") == "\"\xc3\xa9\\ufffd\"");
  auto j = nlohmann::json::parse(log::json_string("x\x7f\xc0\xaf"));
  CHECK(j.is_string());
}
