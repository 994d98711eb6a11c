// delivery.hpp — delivery's orchestration on the loop (docs/delivery.md).
//
// One Delivery lives on the daemon's loop. It owns the queue::Scheduler, a
// dns::Resolver, the client TLS context (in OutboundShared), ONE timer (a
// uv::Handle) armed from Scheduler::next_wakeup() (never polling), the outbound
// connections (mta/outbound.hpp) and a per-destination cache of idle ones.
// It decides nothing about what a reply or a failure means: each job in
// flight has a queue::DeliveryAttempt (pure), and Delivery only carries events to it
// (the lookup's answer, what a connection reported) and carries out its
// decisions (look up, connect to this address, start a transaction with
// these recipients, done). Each attempt gets the loop check's answer to
// "which next hop is this Sluice" (queue::Myself, from the listeners and the
// interface addresses; docs/delivery.md "Mail loops") and the port it
// connects to. Once the attempt is done it completes the job:
// bounce first (a new message with the null sender, through the intake),
// then the envelope update or removal, and one log line per recipient.
// After a job a connection takes the destination's next job
// (take_job_for), or waits idle (at most 2 s) in the cache that new jobs
// take connections from before they open new ones.
//
// Memory: outbound connections are uv::StreamConnections that free
// themselves once closed and say so first (OutboundHost::on_closed); the
// timer is freed in its close callback; a bounce comes back through the
// intake, like any message, once it is durable. Its one libuv entry (the
// timer) goes through uv::guard; the resolver guards its own. Single-threaded:
// every method runs on the loop.
#pragma once

#include <uv.h>

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <set>
#include <tuple>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "conf/config.hpp"
#include "dns/resolver.hpp"
#include "mta/outbound.hpp"
#include "mta/sts_policies.hpp"
#include "mta/uv/handle.hpp"
#include "queue/attempt.hpp"
#include "shaping/shaper.hpp"
#include "queue/scheduler.hpp"
#include "mta/intake.hpp"
#include "queue/spool.hpp"

namespace sluice::mta {

struct JobRun;

// What a configuration gives delivery beyond its values, made before it is
// used so that a reload can fail without touching the running delivery: the
// relayhost login and password (read from its file), the client TLS context
// and, when dns.servers differ from the running ones, a new resolver.
struct DeliverySetup {
  DeliverySetup() = default;
  DeliverySetup(DeliverySetup&&) = default;
  DeliverySetup& operator=(DeliverySetup&&) = default;
  ~DeliverySetup();  // wipes the password
  std::string login, password;
  std::shared_ptr<const tls::TlsContext> tls;
  std::unique_ptr<dns::Resolver> resolver;  // null: keep the running one
  // delivery.dane, and the resolvers' AD bit can be believed (dns/trust.hpp):
  // TLSA records are looked up (and the resolver asks with the AD bit).
  bool dane = false;
  // A verifying client context for MTA-STS policy fetches (delivery.ca_file);
  // null when delivery.mta_sts is off.
  std::shared_ptr<const tls::TlsContext> sts_tls;
};

class TlsReports;

class Delivery final : private OutboundHost {
 public:
  static std::expected<std::unique_ptr<Delivery>, std::string> create(
      uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool,
      Intake& intake);
  ~Delivery() override;

  // For a reload: everything `fresh` needs, or why it cannot be used (the
  // running delivery is not touched either way). `running` is the
  // configuration in force, null at start. Without a loop (sluiced --check)
  // no resolver is made.
  static std::expected<DeliverySetup, std::string> setup(uv_loop_t* loop, const conf::Config& fresh,
                                                          const conf::Config* running);
  // Puts a prepared configuration in force (SIGHUP; docs/configuration.md,
  // "Reloading"): limits, retry schedule, queue lifetime, relayhost and its
  // credentials, TLS and DNS servers apply to every attempt started from now;
  // idle connections are closed; jobs in flight finish as they began.
  void reload(std::shared_ptr<const conf::Config> config, DeliverySetup setup);

  // Adds every message of the spool to the scheduler and starts what is due.
  void start();
  // A message whose commit is durable: the intake's one hand-off (it is
  // ignored once the handles are closed).
  void add(queue::Envelope env);
  // Stops starting jobs, aborts the outbound connections (their jobs are
  // deferred) and closes the resolver; `done` runs once all of that is closed.
  // The spool must still be open until then.
  void shutdown(std::function<void()> done);
  // After shutdown's done and after the spool is gone: closes the timer and
  // the resolver. The loop can end afterwards.
  void close_handles();

  size_t connections() const { return conns_.size(); }  // busy and idle

  // --- shaping (mta/delivery_shaping.cpp, docs/shaping.md) -----------------
  // The sites' limits and automation, asked before every new connection and
  // every message (null: no shaping). Owned by the daemon with its Store; it
  // must outlive the delivery's handles.
  void set_shaper(shaping::Shaper* s) { shaper_ = s; }

  // --- TLS-RPT ----------------------------------------------
  // Where each outgoing TLS session's outcome is counted (null: nowhere).
  void set_tls_reports(TlsReports* r) { tls_reports_ = r; }
  // The running resolver (TlsReports looks _smtp._tls up through it).
  dns::Resolver* resolver() const { return resolver_.get(); }

  // --- sluicectl (through the control socket) -----------------------------
  // The scheduler holds every live message: for listing and showing.
  const queue::Scheduler& scheduler() const { return scheduler_; }
  // Each applies the scheduler's admin call, persists what it changed (the
  // held flag, a removal, a bounce) and starts whatever is now due. False for
  // an unknown id, which changes nothing. The control socket logs who did it.
  bool hold(std::string_view id);
  bool release(std::string_view id);
  bool flush(std::string_view id);
  size_t flush_all();
  bool bounce(std::string_view id);
  bool remove(std::string_view id);

 private:
  // Gathers again what the loop check counts as this Sluice (the
  // configuration's listeners, the machine's interface addresses), for the
  // jobs started from now on: at start, and on reload (docs/delivery.md,
  // "Mail loops").
  void refresh_myself();

  Delivery(uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool,
           Intake& intake);

  // --- OutboundHost -----------------------------------------------------------
  void on_ready(Outbound& o, uint64_t job) override;
  void on_transaction_done(Outbound& o, uint64_t job, queue::HostReport report) override;
  void on_failed(Outbound& o, uint64_t job, queue::HostReport report) override;
  void on_closed(Outbound& o) override;

  void run();  // take_jobs, start them, re-arm the timer
  void arm_timer();
  JobRun* make_run(queue::Job job);  // null when the job was finished at once
  JobRun* find_run(uint64_t serial);
  void start_job(queue::Job job);  // on an idle connection, or resolve()
  void attach(Outbound& o, JobRun& run, bool reused);  // the connection carries the job
  client::Transaction transaction(JobRun& run);  // the attempt's recipients, to send
  void park(Outbound& o);          // into the idle cache
  Outbound* take_idle(const std::string& destination);
  bool may_reuse(const Outbound& o, const JobRun& run);
  void unpark(Outbound& o);
  void evict_idle();
  void carry_out(JobRun* run, queue::DeliveryAttempt::Decision d);  // the attempt's decision
  void resolve(JobRun* run);
  // A new connection for the job: after the host's TLSA lookup when DANE
  // applies to it (its addresses are DNSSEC-secure), else at once.
  void open(JobRun* run, const queue::Target& target);
  void open_with(JobRun* run, const queue::Target& target, Protection protection);
  // What the target's session needs when no usable TLSA record speaks for it.
  Protection protection_without_dane(const JobRun& run) const;
  // A target that cannot be tried (its TLSA lookup failed): the attempt
  // counts it as a host's TLS failure and moves on.
  void fail_target(JobRun* run, const queue::Target& target, queue::policy::SessionEvent event);
  // The MX answer under the destination's MTA-STS policy: in enforce mode
  // only the hosts it lists (none left: the job is finished, deferred);
  // testing mode changes nothing (its failures are only reported).
  void on_mx(JobRun* run, dns::MxResult r);
  // The relayhost's addresses under the policy of its domain (SPEC: the
  // relayhost's domain is the policy domain): enforce demands that the
  // policy lists the relayhost's name and that its certificate verifies.
  void on_relayhost(JobRun* run, const dns::AddrResult& r);
  void finish(JobRun* run, bool run_after);  // complete(), log, bounce, persist
  // Opens the connection now (after shaping admitted it; lease 0 when shaping is off).
  void connect_now(JobRun* run, const queue::Target& target, Protection protection, uint64_t lease);

  // --- shaping (mta/delivery_shaping.cpp) --------------------------------------
  // The scheduler's gate: may a job for `destination` start now?
  bool gate(std::string_view destination, bool reuse, int64_t now);
  // The MX answer named the destination's hosts: its site from now on.
  void note_site(JobRun* run, const std::vector<std::string>& hosts);
  // A new connection for the run's target: a lease, then the message's token, then connect_now().
  void admit(JobRun* run);
  // A reused connection `o` carries the run: the message's token, then its transaction.
  void start_on(Outbound& o, JobRun& run, bool from_event);
  // The site said "not yet": wait until `at` (0: until one of its connections closes).
  void wait_for_site(JobRun* run, int64_t at);
  // What a session came to, for adaptive concurrency and the rules.
  void shaping_feedback(const Outbound& o, const JobRun* run, const queue::HostReport& report);
  // Whether a connection has carried its site's messages_per_connection.
  bool spent(const Outbound& o) const;
  // The job ends: a lease it still holds goes back; its destination's site is no longer being looked up.
  void drop_shaping(JobRun* run);
  void shaping_closed(const Outbound& o);  // its lease goes back, the site's waiters wake
  void arm_shaping_timer(int64_t at);
  void on_shaping_tick();
  static void on_shaping_timer(uv_timer_t* t);
  // RFC 8461 §5.1 before an MTA-STS bounce: true when the job waits for the
  // policy to be checked again (finish() comes back later).
  bool sts_recheck(JobRun* run, const std::vector<queue::Verdict>& verdicts, int64_t now);
  void handle_completion(queue::Completion c);
  void store_bounce(const queue::Completion& c);
  void check_drained();
  static void on_timer(uv_timer_t* t);

  uv_loop_t* loop_;
  std::shared_ptr<const conf::Config> config_;
  queue::Spool& spool_;
  Intake& intake_;  // bounces go in through it
  queue::Scheduler scheduler_;
  std::unique_ptr<dns::Resolver> resolver_;
  bool dane_ = false;  // DeliverySetup::dane in force
  TlsReports* tls_reports_ = nullptr;  // TLS-RPT counts (mta/tls_reports.hpp)
  uint64_t resolver_gen_ = 0;  // counts resolver swaps: an answer from an older one is asked again
  std::vector<std::unique_ptr<dns::Resolver>> retired_;  // replaced by a reload, closing
  OutboundShared shared_;  // loop, config, spool, TLS context, relayhost credentials, buffers
  uv::Handle<uv_timer_t> timer_;
  std::unordered_map<uint64_t, Outbound*> conns_;  // every open one, busy or idle
  // Idle connections by destination, most recently parked last.
  std::unordered_map<std::string, std::vector<Outbound*>> idle_;
  std::unordered_map<uint64_t, std::unique_ptr<JobRun>> runs_;  // jobs in flight, by serial
  std::shared_ptr<const queue::Myself> myself_;  // the loop check's "this Sluice"
  uint64_t next_conn_ = 1;
  bool stopping_ = false;
  bool resolver_closed_ = false;
  std::shared_ptr<const tls::TlsContext> sts_tls_;  // DeliverySetup::sts_tls in force
  std::unique_ptr<StsPolicies> sts_;  // MTA-STS policies (from start(); null when off)
  bool sts_closed_ = true;
  bool closed_ = false;
  std::function<void()> drained_;

  // Shaping state (mta/delivery_shaping.cpp).
  shaping::Shaper* shaper_ = nullptr;
  struct KnownSite {
    std::string site;
    int64_t until_us = 0;  // looked up again after this
  };
  std::unordered_map<std::string, KnownSite> dest_site_;       // destination -> its site
  std::unordered_set<std::string> resolving_;                  // destinations whose site is being learnt
  std::unordered_map<std::string, std::unordered_set<std::string>> gated_;  // site -> destinations the gate closed
  struct Lease {
    std::string site;
    uint64_t lease = 0;
  };
  std::unordered_map<uint64_t, Lease> leases_;                 // connection id -> its lease
  std::unordered_map<std::string, std::vector<uint64_t>> lease_waiters_;  // site -> runs waiting for a connection
  std::set<std::tuple<int64_t, uint64_t, uint64_t>> waits_;    // (when, run serial, its wait) for a token or lease
  std::unordered_set<std::string> woken_;                      // sites with a connection closed since the last tick
  uv::Handle<uv_timer_t> shaping_timer_;
  int64_t shaping_timer_at_ = 0;  // when it is armed for (0: not armed)
  int64_t last_sweep_us_ = 0;     // the last reopen of every gated destination and sync of the store
};

}  // namespace sluice::mta
