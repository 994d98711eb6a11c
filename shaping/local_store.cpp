// local_store.cpp — the in-process Store (shaping/local_store.hpp).
#include "shaping/local_store.hpp"

#include <algorithm>

namespace sluice::shaping {

LocalStore::LocalStore(std::function<int64_t()> clock, size_t max_keys)
    : clock_(std::move(clock)), max_keys_(std::max<size_t>(max_keys, 1)) {}

void LocalStore::make_room(int64_t now) {
  std::erase_if(rates_, [now](const auto& kv) { return kv.second.idle(now); });
  // Leave an eighth free so that the next sweep is max_keys/8 keys away.
  const size_t target = max_keys_ - std::max<size_t>(max_keys_ / 8, 1);
  if (rates_.size() <= target) return;
  const size_t excess = rates_.size() - target;
  std::vector<int64_t> tats;
  tats.reserve(rates_.size());
  for (const auto& [key, g] : rates_) tats.push_back(g.tat_us());
  std::nth_element(tats.begin(), tats.begin() + static_cast<ptrdiff_t>(excess - 1), tats.end());
  const int64_t cut = tats[excess - 1];  // evict TATs below cut, and at cut until enough
  size_t at_cut = static_cast<size_t>(
      std::count_if(tats.begin(), tats.begin() + static_cast<ptrdiff_t>(excess),
                    [cut](int64_t t) { return t == cut; }));
  for (auto it = rates_.begin(); it != rates_.end();) {
    const int64_t t = it->second.tat_us();
    if (t < cut || (t == cut && at_cut > 0)) {
      if (t == cut) --at_cut;
      it = rates_.erase(it);
    } else {
      ++it;
    }
  }
}

void LocalStore::take(const std::string& key, Rate rate, uint32_t burst,
                      std::function<void(Admission)> done) {
  const int64_t now = clock_();
  if (rate.unlimited()) return done(Gcra{}.peek(rate, burst, now));
  auto it = rates_.find(key);
  if (it == rates_.end()) {
    if (rates_.size() >= max_keys_) make_room(now);
    it = rates_.emplace(key, Gcra{}).first;
  }
  done(it->second.take(rate, burst, now));
}

void LocalStore::peek(const std::string& key, Rate rate, uint32_t burst,
                      std::function<void(Admission)> done) {
  const int64_t now = clock_();
  auto it = rates_.find(key);
  done(it == rates_.end() ? Gcra{}.peek(rate, burst, now) : it->second.peek(rate, burst, now));
}

void LocalStore::acquire(const std::string& key, uint32_t limit,
                         std::function<void(std::optional<uint64_t> lease)> done) {
  auto it = leases_.find(key);
  const size_t held = it == leases_.end() ? 0 : it->second.size();
  if (held >= limit) return done(std::nullopt);
  const uint64_t id = next_lease_++;
  leases_[key].push_back(id);
  done(id);
}

void LocalStore::release(const std::string& key, uint64_t lease) {
  auto it = leases_.find(key);
  if (it == leases_.end()) return;
  std::erase(it->second, lease);
  if (it->second.empty()) leases_.erase(it);
}

size_t LocalStore::leases(const std::string& key) const {
  auto it = leases_.find(key);
  return it == leases_.end() ? 0 : it->second.size();
}

void LocalStore::put_override(const std::string& site, const Override& o) {
  if (o.until_us <= clock_()) {
    overrides_.erase(site);
    return;
  }
  overrides_[site] = o;
}

void LocalStore::overrides(std::function<void(std::map<std::string, Override>)> done) {
  const int64_t now = clock_();
  std::erase_if(overrides_, [now](const auto& kv) { return kv.second.until_us <= now; });
  done(overrides_);
}

}  // namespace sluice::shaping
