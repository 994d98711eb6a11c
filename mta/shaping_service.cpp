// shaping_service.cpp — see shaping_service.hpp.
#include "mta/shaping_service.hpp"

#include "conf/log.hpp"
#include "mta/uv/guard.hpp"
#include "mta/uv_util.hpp"

namespace sluice::mta {

ShapingService::ShapingService(uv_loop_t* loop) : loop_(loop) {}
ShapingService::~ShapingService() = default;

std::expected<std::unique_ptr<ShapingService>, std::string> ShapingService::create(uv_loop_t* loop,
                                                                                   const conf::Config& c) {
  std::unique_ptr<ShapingService> s(new ShapingService(loop));
  s->local_ = std::make_unique<shaping::LocalStore>([] { return wall_clock_us(); });
  s->store_ = s->local_.get();
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
  done();
}

}  // namespace sluice::mta
