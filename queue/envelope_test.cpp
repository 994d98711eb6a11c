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
  e.recipients[2].attempts = 7;
  e.recipients[2].last_attempt_us = 1'700'000'123'000'000;
  e.recipients[2].dsn_status = "4.7.1";
  e.recipients[2].remote_host = "mx1.example.net[192.0.2.25]";
  e.recipients[3].attempts = 1;
  e.recipients[3].last_attempt_us = -1;
  e.recipients[3].dsn_status = "5.1.1";
  e.attempts = 8;
  e.next_attempt_us = 1'700'000'456'000'000;
  e.held = true;
  e.history.push_back({1'700'000'001'000'000, -1, "", "451 4.4.1 connect to mx: refused"});
  e.history.push_back({1'700'000'002'000'000, 2, "mx1.example.net[192.0.2.25]", "451 4.7.1 try later"});
  e.history.push_back({1'700'000'003'000'000, 3, "mx", std::string("550\0y", 5)});
  e.recipients[1].tls = TlsLevel::dane;
  e.recipients[2].tls = TlsLevel::opportunistic;
  e.recipients[3].tls = TlsLevel::mta_sts;
  e.requiretls = true;
  e.tls_optional = true;  // not a combination intake makes; the format carries it
  return e;
}

// Versions 1 and 2 as earlier builds wrote them (kept here byte for byte,
// so that spools written by earlier builds stay readable): version 1 before
// delivery state existed, version 2 before REQUIRETLS.
void v1_u32(std::string& o, uint32_t v) {
  for (int i = 0; i < 4; ++i) o.push_back(char((v >> (8 * i)) & 0xFF));
}
void v1_u64(std::string& o, uint64_t v) {
  for (int i = 0; i < 8; ++i) o.push_back(char((v >> (8 * i)) & 0xFF));
}
void v1_str(std::string& o, std::string_view s) {
  v1_u32(o, uint32_t(s.size()));
  o.append(s);
}
std::string encode_old(const Envelope& e, int version) {
  std::string o;
  o.push_back(char(version));
  v1_str(o, e.id);
  v1_u64(o, uint64_t(e.arrival_us));
  v1_str(o, e.sender);
  v1_u32(o, uint32_t(e.recipients.size()));
  for (const Recipient& r : e.recipients) {
    v1_str(o, r.address);
    v1_str(o, r.orcpt);
    o.push_back(char(r.notify));
    o.push_back(char(r.status));
    v1_str(o, r.last_reply);
    if (version < 2) continue;
    v1_u32(o, r.attempts);
    v1_u64(o, uint64_t(r.last_attempt_us));
    v1_str(o, r.dsn_status);
    v1_str(o, r.remote_host);
  }
  v1_u64(o, e.size);
  o.push_back(char(e.body));
  o.push_back(e.smtputf8 ? 1 : 0);
  v1_str(o, e.envid);
  o.push_back(char(e.ret));
  v1_str(o, e.client_address);
  v1_str(o, e.helo);
  v1_str(o, e.auth_user);
  v1_str(o, e.message_id);
  if (version < 2) return o;
  v1_u32(o, e.attempts);
  v1_u64(o, uint64_t(e.next_attempt_us));
  o.push_back(e.held ? 1 : 0);
  v1_u32(o, uint32_t(e.history.size()));
  for (const Attempt& a : e.history) {
    v1_u64(o, uint64_t(a.time_us));
    v1_u32(o, uint32_t(a.recipient));
    v1_str(o, a.host);
    v1_str(o, a.reply);
  }
  return o;
}
std::string encode_v1(const Envelope& e) { return encode_old(e, 1); }
std::string encode_v2(const Envelope& e) { return encode_old(e, 2); }

// The fields version 2 has, with the version 3 ones at their defaults.
Envelope v2_part(Envelope e) {
  for (Recipient& r : e.recipients) r.tls = TlsLevel::none;
  e.requiretls = false;
  e.tls_optional = false;
  return e;
}

// The fields version 1 has, with the delivery state at its defaults.
Envelope v1_part(Envelope e) {
  e = v2_part(std::move(e));
  for (Recipient& r : e.recipients) {
    r.attempts = 0;
    r.last_attempt_us = 0;
    r.dsn_status.clear();
    r.remote_host.clear();
  }
  e.attempts = 0;
  e.next_attempt_us = 0;
  e.held = false;
  e.history.clear();
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
    bytes[0] = 4;
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
  SECTION("bad held flag, bad history index, huge history count") {
    Envelope e;
    e.recipients.push_back({"a@b", "", 0, RcptStatus::pending, ""});
    e.history.push_back({5, 0, "h", "r"});
    std::string b = encode(e);
    // From the end: requiretls and tls_optional (2), history entry
    // (8 + 4 + 4+1 + 4+1 = 22), count (4), held (1).
    size_t entry_at = b.size() - 2 - 22, count_at = entry_at - 4, held_at = count_at - 1;
    std::string c = b;
    c[held_at] = 2;
    auto d = decode_envelope(c);
    REQUIRE_FALSE(d);
    CHECK(d.error().find("held") != std::string::npos);
    for (uint32_t bad : {1u, 2u, 0xFFFFFFFEu, 0x80000000u}) {
      c = b;
      for (int i = 0; i < 4; ++i) c[entry_at + 8 + size_t(i)] = char((bad >> (8 * i)) & 0xFF);
      d = decode_envelope(c);
      REQUIRE_FALSE(d);
      CHECK(d.error().find("history recipient") != std::string::npos);
    }
    c = b;
    for (int i = 0; i < 4; ++i) c[count_at + size_t(i)] = char(0xFF);
    d = decode_envelope(c);
    REQUIRE_FALSE(d);
    CHECK(d.error().find("history count") != std::string::npos);
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

TEST_CASE("version 1 envelopes still decode, with default delivery state") {
  Envelope e = full_envelope();
  std::string v1 = encode_v1(e);
  auto d = decode_envelope(v1);
  REQUIRE(d);
  CHECK(*d == v1_part(e));
  CHECK(d->recipients[2].status == RcptStatus::deferred);
  CHECK(d->recipients[2].last_reply == "451 4.7.1 try later");
  // Re-encoding writes version 3 and keeps everything.
  std::string v2 = encode(*d);
  CHECK(v2[0] == 3);
  auto again = decode_envelope(v2);
  REQUIRE(again);
  CHECK(*again == *d);

  SECTION("an empty version 1 envelope") {
    auto d0 = decode_envelope(encode_v1(Envelope{}));
    REQUIRE(d0);
    CHECK(*d0 == Envelope{});
  }
  SECTION("version 1 truncations and trailing bytes are rejected") {
    for (size_t n = 0; n < v1.size(); ++n) CHECK_FALSE(decode_envelope(std::string_view(v1).substr(0, n)));
    CHECK_FALSE(decode_envelope(v1 + "x"));
  }
  SECTION("version 1 bytes with the version byte changed to 2 do not decode") {
    std::string b = v1;
    b[0] = 2;
    CHECK_FALSE(decode_envelope(b));
  }
}

TEST_CASE("version 3 writes the delivery state and REQUIRETLS fields") {
  Envelope e = full_envelope();
  std::string b = encode(e);
  CHECK(b[0] == 3);
  CHECK(b.size() == encode_v2(e).size() + e.recipients.size() + 2);
}

TEST_CASE("version 2 envelopes still decode, with the version 3 fields at defaults") {
  Envelope e = full_envelope();
  std::string v2 = encode_v2(e);
  auto d = decode_envelope(v2);
  REQUIRE(d);
  CHECK(*d == v2_part(e));
  CHECK(d->recipients[2].attempts == 7);
  CHECK(d->recipients[1].tls == TlsLevel::none);
  CHECK_FALSE(d->requiretls);
  CHECK_FALSE(d->tls_optional);
  auto again = decode_envelope(encode(*d));
  REQUIRE(again);
  CHECK(*again == *d);
  SECTION("version 2 truncations and trailing bytes are rejected") {
    for (size_t n = 0; n < v2.size(); ++n) CHECK_FALSE(decode_envelope(std::string_view(v2).substr(0, n)));
    CHECK_FALSE(decode_envelope(v2 + "x"));
  }
  SECTION("version 2 bytes with the version byte changed to 3 do not decode") {
    std::string b = v2;
    b[0] = 3;
    CHECK_FALSE(decode_envelope(b));
  }
}

TEST_CASE("version 3: bad tls level and flags are rejected") {
  Envelope e;
  e.recipients.push_back({"a@b", "", 0, RcptStatus::pending, ""});
  e.recipients[0].tls = TlsLevel::pkix;
  e.requiretls = true;
  std::string b = encode(e);
  auto d = decode_envelope(b);
  REQUIRE(d);
  CHECK(d->recipients[0].tls == TlsLevel::pkix);
  CHECK(d->requiretls);
  CHECK_FALSE(d->tls_optional);
  // tls follows remote_host, the last recipient field: version, id, arrival,
  // sender, count (1+4+8+4+4), address 4+3, orcpt 4, notify, status,
  // last_reply 4, attempts 4, last_attempt 8, dsn_status 4, remote_host 4.
  size_t tls_at = 1 + 4 + 8 + 4 + 4 + 7 + 4 + 1 + 1 + 4 + 4 + 8 + 4 + 4;
  REQUIRE(b[tls_at] == char(TlsLevel::pkix));
  std::string c = b;
  c[tls_at] = 5;
  d = decode_envelope(c);
  REQUIRE_FALSE(d);
  CHECK(d.error().find("tls") != std::string::npos);
  c = b;
  c[c.size() - 2] = 2;
  d = decode_envelope(c);
  REQUIRE_FALSE(d);
  CHECK(d.error().find("requiretls") != std::string::npos);
  c = b;
  c[c.size() - 1] = 7;
  d = decode_envelope(c);
  REQUIRE_FALSE(d);
  CHECK(d.error().find("tls_optional") != std::string::npos);
}

TEST_CASE("add_history keeps the newest kMaxHistory entries") {
  Envelope e;
  for (int i = 0; i < 50; ++i) add_history(e, {i, -1, "", "r" + std::to_string(i)});
  REQUIRE(e.history.size() == kMaxHistory);
  CHECK(e.history.front().time_us == 50 - int64_t(kMaxHistory));
  CHECK(e.history.back().time_us == 49);
  auto d = decode_envelope(encode(e));
  REQUIRE(d);
  CHECK(*d == e);
}

TEST_CASE("decode(x) re-encodes to bytes that decode to the same envelope (fuzz invariant)") {
  // Mutations of both versions: whatever decodes must round-trip.
  for (const std::string& base :
       {encode(full_envelope()), encode_v2(full_envelope()), encode_v1(full_envelope())}) {
    for (size_t i = 0; i < base.size(); ++i) {
      for (unsigned v : {0x00u, 0x01u, 0x02u, 0x7Fu, 0xFFu}) {
        std::string b = base;
        b[i] = char(v);
        auto d = decode_envelope(b);
        if (!d) continue;
        auto again = decode_envelope(encode(*d));
        REQUIRE(again);
        CHECK(*again == *d);
      }
    }
  }
}
