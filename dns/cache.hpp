// cache.hpp — a bounded cache of DNS answers, each kept until its TTL runs out.
//
// Internal to dns/. Keys are "TYPE name" strings; time is whatever clock the
// caller passes in (the resolver uses its loop's, tests a fake one), so the
// cache itself never reads a clock. Not thread-safe: one owner, one thread.
// When full, the entry closest to expiry goes first (expired ones first of
// all). No failure modes beyond allocation.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

#include "dns/answer.hpp"

namespace sluice::dns {

class AnswerCache {
 public:
  using Time = std::chrono::milliseconds;  // since any fixed point

  explicit AnswerCache(std::size_t max_entries) : max_(max_entries) {}

  // The answer under key if it has not expired at `now` (an expired one is
  // dropped).
  std::optional<Answer> find(const std::string& key, Time now);
  // Stores answer until now + ttl, replacing what key held. A zero ttl or a
  // zero-sized cache stores nothing.
  void put(const std::string& key, Answer answer, Time now, std::chrono::seconds ttl);
  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    Answer answer;
    Time expires;
  };
  void erase(std::unordered_map<std::string, Entry>::iterator it);

  std::size_t max_;
  std::unordered_map<std::string, Entry> entries_;
  std::set<std::pair<Time, std::string>> by_expiry_;
};

}  // namespace sluice::dns
