// shaping_service.cpp — see shaping_service.hpp.
#include "mta/shaping_service.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

#include "conf/log.hpp"
#include "mta/uv/guard.hpp"
#include "mta/uv_util.hpp"
#include "shaping/redis_store.hpp"

namespace sluice::mta {

ShapingService::ShapingService(uv_loop_t* loop) : loop_(loop) {}
ShapingService::~ShapingService() = default;

namespace {

// The first line of [cluster] redis_password_file, without surrounding blanks.
std::expected<std::string, std::string> read_password(const std::string& path) {
  errno = 0;
  std::ifstream f(path);
  if (!f)
    return std::unexpected(fmt::format("cluster.redis_password_file: cannot read {}: {}", path,
                                       std::strerror(errno != 0 ? errno : EIO)));
  std::string line;
  std::getline(f, line);
  const size_t b = line.find_first_not_of(" \t\r");
  const size_t e = line.find_last_not_of(" \t\r");
  std::string password = b == std::string::npos ? std::string() : line.substr(b, e - b + 1);
  std::fill(line.begin(), line.end(), '\0');
  if (password.empty()) return std::unexpected(fmt::format("cluster.redis_password_file: {} is empty", path));
  return password;
}

}  // namespace

std::expected<std::unique_ptr<ShapingService>, std::string> ShapingService::create(uv_loop_t* loop,
                                                                                   const conf::Config& c) {
  std::unique_ptr<ShapingService> s(new ShapingService(loop));
  s->local_ = std::make_unique<shaping::LocalStore>([] { return wall_clock_us(); });
  s->store_ = s->local_.get();
  if (!c.cluster.redis.empty()) {
    shaping::RedisOptions o;
    o.url = c.cluster.redis;
    if (!c.cluster.redis_password_file.empty()) {
      auto pw = read_password(c.cluster.redis_password_file);
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
