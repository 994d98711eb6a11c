// shaping_service.hpp — the daemon's shaping state (docs/shaping.md): the
// Store — in process, or Redis with the in-process one as its fallback when
// [cluster] redis is set — and the Shaper on it. Delivery asks the Shaper;
// the SMTP server counts [limits]' per-login and per-client events in the
// Store.
//
// Made at start from [shaping] and [cluster]; a reload replaces the sites
// and rules (a changed [cluster] needs a restart, as listeners do). With a
// shared store, the automation other nodes set is pulled every second.
// Memory: the Redis store's handles close through close(); the sync timer
// is a uv::Handle freed in its close callback. Single-threaded, on the loop.
#pragma once

#include <uv.h>

#include <expected>
#include <functional>
#include <memory>
#include <string>

#include "conf/config.hpp"
#include "mta/uv/handle.hpp"
#include "shaping/local_store.hpp"
#include "shaping/shaper.hpp"

namespace sluice::shaping {
class RedisStore;
}

namespace sluice::mta {

class ShapingService {
 public:
  static std::expected<std::unique_ptr<ShapingService>, std::string> create(uv_loop_t* loop,
                                                                            const conf::Config& c);
  ~ShapingService();

  shaping::Shaper& shaper() { return *shaper_; }
  shaping::Store& store() { return *store_; }

  // A reload's sites and rules; `running` is the configuration in force.
  void reload(const conf::Config& fresh, const conf::Config& running);
  // Closes the shared store's connection and the timer; `done` once closed.
  void close(std::function<void()> done);

 private:
  explicit ShapingService(uv_loop_t* loop);
  static void on_sync(uv_timer_t* t);

  uv_loop_t* loop_;
  std::unique_ptr<shaping::LocalStore> local_;
  std::unique_ptr<shaping::RedisStore> redis_;  // when [cluster] redis is set
  shaping::Store* store_ = nullptr;              // redis_ or local_
  std::unique_ptr<shaping::Shaper> shaper_;
  uv::Handle<uv_timer_t> sync_;
};

}  // namespace sluice::mta
