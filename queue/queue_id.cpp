// queue_id.cpp — queue id generation and checks (see queue_id.hpp).
#include "queue/queue_id.hpp"

#include <algorithm>

namespace sluice::queue {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

uint64_t id_value(std::string_view id) { return queue_id_value(id); }

std::string format_id(uint64_t v) {
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[size_t(i)] = kHex[v & 0xF];
  return s;
}

}  // namespace

std::string QueueIdGenerator::next() {
  using namespace std::chrono;
  int64_t now = duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
  uint64_t candidate = uint64_t(std::max<int64_t>(now, 0)) << 12;
  uint64_t last = last_.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    next = std::max(last + 1, candidate);
  } while (!last_.compare_exchange_weak(last, next, std::memory_order_relaxed));
  return format_id(next);
}

void QueueIdGenerator::observe(std::string_view id) {
  if (!valid_queue_id(id)) return;
  uint64_t v = id_value(id);
  uint64_t last = last_.load(std::memory_order_relaxed);
  while (last < v && !last_.compare_exchange_weak(last, v, std::memory_order_relaxed)) {
  }
}

uint64_t queue_id_value(std::string_view hex16) {
  uint64_t v = 0;
  for (char c : hex16) v = v << 4 | uint64_t(hex_value(c));
  return v;
}

bool valid_queue_id(std::string_view id) {
  return id.size() == 16 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
         });
}

int64_t queue_id_micros(std::string_view id) {
  if (!valid_queue_id(id)) return 0;
  return int64_t(id_value(id) >> 12);
}

}  // namespace sluice::queue
