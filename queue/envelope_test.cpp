// envelope_test.cpp — the binary envelope format: round trips and hostile input.
#include <catch2/catch.hpp>

#include "queue/envelope.hpp"

using namespace sluice::queue;

namespace {

Envelope full_envelope() {
  Envelope e;
  e.id = "0123456789ABCDEF";
  e.arrival_us = 1'700'000'000'123'456;
  e.sender = "jöran@exämple.org";
  e.size = 123456789012ull;
  e.body = BodyType::eight_bit_mime;
  e.smtputf8 = true;
  e.envid = "ENV-42";
  e.ret = 2;
  e.client_address = "[2001:db8::1]:4711";
  e.helo = "client.example";
  e.auth_user = "joran";
  e.message_id = "<abc@exämple.org>";
  e.recipients.push_back({"a@example.com", "rfc822;a@example.com", 0b0110, RcptStatus::pending, ""});
  e.recipients.push_back({"日本@例え.jp", "", 0, RcptStatus::sent, "250 2.0.0 ok"});
  e.recipients.push_back({"c@example.net", "", 8, RcptStatus::deferred, "451 4.7.1 try later"});
  e.recipients.push_back({"d@example.net", "", 2, RcptStatus::bounced, std::string("550\0x", 5)});
  return e;
}

}  // namespace

TEST_CASE("to_string(RcptStatus)") {
  CHECK(to_string(RcptStatus::pending) == "pending");
  CHECK(to_string(RcptStatus::sent) == "sent");
  CHECK(to_string(RcptStatus::deferred) == "deferred");
  CHECK(to_string(RcptStatus::bounced) == "bounced");
}

TEST_CASE("envelope round trip with every field") {
  Envelope e = full_envelope();
  auto d = decode_envelope(encode(e));
  REQUIRE(d);
  CHECK(*d == e);
  std::string appended = "prefix";
  encode_append(e, appended);
  CHECK(appended == "prefix" + encode(e));
}

TEST_CASE("envelope round trip: defaults, null sender, negative time") {
  Envelope e;
  auto d = decode_envelope(encode(e));
  REQUIRE(d);
  CHECK(*d == e);
  e.arrival_us = -5;
  d = decode_envelope(encode(e));
  REQUIRE(d);
  CHECK(d->arrival_us == -5);
  CHECK(d->sender.empty());
}

TEST_CASE("envelope round trip with many recipients") {
  Envelope e;
  e.id = "0000000000000001";
  for (int i = 0; i < 5000; ++i)
    e.recipients.push_back({"user" + std::to_string(i) + "@example.com", "", uint8_t(i & 15),
                            RcptStatus(i % 4), i % 3 ? "" : "451 later"});
  auto d = decode_envelope(encode(e));
  REQUIRE(d);
  CHECK(*d == e);
}

TEST_CASE("every truncation of a valid encoding is rejected cleanly") {
  std::string bytes = encode(full_envelope());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto d = decode_envelope(std::string_view(bytes).substr(0, n));
    INFO("length " << n);
    REQUIRE_FALSE(d);
    CHECK_FALSE(d.error().empty());
  }
}

TEST_CASE("garbage is rejected") {
  std::string bytes = encode(full_envelope());
  SECTION("trailing bytes") { CHECK_FALSE(decode_envelope(bytes + "x")); }
  SECTION("unknown version") {
    bytes[0] = 2;
    auto d = decode_envelope(bytes);
    REQUIRE_FALSE(d);
    CHECK(d.error().find("version") != std::string::npos);
  }
  SECTION("huge recipient count does not allocate") {
    Envelope e;
    std::string b = encode(e);
    // version, id, arrival, sender: 1 + 4 + 8 + 4, then the count.
    size_t at = 1 + 4 + 8 + 4;
    for (int i = 0; i < 4; ++i) b[at + size_t(i)] = char(0xFF);
    auto d = decode_envelope(b);
    REQUIRE_FALSE(d);
    CHECK(d.error().find("recipient count") != std::string::npos);
  }
  SECTION("huge string length") {
    Envelope e;
    std::string b = encode(e);
    for (int i = 1; i < 5; ++i) b[size_t(i)] = char(0xFF);
    CHECK_FALSE(decode_envelope(b));
  }
  SECTION("bad enum values") {
    Envelope e;
    e.recipients.push_back({"a@b", "", 0, RcptStatus::pending, ""});
    std::string b = encode(e);
    // The recipient status byte follows address (4+3), orcpt (4), notify (1).
    size_t status_at = 1 + 4 + 8 + 4 + 4 + 7 + 4 + 1;
    b[status_at] = 9;
    CHECK_FALSE(decode_envelope(b));
  }
  SECTION("every single-byte change either decodes or fails, never crashes") {
    for (size_t i = 0; i < bytes.size(); ++i) {
      for (unsigned v : {0x00u, 0x01u, 0x7Fu, 0x80u, 0xFFu}) {
        std::string b = bytes;
        b[i] = char(v);
        (void)decode_envelope(b);
      }
    }
  }
}
