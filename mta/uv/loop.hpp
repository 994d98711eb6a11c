// loop.hpp — Loop: owns one uv_loop_t (one per thread that runs a loop).
//
// Declare it before everything that holds handles on it: those are
// destroyed first, and a uv::Handle destroyed while open only starts its
// close, so the loop must run once more for the memory to be freed.
// close() (and the destructor) does that: it runs the loop without waiting
// until nothing is left (bounded, so a handle someone forgot to close cannot
// hang the exit), then closes it. Nothing here is global: a program may run
// several Loops, each on its own thread.
#pragma once

#include <uv.h>

#include <cstdlib>

namespace sluice::uv {

class Loop {
 public:
  Loop() {
    if (uv_loop_init(&loop_) != 0) std::abort();  // out of descriptors at start-up
  }
  ~Loop() { close(); }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  uv_loop_t* get() { return &loop_; }

  // Runs the close callbacks still due, then uv_loop_close(). Returns its
  // result: UV_EBUSY when a handle or request is still open (the loop is
  // left as it is; close() may be tried again). After a success, 0.
  int close() {
    if (closed_) return 0;
    for (int i = 0; i < kMaxRounds && uv_run(&loop_, UV_RUN_NOWAIT) != 0; ++i) {
    }
    const int rc = uv_loop_close(&loop_);
    closed_ = rc == 0;
    return rc;
  }

 private:
  static constexpr int kMaxRounds = 64;  // close callbacks that close more handles
  uv_loop_t loop_;
  bool closed_ = false;
};

}  // namespace sluice::uv
