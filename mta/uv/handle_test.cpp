// handle_test.cpp — uv::Handle and uv::Inbox on a real libuv loop. The
// sanitizer build (SLUICE_SANITIZE) turns a free before the close callback
// into a use-after-free here, and a handle never freed into a leak.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "mta/uv/handle.hpp"
#include "mta/uv/inbox.hpp"
#include "mta/uv/loop.hpp"
#include "mta/uv/test_loop.hpp"

using namespace sluice::uv;
using sluice::uv::testing::TestLoop;

namespace {

struct Counter {
  int closed = 0;
  static void on_closed(void* ctx) { ++static_cast<Counter*>(ctx)->closed; }
};

}  // namespace

TEST_CASE("uv::Handle frees the handle only in its close callback", "[uv][handle]") {
  TestLoop loop;
  Counter counter;
  uv_timer_t* raw = nullptr;
  {
    Handle<uv_timer_t> t;
    REQUIRE(t.init(loop.get(), uv_timer_init) == 0);
    raw = t.get();
    uv_timer_start(t.get(), [](uv_timer_t*) { FAIL("a closed timer fired"); }, 0, 0);
    t.close(&Counter::on_closed, &counter);
    CHECK_FALSE(t);
    CHECK(t.get() == nullptr);
  }
  // Closed, not yet freed: libuv still holds the memory (ASan would report
  // reading freed memory here) and knows it is closing.
  CHECK(uv_is_closing(reinterpret_cast<uv_handle_t*>(raw)) != 0);
  CHECK(counter.closed == 0);
  loop.run();  // the close callback frees it, then reports
  CHECK(counter.closed == 1);
}

TEST_CASE("uv::Handle's destructor closes a handle still open", "[uv][handle]") {
  TestLoop loop;
  uv_handle_t* raw = nullptr;
  {
    Handle<uv_timer_t> t;
    REQUIRE(t.init(loop.get(), uv_timer_init) == 0);
    uv_timer_start(t.get(), [](uv_timer_t*) { FAIL("a closed timer fired"); }, 0, 0);
    raw = t.handle();
  }
  CHECK(uv_is_closing(raw) != 0);
  loop.run();  // returns: nothing is left open (the TestLoop checks uv_loop_close)
}

TEST_CASE("uv::Handle moves; move-assigning closes the one it held", "[uv][handle]") {
  TestLoop loop;
  Handle<uv_timer_t> a, b;
  REQUIRE(a.init(loop.get(), uv_timer_init) == 0);
  REQUIRE(b.init(loop.get(), uv_timer_init) == 0);
  uv_timer_t* first = a.get();
  uv_handle_t* second = b.handle();
  b = std::move(a);
  CHECK_FALSE(a);
  CHECK(b.get() == first);
  CHECK(uv_is_closing(second) != 0);
  Handle<uv_timer_t> c(std::move(b));
  CHECK(c.get() == first);
  CHECK(uv_is_closing(c.handle()) == 0);
  c.close();
  loop.run();
}

TEST_CASE("uv::Handle's init with extra arguments, and a failed init keeps nothing", "[uv][handle]") {
  TestLoop loop;
  Handle<uv_pipe_t> p;
  REQUIRE(p.init(loop.get(), uv_pipe_init, 0) == 0);
  CHECK(p.stream() != nullptr);
  Handle<uv_poll_t> poll;
  CHECK(poll.init(loop.get(), uv_poll_init, -1) < 0);  // not a descriptor
  CHECK_FALSE(poll);
}

TEST_CASE("uv::Inbox delivers posts from other threads in order, once each", "[uv][inbox]") {
  TestLoop loop;
  constexpr int kThreads = 4, kEach = 5000;
  std::vector<int> next(kThreads, 0);
  int got = 0;
  bool in_order = true;
  Inbox<std::pair<int, int>> inbox(loop.get(), [&](std::pair<int, int> item) {
    auto [thread, seq] = item;
    if (seq != next[size_t(thread)]) in_order = false;
    next[size_t(thread)] = seq + 1;
    if (++got == kThreads * kEach) uv_stop(&loop.loop);
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&inbox, t] {
      for (int i = 0; i < kEach; ++i) inbox.post({t, i});
    });
  uv_run(&loop.loop, UV_RUN_DEFAULT);  // the async handle keeps it running until all arrived
  for (auto& th : threads) th.join();
  CHECK(got == kThreads * kEach);
  CHECK(in_order);
  inbox.close();
}

TEST_CASE("uv::Inbox: close() delivers what waits, later posts are refused", "[uv][inbox]") {
  TestLoop loop;
  std::vector<std::string> got;
  auto inbox = std::make_unique<Inbox<std::string>>(loop.get(), [&](std::string s) { got.push_back(s); });
  CHECK(inbox->post("a"));
  std::thread([&] { CHECK(inbox->post("b")); }).join();
  inbox->close();  // delivers a and b without running the loop
  CHECK(got == std::vector<std::string>{"a", "b"});
  std::atomic<bool> refused{false};
  std::thread([&] { refused = !inbox->post("c"); }).join();
  CHECK(refused);
  inbox->close();  // a second close does nothing
  inbox.reset();   // destroyed before the close callback ran: its memory goes then
  loop.run();
  CHECK(got.size() == 2);
}

TEST_CASE("uv::Inbox destroyed with items waiting delivers them first", "[uv][inbox]") {
  TestLoop loop;
  int got = 0;
  {
    Inbox<int> inbox(loop.get(), [&](int) { ++got; });
    inbox.post(1);
    inbox.post(2);
  }
  CHECK(got == 2);
}

TEST_CASE("uv::Loop runs the close callbacks of handles whose owners are gone, then closes", "[uv][loop]") {
  Counter counter;
  {
    Loop loop;
    {
      Handle<uv_timer_t> a;
      Handle<uv_async_t> b;  // an async keeps a loop alive until it is closed
      REQUIRE(a.init(loop.get(), uv_timer_init) == 0);
      REQUIRE(b.init(loop.get(), uv_async_init, [](uv_async_t*) {}) == 0);
      uv_timer_start(a.get(), [](uv_timer_t*) {}, 60'000, 0);
      a.close(&Counter::on_closed, &counter);
    }  // b closes here
    CHECK(counter.closed == 0);
    CHECK(loop.close() == 0);
    CHECK(counter.closed == 1);
    CHECK(loop.close() == 0);
  }
  {
    Loop loop;
    uv_timer_t forgotten;  // never closed: close() says so instead of hanging
    uv_timer_init(loop.get(), &forgotten);
    uv_timer_start(&forgotten, [](uv_timer_t*) {}, 60'000, 0);
    CHECK(loop.close() == UV_EBUSY);
    uv_close(reinterpret_cast<uv_handle_t*>(&forgotten), nullptr);
    CHECK(loop.close() == 0);  // a failed close can be tried again
  }
}
