// local_store_test.cpp — LocalStore with an injected clock: rates, leases,
// overrides expiring, and the bound on rate keys.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "shaping/local_store.hpp"

using namespace sluice::shaping;

namespace {
constexpr int64_t kS = 1'000'000;

Admission take(Store& s, const std::string& key, Rate r, uint32_t burst = 1) {
  Admission out;
  bool called = false;
  s.take(key, r, burst, [&](Admission a) { out = a; called = true; });
  REQUIRE(called);  // before take() returned
  return out;
}

std::optional<uint64_t> acquire(Store& s, const std::string& key, uint32_t limit) {
  std::optional<uint64_t> out;
  bool called = false;
  s.acquire(key, limit, [&](std::optional<uint64_t> l) { out = l; called = true; });
  REQUIRE(called);
  return out;
}

std::map<std::string, Override> overrides(Store& s) {
  std::map<std::string, Override> out;
  s.overrides([&](std::map<std::string, Override> m) { out = std::move(m); });
  return out;
}
}  // namespace

TEST_CASE("LocalStore keeps one GCRA per key") {
  int64_t now = 1000 * kS;
  LocalStore s([&] { return now; });
  CHECK(s.describe() == "local");
  const Rate five{5, kS};
  CHECK(take(s, "rate:a", five).allowed);
  Admission denied = take(s, "rate:a", five);
  CHECK_FALSE(denied.allowed);
  CHECK(denied.retry_at_us == now + 200'000);
  CHECK(take(s, "rate:b", five).allowed);  // another key, its own state
  // peek counts nothing.
  now += 200'000;
  for (int i = 0; i < 3; ++i) {
    bool allowed = false;
    s.peek("rate:a", five, 1, [&](Admission a) { allowed = a.allowed; });
    CHECK(allowed);
  }
  CHECK(take(s, "rate:a", five).allowed);
  CHECK_FALSE(take(s, "rate:a", five).allowed);
  // peek on a key never seen: allowed, and no key is made.
  const size_t keys = s.rate_keys();
  s.peek("rate:new", five, 1, [](Admission a) { CHECK(a.allowed); });
  CHECK(s.rate_keys() == keys);
  // Unlimited: always allowed, no state kept.
  for (int i = 0; i < 10; ++i) CHECK(take(s, "rate:free", Rate{}).allowed);
  CHECK(s.rate_keys() == keys);
  // Burst: three at once for 3/m.
  CHECK(take(s, "login:alice", Rate{3, 60 * kS}, 3).allowed);
  CHECK(take(s, "login:alice", Rate{3, 60 * kS}, 3).allowed);
  CHECK(take(s, "login:alice", Rate{3, 60 * kS}, 3).allowed);
  CHECK_FALSE(take(s, "login:alice", Rate{3, 60 * kS}, 3).allowed);
}

TEST_CASE("LocalStore grants leases below the limit") {
  int64_t now = 1000 * kS;
  LocalStore s([&] { return now; });
  CHECK_FALSE(acquire(s, "conn:x", 0).has_value());
  auto a = acquire(s, "conn:x", 2);
  auto b = acquire(s, "conn:x", 2);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*a != 0);
  CHECK(*b > *a);
  CHECK_FALSE(acquire(s, "conn:x", 2).has_value());
  CHECK(acquire(s, "conn:y", 1).has_value());  // per key
  CHECK(s.leases("conn:x") == 2);
  s.release("conn:x", 999'999);  // unknown: ignored
  s.release("conn:nokey", *a);
  CHECK(s.leases("conn:x") == 2);
  s.release("conn:x", *a);
  CHECK(s.leases("conn:x") == 1);
  auto c = acquire(s, "conn:x", 2);
  REQUIRE(c);
  CHECK(*c > *b);
  s.release("conn:x", *a);  // already released: ignored
  CHECK(s.leases("conn:x") == 2);
  CHECK(acquire(s, "conn:x", 3).has_value());  // a larger limit (a reload)
  s.release("conn:x", *b);
  s.release("conn:x", *c);
}

TEST_CASE("LocalStore overrides expire") {
  int64_t now = 1000 * kS;
  LocalStore s([&] { return now; });
  Override o{Rate{10, 60 * kS}, 1, false, now + 30 * 60 * kS, "rule matched"};
  s.put_override("gmail", o);
  s.put_override("yahoo", Override{Rate{}, 0, true, now + 10 * kS, "suspend"});
  auto m = overrides(s);
  REQUIRE(m.size() == 2);
  CHECK(m.at("gmail") == o);
  CHECK(m.at("yahoo").suspended);
  now += 10 * kS;  // until_us <= now: gone
  m = overrides(s);
  REQUIRE(m.size() == 1);
  CHECK(m.count("gmail") == 1);
  // Replacing, and an override already over clears the site's.
  Override o2 = o;
  o2.connections = 3;
  s.put_override("gmail", o2);
  CHECK(overrides(s).at("gmail").connections == 3);
  s.put_override("gmail", Override{Rate{}, 0, false, now, "over"});
  CHECK(overrides(s).empty());
  s.put_override("gmail", o);
  now = o.until_us;
  CHECK(overrides(s).empty());
}

TEST_CASE("LocalStore holds at most max_keys rate keys, and a hot key keeps its state") {
  int64_t now = 1000 * kS;
  LocalStore s([&] { return now; }, 1000);
  const Rate hot_rate{1, 3600 * kS};  // one per hour: its TAT is the latest of all
  const int64_t start = now;
  REQUIRE(take(s, "hot", hot_rate).allowed);
  const Rate flood{1, kS};
  for (int i = 0; i < 1'000'000; ++i) {
    now += 10;
    REQUIRE(take(s, fmt::format("client:{}", i), flood).allowed);  // a new key is always allowed
    REQUIRE(s.rate_keys() <= 1000);
    if (i % 997 == 0) {
      Admission h = take(s, "hot", hot_rate);
      REQUIRE_FALSE(h.allowed);
      REQUIRE(h.retry_at_us == start + 3600 * kS);
    }
  }
  CHECK(s.rate_keys() <= 1000);
  CHECK(s.rate_keys() >= 1000 - 1000 / 8);
  // A key still held answers from its state: the last client is denied.
  CHECK_FALSE(take(s, "client:999999", flood).allowed);
  // Idle keys go first: a second later every flood key is idle.
  now += 2 * kS;
  for (int i = 0; i < 10; ++i) CHECK(take(s, fmt::format("late:{}", i), flood).allowed);
  CHECK(s.rate_keys() <= 1000);
  CHECK_FALSE(take(s, "hot", hot_rate).allowed);
  now = start + 3600 * kS;
  CHECK(take(s, "hot", hot_rate).allowed);
}

TEST_CASE("LocalStore evicts an eighth at once, also among equal TATs") {
  int64_t now = 1000 * kS;
  LocalStore s([&] { return now; }, 16);
  for (int i = 0; i < 16; ++i) REQUIRE(take(s, fmt::format("k{}", i), Rate{1, kS}).allowed);
  CHECK(s.rate_keys() == 16);
  REQUIRE(take(s, "k16", Rate{1, kS}).allowed);  // every TAT equal: two go, the new one comes
  CHECK(s.rate_keys() == 15);
  REQUIRE(take(s, "k17", Rate{1, kS}).allowed);  // room left: no sweep
  CHECK(s.rate_keys() == 16);
  for (int i = 0; i < 100; ++i) REQUIRE(take(s, fmt::format("m{}", i), Rate{1, kS}).allowed);
  CHECK(s.rate_keys() <= 16);
}
