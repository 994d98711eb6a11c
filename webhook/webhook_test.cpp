#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "webhook/record.hpp"
#include "webhook/webhook.hpp"

using namespace sluice;
using namespace sluice::webhook;
using namespace std::chrono_literals;

TEST_CASE("webhook events are named from obs::EventType") {
  CHECK(event_name(obs::EventType::delivery) == "delivered");
  CHECK(event_name(obs::EventType::deferral) == "deferred");
  CHECK(event_name(obs::EventType::bounce) == "bounced");
  CHECK(event_name(obs::EventType::expiry) == "expired");
  CHECK(event_name(obs::EventType::reception) == "accepted");
  CHECK(!event_name(obs::EventType::rejection));
  CHECK(!event_name(obs::EventType::admin));
}

TEST_CASE("an event id is 32 hex digits of its random bytes") {
  std::array<uint8_t, 16> r{};
  for (size_t i = 0; i < r.size(); ++i) r[i] = static_cast<uint8_t>(i * 17);
  CHECK(event_id(r) == "00112233445566778899aabbccddeeff");
}

TEST_CASE("a payload carries every SPEC field") {
  obs::Event e;
  e.type = obs::EventType::bounce;
  e.time_us = 1764979200123456;  // 2025-12-06T00:00:00.123Z
  e.id = "Q1";
  e.sender = "a@example.com";
  e.recipient = "b@example.net";
  e.response = {550, "5.1.1", "no such user \xff"};
  e.peer_name = "mx.example.net";
  e.peer_address = "192.0.2.1";
  e.tls = "TLSv1.3";
  e.attempts = 3;
  e.delay = 2.5;
  auto j = nlohmann::json::parse(payload(e, "00112233445566778899aabbccddeeff"));
  CHECK(j["event_id"] == "00112233445566778899aabbccddeeff");
  CHECK(j["event"] == "bounced");
  CHECK(j["id"] == "Q1");
  CHECK(j["recipient"] == "b@example.net");
  CHECK(j["sender"] == "a@example.com");
  CHECK(j["time"] == "2025-12-06T00:00:00.123Z");
  CHECK(j["response"]["code"] == 550);
  CHECK(j["response"]["enhanced_code"] == "5.1.1");
  CHECK(j["response"]["text"] == "no such user \xef\xbf\xbd");
  CHECK(j["attempts"] == 3);
  CHECK(j["delay"] == 2.5);
  CHECK(j["mx"] == "mx.example.net");
  CHECK(j["mx_address"] == "192.0.2.1");
  CHECK(j["tls"] == "TLSv1.3");
  CHECK(!j.contains("source"));

  e.type = obs::EventType::reception;
  e.source = "smtp:relay";
  e.response = {};
  j = nlohmann::json::parse(payload(e, "x"));
  CHECK(j["event"] == "accepted");
  CHECK(j["source"] == "smtp:relay");
  CHECK(j["response"]["code"] == 0);
  CHECK(!j.contains("mx"));
}

TEST_CASE("a batch is a JSON array within the event and byte caps") {
  std::vector<std::string> p{R"({"a":1})", R"({"b":2})", R"({"c":3})"};
  auto b = build_batch(p);
  CHECK(b.count == 3);
  CHECK(b.body == R"([{"a":1},{"b":2},{"c":3}])");
  CHECK(build_batch(p, 2).count == 2);
  CHECK(build_batch(p, 2).body == R"([{"a":1},{"b":2}])");
  // 17 octets hold "[" + two payloads + "," + "]"; 16 only one.
  CHECK(build_batch(p, 100, 17).count == 2);
  CHECK(build_batch(p, 100, 16).count == 1);
  // The first payload always goes, whatever the cap.
  CHECK(build_batch(p, 100, 1).count == 1);
  CHECK(build_batch(std::span<const std::string>{}).body == "[]");
}

TEST_CASE("the signature is HMAC-SHA256 of T.body, as openssl computes it") {
  // printf '1764979200.[{"a":1}]' | openssl dgst -sha256 -hmac 'whsec_test'
  CHECK(signature("whsec_test", 1764979200, R"([{"a":1}])") ==
        "t=1764979200,v1=5578f4c062b3740f9a0507f9b7b712b9a0b1aed4192d76b405b4f1a00e1f17ac");
  CHECK(signature("whsec_test", 1764979201, R"([{"a":1}])") !=
        "t=1764979201,v1=5578f4c062b3740f9a0507f9b7b712b9a0b1aed4192d76b405b4f1a00e1f17ac");
}

TEST_CASE("retries back off from 10 s to hourly, with jitter") {
  CHECK(retry_delay(1, 0.5) == 10s);
  CHECK(retry_delay(2, 0.5) == 30s);
  CHECK(retry_delay(3, 0.5) == 60s);
  CHECK(retry_delay(4, 0.5) == 300s);
  CHECK(retry_delay(5, 0.5) == 900s);
  CHECK(retry_delay(6, 0.5) == 3600s);
  CHECK(retry_delay(1000, 0.5) == 3600s);
  CHECK(retry_delay(1, 0.0) == 9s);
  CHECK(retry_delay(1, 1.0) == 11s);
  CHECK(retry_delay(6, 0.0) == 3240s);
  CHECK(!too_old(1000, 1000 + 3 * 86400 - 1));
  CHECK(too_old(1000, 1000 + 3 * 86400));
}

TEST_CASE("a queue is named from its url, the log shows it without the query") {
  // python3 -c "import hashlib; print(hashlib.sha256(b'https://hooks.example.com/mail').hexdigest()[:32])"
  CHECK(queue_name("https://hooks.example.com/mail") == "ebb68880d7af4bb8b8e850baf6122682");
  CHECK(url_for_log("https://h.example/x?token=secret") == "https://h.example/x");
}

TEST_CASE("records round-trip and are parsed strictly") {
  using S = Decoded::Status;
  CHECK(crc32("hello") == 0x3610a686);  // zlib.crc32(b"hello")
  const std::string r = encode_record(1764979200, R"({"a":1})");
  CHECK(r == "W1 1764979200 7 " + fmt::format("{:08x}", crc32(R"({"a":1})")) + "\n{\"a\":1}\n");
  // The decoded record points into the bytes: keep them alive while it is read.
  const std::string two = r + "W1 ...";
  auto d = decode_record(two);
  REQUIRE(d.status == S::ok);
  CHECK(d.size == r.size());
  CHECK(d.record.stored_s == 1764979200);
  CHECK(d.record.payload == R"({"a":1})");
  // Every proper prefix is incomplete, never bad.
  for (size_t n = 0; n < r.size(); ++n) CHECK(decode_record(std::string_view(r).substr(0, n)).status == S::incomplete);

  auto bad = [](std::string s) { return decode_record(s).status == S::bad; };
  CHECK(bad("X1 1 1 00000000\nx\n"));
  CHECK(bad("W1 01 1 " + fmt::format("{:08x}", crc32("x")) + "\nx\n"));  // leading zero
  CHECK(bad("W1 1 01 " + fmt::format("{:08x}", crc32("x")) + "\nx\n"));
  CHECK(bad("W1 1 0 00000000\n\n"));                                      // empty payload
  CHECK(bad("W1 1 65537 00000000\n"));                                    // over the cap
  CHECK(bad("W1 1 1 " + fmt::format("{:08X}", crc32("{")) + "\n{\n"));    // upper-case hex
  CHECK(bad("W1 1 1 00000000\nx\n"));                                     // checksum
  CHECK(bad("W1 1 1 " + fmt::format("{:08x}", crc32("x")) + "\nxy"));    // no LF after the payload
  CHECK(bad("W1 1  1 00000000\n"));
  CHECK(bad("W1 1234567890123 1 00000000\nx\n"));                         // 13 digits
  CHECK(bad("W1 -1 1 00000000\nx\n"));
  CHECK(decode_record("W1 1 1 " + fmt::format("{:08x}", crc32("x")) + "\nx\n").status == S::ok);
}

TEST_CASE("the ack line and segment names are parsed strictly") {
  CHECK(encode_ack({3, 42}) == "A1 3 42\n");
  CHECK(decode_ack("A1 3 42\n") == Position{3, 42});
  CHECK(decode_ack("A1 0 0\n") == Position{0, 0});
  CHECK(!decode_ack("A1 3 42"));
  CHECK(!decode_ack("A1 3 42\n\n"));
  CHECK(!decode_ack("A1 03 42\n"));
  CHECK(!decode_ack("A1 3 42 \n"));
  CHECK(!decode_ack("A2 3 42\n"));
  CHECK(!decode_ack("A1 99999999999999999999 1\n"));
  CHECK(segment_name(42) == "000000000000002a.wh");
  CHECK(parse_segment_name("000000000000002a.wh") == 42u);
  CHECK(!parse_segment_name("000000000000002A.wh"));
  CHECK(!parse_segment_name("00000000000002a.wh"));
  CHECK(!parse_segment_name("000000000000002a.wh.tmp"));
  CHECK(!parse_segment_name("ack"));
}

TEST_CASE("the POST request carries the headers and the body") {
  auto u = http::parse_url("https://hooks.example.com:8443/mail?k=1");
  REQUIRE(u);
  CHECK(post_request(*u, "[]", "t=1,v1=ab") ==
        "POST /mail?k=1 HTTP/1.1\r\nHost: hooks.example.com:8443\r\nUser-Agent: Sluice\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n"
        "X-Sluice-Signature: t=1,v1=ab\r\n\r\n[]");
  auto v6 = http::parse_url("http://[::1]/h");
  REQUIRE(v6);
  CHECK(post_request(*v6, "[]", "").starts_with("POST /h HTTP/1.1\r\nHost: [::1]\r\nUser-Agent"));
  CHECK(post_request(*v6, "[]", "").find("X-Sluice-Signature") == std::string::npos);
}
