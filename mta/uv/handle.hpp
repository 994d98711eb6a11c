// handle.hpp — Handle<T>: the one owner of a libuv handle.
//
// A Handle owns one heap-allocated uv handle (uv_timer_t, uv_tcp_t,
// uv_pipe_t, uv_async_t, uv_signal_t, uv_poll_t, ...). It is move-only.
// The rule it exists for (libuv: "handles are not movable; pointers must
// remain valid" until the close callback): the handle's memory is freed
// only in its close callback, never before.
//
//   init(loop, uv_timer_init)              allocates and initialises
//   init(loop, uv_pipe_init, 0)            extra arguments are passed on
//   init(loop, uv_async_init, &on_async)
//   get() / operator->                     the handle (set ->data yourself)
//   close()                                starts uv_close; the Handle is
//                                          empty at once, the memory is freed
//                                          in the close callback
//   close(closed, ctx)                     the same, and closed(ctx) runs
//                                          after the memory is freed (an
//                                          owner counting its open handles)
//   ~Handle()                              close() when still open
//
// So whoever owns a Handle may be destroyed at any time: no callback of the
// handle runs after uv_close (libuv's rule) except the close callback, which
// touches only the Handle's own allocation. The loop must run once more for
// that memory to be freed, and must not be closed before. An owner that is
// itself called back by its handles (a connection) must wait for their
// close callbacks before it is freed: count them with close(closed, ctx)
// (uv/stream.hpp does that).
//
// Nothing here is tied to one loop: each Handle is on the loop given to
// init(). Loop thread only (uv_async_send() on get() is the exception libuv
// makes).
#pragma once

#include <uv.h>

#include <cstdlib>
#include <type_traits>
#include <utility>

#include "mta/uv/guard.hpp"

namespace sluice::uv {

// Called once the handle's memory is freed.
using Closed = void (*)(void* ctx);

template <class T>
class Handle {
 public:
  Handle() = default;
  ~Handle() { close(); }
  Handle(Handle&& o) noexcept : box_(std::exchange(o.box_, nullptr)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      close();
      box_ = std::exchange(o.box_, nullptr);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  // Allocates the handle and runs init_fn(loop, handle, args...). Returns
  // init_fn's result; on an error nothing is kept. Closes a handle still held.
  template <class... P, class... A>
  int init(uv_loop_t* loop, int (*init_fn)(uv_loop_t*, T*, P...), A&&... args) {
    close();
    auto* box = new Box{};
    const int rc = init_fn(loop, &box->handle, std::forward<A>(args)...);
    if (rc < 0) {
      delete box;  // libuv registers a handle only when its init succeeds
      return rc;
    }
    box_ = box;
    return 0;
  }

  T* get() const { return box_ ? &box_->handle : nullptr; }
  T* operator->() const { return &box_->handle; }
  explicit operator bool() const { return box_ != nullptr; }
  uv_handle_t* handle() const { return reinterpret_cast<uv_handle_t*>(get()); }
  uv_stream_t* stream() const
    requires std::is_same_v<T, uv_tcp_t> || std::is_same_v<T, uv_pipe_t> || std::is_same_v<T, uv_tty_t>
  {
    return reinterpret_cast<uv_stream_t*>(get());
  }

  // Starts closing (see above); a no-op when empty.
  void close(Closed closed = nullptr, void* ctx = nullptr) {
    Box* box = std::exchange(box_, nullptr);
    if (!box) return;
    box->closed = closed;
    box->ctx = ctx;
    uv_close(reinterpret_cast<uv_handle_t*>(&box->handle), &Handle::on_close);
  }

 private:
  // The handle comes first: a uv_handle_t* to it is a pointer to the Box.
  struct Box {
    T handle;
    Closed closed = nullptr;
    void* ctx = nullptr;
  };
  static_assert(std::is_standard_layout_v<Box>);

  static void on_close(uv_handle_t* h) {
    auto* box = reinterpret_cast<Box*>(h);
    const Closed closed = box->closed;
    void* ctx = box->ctx;
    delete box;
    if (closed) guard("handle close callback", [&] { closed(ctx); });
  }

  Box* box_ = nullptr;
};

}  // namespace sluice::uv
