// rate_test.cpp — parse_rate, share and the GCRA with an injected clock.
#include <catch2/catch.hpp>

#include "shaping/rate.hpp"

using namespace sluice::shaping;

namespace {
constexpr int64_t kS = 1'000'000;
}

TEST_CASE("parse_rate reads N/s, N/m, N/h, N/d and refuses the rest") {
  CHECK(parse_rate("")->unlimited());
  CHECK(*parse_rate("50/s") == Rate{50, kS});
  CHECK(*parse_rate("600/m") == Rate{600, 60 * kS});
  CHECK(*parse_rate("1000/h") == Rate{1000, 3600 * kS});
  CHECK(*parse_rate("2/d") == Rate{2, 86400 * kS});
  for (const char* bad : {"0/s", "/s", "5", "5/", "5/x", "5/ss", " 5/s", "5 /s", "-1/s", "1000001/s",
                          "99999999999/s", "5/S"})
    CHECK_FALSE(parse_rate(bad).has_value());
  CHECK(to_string(*parse_rate("600/m")) == "600/m");
  CHECK(to_string(Rate{}).empty());
}

TEST_CASE("share divides a rate among nodes, never below one per period") {
  CHECK(share(Rate{6, kS}, 3) == Rate{2, kS});
  CHECK(share(Rate{2, kS}, 3) == Rate{1, kS});
  CHECK(share(Rate{}, 3).unlimited());
  CHECK(share(Rate{6, kS}, 0) == Rate{6, kS});
}

TEST_CASE("GCRA with burst 1 spaces events evenly") {
  Gcra g;
  const Rate five{5, kS};  // one per 200 ms
  int64_t now = 1000 * kS;
  CHECK(g.take(five, 1, now).allowed);
  Admission a = g.take(five, 1, now + 1);
  CHECK_FALSE(a.allowed);
  CHECK(a.retry_at_us == now + 200'000);
  CHECK_FALSE(g.take(five, 1, now + 199'999).allowed);
  CHECK(g.take(five, 1, now + 200'000).allowed);
  // 60 events, each at its retry time: they take exactly 59 intervals.
  Gcra h;
  int64_t t = now, first = 0, last = 0;
  for (int i = 0; i < 60; ++i) {
    Admission x = h.take(five, 1, t);
    if (!x.allowed) {
      t = x.retry_at_us;
      x = h.take(five, 1, t);
    }
    REQUIRE(x.allowed);
    if (i == 0) first = t;
    last = t;
  }
  CHECK(last - first == 59 * 200'000);
}

TEST_CASE("GCRA with burst N lets a period's worth through, then one per interval") {
  Gcra g;
  const Rate r{3, 60 * kS};  // 3/m: one per 20 s, 3 at once
  int64_t now = 5000 * kS;
  CHECK(g.peek(r, 3, now).remaining == 2);  // what take() would leave
  CHECK(g.take(r, 3, now).remaining == 2);
  CHECK(g.take(r, 3, now).remaining == 1);
  CHECK(g.take(r, 3, now).remaining == 0);
  Admission denied = g.take(r, 3, now);
  CHECK_FALSE(denied.allowed);
  CHECK(denied.retry_at_us == now + 20 * kS);
  CHECK_FALSE(g.peek(r, 3, now + 20 * kS - 1).allowed);
  CHECK(g.take(r, 3, now + 20 * kS).allowed);
  CHECK_FALSE(g.idle(now + 20 * kS));
  CHECK(g.idle(now + 200 * kS));
  // After a long quiet spell the burst is back, not more.
  CHECK(g.peek(r, 3, now + 1000 * kS).remaining == 2);
}

TEST_CASE("an unlimited rate always allows and keeps no state") {
  Gcra g;
  for (int i = 0; i < 1000; ++i) CHECK(g.take(Rate{}, 1, 1).allowed);
  CHECK(g.idle(1));
}
