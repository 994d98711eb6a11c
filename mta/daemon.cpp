// daemon.cpp — see daemon.hpp.
#include "mta/daemon.hpp"

#include <fmt/format.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <cerrno>
#include <filesystem>
#include <memory>

#include "conf/log.hpp"
#include "conf/safe_file.hpp"
#include "mta/auth/users.hpp"
#include "mta/control/admin.hpp"
#include "mta/control_server.hpp"
#include "mta/delivery.hpp"
#include "mta/http_api.hpp"
#include "mta/http_server.hpp"
#include "mta/intake.hpp"
#include "mta/shaping_service.hpp"
#include "mta/tls_reports.hpp"
#include "mta/pickup.hpp"
#include "mta/uv/guard.hpp"
#include "mta/uv/handle.hpp"
#include "mta/uv/loop.hpp"
#include "mta/uv_util.hpp"
#include "mta/webhooks.hpp"
#include "obs/event.hpp"
#include "mta/tls/tls.hpp"
#include "mta/server.hpp"
#include "obs/sluice_metrics.hpp"
#include "queue/spool.hpp"

namespace sluice::mta {

namespace {

constexpr uint64_t kShutdownGraceMs = 30'000;

// The default place of [tls]'s pair: the shipped paths, or the same names
// in a tls/ directory beside the configuration file (a test's or a second
// instance's /etc/sluice). Only there is a missing pair made self-signed.
constexpr std::string_view kDefaultCertificate = "/etc/sluice/tls/fullchain.pem";
constexpr std::string_view kDefaultPrivateKey = "/etc/sluice/tls/privkey.pem";
bool default_tls_paths(const conf::Config& c) {
  if (c.tls.certificate == kDefaultCertificate && c.tls.private_key == kDefaultPrivateKey) return true;
  if (c.source.empty()) return false;
  const std::string dir = std::filesystem::path(c.source).parent_path().string() + "/tls/";
  return c.tls.certificate == dir + "fullchain.pem" && c.tls.private_key == dir + "privkey.pem";
}

// [tls]'s files as written: each must exist, except the default pair when
// neither exists yet (create: made now). The problem names the key, the
// path and the errno text.
std::expected<void, std::string> tls_files_exist(const conf::Config& c, bool create) {
  std::error_code ec;
  const bool cert_there = std::filesystem::exists(c.tls.certificate, ec);
  const bool key_there = std::filesystem::exists(c.tls.private_key, ec);
  if (!cert_there && !key_there && default_tls_paths(c)) {
    if (!create) return {};
    if (auto made = tls::make_self_signed(c.tls.certificate, c.tls.private_key, c.hostname); !made)
      return std::unexpected("creating a self-signed certificate: " + made.error());
    log::warning("tls: created a self-signed certificate for {} in {}; replace it with a real one "
                 "(docs/tls.md)", c.hostname, c.tls.certificate);
    return {};
  }
  for (auto [key, path] : {std::pair{"tls.certificate", &c.tls.certificate},
                           std::pair{"tls.private_key", &c.tls.private_key}}) {
    struct stat st;
    if (::stat(path->c_str(), &st) == 0) continue;
    const int err = errno;
    return std::unexpected(fmt::format(
        "{}: \"{}\": {}{}", key, *path, std::strerror(err),
        err == ENOENT ? fmt::format(" (a self-signed pair is made only at the default paths {} and "
                                    "{}; check the path, or install the certificate there)",
                                    kDefaultCertificate, kDefaultPrivateKey)
                      : std::string()));
  }
  return {};
}

// The server certificate of [tls]; the default pair is made self-signed
// when neither file exists yet (as Debian does for Postfix), so 587 and 465
// work out of the box. Null without [tls].
std::expected<std::shared_ptr<const tls::TlsContext>, std::string> load_tls(const conf::Config& c) {
  if (c.tls.certificate.empty()) return nullptr;
  if (auto ok = tls_files_exist(c, true); !ok) return std::unexpected(ok.error());
  auto ctx = tls::TlsContext::server(c.tls.certificate, c.tls.private_key);
  if (!ctx) return std::unexpected(ctx.error());
  log::info("tls: {}", (*ctx)->describe());
  return std::shared_ptr<const tls::TlsContext>(std::move(*ctx));
}

// The certificate of the HTTP listener ([http] certificate, private_key);
// null without one (plain HTTP, loopback only: conf checks that).
std::expected<std::shared_ptr<const tls::TlsContext>, std::string> load_http_tls(const conf::Config& c) {
  if (c.http.certificate.empty()) return nullptr;
  auto ctx = tls::TlsContext::server(c.http.certificate, c.http.private_key);
  if (!ctx) return std::unexpected(ctx.error());
  log::info("http tls: {}", (*ctx)->describe());
  return std::shared_ptr<const tls::TlsContext>(std::move(*ctx));
}

// The accounts of [auth]; null without a users file.
// One line per [[dkim]] table in force (start, reload).
void log_signing(const Signing& s) {
  for (const auto& signer : s.signers())
    log::info("dkim: {} signs with a {} key from {}", signer.table.describe(),
              dkim::to_string(signer.key.algorithm()), signer.table.private_key);
}

std::expected<std::shared_ptr<const auth::UserDb>, std::string> load_users(const conf::Config& c) {
  if (c.auth.users_file.empty()) return nullptr;
  auto db = auth::UserDb::load(c.auth.users_file);
  if (!db) return std::unexpected(db.error());
  for (const auto& w : (*db)->warnings()) log::warning("users: {}", w);
  log::info("users: {} accounts from {}", (*db)->users().size(), c.auth.users_file);
  return *db;
}

// The API keys in force (start, reload).
void log_api_keys(const conf::Config& c, const std::shared_ptr<const api::KeyDb>& keys) {
  if (keys) log::info("api: {} keys from {}", keys->keys().size(), c.http.api_keys_file);
  else log::info("api: no [http] api_keys_file: every API request is refused (401)");
}

// One log line per line of a multi-line problem (a users file's errors).
template <class Log>
void each_line(std::string_view text, Log log_line) {
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    if (std::string_view line = text.substr(0, nl); !line.empty()) log_line(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// Who sluiced runs as once its ports are bound: the configured `user` when
// started as root (drop = true unless it is root itself), else whoever runs
// it. The account must exist (sluiced's main checks it before this; a
// failure here is an error too, never a silent run as root).
struct Owner {
  uid_t uid;
  gid_t gid;
  bool drop = false;
  std::string name;
};
std::expected<Owner, std::string> daemon_owner(const conf::Config& c) {
  auto account = conf::lookup_user(c);
  if (!account) return std::unexpected(account.error().str(c.source));
  if (geteuid() == 0) return Owner{account->uid, account->gid, account->uid != 0, account->name};
  return Owner{geteuid(), getegid(), false, ""};
}

// Before the drop, as root: spool_dir itself exists and belongs to the
// user, made through conf/safe_file (never through a link, owner and mode
// set on the descriptor). Only this one directory is ever given to the
// user by root, and only when root owns it (a new installation:
// packaging/postinst makes it root's); nothing under it is re-owned — what
// is there must already be the user's (docs/security.md, docs/spool.md).
std::expected<void, std::string> prepare_spool_dir(const std::string& dir, const Owner& o) {
  const std::string::size_type slash = dir.find_last_of('/');
  const std::string parent_path =
      slash == std::string::npos ? "." : slash == 0 ? "/" : dir.substr(0, slash);
  const std::string name = slash == std::string::npos ? dir : dir.substr(slash + 1);
  auto parent = safe::make_dirs(parent_path, 0755);
  if (!parent) return std::unexpected(parent.error());
  auto made = safe::make_dir_at(*parent, name, 0711, {o.uid, o.gid});
  if (!made) return std::unexpected(made.error());
  if (made->created) return {};
  auto st = safe::stat_fd(made->dir.fd.get(), made->dir.path);
  if (!st) return std::unexpected(st.error());
  if (st->st_uid == 0) {
    if (auto r = safe::set_owner_mode(made->dir.fd.get(), made->dir.path, {o.uid, o.gid},
                                      (st->st_mode & 07777) | 0711); !r)
      return r;
  } else if (st->st_uid != o.uid) {
    return std::unexpected(fmt::format("{}: belongs to uid {}, not to {} (uid {}); fix: chown -R {}: {}",
                                       made->dir.path, st->st_uid, o.name, o.uid, o.name, dir));
  }
  // (Pickup::prepare opens it to everyone's search, 0111, on its descriptor
  // for sluice-sendmail's users, whoever the daemon runs as.)
  return {};
}

// Runs f() with the user's effective uid and gid, as Postfix's set_eugid()
// does: the kernel checks every open as the user's and what is created is
// the user's. Root comes back afterwards for the rest of the start.
// Supplementary groups are dropped before (for good): root's would
// otherwise still count.
template <class F>
auto as_user(const Owner& o, F f) -> decltype(f()) {
  using R = decltype(f());
  if (::setgroups(0, nullptr) != 0 || ::setegid(o.gid) != 0 || ::seteuid(o.uid) != 0)
    return R(std::unexpect, std::string("cannot take the user's identity: ") + std::strerror(errno));
  R r = f();
  if (::seteuid(0) != 0 || ::setegid(0) != 0) {
    log::error("cannot become root again after opening the spool: {}", std::strerror(errno));
    std::abort();
  }
  return r;
}

// setgroups, setgid, setuid — for every thread of the process (glibc applies
// set*id to all of them). Checked: root cannot come back. (no_new_privs is
// set at the very start, before any thread exists, since it is per thread.)
std::expected<void, std::string> drop_privileges(const Owner& o) {
  if (::setgroups(0, nullptr) != 0) return std::unexpected(std::string("setgroups: ") + std::strerror(errno));
  if (::setgid(o.gid) != 0) return std::unexpected(std::string("setgid: ") + std::strerror(errno));
  if (::setuid(o.uid) != 0) return std::unexpected(std::string("setuid: ") + std::strerror(errno));
  if (::setuid(0) == 0 || ::geteuid() == 0) return std::unexpected("root privileges could be regained");
  return {};
}

// [log] format: the text lines or one JSON object per line (obs/event.hpp).
void set_log_format(const conf::Config& c) {
  log::set_format(c.log.format == conf::LogFormat::json ? log::Format::json : log::Format::text);
}

struct Daemon;

// What sluicectl sees and steers, over the running Delivery and Server.
class DaemonAdmin final : public control::QueueAdmin {
 public:
  explicit DaemonAdmin(Daemon& d) : d_(d) {}
  int64_t now_us() const override { return wall_clock_us(); }
  std::vector<std::string> ids() const override;
  const queue::Envelope* find(std::string_view id) const override;
  std::expected<std::string, std::string> read_body(std::string_view id,
                                                    uint64_t max_bytes) const override;
  bool hold(std::string_view id) override;
  bool release(std::string_view id) override;
  bool flush(std::string_view id) override;
  size_t flush_all() override;
  bool bounce(std::string_view id) override;
  bool remove(std::string_view id) override;
  control::DaemonStatus status() const override;
  bool tls_reports_enabled() const override;
  std::vector<shaping::SiteState> shaping_sites() const override;
  std::string shaping_store() const override;
  std::vector<tlsrpt::Day> tls_report_days() const override;
  std::expected<size_t, std::string> send_tls_reports(bool include_today) override;

 private:
  Daemon& d_;
};

struct Daemon {
  uv_loop_t* loop;  // run_daemon's uv::Loop, which outlives the Daemon
  std::shared_ptr<const conf::Config> config;
  std::unique_ptr<queue::Spool> spool;
  std::unique_ptr<Intake> intake;  // every message's way into the spool and to delivery
  // Shaping's store and Shaper (the server counts the submission limits in
  // the store, delivery asks the Shaper): declared before both, so it
  // outlives them and their connections.
  std::unique_ptr<ShapingService> shaping;
  // POST /api/v1/messages (mta/http_api.hpp), with [http] address only:
  // declared before the HTTP server whose route calls it, so it outlives it.
  std::unique_ptr<HttpApi> api;
  std::unique_ptr<Server> server;
  // TLS-RPT counts and reports; destroyed after delivery, which records into it.
  std::unique_ptr<TlsReports> tls_reports;
  std::unique_ptr<Delivery> delivery;
  // [[webhook]]s (mta/webhooks.hpp); null without any. Destroyed before
  // delivery, whose resolver it asks.
  std::unique_ptr<WebhookService> webhooks;
  std::unique_ptr<Pickup> pickup;
  std::unique_ptr<ControlServer> control;
  // The HTTP server ([http] address; null when off). Its routes are added
  // in register_http_routes() below, before the loop runs.
  std::unique_ptr<HttpServer> http;
  DaemonAdmin admin{*this};
  int64_t started_us = wall_clock_us();
  bool server_done = false, delivery_done = false, pickup_done = false, control_done = false;
  bool http_done = false;
  uv::Handle<uv_signal_t> sigterm, sigint, sighup;
  uv::Handle<uv_timer_t> grace;
  bool stopping = false;
  int exit_code = 0;
  Signing::Reader key_reader;  // who besides root may read [[dkim]] key files  // 1 when a start-up step failed after the loop began

  ~Daemon() { obs::registry().clear_callbacks(); }  // they read the Daemon (start_metrics)

  // --- Metrics (obs/sluice_metrics.hpp, docs/observability.md "Metrics") ---
  // The event sink counts receptions, deliveries and bounces; the spool,
  // the resolver, the server and delivery record the rest where it
  // happens; what is a state of the daemon is read here at each scrape
  // (on the loop, where GET /metrics is answered).
  void start_metrics() {
    auto& m = obs::sluice_metrics();
    for (const auto& l : config->listeners) m.add_listener(l.address);
    obs::add_sink([&m](const obs::Event& e) { m.count_event(e); });
    auto& r = obs::registry();
    r.gauge("sluice_build_info", "Always 1; the version of the running sluiced as a label.",
            {{"version", SLUICE_VERSION}}).set(1);
    r.gauge("sluice_start_time_seconds", "When sluiced started, in seconds since the UNIX epoch.")
        .set(started_us / 1'000'000);
    constexpr std::string_view kQueueHelp =
        "Messages in the queue by state: queued (waiting for or in delivery), deferred (a "
        "recipient was deferred: waiting for its retry), held (sluicectl hold).";
    auto* queued = &r.gauge("sluice_queue_messages", kQueueHelp, {{"state", "queued"}});
    auto* deferred = &r.gauge("sluice_queue_messages", kQueueHelp, {{"state", "deferred"}});
    auto* held = &r.gauge("sluice_queue_messages", kQueueHelp, {{"state", "held"}});
    auto* jobs = &r.gauge("sluice_queue_jobs", "Delivery jobs in flight (one per message and destination).");
    auto* dests = &r.gauge("sluice_queue_destinations", "Destinations with messages waiting or in delivery.");
    constexpr std::string_view kConnHelp =
        "Connections open now: inbound (SMTP clients), outbound (delivery, busy or idle), http.";
    auto* conn_in = &r.gauge("sluice_connections", kConnHelp, {{"direction", "inbound"}});
    auto* conn_out = &r.gauge("sluice_connections", kConnHelp, {{"direction", "outbound"}});
    auto* conn_http = &r.gauge("sluice_connections", kConnHelp, {{"direction", "http"}});
    r.add_collector([this, queued, deferred, held, jobs, dests, conn_in, conn_out, conn_http] {
      if (!delivery || !server) return;
      const auto c = delivery->scheduler().counts();
      queued->set(int64_t(c.queued));
      deferred->set(int64_t(c.deferred));
      held->set(int64_t(c.held));
      jobs->set(int64_t(c.jobs));
      dests->set(int64_t(c.destinations));
      conn_in->set(int64_t(server->connections()));
      conn_out->set(int64_t(delivery->connections()));
      conn_http->set(http ? int64_t(http->connections()) : 0);
    });
    r.counter_fn("sluice_connections_accepted_total", "SMTP connections accepted since the start.", {},
                 [this] { return server ? double(server->connections_total()) : 0.0; });
    r.gauge_fn("sluice_spool_bytes", "Bytes in the spool's segment files.", {},
               [this] { return spool ? double(spool->disk_bytes()) : 0.0; });
    r.gauge_fn("sluice_spool_free_bytes",
               "Free space for sluiced on the spool's file system (limits.min_free_space refuses mail "
               "below it).", {},
               [this] { return spool ? double(spool->free_space()) : 0.0; });
    r.gauge_fn("sluice_spool_min_free_bytes",
               "limits.min_free_space: the reserve below which mail is refused.", {},
               [this] { return double(config->limits.min_free_space); });
    r.counter_fn("sluice_spool_syncs_total", "fdatasync calls of the spool writer.", {},
                 [this] { return spool ? double(spool->stats().syncs) : 0.0; });
    r.counter_fn("sluice_spool_written_bytes_total", "Bytes the spool writer appended.", {},
                 [this] { return spool ? double(spool->stats().bytes) : 0.0; });
    for (size_t i = 0; i < log::kAlertKinds; ++i) {
      const auto kind = static_cast<log::Alert>(i);
      r.counter_fn("sluice_warnings_total",
                   "Warnings an administrator must act on (as sluicectl status shows): relayhost_auth "
                   "(the relayhost refused the login), tls_verify (a next hop's certificate did not "
                   "verify where it must), config (a configuration problem found at reload).",
                   {{"kind", std::string(log::to_string(kind))}},
                   [kind] { return double(log::alerts(kind)); });
    }
  }

  void stop(const char* why) {
    if (stopping) return;
    stopping = true;
    log::info("shutdown requested ({}): {} connections open", why, server->connections());
    tls_reports->stop();  // before delivery closes the resolver it looks _smtp._tls up through
    // Webhooks stop sending (they ask delivery's resolver too); events that
    // come later (deferrals of cut connections) are still stored, and the
    // loop runs until the last disk job is done. Stored events wait for the
    // next start.
    if (webhooks) webhooks->close([] {});
    uv_timer_start(grace.get(), [](uv_timer_t* t) {
      uv::guard("shutdown grace timer", [t] {
        auto* d = static_cast<Daemon*>(t->data);
        log::warning("shutdown grace period over; closing {} connections", d->server->connections());
        d->server->abort_all();
        if (d->http) d->http->abort_all();
      });
    }, kShutdownGraceMs, 0);
    // Incoming sessions finish their message while delivery stops (its
    // connections are aborted, their jobs deferred); the spool closes only
    // when both are done.
    server->shutdown([this] {
      server_done = true;
      maybe_finish();
    });
    delivery->shutdown([this] {
      delivery_done = true;
      maybe_finish();
    });
    pickup->close([this] {
      pickup_done = true;
      maybe_finish();
    });
    control->close([this] {
      control_done = true;
      maybe_finish();
    });
    if (http) {
      http->shutdown([this] {
        http_done = true;
        maybe_finish();
      });
    } else {
      http_done = true;
    }
  }

  void maybe_finish() {
    if (server_done && delivery_done && pickup_done && control_done && http_done) finish();
  }

  void finish() {
    // No connection is left; the signatures still being made on the thread
    // pool hold spool messages: they go first.
    intake->drain([this] { finish_drained(); });
  }

  void finish_drained() {
    // Let the writer finish, then close our handles.
    auto st = spool->stats();
    log::info("spool: commits={} updates={} syncs={} bytes={}", st.commits, st.updates, st.syncs,
              st.bytes);
    obs::registry().clear_callbacks();  // before what they read goes
    tls_reports->stop();  // again: the last counts to disk; reports committed later delete their day
    spool.reset();
    delivery->close_handles();
    server->close_handles();
    if (http) http->close_handles();
    shaping->close([] {});
    intake->close();  // the last commits' answers (delivery ignores them now)
    for (auto* h : {&sigterm, &sigint, &sighup}) h->close();
    grace.close();
  }

  // SIGHUP: all or nothing (SPEC). The new file, its certificate, users and
  // delivery settings are all prepared first; any problem is a warning
  // (counted: log::Alert::config) and leaves the running configuration whole.
  void reload() {
    auto fresh = conf::load_file(config->source);
    if (!fresh) {
      for (const auto& p : fresh.error())
        log::alert(log::Alert::config, "reload: {}", p.str(config->source));
      log::error("reload: configuration has errors; keeping the running one");
      return;
    }
    std::vector<std::string> problems;
    auto tls_ctx = load_tls(*fresh);
    if (!tls_ctx) problems.push_back("tls: " + tls_ctx.error());
    auto http_tls = load_http_tls(*fresh);
    if (!http_tls) problems.push_back("http: " + http_tls.error());
    auto users = load_users(*fresh);
    if (!users)
      each_line(users.error(), [&](std::string_view l) { problems.push_back(fmt::format("users: {}", l)); });
    auto setup = Delivery::setup(loop, *fresh, config.get());
    if (!setup) problems.push_back(setup.error());
    auto signing = Signing::load(fresh->dkim, key_reader);
    if (!signing) problems.insert(problems.end(), signing.error().begin(), signing.error().end());
    auto api_keys = HttpApi::load_keys(*fresh);  // [http] api_keys_file
    if (!api_keys)
      each_line(api_keys.error(), [&](std::string_view l) { problems.push_back(fmt::format("api keys: {}", l)); });
    std::optional<WebhookService::Settings> hooks;
    if (webhooks || !fresh->webhooks.empty()) {
      if (auto s = WebhookService::load_settings(*fresh); !s)
        problems.push_back(s.error());
      else
        hooks = std::move(*s);
    }
    if (!problems.empty()) {
      for (const auto& p : problems) log::alert(log::Alert::config, "reload: {}", p);
      log::error("reload: configuration has errors; keeping the running one");
      return;
    }
    log_restart_needed(*config, *fresh);
    shaping->reload(*fresh, *config);
    config = std::make_shared<const conf::Config>(std::move(*fresh));
    set_log_format(*config);
    intake->add_missing_on_relay(config->relay.add_missing_headers);
    intake->set_signing(*signing);
    log_signing(**signing);
    server->set_tls(*tls_ctx);
    server->set_users(*users);
    server->reload(config);
    if (http) {
      // The certificate is re-read; turning TLS on or off needs a restart.
      if (*http_tls && !config->http.certificate.empty()) http->set_tls(*http_tls);
      http->reload(config);
    }
    pickup->reload(config);
    delivery->reload(config, std::move(*setup));
    tls_reports->reload(*config);
    if (api) {
      api->set_config(config);
      api->set_keys(*api_keys);
      log_api_keys(*config, *api_keys);
    }
    if (hooks) reload_webhooks(std::move(*hooks));
    log::info("reload: configuration re-read from {}", config->source);
  }

  // ---- webhooks (mta/webhooks.hpp) ----
  // Made after the privileges went: <spool_dir>/webhooks is the user's, and
  // the secret files are read as the user (as on reload).
  std::expected<void, std::string> start_webhooks() {
    auto settings = WebhookService::load_settings(*config);
    if (!settings) return std::unexpected(settings.error());
    WebhookService::Options options;
    // For tests only: shortens the retry back-off (0.001 to 1; docs/http-api.md).
    if (const char* scale = std::getenv("SLUICE_WEBHOOK_RETRY_SCALE"))
      options.retry_scale = std::clamp(std::strtod(scale, nullptr), 0.001, 1.0);
    auto w = WebhookService::create(loop, *config, std::move(*settings),
                                    [dl = delivery.get()] { return dl->resolver(); }, std::move(options));
    if (!w) return std::unexpected(w.error());
    webhooks = std::move(*w);
    obs::add_sink([w = webhooks.get()](const obs::Event& e) { w->add(e); });
    return {};
  }
  // New secrets, events and ca_file apply at once; other urls need a restart.
  void reload_webhooks(WebhookService::Settings s) {
    if (!webhooks || !webhooks->reload(std::move(s)))
      log::warning("reload: [[webhook]] urls changed and need a restart; the running webhooks stay until then");
  }

  // What a reload cannot change: the running value stays until a restart.
  static void log_restart_needed(const conf::Config& old, const conf::Config& fresh) {
    auto listeners = [](const conf::Config& c) {
      std::string out;
      for (const auto& l : c.listeners)
        out += fmt::format("{}{}={}", out.empty() ? "" : ",", l.address, conf::to_string(l.mode));
      return out;
    };
    auto says = [](std::string_view key, const std::string& was, const std::string& now) {
      if (was != now)
        log::warning("reload: {} changed ({} -> {}) and needs a restart; the running value stays "
                     "until then", key, log::sanitize(was), log::sanitize(now));
    };
    says("listener", listeners(old), listeners(fresh));
    says("spool_dir", old.spool_dir, fresh.spool_dir);
    says("user", old.user, fresh.user);
    says("control_socket", old.control_socket, fresh.control_socket);
    says("http.address", old.http.address, fresh.http.address);
    says("http TLS", old.http.certificate.empty() ? "off" : "on",
         fresh.http.certificate.empty() ? "off" : "on");
  }
};

std::vector<std::string> DaemonAdmin::ids() const { return d_.delivery->scheduler().ids(); }

const queue::Envelope* DaemonAdmin::find(std::string_view id) const {
  return d_.delivery->scheduler().find(id);
}

std::expected<std::string, std::string> DaemonAdmin::read_body(std::string_view id,
                                                               uint64_t max_bytes) const {
  std::string out;
  auto r = d_.spool->read_body(id, [&out](std::string_view s) { out.append(s); }, max_bytes);
  if (!r) return std::unexpected(r.error());
  return out;
}

bool DaemonAdmin::hold(std::string_view id) { return d_.delivery->hold(id); }
bool DaemonAdmin::release(std::string_view id) { return d_.delivery->release(id); }
bool DaemonAdmin::flush(std::string_view id) { return d_.delivery->flush(id); }
size_t DaemonAdmin::flush_all() { return d_.delivery->flush_all(); }
bool DaemonAdmin::bounce(std::string_view id) { return d_.delivery->bounce(id); }
bool DaemonAdmin::remove(std::string_view id) { return d_.delivery->remove(id); }

std::vector<shaping::SiteState> DaemonAdmin::shaping_sites() const {
  return d_.shaping->shaper().snapshot(wall_clock_us());
}
std::string DaemonAdmin::shaping_store() const { return d_.shaping->store().describe(); }
bool DaemonAdmin::tls_reports_enabled() const { return d_.tls_reports->enabled(); }
std::vector<tlsrpt::Day> DaemonAdmin::tls_report_days() const { return d_.tls_reports->days(); }
std::expected<size_t, std::string> DaemonAdmin::send_tls_reports(bool include_today) {
  return d_.tls_reports->send_now(include_today);
}

control::DaemonStatus DaemonAdmin::status() const {
  control::DaemonStatus s;
  s.version = SLUICE_VERSION;
  s.started_us = d_.started_us;
  s.connections_in = d_.server->connections();
  s.connections_in_total = d_.server->connections_total();
  s.connections_out = d_.delivery->connections();
  s.counts = d_.delivery->scheduler().counts();
  s.spool = d_.spool->stats();
  s.warnings.relayhost_auth = log::alerts(log::Alert::relayhost_auth);
  s.warnings.tls_verify = log::alerts(log::Alert::tls_verify);
  s.warnings.config = log::alerts(log::Alert::config);
  return s;
}


// Connections need descriptors: take the whole hard limit (systemd's unit
// sets it), and say so when it cannot hold limits.max_connections.
void raise_fd_limit(const conf::Config& c) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  const uint64_t want = uint64_t{c.limits.max_connections} + c.delivery.max_connections + 64;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
    log::warning("file descriptors: the limit is {}, fewer than limits.max_connections + "
                 "delivery.max_connections need ({}); raise LimitNOFILE / ulimit -n",
                 rl.rlim_cur, want);
}

// ---- HTTP routes ----
// Every route of the HTTP server, added here before the loop runs (the
// server is made only when [http] address is set).
//
// GET /healthz: 200 "ok" when every SMTP listener and the HTTP listener
// listen and the spool can take mail (its directory writable, free space
// above limits.min_free_space: the reserve behind MAIL FROM's 452); else
// 503 with the first reason found.
http::Response health(const Daemon& d) {
  auto down = [](std::string why) { return http::Response::text(503, why + "\n"); };
  if (d.stopping) return down("shutting down");
  if (!d.server->listening()) return down("smtp listeners are not listening");
  if (!d.http->listening()) return down("http listener is not listening");
  if (!d.spool) return down("spool closed");
  const auto& c = *d.config;
  if (::access(c.spool_dir.c_str(), W_OK | X_OK) != 0)
    return down(fmt::format("spool_dir {} is not writable: {}", c.spool_dir, std::strerror(errno)));
  const uint64_t reserve = c.limits.min_free_space;
  if (reserve > 0) {
    const uint64_t free = d.spool->free_space(reserve);
    if (free < reserve)
      return down(fmt::format("spool: insufficient storage ({} bytes free, limits.min_free_space {})",
                              free, reserve));
  }
  return http::Response::text(200, "ok\n");
}

void register_http_routes(Daemon& d) {
  d.http->route("GET", "/healthz", [&d](const http::Request&, const http::Peer&, http::Reply reply) {
    reply(health(d));
  });
  // GET /metrics: every metric in the Prometheus text format 0.0.4
  // (docs/observability.md, "Metrics"), rendered on the loop.
  d.http->route("GET", "/metrics", [](const http::Request&, const http::Peer&, http::Reply reply) {
    http::Response r;
    r.headers.push_back({"Content-Type", std::string(obs::metrics::kContentType)});
    r.body = obs::registry().render();
    reply(std::move(r));
  });
  // POST /api/v1/messages (mta/http_api.hpp); d.api is made with the server.
  if (d.api) d.http->route("POST", "/api/v1/messages", d.api->handler());
}

}  // namespace

std::vector<std::string> check_files(const conf::Config& c) {
  std::vector<std::string> problems;
  if (!c.tls.certificate.empty()) {
    std::error_code ec;
    if (auto ok = tls_files_exist(c, false); !ok)
      problems.push_back(ok.error());
    else if (std::filesystem::exists(c.tls.certificate, ec))  // else: made at start
      if (auto ctx = tls::TlsContext::server(c.tls.certificate, c.tls.private_key); !ctx)
        problems.push_back("tls: " + ctx.error());
  }
  if (!c.http.certificate.empty())
    if (auto ctx = tls::TlsContext::server(c.http.certificate, c.http.private_key); !ctx)
      problems.push_back("http.certificate: " + ctx.error());
  if (!c.auth.users_file.empty())
    if (auto db = auth::UserDb::load(c.auth.users_file); !db)
      each_line(db.error(),
                [&](std::string_view l) { problems.push_back(fmt::format("auth.users_file: {}", l)); });
  if (auto d = Delivery::setup(nullptr, c, nullptr); !d) problems.push_back(d.error());
  if (auto keys = HttpApi::load_keys(c); !keys)
    each_line(keys.error(),
              [&](std::string_view l) { problems.push_back(fmt::format("http.api_keys_file: {}", l)); });
  // Key files by the daemon's rules, for the account it will run as.
  Signing::Reader reader{::geteuid(), ::getegid()};
  if (auto a = conf::lookup_user(c)) reader = {a->uid, a->gid};
  if (auto s = Signing::load(c.dkim, reader); !s)
    for (const auto& p : s.error()) problems.push_back("dkim: " + p);
  if (!c.webhooks.empty())
    if (auto w = WebhookService::load_settings(c); !w) problems.push_back(w.error());
  return problems;
}

int run_daemon(conf::Config cfg) {
  signal(SIGPIPE, SIG_IGN);
  set_log_format(cfg);
  // sluiced never runs another program; no thread may gain privileges
  // through one (per thread and inherited, so before any thread starts).
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    log::warning("no_new_privs: {}", std::strerror(errno));
  raise_fd_limit(cfg);
  // Declared before the Daemon, so destroyed after it: the handles its parts
  // still hold are closed by then, and the Loop runs their close callbacks.
  uv::Loop loop;
  auto d = std::make_unique<Daemon>();
  d->loop = loop.get();
  d->config = std::make_shared<const conf::Config>(std::move(cfg));
  const auto& c = *d->config;
  auto found_owner = daemon_owner(c);
  if (!found_owner) {
    log::error("{}", found_owner.error());
    return 1;
  }
  const Owner owner = *found_owner;

  auto tls_ctx = load_tls(c);
  if (!tls_ctx) {
    log::error("tls: {}", tls_ctx.error());
    return 1;
  }
  auto http_tls = load_http_tls(c);
  if (!http_tls) {
    log::error("http.certificate: {}", http_tls.error());
    return 1;
  }
  auto users = load_users(c);
  if (!users) {
    each_line(users.error(), [](std::string_view l) { log::error("users: {}", l); });
    return 1;
  }
  auto api_keys = HttpApi::load_keys(c);  // as root, like the users file
  if (!api_keys) {
    each_line(api_keys.error(), [](std::string_view l) { log::error("api keys: {}", l); });
    return 1;
  }
  // The keys are read with the daemon's identity, at start as on reload.
  d->key_reader = {owner.drop ? owner.uid : ::geteuid(), owner.drop ? owner.gid : ::getegid()};
  std::expected<std::shared_ptr<const Signing>, std::vector<std::string>> signing;
  if (!owner.drop) {
    signing = Signing::load(c.dkim, d->key_reader);
  } else if (auto as = as_user(owner, [&]() -> std::expected<void, std::string> {
               signing = Signing::load(c.dkim, d->key_reader);
               return {};
             }); !as) {
    signing = std::unexpected(std::vector<std::string>{as.error()});
  }
  if (!signing) {
    for (const auto& p : signing.error()) log::error("dkim: {}", p);
    return 1;
  }
  log_signing(**signing);
  for (const auto& l : c.listeners) {
    if (l.mode == conf::ListenerMode::relay) continue;
    // (submissions without [tls] is a configuration error, caught by conf.)
    if (!*tls_ctx)
      log::warning("listener {}: no [tls] certificate, so STARTTLS and AUTH are not offered and "
                   "nobody can submit mail", l.address);
    else if (!*users)
      log::warning("listener {}: no [auth] users_file, so nobody can log in to submit mail",
                   l.address);
  }

  if (auto w = aliases::root_warning(c.aliases)) log::warning("{}", *w);

  // The spool is opened with the user's identity (when sluiced drops to
  // one): root never opens anything under spool_dir, which the user can
  // write. Every file there must be the user's; none is re-owned.
  if (owner.drop) {
    if (auto r = prepare_spool_dir(c.spool_dir, owner); !r) {
      log::error("spool {}", r.error());
      return 1;
    }
  }
  queue::Spool::Options sopt{.dir = c.spool_dir};
  sopt.owner = owner.drop ? owner.uid : ::geteuid();
  auto spool = owner.drop ? as_user(owner, [&] { return queue::Spool::open(sopt); })
                          : queue::Spool::open(sopt);
  if (!spool) {
    if (!owner.name.empty() && (spool.error().find("belongs to uid") != std::string::npos ||
                                (owner.drop && spool.error().find("Permission denied") != std::string::npos)))
      log::error("spool {}: {}; every file under spool_dir must belong to {} (fix: stop sluiced, "
                 "chown -R {}: {})", c.spool_dir, spool.error(), owner.name, owner.name, c.spool_dir);
    else
      log::error("spool {}: {}", c.spool_dir, spool.error());
    return 1;
  }
  d->spool = std::move(*spool);
  for (const auto& w : d->spool->recovery_warnings()) log::warning("spool recovery: {}", w);
  log::info("spool {}: {} messages waiting", c.spool_dir, d->spool->message_count());

  d->intake = std::make_unique<Intake>(d->loop, *d->spool);
  d->intake->add_missing_on_relay(d->config->relay.add_missing_headers);
  d->intake->set_signing(*signing);
  auto shaping = ShapingService::create(d->loop, *d->config);
  if (!shaping) {
    log::error("shaping: {}", shaping.error());
    d->spool.reset();
    d->intake->close();
    uv_run(d->loop, UV_RUN_DEFAULT);
    return 1;
  }
  d->shaping = std::move(*shaping);
  d->server = std::make_unique<Server>(d->loop, d->config, *d->spool, *d->intake);
  d->server->set_tls(*tls_ctx);
  d->server->set_users(*users);
  d->server->set_store(&d->shaping->store());
  if (c.http.endpoint) {
    d->api = std::make_unique<HttpApi>(d->loop, *d->intake, *d->spool, &d->shaping->store(), d->config);
    d->api->set_keys(*api_keys);
    log_api_keys(c, *api_keys);
  }
  auto delivery = Delivery::create(d->loop, d->config, *d->spool, *d->intake);
  if (!delivery) {
    log::error("delivery: {}", delivery.error());
    d->spool.reset();
    d->server->close_handles();
    d->shaping->close([] {});
    d->intake->close();
    uv_run(d->loop, UV_RUN_DEFAULT);
    return 1;
  }
  d->delivery = std::move(*delivery);
  d->delivery->set_shaper(&d->shaping->shaper());
  d->intake->deliver_to([dl = d->delivery.get()](const queue::Envelope& env) { dl->add(env); });
  d->tls_reports = std::make_unique<TlsReports>(d->loop, *d->intake,
                                                [dl = d->delivery.get()] { return dl->resolver(); });
  d->delivery->set_tls_reports(d->tls_reports.get());
  d->pickup = std::make_unique<Pickup>(d->loop, d->config, *d->spool, *d->intake);
  if (c.http.endpoint) {  // bound as root with the SMTP listeners, below
    d->http = std::make_unique<HttpServer>(d->loop, d->config);
    d->http->set_tls(*http_tls);
    register_http_routes(*d);
  }
  auto listened = d->server->listen();
  if (listened && d->http) listened = d->http->listen();
  if (auto ok = listened; !ok) {
    log::error("{}", ok.error());
    if (d->http) d->http->close_handles();
    d->delivery->shutdown([] {});
    uv_run(d->loop, UV_RUN_NOWAIT);
    d->spool.reset();
    d->delivery->close_handles();
    d->server->close_handles();
    d->shaping->close([] {});
    d->intake->close();
    d->server->abort_all();
    uv_run(d->loop, UV_RUN_DEFAULT);
    return 1;
  }

  d->grace.init(d->loop, uv_timer_init);
  d->grace->data = d.get();
  for (auto* h : {&d->sigterm, &d->sigint, &d->sighup}) {
    h->init(d->loop, uv_signal_init);
    (*h)->data = d.get();
  }
  uv_signal_start(d->sigterm.get(), [](uv_signal_t* s, int) {
    uv::guard("SIGTERM", [s] { static_cast<Daemon*>(s->data)->stop("SIGTERM"); });
  }, SIGTERM);
  uv_signal_start(d->sigint.get(), [](uv_signal_t* s, int) {
    uv::guard("SIGINT", [s] { static_cast<Daemon*>(s->data)->stop("SIGINT"); });
  }, SIGINT);
  uv_signal_start(d->sighup.get(), [](uv_signal_t* s, int) {
    uv::guard("SIGHUP", [s] { static_cast<Daemon*>(s->data)->reload(); });
  }, SIGHUP);

  // Still root (when started so): the control socket and the maildrop are
  // made and handed over, then the privileges go, then the work starts.
  ControlOptions copt;
  if (geteuid() == 0) {
    copt.owner = owner.uid;
    copt.group = owner.gid;
  }
  d->control = std::make_unique<ControlServer>(d->loop, c.control_socket, d->admin, copt);
  auto fail = [&d](std::string_view what, const std::string& why) {
    log::error("{}: {}", what, why);
    d->exit_code = 1;
    d->stop("start-up failed");
  };
  if (auto ok = d->control->listen(); !ok) {
    fail("control socket", ok.error());
  } else if (auto ok = d->pickup->prepare(owner.uid); !ok) {
    fail("maildrop", ok.error());
  } else if (owner.drop) {
    if (auto ok = drop_privileges(owner); !ok)
      fail("dropping privileges", ok.error());
    else
      log::info("running as {} (uid {}, gid {}); ports bound as root", owner.name, owner.uid, owner.gid);
  }
  if (!d->stopping && !c.webhooks.empty())
    if (auto ok = d->start_webhooks(); !ok) fail("webhooks", ok.error());
  if (!d->stopping) {
    // After the privileges went: <spool_dir>/tlsrpt belongs to `user`.
    if (auto ok = d->tls_reports->start(c); !ok) log::error("tls-reports: {}; counts are not kept", ok.error());
    // And <spool_dir>/api, the Idempotency-Key answers.
    if (d->api)
      if (auto ok = d->api->open_store(); !ok)
        log::error("api: {}; Idempotency-Key answers are kept in memory only", ok.error());
    d->start_metrics();
    log::info("sluiced {} started: hostname={} listeners={}", SLUICE_VERSION, c.hostname,
              c.listeners.size());
    d->delivery->start();
    d->pickup->start();
  }
  uv_run(d->loop, UV_RUN_DEFAULT);
  obs::clear_sinks();  // they point into the Daemon's parts
  const int d_exit = d->exit_code;
  d.reset();  // what its parts still hold starts closing
  if (int rc = loop.close(); rc != 0)
    log::warning("event loop closed with handles still open: {}", uv_strerror(rc));
  log::info("sluiced stopped");
  return d_exit;
}

}  // namespace sluice::mta
