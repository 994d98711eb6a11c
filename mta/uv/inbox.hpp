// inbox.hpp — Inbox<T>: items posted from any thread, handled on one loop.
//
// A mutex, a vector and a uv_async_t (owned by a uv::Handle): post() from any
// thread appends and wakes the loop; the loop's async callback takes the
// whole batch and hands each item to `deliver`, in the order they were
// posted (across threads: the order in which post() took the lock). The
// intake (mta/intake.hpp) takes the spool writer's commit answers through one.
//
// close() (loop thread) refuses further posts, delivers what is still
// waiting, and closes the async handle (its memory goes in its close
// callback). post() after close() drops the item and returns false; it
// never touches the closed handle. The destructor closes. Whoever posts must
// be done before the Inbox is destroyed (the mutex lives in it); `deliver`
// must not destroy the Inbox.
//
// Nothing here assumes one loop: the Inbox is on the loop given to it.
#pragma once

#include <uv.h>

#include <cstdlib>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "mta/uv/guard.hpp"
#include "mta/uv/handle.hpp"

namespace sluice::uv {

template <class T>
class Inbox {
 public:
  Inbox(uv_loop_t* loop, std::function<void(T)> deliver) : deliver_(std::move(deliver)) {
    if (async_.init(loop, uv_async_init, &Inbox::on_async) < 0) std::abort();
    async_->data = this;
  }
  ~Inbox() { close(); }
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  // Any thread. False (item dropped) once close() has run.
  bool post(T item) {
    std::lock_guard lock(mu_);
    if (closed_) return false;
    items_.push_back(std::move(item));
    uv_async_send(async_.get());  // under the lock: close() cannot pass us
    return true;
  }

  // Loop thread: delivers what has been posted so far.
  void drain() {
    std::vector<T> batch;
    {
      std::lock_guard lock(mu_);
      batch.swap(items_);
    }
    for (auto& item : batch) deliver_(std::move(item));
  }

  // Loop thread; see above. A second call does nothing.
  void close() {
    if (!async_) return;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    drain();
    async_.close();
  }

 private:
  static void on_async(uv_async_t* a) {
    guard("inbox", [a] { static_cast<Inbox*>(a->data)->drain(); });
  }

  std::function<void(T)> deliver_;
  Handle<uv_async_t> async_;
  std::mutex mu_;
  std::vector<T> items_;  // posted, not yet taken (under mu_)
  bool closed_ = false;   // under mu_
};

}  // namespace sluice::uv
