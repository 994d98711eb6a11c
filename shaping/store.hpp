// store.hpp — where shaping's shared state lives: rates (GCRA), connection
// leases and the automation in force, behind one interface with two
// implementations (SPEC "Several nodes"):
//   LocalStore (shaping/local_store.hpp)  this process only, the default;
//   RedisStore (shaping/redis_store.hpp)  every node naming the same Redis
//                                         ([cluster] redis), with LocalStore
//                                         as its fallback when Redis is away.
//
// Every answer comes through a callback, on the loop: LocalStore calls it
// before returning, RedisStore after the round trip. Callers never block
// and must not assume either. Limits are always given whole (the site's
// rate, not a node's share): a store that falls back divides them itself.
//
// Keys are plain strings chosen by the callers ("site:gmail", "login:alice",
// "client:192.0.2.1"); a store may prefix them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "shaping/rate.hpp"

namespace sluice::shaping {

// Automation in force for a site, as a rule set it (shaping/shaper.hpp).
struct Override {
  Rate rate;                    // unlimited: the rule does not limit the rate
  uint32_t connections = 0;     // 0: the rule does not limit connections
  bool suspended = false;       // no connection, no message until `until_us`
  int64_t until_us = 0;         // when it ends (absolute, epoch µs)
  std::string reason;           // the rule and the reply that set it, for sluicectl
  bool operator==(const Override&) const = default;
};

class Store {
 public:
  virtual ~Store() = default;

  // One event of `key` at `rate` with `burst` (shaping/rate.hpp). An
  // unlimited rate is always allowed.
  virtual void take(const std::string& key, Rate rate, uint32_t burst,
                    std::function<void(Admission)> done) = 0;
  // What take() would answer, without counting an event.
  virtual void peek(const std::string& key, Rate rate, uint32_t burst,
                    std::function<void(Admission)> done) = 0;

  // A connection lease on `key` when fewer than `limit` are held (limit 0:
  // none may be held). The lease id is non-zero; nullopt when full. A lease
  // is held until release(); a node that dies loses its leases after the
  // store's lease lifetime (RedisStore renews the leases it holds).
  virtual void acquire(const std::string& key, uint32_t limit,
                       std::function<void(std::optional<uint64_t> lease)> done) = 0;
  virtual void release(const std::string& key, uint64_t lease) = 0;

  // The automation in force: set one (replacing the site's), and read all
  // of them that have not expired.
  virtual void put_override(const std::string& site, const Override& o) = 0;
  virtual void overrides(std::function<void(std::map<std::string, Override>)> done) = 0;

  // For sluicectl shaping and the logs: "local", "redis unix:/run/redis.sock",
  // "redis ... (unreachable: fallback to 1/3 share)".
  virtual std::string describe() const = 0;
};

}  // namespace sluice::shaping
