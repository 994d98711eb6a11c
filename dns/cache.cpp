// cache.cpp — AnswerCache: a hash map plus an index ordered by expiry time.
//
// Single-threaded; see cache.hpp. Lookups are O(1), insertions O(log n).
#include "dns/cache.hpp"

namespace sluice::dns {

void AnswerCache::erase(std::unordered_map<std::string, Entry>::iterator it) {
  by_expiry_.erase({it->second.expires, it->first});
  entries_.erase(it);
}

std::optional<Answer> AnswerCache::find(const std::string& key, Time now) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  if (it->second.expires <= now) {
    erase(it);
    return std::nullopt;
  }
  return it->second.answer;
}

void AnswerCache::put(const std::string& key, Answer answer, Time now, std::chrono::seconds ttl) {
  if (max_ == 0 || ttl <= std::chrono::seconds::zero()) return;
  if (auto it = entries_.find(key); it != entries_.end()) erase(it);
  // Expired entries sort first, so this drops them before anything live.
  while (!by_expiry_.empty() && (by_expiry_.begin()->first <= now || entries_.size() >= max_))
    erase(entries_.find(by_expiry_.begin()->second));
  Time expires = now + std::chrono::duration_cast<Time>(ttl);
  entries_.emplace(key, Entry{std::move(answer), expires});
  by_expiry_.emplace(expires, key);
}

}  // namespace sluice::dns
