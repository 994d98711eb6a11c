// redis_store.cpp — the Store shared through Redis (shaping/redis_store.hpp).
#include "shaping/redis_store.hpp"

#include <fmt/format.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>

#include "conf/log.hpp"

namespace sluice::shaping {

namespace {

constexpr uint64_t kRedisLease = uint64_t{1} << 63;  // lease ids Redis granted
const std::string kRatePrefix = "sluice:rate:";
const std::string kLeasePrefix = "sluice:lease:";
const std::string kOverrides = "sluice:overrides";
const std::string kNodes = "sluice:nodes";

// Redis's clock in µs; numbers written with %.0f (Lua 5.1's tostring would
// round a 16-digit number to 14 significant digits).
#define SLUICE_LUA_NOW                                         \
  "local t = redis.call('TIME')\n"                             \
  "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"    \
  "local function num(x) return string.format('%.0f', x) end\n"

// GCRA, as Gcra::peek/take in shaping/rate.cpp. KEYS[1] the TAT;
// ARGV: interval µs, burst, 1 to count the event (take) or 0 (peek).
// Returns {allowed 0/1, retry_at µs, remaining}.
const char* const kGcraScript = SLUICE_LUA_NOW
    "local interval = tonumber(ARGV[1])\n"
    "local burst = tonumber(ARGV[2])\n"
    "if burst < 1 then burst = 1 end\n"
    "local tolerance = (burst - 1) * interval\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
    "if tat < now then tat = now end\n"
    "local allow_at = tat - tolerance\n"
    "if allow_at > now then return {0, allow_at, 0} end\n"
    "local slack = now - (tat + interval - tolerance)\n"
    "local remaining = 0\n"
    "if slack >= 0 then remaining = math.min(math.floor(slack / interval) + 1, burst) end\n"
    "if ARGV[3] == '1' then\n"
    "  local next_tat = tat + interval\n"
    "  redis.call('SET', KEYS[1], num(next_tat), 'PX', math.max(1, math.ceil((next_tat - now) / 1000)))\n"
    "end\n"
    "return {1, 0, remaining}\n";

// A lease: KEYS[1] the sorted set; ARGV: limit, lease lifetime µs, member.
// Drops expired members, grants while fewer than limit. Returns 1 or 0.
const char* const kAcquireScript = SLUICE_LUA_NOW
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now))\n"
    "if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end\n"
    "local ttl = tonumber(ARGV[2])\n"
    "redis.call('ZADD', KEYS[1], num(now + ttl), ARGV[3])\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000) + 1000)\n"
    "return 1\n";

// Renews leases: KEYS[i] the set of member ARGV[i + 1]; ARGV[1] lifetime µs.
const char* const kRenewScript = SLUICE_LUA_NOW
    "local ttl = tonumber(ARGV[1])\n"
    "for i, key in ipairs(KEYS) do\n"
    "  redis.call('ZADD', key, num(now + ttl), ARGV[i + 1])\n"
    "  redis.call('PEXPIRE', key, math.ceil(ttl / 1000) + 1000)\n"
    "end\n"
    "return #KEYS\n";

// Heartbeat: KEYS[1] the nodes' set; ARGV: lifetime µs, node id. Returns
// how many nodes are alive, this one included.
const char* const kHeartbeatScript = SLUICE_LUA_NOW
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now))\n"
    "redis.call('ZADD', KEYS[1], num(now + tonumber(ARGV[1])), ARGV[2])\n"
    "return redis.call('ZCARD', KEYS[1])\n";

#undef SLUICE_LUA_NOW

enum Script { kGcra, kAcquire, kRenew, kHeartbeat, kScripts };
const char* const kScriptText[kScripts] = {kGcraScript, kAcquireScript, kRenewScript, kHeartbeatScript};

std::string reply_error(const redisReply* r) {
  if (r->type == REDIS_REPLY_ERROR) return std::string(r->str, r->len);
  return fmt::format("unexpected reply type {}", r->type);
}

bool is_integer(const redisReply* r) { return r->type == REDIS_REPLY_INTEGER; }

}  // namespace

std::expected<std::unique_ptr<RedisStore>, std::string> RedisStore::create(
    uv_loop_t* loop, RedisOptions options, Store& fallback, std::function<int64_t()> clock) {
  auto endpoint = parse_redis_url(options.url);
  if (!endpoint) return std::unexpected(endpoint.error());
  if (options.node_id.empty()) return std::unexpected("redis: the node id is empty");
  if (options.lease_ttl_us < 30'000) return std::unexpected("redis: the lease lifetime is under 30 ms");
  if (options.heartbeat_us < 10'000) return std::unexpected("redis: the heartbeat is under 10 ms");
  std::unique_ptr<RedisStore> s(
      new RedisStore(loop, std::move(options), std::move(*endpoint), fallback, std::move(clock)));
  s->timer_ = new uv_timer_t;
  if (int rc = uv_timer_init(loop, s->timer_); rc != 0) {
    delete s->timer_;
    s->timer_ = nullptr;
    s->state_ = State::closed;
    return std::unexpected(fmt::format("redis: timer: {}", uv_strerror(rc)));
  }
  s->timer_->data = s.get();
  const uint64_t tick_ms =
      std::clamp<int64_t>(s->options_.lease_ttl_us / 1000 / 10, 10, 100);
  uv_timer_start(s->timer_, [](uv_timer_t* t) { static_cast<RedisStore*>(t->data)->tick(); },
                 tick_ms, tick_ms);
  s->connect();
  return s;
}

RedisStore::RedisStore(uv_loop_t* loop, RedisOptions options, RedisEndpoint endpoint,
                       Store& fallback, std::function<int64_t()> clock)
    : loop_(loop),
      options_(std::move(options)),
      endpoint_(std::move(endpoint)),
      fallback_(fallback),
      clock_(std::move(clock)),
      sha_(kScripts) {}

// The owner should close() and wait for its callback; destroyed without
// it (an exception in a test), the store frees what it can and forgets
// the pending calls.
RedisStore::~RedisStore() {
  if (state_ == State::closed) return;
  if (ctx_ != nullptr) {
    ctx_->data = nullptr;
    if (in_callback_ == 0) redisAsyncFree(ctx_);
    ctx_ = nullptr;
  }
  if (timer_ != nullptr) {
    timer_->data = nullptr;
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
}

void RedisStore::connect() {
  const int64_t now = static_cast<int64_t>(uv_now(loop_));
  redisAsyncContext* ac = endpoint_.unix_socket()
                              ? redisAsyncConnectUnix(endpoint_.path.c_str())
                              : redisAsyncConnect(endpoint_.host.c_str(), endpoint_.port);
  if (ac == nullptr) {
    lost("out of memory");
    return;
  }
  if (ac->err) {
    const std::string why = ac->errstr;
    redisAsyncFree(ac);
    lost(why);
    return;
  }
  ac->data = this;
  if (redisLibuvAttach(ac, loop_) != REDIS_OK) {
    redisAsyncFree(ac);
    lost("cannot attach to the loop");
    return;
  }
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  ctx_ = ac;
  // hiredis writes these in order once the socket connects: AUTH first.
  if (!options_.password.empty()) {
    send({"AUTH", options_.password}, false,
         [this](redisReply* r) {
           if (r->type == REDIS_REPLY_ERROR) lost("AUTH refused: " + reply_error(r));
         },
         {});
  }
  for (int i = 0; i < kScripts; ++i) {
    send({"SCRIPT", "LOAD", kScriptText[i]}, false,
         [this, i](redisReply* r) {
           if (r->type == REDIS_REPLY_STRING) sha_[i].assign(r->str, r->len);
           else lost("SCRIPT LOAD: " + reply_error(r));
         },
         {});
  }
  next_renew_ms_ = now + options_.lease_ttl_us / 3000;
  heartbeat();
}

void RedisStore::send(std::vector<std::string> argv, bool script,
                      std::function<void(redisReply*)> answer, std::function<void()> fallback) {
  if (ctx_ == nullptr) {
    if (fallback) fallback();
    return;
  }
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  const uint64_t id = next_request_++;
  if (redisAsyncCommandArgv(ctx_, on_reply, reinterpret_cast<void*>(static_cast<uintptr_t>(id)),
                            static_cast<int>(args.size()), args.data(), lens.data()) != REDIS_OK) {
    if (fallback) fallback();
    return;
  }
  pending_.emplace(id, Pending{std::move(argv), script, static_cast<int64_t>(uv_now(loop_)),
                               std::move(answer), std::move(fallback)});
}

void RedisStore::eval(int which, std::vector<std::string> keys, std::vector<std::string> args,
                      std::function<void(redisReply*)> answer, std::function<void()> fallback) {
  std::vector<std::string> argv;
  argv.reserve(3 + keys.size() + args.size());
  if (sha_[which].empty()) {
    argv.push_back("EVAL");
    argv.push_back(kScriptText[which]);
  } else {
    argv.push_back("EVALSHA");
    argv.push_back(sha_[which]);
  }
  argv.push_back(std::to_string(keys.size()));
  for (auto& k : keys) argv.push_back(std::move(k));
  for (auto& a : args) argv.push_back(std::move(a));
  send(std::move(argv), true, std::move(answer), std::move(fallback));
}

void RedisStore::on_connect(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisStore*>(ac->data);
  if (self == nullptr || ac != self->ctx_ || status == REDIS_OK) return;
  const int saved = self->in_callback_;
  self->in_callback_ = 2;  // hiredis frees the context after this
  self->lost(ac->errstr[0] ? ac->errstr : "connect failed");
  self->in_callback_ = saved;
}

void RedisStore::on_disconnect(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisStore*>(ac->data);
  if (self == nullptr || ac != self->ctx_) return;
  const int saved = self->in_callback_;
  self->in_callback_ = 2;
  self->lost(status == REDIS_OK ? std::string("disconnected") : std::string(ac->errstr));
  self->in_callback_ = saved;
}

void RedisStore::on_reply(redisAsyncContext* ac, void* reply, void* privdata) {
  auto* self = static_cast<RedisStore*>(ac->data);
  if (self == nullptr || ac != self->ctx_) return;  // already answered from the fallback
  auto it = self->pending_.find(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(privdata)));
  if (it == self->pending_.end()) return;
  Pending p = std::move(it->second);
  self->pending_.erase(it);
  const int saved = self->in_callback_;
  self->in_callback_ = 1;
  auto* r = static_cast<redisReply*>(reply);
  if (r == nullptr) {
    // hiredis is tearing the connection down: it answers each command with
    // nothing, then frees the context itself.
    self->in_callback_ = 2;
    self->lost(ac->errstr[0] ? ac->errstr : "connection lost");
    if (p.fallback) p.fallback();
  } else if (p.script && r->type == REDIS_REPLY_ERROR && std::string_view(r->str, r->len).starts_with("NOSCRIPT")) {
    // The script cache was flushed (a restart, SCRIPT FLUSH): send the body.
    for (int i = 0; i < kScripts; ++i)
      if (p.argv[1] == self->sha_[i]) {
        self->sha_[i].clear();
        p.argv[0] = "EVAL";
        p.argv[1] = kScriptText[i];
      }
    self->send(std::move(p.argv), true, std::move(p.answer), std::move(p.fallback));
  } else {
    p.answer(r);
  }
  self->in_callback_ = saved;
}

void RedisStore::lost(const std::string& reason) {
  if (state_ == State::closed) return;
  redisAsyncContext* ac = ctx_;
  ctx_ = nullptr;
  const bool announce = state_ != State::down;
  state_ = State::down;
  last_error_ = log::sanitize(reason);
  next_reconnect_ms_ = static_cast<int64_t>(uv_now(loop_)) + options_.reconnect_ms;
  std::map<uint64_t, Pending> drained;
  drained.swap(pending_);
  if (ac != nullptr) {
    // Never free the context inside hiredis's own callbacks.
    if (in_callback_ == 0) redisAsyncFree(ac);
    else if (in_callback_ == 1) redisAsyncDisconnect(ac);
  }
  if (announce) {
    const bool auth = reason.starts_with("AUTH") || reason.find("NOAUTH") != std::string::npos ||
                      reason.find("WRONGPASS") != std::string::npos;
    const auto msg = fmt::format(
        "cluster: redis unreachable ({}: {}): this node falls back to its share (1/{})",
        endpoint_.str(), last_error_, nodes_seen_);
    if (auth) log::error("{}", msg);
    else log::warning("{}", msg);
  } else {
    log::debug("cluster: redis {} still unreachable: {}", endpoint_.str(), last_error_);
  }
  for (auto& [id, p] : drained)
    if (p.fallback) p.fallback();
}

void RedisStore::heartbeat() {
  next_heartbeat_ms_ = static_cast<int64_t>(uv_now(loop_)) + options_.heartbeat_us / 1000;
  eval(kHeartbeat, {kNodes}, {std::to_string(3 * options_.heartbeat_us), options_.node_id},
       [this](redisReply* r) {
         if (!is_integer(r)) {
           lost("heartbeat: " + reply_error(r));
           return;
         }
         nodes_seen_ = static_cast<uint32_t>(std::clamp<long long>(r->integer, 1, UINT32_MAX));
         if (state_ == State::up) return;
         const bool was_down = state_ == State::down;
         state_ = State::up;
         if (was_down) {
           log::info("cluster: redis {} reachable again: limits shared by {} nodes", endpoint_.str(),
                     nodes_seen_);
           renew();
         }
       },
       {});
}

void RedisStore::renew() {
  next_renew_ms_ = static_cast<int64_t>(uv_now(loop_)) + options_.lease_ttl_us / 3000;
  if (held_.empty()) return;
  std::vector<std::string> keys, args;
  args.push_back(std::to_string(options_.lease_ttl_us));
  for (const auto& [id, key] : held_) {
    keys.push_back(kLeasePrefix + key);
    args.push_back(fmt::format("{}:{}", options_.node_id, id));
  }
  eval(kRenew, std::move(keys), std::move(args), [](redisReply*) {}, {});
}

void RedisStore::tick() {
  if (state_ == State::closed) return;
  const int64_t now = static_cast<int64_t>(uv_now(loop_));
  if (!pending_.empty() && now - pending_.begin()->second.sent_ms >= options_.command_timeout_ms) {
    lost(fmt::format("no answer in {} ms", options_.command_timeout_ms));
    return;
  }
  if (state_ == State::down) {
    if (ctx_ == nullptr && now >= next_reconnect_ms_) connect();
    return;
  }
  if (state_ != State::up) return;
  if (now >= next_heartbeat_ms_) heartbeat();
  if (now >= next_renew_ms_) renew();
}

void RedisStore::fallback_take(const std::string& key, Rate rate, uint32_t burst, bool count,
                               std::function<void(Admission)> done) {
  const uint32_t n = std::max<uint32_t>(1, nodes_seen_);
  const Rate mine = share(rate, n);
  const uint32_t my_burst = burst > 1 ? std::max<uint32_t>(1, burst / n) : burst;
  if (count) fallback_.take(key, mine, my_burst, std::move(done));
  else fallback_.peek(key, mine, my_burst, std::move(done));
}

void RedisStore::fallback_acquire(const std::string& key, uint32_t limit,
                                  std::function<void(std::optional<uint64_t>)> done) {
  const uint32_t n = std::max<uint32_t>(1, nodes_seen_);
  const uint32_t mine = limit == 0 ? 0 : std::max<uint32_t>(1, limit / n);
  fallback_.acquire(key, mine, std::move(done));
}

void RedisStore::take(const std::string& key, Rate rate, uint32_t burst,
                      std::function<void(Admission)> done) {
  gcra(key, rate, burst, true, std::move(done));
}

void RedisStore::peek(const std::string& key, Rate rate, uint32_t burst,
                      std::function<void(Admission)> done) {
  gcra(key, rate, burst, false, std::move(done));
}

// take (count = true) and peek: the GCRA script, its last argument saying
// whether the event is counted.
void RedisStore::gcra(const std::string& key, Rate rate, uint32_t burst, bool count,
                      std::function<void(Admission)> done) {
  if (rate.unlimited()) {
    done(Admission{true, 0, UINT32_MAX});
    return;
  }
  if (state_ != State::up && state_ != State::connecting) {
    fallback_take(key, rate, burst, count, std::move(done));
    return;
  }
  auto on_answer = [this, key, rate, burst, count, done](redisReply* r) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !is_integer(r->element[0]) ||
        !is_integer(r->element[1]) || !is_integer(r->element[2])) {
      log::warning("cluster: redis rate {}: {}", log::sanitize(key), reply_error(r));
      fallback_take(key, rate, burst, count, done);
      return;
    }
    done(Admission{r->element[0]->integer == 1, r->element[1]->integer,
                   static_cast<uint32_t>(std::clamp<long long>(r->element[2]->integer, 0, UINT32_MAX))});
  };
  eval(kGcra, {kRatePrefix + key}, {std::to_string(rate.interval_us()), std::to_string(burst), count ? "1" : "0"},
       std::move(on_answer),
       [this, key, rate, burst, count, done] { fallback_take(key, rate, burst, count, done); });
}

void RedisStore::acquire(const std::string& key, uint32_t limit,
                         std::function<void(std::optional<uint64_t> lease)> done) {
  if (limit == 0) {
    done(std::nullopt);
    return;
  }
  if (state_ != State::up && state_ != State::connecting) {
    fallback_acquire(key, limit, std::move(done));
    return;
  }
  const uint64_t id = kRedisLease | next_lease_++;
  auto on_answer = [this, key, limit, id, done](redisReply* r) {
    if (!is_integer(r)) {
      log::warning("cluster: redis lease {}: {}", log::sanitize(key), reply_error(r));
      fallback_acquire(key, limit, done);
      return;
    }
    if (r->integer != 1) {
      done(std::nullopt);
      return;
    }
    held_.emplace(id, key);
    done(id);
  };
  eval(kAcquire, {kLeasePrefix + key},
       {std::to_string(limit), std::to_string(options_.lease_ttl_us), fmt::format("{}:{}", options_.node_id, id)},
       std::move(on_answer), [this, key, limit, done] { fallback_acquire(key, limit, done); });
}

void RedisStore::release(const std::string& key, uint64_t lease) {
  if ((lease & kRedisLease) == 0) {
    fallback_.release(key, lease);
    return;
  }
  if (held_.erase(lease) == 0) return;
  // While Redis is away the member stays until its lifetime ends.
  if (state_ == State::up || state_ == State::connecting)
    send({"ZREM", kLeasePrefix + key, fmt::format("{}:{}", options_.node_id, lease)}, false,
         [](redisReply*) {}, {});
}

void RedisStore::put_override(const std::string& site, const Override& o) {
  // The fallback keeps a copy, so the automation stays in force when Redis goes away.
  fallback_.put_override(site, o);
  if (state_ == State::up || state_ == State::connecting)
    send({"HSET", kOverrides, site, encode_override(o)}, false, [](redisReply*) {}, {});
}

void RedisStore::overrides(std::function<void(std::map<std::string, Override>)> done) {
  if (state_ != State::up && state_ != State::connecting) {
    fallback_.overrides(std::move(done));
    return;
  }
  auto on_answer = [this, done](redisReply* r) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
      log::warning("cluster: redis overrides: {}", reply_error(r));
      fallback_.overrides(done);
      return;
    }
    const int64_t now = clock_();
    std::map<std::string, Override> out;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
      const redisReply* k = r->element[i];
      const redisReply* v = r->element[i + 1];
      if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
      auto o = decode_override(std::string_view(v->str, v->len));
      if (!o) {
        log::warning("cluster: redis override for {} unreadable, ignored",
                     log::sanitize(std::string_view(k->str, k->len)));
        continue;
      }
      if (o->until_us <= now) continue;
      out.emplace(std::string(k->str, k->len), std::move(*o));
    }
    done(std::move(out));
  };
  send({"HGETALL", kOverrides}, false, std::move(on_answer), [this, done] { fallback_.overrides(done); });
}

std::string RedisStore::describe() const {
  switch (state_) {
    case State::connecting: return fmt::format("redis {} (connecting)", endpoint_.str());
    case State::up: return fmt::format("redis {} ({} nodes)", endpoint_.str(), nodes_seen_);
    case State::down:
      return fmt::format("redis {} (unreachable: {}; fallback to 1/{} share)", endpoint_.str(), last_error_,
                         nodes_seen_);
    case State::closed: break;
  }
  return fmt::format("redis {} (closed)", endpoint_.str());
}

void RedisStore::close(std::function<void()> done) {
  if (state_ == State::closed) return;
  state_ = State::closed;
  close_done_ = std::move(done);
  redisAsyncContext* ac = ctx_;
  ctx_ = nullptr;
  std::map<uint64_t, Pending> drained;
  drained.swap(pending_);
  if (ac != nullptr) {
    ac->data = nullptr;  // whatever hiredis still calls back finds no store
    if (in_callback_ == 0) redisAsyncFree(ac);
    else if (in_callback_ == 1) redisAsyncDisconnect(ac);
  }
  for (auto& [id, p] : drained)
    if (p.fallback) p.fallback();
  uv_timer_stop(timer_);
  // hiredis's libuv adapter closes its poll handle first: this runs after it.
  uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) {
    auto* self = static_cast<RedisStore*>(h->data);
    delete reinterpret_cast<uv_timer_t*>(h);
    self->timer_ = nullptr;
    auto cb = std::move(self->close_done_);
    if (cb) cb();
  });
}

}  // namespace sluice::shaping
