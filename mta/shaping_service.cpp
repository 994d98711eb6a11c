// shaping_service.cpp — see shaping_service.hpp.
#include "mta/shaping_service.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <random>

#include "conf/log.hpp"
#include "conf/safe_file.hpp"
#include "mta/uv/guard.hpp"
#include "mta/uv_util.hpp"
#include "shaping/redis_store.hpp"

namespace sluice::mta {

ShapingService::ShapingService(uv_loop_t* loop) : loop_(loop) {}
ShapingService::~ShapingService() = default;


std::expected<std::unique_ptr<ShapingService>, std::string> ShapingService::create(uv_loop_t* loop,
                                                                                   const conf::Config& c) {
  std::unique_ptr<ShapingService> s(new ShapingService(loop));
  s->local_ = std::make_unique<shaping::LocalStore>([] { return wall_clock_us(); });
  s->store_ = s->local_.get();
  if (!c.cluster.redis.empty()) {
    shaping::RedisOptions o;
    o.url = c.cluster.redis;
    if (!c.cluster.redis_password_file.empty()) {
      auto pw = safe::read_secret_line(c.cluster.redis_password_file, "cluster.redis_password_file");
      if (!pw) return std::unexpected(pw.error());
      o.password = std::move(*pw);
    }
    // Unique per process: a node that restarts is a new node (its old
    // leases expire on their own).
    o.node_id = fmt::format("{}:{}:{:08x}", c.hostname, getpid(), std::random_device{}());
    auto redis = shaping::RedisStore::create(loop, std::move(o), *s->local_, [] { return wall_clock_us(); });
    if (!redis) return std::unexpected("cluster.redis: " + redis.error());
    s->redis_ = std::move(*redis);
    s->store_ = s->redis_.get();
    // Other nodes' automation, pulled every second.
    if (s->sync_.init(loop, uv_timer_init) < 0) std::abort();
    s->sync_->data = s.get();
    uv_timer_start(s->sync_.get(), on_sync, 1000, 1000);
  }
  s->shaper_ = std::make_unique<shaping::Shaper>(*s->store_, c.shaping.settings);
  log::info("shaping: {} sites configured, {} rules, providers={}, store={}", c.shaping.settings.sites.size(),
            c.shaping.settings.rules.size(), c.shaping.providers.empty() ? "none" : c.shaping.providers,
            s->store_->describe());
  return s;
}

void ShapingService::reload(const conf::Config& fresh, const conf::Config& running) {
  shaper_->set_settings(fresh.shaping.settings);
  if (fresh.cluster.redis != running.cluster.redis ||
      fresh.cluster.redis_password_file != running.cluster.redis_password_file)
    log::warning("reload: [cluster] changed and needs a restart; the running store ({}) stays until then",
                 store_->describe());
}

void ShapingService::on_sync(uv_timer_t* t) {
  uv::guard("shaping sync", [t] {
    auto* s = static_cast<ShapingService*>(t->data);
    s->shaper_->sync(wall_clock_us());
  });
}

void ShapingService::close(std::function<void()> done) {
  sync_.close();
  if (redis_) {
    redis_->close(std::move(done));  // what is pending is answered from the local store
    return;
  }
  done();
}

}  // namespace sluice::mta
