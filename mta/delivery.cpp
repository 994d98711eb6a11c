// delivery.cpp — see delivery.hpp.
#include "mta/delivery.hpp"

#include <fmt/format.h>
#include <ifaddrs.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <utility>

#include "conf/log.hpp"
#include "conf/safe_file.hpp"
#include "dns/trust.hpp"
#include "mta/delivery_job.hpp"
#include "mta/events.hpp"
#include "mta/client/client_session.hpp"
#include "mta/tls/tls.hpp"
#include "mta/uv/guard.hpp"
#include "mta/tls_reports.hpp"
#include "mta/uv_util.hpp"
#include "queue/dsn.hpp"
#include "queue/policy.hpp"

namespace sluice::mta {

// The machine's addresses (getifaddrs), for the loop check: a wildcard
// listener is reached through any of them. A failure leaves the loopback
// addresses, which queue::Myself always counts; it is logged.
static std::vector<net::IpAddress> interface_addresses() {
  std::vector<net::IpAddress> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    log::warning("delivery: cannot list the interface addresses ({}); only loopback addresses "
                 "count as this host for the loop check", std::strerror(errno));
    return out;
  }
  for (ifaddrs* i = list; i; i = i->ifa_next)
    if (i->ifa_addr)
      if (auto ip = net::IpAddress::from_sockaddr(i->ifa_addr)) out.push_back(*ip);
  freeifaddrs(list);
  return out;
}

void Delivery::refresh_myself() {
  std::vector<net::Endpoint> listening;
  for (const auto& l : config_->listeners) listening.push_back(l.endpoint);
  myself_ = std::make_shared<const queue::Myself>(listening, interface_addresses());
}

namespace {

queue::SchedulerOptions scheduler_options(const conf::Delivery& dc) {
  queue::SchedulerOptions o;
  o.max_connections = std::max<uint32_t>(1, dc.max_connections);
  o.max_connections_per_destination = std::max<uint32_t>(1, dc.max_connections_per_destination);
  if (!dc.retry_schedule.empty()) {
    o.retry_schedule_us.clear();
    for (auto d : dc.retry_schedule)
      o.retry_schedule_us.push_back(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  }
  o.max_queue_lifetime_us =
      std::chrono::duration_cast<std::chrono::microseconds>(dc.max_queue_lifetime).count();
  o.relayhost = dc.relayhost;
  return o;
}

// DANE needs DNSSEC answers it can believe: delivery.dane, and every
// resolver on loopback (dns.servers, else /etc/resolv.conf). `why` says
// which it was, for the start-up line.
bool dane_in_force(const conf::Config& c, std::string* why) {
  if (!c.delivery.dane) {
    if (why) *why = "off (delivery.dane = false)";
    return false;
  }
  std::string resolv_conf;
  if (c.dns.servers.empty()) {
    std::ifstream f("/etc/resolv.conf");
    resolv_conf.assign(std::istreambuf_iterator<char>(f), {});
  }
  const bool trusted = dns::ad_bit_trusted(c.dns.servers, resolv_conf);
  if (why)
    *why = trusted ? "on" : "off (a DNS server is not on loopback, so its AD bit cannot be believed)";
  return trusted;
}

}  // namespace

// ---------------------------------------------------------------------------

Delivery::Delivery(uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool,
                   Intake& intake)
    : loop_(loop), config_(std::move(config)), spool_(spool), intake_(intake),
      scheduler_(scheduler_options(config_->delivery)),
      shared_(loop_, config_, spool_) {
  if (timer_.init(loop_, uv_timer_init) < 0) std::abort();  // cannot fail
  timer_->data = this;
  if (shaping_timer_.init(loop_, uv_timer_init) < 0) std::abort();
  shaping_timer_->data = this;
  scheduler_.set_gate([this](std::string_view dest, bool reuse, int64_t now) { return gate(dest, reuse, now); });
  refresh_myself();
}

Delivery::~Delivery() = default;

DeliverySetup::~DeliverySetup() {
  std::fill(password.begin(), password.end(), '\0');
  asm volatile("" : : "r"(password.data()) : "memory");
}

std::expected<DeliverySetup, std::string> Delivery::setup(uv_loop_t* loop, const conf::Config& fresh,
                                                          const conf::Config* running) {
  const auto& dc = fresh.delivery;
  DeliverySetup out;
  if (!dc.relayhost.empty() && !dc.relayhost_username.empty()) {
    auto password = safe::read_secret_line(dc.relayhost_password_file, "delivery.relayhost_password_file");
    if (!password) return std::unexpected(password.error());
    out.password = std::move(*password);
    std::fill(password->begin(), password->end(), '\0');
    out.login = dc.relayhost_username;
  }
  // One client context: every message goes either to the relayhost or to
  // MX hosts. Verifying contexts abort the handshake on a certificate that
  // does not verify against delivery.ca_file; the others only report it.
  const conf::DeliveryTls policy = outbound_tls(dc);
  out.dane = dc.relayhost.empty() && dane_in_force(fresh, nullptr);
  // MTA-STS and DANE may demand TLS whatever delivery.tls says.
  const bool published = dc.mta_sts || out.dane;
  if (policy != conf::DeliveryTls::none || !out.login.empty() || published) {
    const bool verify = policy == conf::DeliveryTls::verify;
    auto ctx = tls::TlsContext::client(verify, dc.ca_file);
    if (!ctx && !verify) {
      // Nothing is verified: the CA file only feeds the log's verified=.
      log::warning("delivery: {}; TLS is used, but verified=no for every server", ctx.error());
      ctx = tls::TlsContext::client(false);
    }
    if (!ctx) return std::unexpected("delivery tls: " + ctx.error());
    out.tls = std::move(*ctx);
  }
  if (dc.mta_sts) {
    // Without trust anchors no policy can be fetched: MTA-STS is off (a
    // machine without the CA bundle still delivers, as without a policy).
    auto ctx = tls::TlsContext::client(true, dc.ca_file);
    if (ctx)
      out.sts_tls = std::move(*ctx);
    else
      log::warning("delivery.mta_sts: {}; MTA-STS policies are not fetched", ctx.error());
  }
  const bool running_dane =
      running && running->delivery.relayhost.empty() && dane_in_force(*running, nullptr);
  if (loop && (!running || running->dns.servers != fresh.dns.servers || running_dane != out.dane)) {
    dns::Options dopt;
    dopt.servers = fresh.dns.servers;
    dopt.request_ad = out.dane;  // MX and address answers say whether they are DNSSEC-secure
    auto res = dns::Resolver::create(loop, std::move(dopt));
    if (!res) return std::unexpected("dns: " + res.error());
    out.resolver = std::move(*res);
  }
  return out;
}

std::expected<std::unique_ptr<Delivery>, std::string> Delivery::create(
    uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool,
    Intake& intake) {
  auto setup = Delivery::setup(loop, *config, nullptr);
  if (!setup) return std::unexpected(setup.error());
  std::unique_ptr<Delivery> d(new Delivery(loop, std::move(config), spool, intake));
  d->resolver_ = std::move(setup->resolver);
  d->dane_ = setup->dane;
  d->sts_tls_ = std::move(setup->sts_tls);
  d->shared_.tls = std::move(setup->tls);
  d->shared_.relay_login = std::move(setup->login);
  d->shared_.relay_password = setup->password;
  return d;
}

void Delivery::reload(std::shared_ptr<const conf::Config> config, DeliverySetup setup) {
  if (stopping_) return;
  const auto& dc = config->delivery;
  const bool dns_changed = setup.resolver != nullptr;
  config_ = std::move(config);
  shared_.config = config_;
  shared_.tls = std::move(setup.tls);
  dane_ = setup.dane;
  if (setup.sts_tls) sts_tls_ = std::move(setup.sts_tls);  // fetches from now on (a running store keeps its own)
  shared_.relay_login = std::move(setup.login);
  std::fill(shared_.relay_password.begin(), shared_.relay_password.end(), '\0');
  shared_.relay_password = setup.password;
  scheduler_.set_options(scheduler_options(dc));
  refresh_myself();  // the machine's addresses may have changed
  if (dns_changed) {
    // Lookups in flight are cancelled: their answers come back from the
    // retired resolver and are asked again of the new one (resolve()).
    ++resolver_gen_;
    retired_.push_back(std::move(resolver_));
    resolver_ = std::move(setup.resolver);
    dns::Resolver* old = retired_.back().get();
    old->close([this, old] {
      std::erase_if(retired_, [old](const auto& r) { return r.get() == old; });
    });
  }
  // Parked connections were opened with the old settings (TLS, login).
  std::vector<Outbound*> parked;
  for (auto& [dest, v] : idle_)
    for (Outbound* o : v) parked.push_back(o);
  idle_.clear();
  for (Outbound* o : parked) o->abort();
  log::info("delivery: settings reloaded: relayhost={} tls={} retry_schedule={} "
            "max_connections={} dns_servers={}{}",
            dc.relayhost.empty() ? "-" : dc.relayhost, conf::to_string(outbound_tls(dc)),
            dc.retry_schedule.size(), dc.max_connections, config_->dns.servers.size(),
            dns_changed ? " (new resolver)" : "");
  run();
}

void Delivery::start() {
  if (sts_tls_ && !sts_) {
    StsPolicies::Options o;
    o.dir = config_->spool_dir + "/sts";
    o.tls = sts_tls_;
    o.resolver = [this] { return resolver_.get(); };
    auto store = StsPolicies::open(loop_, std::move(o));
    if (store) {
      sts_ = std::move(*store);
      sts_closed_ = false;
    } else {
      log::error("mta-sts: {}; MTA-STS policies are not applied", store.error());
    }
  }
  auto msgs = spool_.messages();
  for (auto& env : msgs) {
    auto c = scheduler_.add(std::move(env));
    if (c.persist == queue::Completion::Persist::remove)
      spool_.remove(c.id, [](bool) {});
  }
  const auto& dc = config_->delivery;
  std::string dane_why;
  dane_in_force(*config_, &dane_why);
  log::info("delivery: {} messages queued, relayhost={} tls={} ca_file={}{}", msgs.size(),
            dc.relayhost.empty() ? "-" : dc.relayhost, conf::to_string(outbound_tls(dc)),
            dc.ca_file,
            dc.relayhost.empty()
                ? fmt::format(" mta_sts={} dane={}", dc.mta_sts ? "on" : "off", dane_why)
                : fmt::format(" tls_name={}", dc.relayhost_verify_name()));
  run();
}

void Delivery::add(queue::Envelope env) {
  // After close_handles (the intake runs its last commits then): the message
  // is in the spool, the next start delivers it.
  if (closed_ || scheduler_.find(env.id)) return;
  auto c = scheduler_.add(std::move(env));
  if (c.persist == queue::Completion::Persist::remove) spool_.remove(c.id, [](bool) {});
  run();
}

bool Delivery::hold(std::string_view id) {
  auto c = scheduler_.hold(id, wall_clock_us());
  if (!c) return false;
  handle_completion(std::move(*c));
  run();
  return true;
}

bool Delivery::release(std::string_view id) {
  auto c = scheduler_.release(id);
  if (!c) return false;
  handle_completion(std::move(*c));
  run();
  return true;
}

bool Delivery::flush(std::string_view id) {
  if (!scheduler_.flush(id, wall_clock_us())) return false;
  run();
  return true;
}

size_t Delivery::flush_all() {
  size_t n = scheduler_.flush_all(wall_clock_us());
  run();
  return n;
}

bool Delivery::bounce(std::string_view id) {
  auto c = scheduler_.bounce_now(id, wall_clock_us());
  if (!c) return false;
  handle_completion(std::move(*c));
  run();
  return true;
}

bool Delivery::remove(std::string_view id) {
  auto c = scheduler_.remove(id);
  if (!c) return false;
  handle_completion(std::move(*c));
  run();
  return true;
}

void Delivery::run() {
  if (stopping_) return;
  for (auto& job : scheduler_.take_jobs(wall_clock_us())) start_job(std::move(job));
  arm_timer();
}

void Delivery::arm_timer() {
  if (stopping_ || !timer_) return;
  auto w = scheduler_.next_wakeup();
  if (!w) {
    uv_timer_stop(timer_.get());
    return;
  }
  int64_t delta = *w - wall_clock_us();
  uint64_t ms = delta <= 0 ? 0 : static_cast<uint64_t>((delta + 999) / 1000);
  uv_timer_start(timer_.get(), on_timer, ms, 0);
}

void Delivery::on_timer(uv_timer_t* t) {
  uv::guard("delivery timer", [&] { static_cast<Delivery*>(t->data)->run(); });
}

JobRun* Delivery::make_run(queue::Job job) {
  const queue::Envelope* env = scheduler_.find(job.message_id);
  const auto& dc = config_->delivery;
  auto run = std::make_unique<JobRun>(std::move(job), queue::policy::Context{!dc.relayhost.empty()},
                                      myself_, dc.relayhost.empty() ? dc.port : dc.relayhost_port);
  if (stopping_) run->attempt.stop();
  if (env) {
    run->tx.sender = env->sender;
    run->tx.size = env->size;
    run->tx.needs_8bitmime = env->body == queue::BodyType::eight_bit_mime;
    run->tx.needs_smtputf8 = env->smtputf8;
    run->tx.envid = env->envid;
    run->tx.ret = env->ret;
    run->requiretls = env->requiretls;
    run->relaxed = (env->tls_optional && !env->requiretls) ||
                   (tls_reports_ && tls_reports_->is_tls_report(env->id));
    for (uint32_t k : run->job.recipients) {
      const auto& r = env->recipients.at(k);
      run->tx.recipients.push_back(client::Recipient{r.address, r.orcpt, r.notify});
    }
  }
  JobRun* raw = run.get();
  runs_[raw->job.serial] = std::move(run);
  if (env && env->requiretls && !shared_.tls) {
    // No TLS client at all (delivery.tls = "none", no MTA-STS or DANE):
    // no host can ever qualify, so waiting cannot help (RFC 8689 §4.2.1).
    raw->attempt.give_up(queue::policy::requiretls_impossible(
        "Sluice has no TLS client (delivery.tls = \"none\")"));
    finish(raw, true);
    return nullptr;
  }
  if (!env) {  // cannot happen: the scheduler hands out jobs of live messages
    raw->attempt.give_up(queue::policy::message_missing());
    finish(raw, true);
    return nullptr;
  }
  return raw;
}

JobRun* Delivery::find_run(uint64_t serial) {
  auto it = runs_.find(serial);
  return it == runs_.end() ? nullptr : it->second.get();
}

void Delivery::start_job(queue::Job job) {
  JobRun* run = make_run(std::move(job));
  if (!run) return;
  if (Outbound* o = take_idle(run->job.destination)) {
    if (may_reuse(*o, *run)) {
      attach(*o, *run, true);
      start_on(*o, *run, false);
      return;
    }
    o->abort();  // opened before the destination demanded more
  }
  resolve(run);
}

void Delivery::attach(Outbound& o, JobRun& run, bool reused) {
  o.take_job(run.job.serial, run.job.message_id, run.tx.size);
  run.attempt.on_connection(o.host(), o.relay(), reused);
}

client::Transaction Delivery::transaction(JobRun& run) {
  client::Transaction t;
  t.sender = run.tx.sender;
  t.size = run.tx.size;
  t.needs_8bitmime = run.tx.needs_8bitmime;
  t.needs_smtputf8 = run.tx.needs_smtputf8;
  t.envid = run.tx.envid;
  t.ret = run.tx.ret;
  t.requiretls = run.requiretls;  // the client refuses a server that does not offer it
  for (size_t i : run.attempt.start_transaction()) t.recipients.push_back(run.tx.recipients[i]);
  return t;
}

// --- what the connections report ---------------------------------------------

void Delivery::on_ready(Outbound& o, uint64_t job) {
  record_tls(tls_reports_, shared_, o, nullptr);
  if (JobRun* run = find_run(job)) o.start(transaction(*run));
}

void Delivery::on_transaction_done(Outbound& o, uint64_t job, queue::HostReport report) {
  JobRun* run = find_run(job);
  if (!run) return;  // cannot happen: a job lives until its connection reports
  shaping_feedback(o, run, report);
  auto d = run->attempt.on_host_done(std::move(report));
  if (!std::holds_alternative<queue::DeliveryAttempt::Done>(d)) {
    // The job moves on to another host (or a fresh lookup): this one is done.
    o.quit();
    carry_out(run, std::move(d));
    return;
  }
  finish(run, false);
  if (stopping_) {
    o.quit();
    return;
  }
  // Reuse: the destination's next message over the same connection (until
  // the site's messages_per_connection).
  if (spent(o)) {
    this->run();
    o.quit();
    return;
  }
  if (o.reusable()) {
    if (auto next_job = scheduler_.take_job_for(o.destination(), wall_clock_us())) {
      if (JobRun* next = make_run(std::move(*next_job))) {
        if (may_reuse(o, *next)) {
          attach(o, *next, true);
          start_on(o, *next, true);
          this->run();
          return;
        }
        resolve(next);  // a connection of its own; this one is not kept
        this->run();
        o.quit();
        return;
      }
    }
  }
  this->run();
  if (o.has_job()) return;
  // Nothing waiting: keep it for the destination's next message.
  if (o.reusable()) {
    park(o);
    return;
  }
  o.quit();
}

void Delivery::on_failed(Outbound& o, uint64_t job, queue::HostReport report) {
  if (report.failure) record_tls(tls_reports_, shared_, o, &*report.failure);
  shaping_feedback(o, find_run(job), report);
  if (JobRun* run = find_run(job)) carry_out(run, run->attempt.on_host_done(std::move(report)));
}

void Delivery::on_closed(Outbound& o) {
  unpark(o);
  shaping_closed(o);
  conns_.erase(o.id());
  check_drained();
}

void Delivery::carry_out(JobRun* run, queue::DeliveryAttempt::Decision d) {
  if (auto* c = std::get_if<queue::DeliveryAttempt::Connect>(&d)) {
    open(run, c->target);
  } else if (std::holds_alternative<queue::DeliveryAttempt::Resolve>(d)) {
    resolve(run);
  } else {
    finish(run, true);
  }
}

// --- the idle cache -------------------------------------------------------------

void Delivery::park(Outbound& o) {
  o.park();
  idle_[o.destination()].push_back(&o);
}

// The most recently parked connection to `destination` that can still carry
// a job (LIFO: the others reach their idle limit and close).
Outbound* Delivery::take_idle(const std::string& destination) {
  auto it = idle_.find(destination);
  if (it == idle_.end()) return nullptr;
  Outbound* found = nullptr;
  auto& v = it->second;
  std::vector<Outbound*> spent;  // too old to reuse: they say QUIT now
  while (!v.empty() && !found) {
    Outbound* o = v.back();
    v.pop_back();
    if (o->reusable())
      found = o;
    else
      spent.push_back(o);
  }
  if (v.empty()) idle_.erase(it);
  for (Outbound* o : spent) o->abort();
  return found;
}

void Delivery::unpark(Outbound& o) {
  auto it = idle_.find(o.destination());
  if (it == idle_.end()) return;
  auto& v = it->second;
  v.erase(std::remove(v.begin(), v.end(), &o), v.end());
  if (v.empty()) idle_.erase(it);
}

// At delivery.max_connections: the connection idle the longest says QUIT to
// make room.
void Delivery::evict_idle() {
  Outbound* oldest = nullptr;
  for (auto& [dest, v] : idle_)
    for (Outbound* o : v)
      if (!oldest || o->idle_since() < oldest->idle_since()) oldest = o;
  if (!oldest) return;
  unpark(*oldest);
  oldest->abort();
}

// --- lookups and connections -------------------------------------------------------

void Delivery::resolve(JobRun* run) {
  const uint64_t serial = run->job.serial;
  const uint64_t gen = resolver_gen_;
  const auto& dc = config_->delivery;
  // An answer from a resolver a reload replaced (cancelled) is asked again.
  if (!dc.relayhost.empty()) {
    resolver_->resolve_addresses(dc.relayhost_name, [this, serial, gen](dns::AddrResult r) {
      JobRun* run = find_run(serial);
      if (!run) return;
      if (gen != resolver_gen_ && !stopping_) return resolve(run);
      on_relayhost(run, r);
    });
    return;
  }
  resolver_->resolve_mx(run->job.destination, [this, serial, gen](dns::MxResult r) {
    JobRun* run = find_run(serial);
    if (!run) return;
    if (gen != resolver_gen_ && !stopping_) return resolve(run);
    on_mx(run, std::move(r));
  });
}

void Delivery::open_with(JobRun* run, const queue::Target& target, Protection protection) {
  run->target = target;
  run->protection = std::move(protection);
  admit(run);  // the site's lease and token first (delivery_shaping.cpp)
}

void Delivery::connect_now(JobRun* run, const queue::Target& target, Protection protection, uint64_t lease) {
  const auto& dc = config_->delivery;
  uint16_t port = dc.relayhost.empty() ? dc.port : dc.relayhost_port;
  if (conns_.size() >= dc.max_connections) evict_idle();
  auto* o = new Outbound(shared_, *this, next_conn_++, target, port, run->job.destination,
                         std::move(protection));
  conns_.emplace(o->id(), o);
  if (lease != 0) leases_[o->id()] = Lease{run->site, lease};
  run->target.reset();
  attach(*o, *run, false);
  o->connect();
}

void Delivery::finish(JobRun* run, bool run_after) {
  if (run->attempt.interrupted()) {
    // Interrupted by shutdown with nothing final learnt: write nothing, so
    // the message keeps its state on disk and is due at once after a restart
    // (docs/delivery.md, "What is kept on disk"). The scheduler is not used
    // for delivery again in this process.
    log::info("{}: delivery to {} interrupted by shutdown; retried at the next start",
              run->job.message_id, log::sanitize(run->job.destination));
    drop_shaping(run);
    runs_.erase(run->job.serial);
    return;
  }
  auto [verdicts, relays, tls] = run->attempt.finish();
  const int64_t now = wall_clock_us();
  if (sts_recheck(run, verdicts, now)) return;  // finished again once the policy is known
  drop_shaping(run);
  queue::Job job = run->job;
  // A TLS-RPT report is retried for at most 24 hours (RFC 8460 §5.3.1),
  // whatever max_queue_lifetime says; it has the null sender, so giving up
  // sends no bounce.
  constexpr int64_t kReportLifetimeUs = 24LL * 3600 * 1000 * 1000;
  if (tls_reports_ && tls_reports_->is_tls_report(job.message_id)) {
    const queue::Envelope* env = scheduler_.find(job.message_id);
    if (env && queue::policy::expired(env->arrival_us, kReportLifetimeUs, now))
      for (auto& v : verdicts)
        if (v.action == queue::Action::defer) v = queue::policy::expire(std::move(v));
  }
  runs_.erase(job.serial);  // `run` is gone from here on
  auto c = scheduler_.complete(job, verdicts, now);
  // One line per recipient attempt.
  for (size_t i = 0; i < job.recipients.size() && i < verdicts.size(); ++i) {
    const auto& v = verdicts[i];
    std::string rcpt = job.recipients[i] < c.envelope.recipients.size()
                           ? c.envelope.recipients[job.recipients[i]].address
                           : std::string("?");
    std::string_view status = "deferred";
    std::string dsn = v.status;
    if (job.recipients[i] < c.envelope.recipients.size()) {
      const auto& er = c.envelope.recipients[job.recipients[i]];
      if (!er.dsn_status.empty()) dsn = er.dsn_status;
      auto st = er.status;
      if (st == queue::RcptStatus::sent) status = "sent";
      else if (st == queue::RcptStatus::bounced) status = "bounced";
    } else if (v.action == queue::Action::sent) {
      status = "sent";
    } else if (v.action == queue::Action::bounce) {
      status = "bounced";
    }
    double delay = static_cast<double>(now - c.envelope.arrival_us) / 1e6;
    obs::emit(events::verdict(c.envelope, job.recipients[i], status, dsn, v.reply, relays[i],
                              queue::to_string(tls[i]), now),
              fmt::format("{}: to=<{}> relay={} delay={:.1f} tls={} dsn={} status={} ({})", job.message_id,
                          log::sanitize(rcpt), log::sanitize(relays[i]), delay, queue::to_string(tls[i]), dsn,
                          status, log::sanitize(v.reply, 400)));
  }
  handle_completion(std::move(c));
  if (run_after) this->run();
}

void Delivery::handle_completion(queue::Completion c) {
  if (!c.bounce.empty()) store_bounce(c);
  const std::string id = c.id;
  switch (c.persist) {
    case queue::Completion::Persist::nothing: break;
    case queue::Completion::Persist::update:
      spool_.update(std::move(c.envelope), [id](bool ok) {
        if (!ok) log::error("{}: could not write the delivery state to the spool", id);
      });
      break;
    case queue::Completion::Persist::remove:
      spool_.remove(id, [id](bool ok) {
        if (!ok) log::error("{}: could not remove the message from the spool", id);
      });
      log::info("{}: removed", id);
      break;
  }
}

void Delivery::store_bounce(const queue::Completion& c) {
  const std::string& hostname = config_->hostname;
  const int64_t now = wall_clock_us();
  std::string head;
  auto r = spool_.read_body(c.id, [&head](std::string_view s) { head.append(s); },
                            queue::kMaxDsnHeaderBytes + 4);
  if (!r) log::warning("{}: bounce without the original headers: {}", c.id, r.error());
  // Through the intake like every message: it comes back to add() once durable.
  auto m = intake_.begin(Intake::Source::bounce, mail::Trace{});
  const std::string mid = "<" + m->id() + "@" + hostname + ">";
  std::string content = queue::make_dsn(c.envelope, c.bounce, hostname, head, now, mid);
  queue::Envelope env = queue::bounce_envelope(c.envelope, content, mid, now);
  m->append(content);
  log::info("{}: sender non-delivery notification: {} to=<{}> nrcpt={}", c.id, m->id(),
            log::sanitize(c.envelope.sender), c.bounce.size());
  intake_.commit(std::move(m), std::move(env), [](bool ok, const queue::Envelope& committed) {
    if (!ok) log::error("{}: could not store the bounce", committed.id);
  });
}

void Delivery::shutdown(std::function<void()> done) {
  stopping_ = true;
  for (auto& [serial, run] : runs_) run->attempt.stop();
  drained_ = std::move(done);
  if (timer_) uv_timer_stop(timer_.get());
  if (shaping_timer_) uv_timer_stop(shaping_timer_.get());
  // Runs waiting for their site have no connection to report: they end now.
  std::vector<JobRun*> waiting;
  for (auto& [serial, run] : runs_)
    if (run->waiting) waiting.push_back(run.get());
  for (JobRun* run : waiting) finish(run, false);
  waits_.clear();
  lease_waiters_.clear();
  std::vector<Outbound*> all;
  for (auto& [id, o] : conns_) all.push_back(o);
  for (auto* o : all) o->abort();
  if (sts_) {
    sts_->close([this] {
      sts_closed_ = true;
      check_drained();
    });
  }
  resolver_->close([this] {
    resolver_closed_ = true;
    check_drained();
  });
  check_drained();
}

void Delivery::check_drained() {
  if (stopping_ && resolver_closed_ && sts_closed_ && conns_.empty() && drained_) {
    auto done = std::move(drained_);
    drained_ = nullptr;
    log::info("delivery: stopped");
    done();
  }
}

void Delivery::close_handles() {
  closed_ = true;
  timer_.close();  // freed in its close callback
  shaping_timer_.close();
  resolver_.reset();
  sts_.reset();  // closed by shutdown()
}

}  // namespace sluice::mta
