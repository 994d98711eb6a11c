// queue_id.hpp — queue ids: unique, sortable by arrival, safe in file names.
//
// An id is 16 upper-case hex digits: the arrival time in microseconds since
// the Unix epoch shifted left by 12 bits, plus a 12-bit sequence. The
// generator is strictly increasing (also across threads and, as long as the
// clock does not jump back by more than the spool's newest id, across
// restarts: observe() every id found in the spool at start).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::queue {

class QueueIdGenerator {
 public:
  std::string next();
  // Ensure every later id sorts after `id` (called for ids loaded at start).
  void observe(std::string_view id);

 private:
  std::atomic<uint64_t> last_{0};
};

bool valid_queue_id(std::string_view id);
// The number 16 hex digits stand for (either case; segment file names are
// lower case). Ids sort as these numbers do. Expects 16 hex digits.
uint64_t queue_id_value(std::string_view hex16);
// The arrival time encoded in an id (microseconds since the epoch); 0 when
// the id is not valid.
int64_t queue_id_micros(std::string_view id);

}  // namespace sluice::queue
