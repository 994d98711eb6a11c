// daemon.cpp — see daemon.hpp.
#include "mta/daemon.hpp"

#include <signal.h>
#include <uv.h>

#include <memory>

#include "conf/log.hpp"
#include "mta/server.hpp"
#include "queue/spool.hpp"

namespace sluice::mta {

namespace {

constexpr uint64_t kShutdownGraceMs = 30'000;

struct Daemon {
  uv_loop_t loop;
  std::shared_ptr<const conf::Config> config;
  std::unique_ptr<queue::Spool> spool;
  std::unique_ptr<Server> server;
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t grace;
  bool stopping = false;

  void stop(const char* why) {
    if (stopping) return;
    stopping = true;
    log::info("shutdown requested ({}): {} connections open", why, server->connections());
    uv_timer_start(&grace, [](uv_timer_t* t) {
      auto* d = static_cast<Daemon*>(t->data);
      log::warning("shutdown grace period over; closing {} connections", d->server->connections());
      d->server->abort_all();
    }, kShutdownGraceMs, 0);
    server->shutdown([this] { finish(); });
  }

  void finish() {
    // No connection is left; let the writer finish, then close our handles.
    auto st = spool->stats();
    log::info("spool: commits={} syncs={} bytes={}", st.commits, st.syncs, st.bytes);
    spool.reset();
    server->close_handles();
    uv_timer_stop(&grace);
    uv_close(reinterpret_cast<uv_handle_t*>(&grace), nullptr);
    for (uv_signal_t* s : {&sigterm, &sigint, &sighup})
      uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
  }

  void reload() {
    auto fresh = conf::load_file(config->source);
    if (!fresh) {
      for (const auto& p : fresh.error()) log::error("reload: {}", p.str(config->source));
      log::error("reload: configuration has errors; keeping the running one");
      return;
    }
    bool listeners_changed = fresh->listeners.size() != config->listeners.size();
    for (size_t i = 0; !listeners_changed && i < fresh->listeners.size(); ++i)
      listeners_changed = fresh->listeners[i].address != config->listeners[i].address ||
                          fresh->listeners[i].mode != config->listeners[i].mode;
    if (listeners_changed) log::warning("reload: listener changes need a restart");
    if (fresh->spool_dir != config->spool_dir) log::warning("reload: spool_dir changes need a restart");
    config = std::make_shared<const conf::Config>(std::move(*fresh));
    server->reload(config);
    log::info("reload: configuration re-read from {}", config->source);
  }
};

}  // namespace

int run_daemon(conf::Config cfg) {
  signal(SIGPIPE, SIG_IGN);
  auto d = std::make_unique<Daemon>();
  d->config = std::make_shared<const conf::Config>(std::move(cfg));
  const auto& c = *d->config;

  for (const auto& l : c.listeners)
    if (l.mode == conf::ListenerMode::submissions) {
      log::error("listener {}: mode submissions needs TLS, which this build does not have yet",
                 l.address);
      return 1;
    }

  auto spool = queue::Spool::open({.dir = c.spool_dir});
  if (!spool) {
    log::error("spool {}: {}", c.spool_dir, spool.error());
    return 1;
  }
  d->spool = std::move(*spool);
  for (const auto& w : d->spool->recovery_warnings()) log::warning("spool recovery: {}", w);
  log::info("spool {}: {} messages waiting", c.spool_dir, d->spool->message_count());

  uv_loop_init(&d->loop);
  d->server = std::make_unique<Server>(&d->loop, d->config, *d->spool);
  if (auto ok = d->server->listen(); !ok) {
    log::error("{}", ok.error());
    d->spool.reset();
    d->server->close_handles();
    d->server->abort_all();
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
    return 1;
  }

  uv_timer_init(&d->loop, &d->grace);
  d->grace.data = d.get();
  for (uv_signal_t* s : {&d->sigterm, &d->sigint, &d->sighup}) {
    uv_signal_init(&d->loop, s);
    s->data = d.get();
  }
  uv_signal_start(&d->sigterm, [](uv_signal_t* s, int) {
    static_cast<Daemon*>(s->data)->stop("SIGTERM");
  }, SIGTERM);
  uv_signal_start(&d->sigint, [](uv_signal_t* s, int) {
    static_cast<Daemon*>(s->data)->stop("SIGINT");
  }, SIGINT);
  uv_signal_start(&d->sighup, [](uv_signal_t* s, int) {
    static_cast<Daemon*>(s->data)->reload();
  }, SIGHUP);

  log::info("sluiced {} started: hostname={} listeners={}", SLUICE_VERSION, c.hostname,
            c.listeners.size());
  uv_run(&d->loop, UV_RUN_DEFAULT);
  d->server.reset();
  int rc = uv_loop_close(&d->loop);
  if (rc != 0) log::warning("event loop closed with handles still open: {}", uv_strerror(rc));
  log::info("sluiced stopped");
  return 0;
}

}  // namespace sluice::mta
