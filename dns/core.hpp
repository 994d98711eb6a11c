// core.hpp — internal to dns/: the Core behind a Resolver, shared by
// resolver.cpp (the Core itself: c-ares on the loop, the cache, delivering
// results, closing) and lookups.cpp (what each resolve_*() asks and how the
// answers combine). Nothing outside dns/ includes it.
//
// A lookup is: add_request(cb) gives the caller's id; one or more query()
// calls (each answered from the cache, a query in flight or a new packet);
// then finish(id, result) exactly once. finish() only queues the result;
// the idle handle delivers it later, so a caller's callback never runs
// inside c-ares or inside resolve_*(). To add a record type: its QueryType
// and parser in answer.*, its result in result.hpp and in Core::Result, and
// its resolve_*() in lookups.cpp (single_query() does the usual mapping).
#pragma once

#include <ares.h>
#include <uv.h>

#include <deque>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "dns/answer.hpp"
#include "dns/cache.hpp"
#include "dns/resolver.hpp"
#include "mta/uv/handle.hpp"

namespace sluice::dns::detail {

inline constexpr const char* kCancelled = "cancelled";

// A broken invariant (resolve_*() after close finished): abort loudly.
[[noreturn]] void die(const char* what);

class Core {
 public:
  using Waiter = std::function<void(const Answer&)>;
  // Every kind of result; a new lookup type adds its result here.
  using Result = std::variant<MxResult, AddrResult, TxtResult, PtrResult, TlsaResult>;

  Core(uv_loop_t* loop, Options options)
      : loop_(loop), options_(std::move(options)), cache_(options_.cache_max) {}

  std::optional<std::string> init();
  void attach(Resolver* owner) { owner_ = owner; }
  void detach();

  // A request whose callback takes R (one of Result's types). Its
  // cancelled result (closing) is made now: Status::temporary, "cancelled".
  template <class R>
  Resolver::RequestId add_request(std::function<void(R)> cb) {
    R cancelled;
    cancelled.status = Status::temporary;
    cancelled.reason = kCancelled;
    return add(Pending{[cb = std::move(cb)](Result&& r) {
                         if (cb) cb(std::get<R>(std::move(r)));
                       },
                       Result(std::move(cancelled))});
  }
  void finish(Resolver::RequestId id, Result result);
  void cancel(Resolver::RequestId id) { pending_.erase(id); }
  void close(std::function<void()> done);

  // Answers one (name, type): from the cache, by joining a query in flight,
  // or by sending one. The waiter may run before query() returns.
  void query(const std::string& name, QueryType type, Waiter waiter);

  uint32_t random(uint32_t bound) {
    if (bound <= 1) return 0;
    if (options_.random) return options_.random(bound);
    return std::uniform_int_distribution<uint32_t>(0, bound - 1)(rng_);
  }
  const Options& options() const { return options_; }
  Resolver::Stats stats() const { return {queries_sent_, cache_hits_, cache_.size()}; }

 private:
  struct Pending {
    std::function<void(Result&&)> deliver;  // calls the caller's callback
    Result cancelled;                       // what it gets when cancelled by close()
    bool finished = false;                  // its result is in completions_
  };
  struct Inflight {
    Core* core;
    std::string key;
    QueryType type;
    std::vector<Waiter> waiters;
  };

  Resolver::RequestId add(Pending p);
  std::optional<std::string> make_channel(int flags, ares_addr_port_node* servers);
  AnswerCache::Time now() const {
    return options_.clock ? options_.clock() : std::chrono::milliseconds(uv_now(loop_));
  }

  // c-ares and libuv callbacks.
  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  static void on_poll(uv_poll_t* handle, int status, int events);
  static void on_timer(uv_timer_t* handle);
  static void on_idle(uv_idle_t* handle);
  static void on_handle_closed(void* core);  // the timer or a socket's poll
  static void on_idle_closed(void* core);

  void sock_state(ares_socket_t fd, bool readable, bool writable);
  void answered(Inflight* raw, int status, std::span<const unsigned char> reply);
  void send_with_ad(const std::string& name, QueryType type, Inflight* q);
  void process(ares_socket_t read_fd, ares_socket_t write_fd);
  void rearm_timer();
  void schedule_delivery();
  void deliver();
  void handle_closed();
  void finalize();

  uv_loop_t* loop_;
  Options options_;
  Resolver* owner_ = nullptr;
  ares_channel channel_ = nullptr;
  uv::Handle<uv_timer_t> timer_;
  uv::Handle<uv_idle_t> idle_;  // empty once closing: it closes last
  int open_handles_ = 0;  // the timer and socket watches, not the idle handle
  int in_ares_ = 0;       // depth of calls into c-ares on the stack
  bool closing_ = false;
  bool detached_ = false;
  std::unordered_map<ares_socket_t, uv::Handle<uv_poll_t>> watches_;  // data: this
  std::unordered_map<std::string, Inflight*> inflight_;  // owned by c-ares until on_answer
  AnswerCache cache_;
  std::mt19937 rng_{std::random_device{}()};
  Resolver::RequestId next_id_ = 1;
  std::unordered_map<Resolver::RequestId, Pending> pending_;
  std::deque<std::pair<Resolver::RequestId, Result>> completions_;
  std::vector<std::function<void()>> dones_;
  uint64_t queries_sent_ = 0;
  uint64_t cache_hits_ = 0;
};

}  // namespace sluice::dns::detail
