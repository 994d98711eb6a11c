// rate.hpp — rates as the configuration writes them ("50/s", "600/m",
// "1000/h") and the GCRA that holds a stream of events to one (pure).
//
// GCRA (the generic cell rate algorithm, as in ATM and in redis-cell) keeps
// one number per key: the theoretical arrival time (TAT) of the next event
// if events came exactly at the rate. An event at `now` is allowed when
// TAT - now <= (burst - 1) * interval; it then moves TAT to
// max(TAT, now) + interval. `burst` events may go at once after a quiet
// spell; burst = 1 spaces them evenly (a site's rate), burst = count lets a
// whole period's worth through at once and then one per interval (a login's
// messages_per_login, a client's auth failures). The same arithmetic runs in
// the Redis store's Lua script (shaping/redis_store.cpp), so a key means the
// same on one node and on several.
//
// No clock: every call takes `now` in microseconds since the epoch.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace sluice::shaping {

struct Rate {
  uint32_t count = 0;      // events per period; 0 = unlimited
  int64_t period_us = 0;   // 1 s, 60 s or 3600 s
  bool unlimited() const { return count == 0; }
  // The spacing between events at this rate (at least 1 µs).
  int64_t interval_us() const;
  bool operator==(const Rate&) const = default;
};

// "" = unlimited; "N/s", "N/m", "N/h" with 1 <= N <= 1'000'000 (also "N/d");
// spaces around the parts are not allowed. The error says what was expected.
std::expected<Rate, std::string> parse_rate(std::string_view text);
// "50/s" (as parse_rate reads it); "" when unlimited.
std::string to_string(Rate r);
// The same rate divided among `parts` nodes, never below one event per
// period (the cluster fallback's share; SPEC "Several nodes").
Rate share(Rate r, uint32_t parts);

struct Admission {
  bool allowed = false;
  int64_t retry_at_us = 0;  // when denied: the first time it would be allowed
  uint32_t remaining = 0;   // events that could still go now (after this one when allowed)
};

// One key's GCRA state.
class Gcra {
 public:
  // Takes one event at `now` when the rate allows it.
  Admission take(Rate rate, uint32_t burst, int64_t now);
  // What take() would answer, changing nothing.
  Admission peek(Rate rate, uint32_t burst, int64_t now) const;
  // True once the state says nothing any more (TAT in the past): the key
  // can be forgotten without changing any answer.
  bool idle(int64_t now) const { return tat_us_ <= now; }
  int64_t tat_us() const { return tat_us_; }

 private:
  int64_t tat_us_ = 0;
};

}  // namespace sluice::shaping
