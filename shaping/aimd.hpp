// aimd.hpp — adaptive concurrency for one site (additive increase,
// multiplicative decrease, as Postfix's qmgr feedback; docs/shaping.md).
// Pure: the Shaper feeds it each session's outcome.
//
// current() starts at min(kInitialConcurrency, max) — at max when not
// adaptive. success() raises it by one after `current` successes in a row
// (a full window of good sessions), never beyond max; congestion() (a 421,
// a timeout, a TLS failure) halves it, never below 1, and starts the run
// again. set_max() is a reload: the new ceiling, current clamped to it (or
// equal to it when not adaptive). A max of 0 is taken as 1.
#pragma once

#include <algorithm>
#include <cstdint>

namespace sluice::shaping {

inline constexpr uint32_t kInitialConcurrency = 2;

class Aimd {
 public:
  Aimd(uint32_t max, bool adaptive)
      : max_(std::max<uint32_t>(max, 1)),
        adaptive_(adaptive),
        current_(adaptive ? std::min(kInitialConcurrency, max_) : max_) {}

  uint32_t current() const { return current_; }
  uint32_t max() const { return max_; }
  bool adaptive() const { return adaptive_; }

  void success() {
    if (!adaptive_) return;
    if (++run_ < current_) return;
    run_ = 0;
    if (current_ < max_) ++current_;
  }

  void congestion() {
    if (!adaptive_) return;
    current_ = std::max<uint32_t>(current_ / 2, 1);
    run_ = 0;
  }

  void set_max(uint32_t max) {
    max_ = std::max<uint32_t>(max, 1);
    current_ = adaptive_ ? std::min(current_, max_) : max_;
  }

 private:
  uint32_t max_;
  bool adaptive_;
  uint32_t current_;
  uint32_t run_ = 0;  // successes in a row since the last change
};

}  // namespace sluice::shaping
