// test_loop.hpp — a libuv loop for the uv/ unit tests: closed at the end of
// the test, which fails if a handle is still open (nothing may be left).
#pragma once

#include <catch2/catch.hpp>
#include <uv.h>

namespace sluice::uv::testing {

struct TestLoop {
  uv_loop_t loop;
  TestLoop() { REQUIRE(uv_loop_init(&loop) == 0); }
  ~TestLoop() {
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }
  uv_loop_t* get() { return &loop; }
  void run() { uv_run(&loop, UV_RUN_DEFAULT); }
  void once() { uv_run(&loop, UV_RUN_NOWAIT); }
};

}  // namespace sluice::uv::testing
