// local_store.hpp — the Store of one process (shaping/store.hpp): rates,
// connection leases and overrides in memory, answered before each call
// returns. The default store, and RedisStore's fallback.
//
// Rates: one Gcra per key. Keys come from the network (client addresses,
// logins), so their number is bounded by `max_keys`: when a new key would
// pass it, the idle keys (TAT in the past) are dropped first — forgetting an
// idle key changes no answer, a fresh Gcra says the same — and if that frees
// too little, the keys whose TAT is earliest (the least debt) are evicted
// until an eighth of `max_keys` is free again, so the sweep runs at most once
// per max_keys/8 new keys. Only then can an answer change: an evicted key
// forgets a debt of at most the time until its TAT, which is earlier than
// that of every key kept; a busy key is never the one evicted.
//
// Leases: per key the ids held (non-zero, increasing over the process);
// acquire grants while fewer than `limit` are held; releasing an unknown
// lease is ignored. A key with no lease takes no memory. Nothing expires:
// in one process a lease ends with its connection.
//
// Overrides: one per site, dropped once until_us <= clock().
//
// Single-threaded (the loop). The clock is injected (epoch µs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "shaping/store.hpp"

namespace sluice::shaping {

class LocalStore final : public Store {
 public:
  explicit LocalStore(std::function<int64_t()> clock, size_t max_keys = 100'000);

  void take(const std::string& key, Rate rate, uint32_t burst,
            std::function<void(Admission)> done) override;
  void peek(const std::string& key, Rate rate, uint32_t burst,
            std::function<void(Admission)> done) override;
  void acquire(const std::string& key, uint32_t limit,
               std::function<void(std::optional<uint64_t> lease)> done) override;
  void release(const std::string& key, uint64_t lease) override;
  void put_override(const std::string& site, const Override& o) override;
  void overrides(std::function<void(std::map<std::string, Override>)> done) override;
  std::string describe() const override { return "local"; }

  // For tests and sluicectl: rate keys held now, leases held on `key`.
  size_t rate_keys() const { return rates_.size(); }
  size_t leases(const std::string& key) const;

 private:
  // Makes room for one more rate key (see the header comment).
  void make_room(int64_t now);

  std::function<int64_t()> clock_;
  size_t max_keys_;
  std::unordered_map<std::string, Gcra> rates_;
  std::unordered_map<std::string, std::vector<uint64_t>> leases_;
  uint64_t next_lease_ = 1;
  std::map<std::string, Override> overrides_;
};

}  // namespace sluice::shaping
