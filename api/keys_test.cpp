// keys_test.cpp — the API keys file (lookup by SHA-256, the sender rule of
// the users file) and the Idempotency-Key store.
#include <catch2/catch.hpp>

#include "api/idempotency.hpp"
#include "api/keys.hpp"

using namespace sluice::api;

TEST_CASE("sha256 and hex") {
  CHECK(hex(sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("keys: lookup by the bearer's hash, sender lists") {
  const std::string k1 = new_key(), k2 = new_key();
  CHECK(k1.starts_with("sluice_"));
  CHECK(k1.size() == 7 + 43);
  CHECK(k1 != k2);
  const std::string text = "# keys\n\nshop:" + hex(sha256(k1)) + ":orders@shop.test, @news.shop.test\n" +
                           "alerts@ops.test:" + hex(sha256(k2)) + "\n";
  auto db = KeyDb::parse(text, "keys");
  REQUIRE(db);
  const ApiKey* a = (*db)->find(k1);
  REQUIRE(a);
  CHECK(a->name == "shop");
  CHECK((*db)->may_send_as(*a, "orders@shop.test"));
  CHECK((*db)->may_send_as(*a, "Orders@SHOP.test"));
  CHECK((*db)->may_send_as(*a, "x@news.shop.test"));
  CHECK_FALSE((*db)->may_send_as(*a, "x@shop.test"));
  const ApiKey* b = (*db)->find(k2);
  REQUIRE(b);
  CHECK((*db)->may_send_as(*b, "alerts@ops.test"));
  CHECK_FALSE((*db)->may_send_as(*b, "other@ops.test"));
  CHECK((*db)->find("sluice_wrong") == nullptr);
  CHECK((*db)->find("") == nullptr);
  CHECK((*db)->by_name("SHOP") == a);
}

TEST_CASE("keys: every problem, one per line, never the second field") {
  const std::string h = hex(sha256("x"));
  auto db = KeyDb::parse("nocolon\nbad name:" + h + "\nshort:sluice_secretpasted\nok:" + h +
                             "\nOK:" + hex(sha256("y")) + "\nsame:" + h + "\nsnd:" + hex(sha256("z")) +
                             ":not an address\n",
                         "f");
  REQUIRE_FALSE(db);
  const std::string e = db.error();
  CHECK(e.find("f:1:") != std::string::npos);
  CHECK(e.find("f:2:") != std::string::npos);
  CHECK(e.find("f:3:") != std::string::npos);
  CHECK(e.find("sluice_secretpasted") == std::string::npos);
  CHECK(e.find("f:5: duplicate name") != std::string::npos);
  CHECK(e.find("f:6:") != std::string::npos);
  CHECK(e.find("f:7:") != std::string::npos);
  CHECK(e.find("f:4:") == std::string::npos);
}

TEST_CASE("key names") {
  CHECK(valid_key_name("shop-1.prod_x@y+z"));
  CHECK_FALSE(valid_key_name(""));
  CHECK_FALSE(valid_key_name("a:b"));
  CHECK_FALSE(valid_key_name("a b"));
  CHECK_FALSE(valid_key_name(std::string(65, 'a')));
}

TEST_CASE("idempotency: fresh, in progress, replay, mismatch, expiry, file round trip") {
  IdempotencyStore s;
  const int64_t t0 = 1'700'000'000'000'000;
  CHECK(s.begin("shop", "k1", "h1", t0).kind == IdempotencyStore::Kind::fresh);
  CHECK(s.begin("shop", "k1", "h1", t0).kind == IdempotencyStore::Kind::in_progress);
  CHECK(s.begin("other", "k1", "h1", t0).kind == IdempotencyStore::Kind::fresh);  // per API key
  s.forget("other", "k1");
  CHECK(s.size() == 1);
  const std::string line = s.finish("shop", "k1", {202, R"({"id":"X"})", t0, "h1"});
  CHECK(line.ends_with("{\"id\":\"X\"}\n"));
  auto f = s.begin("shop", "k1", "h1", t0 + 1);
  REQUIRE(f.kind == IdempotencyStore::Kind::replay);
  CHECK(f.answer->status == 202);
  CHECK(f.answer->body == R"({"id":"X"})");
  CHECK(s.begin("shop", "k1", "h2", t0 + 1).kind == IdempotencyStore::Kind::mismatch);

  IdempotencyStore r;
  CHECK(r.load(s.dump() + "garbage line\nv1 12", t0 + 2) == 1);
  CHECK(r.begin("shop", "k1", "h1", t0 + 2).kind == IdempotencyStore::Kind::replay);
  IdempotencyStore old;
  CHECK(old.load(s.dump(), t0 + kIdempotencyKeep_us + 1) == 0);
  CHECK(s.begin("shop", "k1", "h1", t0 + kIdempotencyKeep_us + 1).kind == IdempotencyStore::Kind::fresh);
  s.expire(t0 + 2 * kIdempotencyKeep_us);
}

TEST_CASE("idempotency keys") {
  CHECK(valid_idempotency_key("order-1234"));
  CHECK_FALSE(valid_idempotency_key(""));
  CHECK_FALSE(valid_idempotency_key("a b"));
  CHECK_FALSE(valid_idempotency_key(std::string(256, 'a')));
}
