// redis_store.hpp — the Store shared by every node naming the same Redis
// ([cluster] redis; SPEC "Several nodes", docs/shaping.md "Several nodes
// (Redis)").
//
// Everything runs on the loop through hiredis's async API and its libuv
// adapter: the connect, AUTH, and each call (one EVALSHA, HSET or HGETALL).
// Rates are a GCRA in a Lua script with the same arithmetic as
// shaping/rate.cpp's Gcra, on Redis's clock (TIME), so every node counts
// against one TAT. Leases are a sorted set per key (member "<node>:<id>",
// score = expiry on Redis's clock), renewed by their node every
// lease_ttl/3, so a node that dies loses them after lease_ttl. Overrides
// are one hash (site -> JSON). Each node refreshes its entry in a heartbeat
// sorted set and remembers how many nodes it saw last (N).
//
// Redis away (connect refused, connection lost, a command not answered in
// 500 ms, AUTH refused): every pending callback is answered once from
// `fallback` and every later call goes there with the limits divided by N
// (shaping::share for rates and bursts, limit/N but at least 1 for
// leases), until a background reconnect (every second) succeeds. Both
// transitions are logged once. Lease ids carry their issuer (the top bit
// set: Redis), so release() goes to the store that granted the lease.
//
// hiredis writes with write(2): the process must ignore SIGPIPE (the
// daemon does). Lifetime: create(), use on the loop's thread, then close(done) and
// destroy the store only once `done` ran (it frees hiredis and the timer).
#pragma once

#include <uv.h>

#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shaping/redis_codec.hpp"
#include "shaping/store.hpp"

struct redisAsyncContext;
struct redisReply;

namespace sluice::shaping {

struct RedisOptions {
  std::string url;       // "redis://HOST:PORT" or "unix:/path" (parse_redis_url)
  std::string password;  // from redis_password_file; empty: no AUTH
  std::string node_id;   // this node's name in the leases and the heartbeat set
  int64_t lease_ttl_us = 15'000'000;
  int64_t heartbeat_us = 2'000'000;    // a node counts for 3 heartbeats
  int64_t command_timeout_ms = 500;    // no answer by then: Redis is away
  int64_t reconnect_ms = 1000;
};

class RedisStore final : public Store {
 public:
  // Fails only on a bad URL or node id: an unreachable Redis is the
  // fallback state, not an error. `fallback` must outlive the store;
  // `clock` gives epoch µs (for the overrides' expiry).
  static std::expected<std::unique_ptr<RedisStore>, std::string> create(
      uv_loop_t* loop, RedisOptions options, Store& fallback, std::function<int64_t()> clock);
  ~RedisStore() override;

  void take(const std::string& key, Rate rate, uint32_t burst,
            std::function<void(Admission)> done) override;
  void peek(const std::string& key, Rate rate, uint32_t burst,
            std::function<void(Admission)> done) override;
  void acquire(const std::string& key, uint32_t limit,
               std::function<void(std::optional<uint64_t> lease)> done) override;
  void release(const std::string& key, uint64_t lease) override;
  void put_override(const std::string& site, const Override& o) override;
  void overrides(std::function<void(std::map<std::string, Override>)> done) override;
  std::string describe() const override;

  // Answers what is pending from the fallback, frees hiredis and the timer;
  // `done` runs on the loop once nothing refers to the store any more.
  void close(std::function<void()> done);

  bool reachable() const { return state_ == State::up; }
  uint32_t nodes_seen() const { return nodes_seen_; }

 private:
  enum class State { connecting, up, down, closed };
  struct Pending {
    std::vector<std::string> argv;
    bool script = false;                         // argv is EVALSHA sha ...: EVAL again on NOSCRIPT
    int64_t sent_ms = 0;
    std::function<void(redisReply*)> answer;     // a reply came (never a null one)
    std::function<void()> fallback;              // Redis is away: answer otherwise (may be empty)
  };

  RedisStore(uv_loop_t* loop, RedisOptions options, RedisEndpoint endpoint, Store& fallback,
             std::function<int64_t()> clock);

  void connect();
  void send(std::vector<std::string> argv, bool script, std::function<void(redisReply*)> answer,
            std::function<void()> fallback);
  void eval(int which, std::vector<std::string> keys, std::vector<std::string> args,
            std::function<void(redisReply*)> answer, std::function<void()> fallback);
  void lost(const std::string& reason);
  void heartbeat();
  void renew();
  void tick();

  void gcra(const std::string& key, Rate rate, uint32_t burst, bool count,
            std::function<void(Admission)> done);
  void fallback_take(const std::string& key, Rate rate, uint32_t burst, bool count,
                     std::function<void(Admission)> done);
  void fallback_acquire(const std::string& key, uint32_t limit,
                        std::function<void(std::optional<uint64_t>)> done);

  static void on_connect(const redisAsyncContext* ac, int status);
  static void on_disconnect(const redisAsyncContext* ac, int status);
  static void on_reply(redisAsyncContext* ac, void* reply, void* privdata);

  uv_loop_t* loop_;
  RedisOptions options_;
  RedisEndpoint endpoint_;
  Store& fallback_;
  std::function<int64_t()> clock_;

  State state_ = State::connecting;
  redisAsyncContext* ctx_ = nullptr;
  int in_callback_ = 0;   // 1: in a reply callback, 2: in connect/disconnect
  std::map<uint64_t, Pending> pending_;
  uint64_t next_request_ = 1;
  std::vector<std::string> sha_;   // each script's SHA1 once SCRIPT LOAD answered ("" before)
  uint32_t nodes_seen_ = 1;
  std::string last_error_;

  uint64_t next_lease_ = 1;
  std::map<uint64_t, std::string> held_;   // Redis leases this node holds: id -> key

  uv_timer_t* timer_ = nullptr;   // freed in its close callback
  int64_t next_heartbeat_ms_ = 0;
  int64_t next_renew_ms_ = 0;
  int64_t next_reconnect_ms_ = 0;
  std::function<void()> close_done_;
};

}  // namespace sluice::shaping
