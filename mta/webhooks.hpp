// webhooks.hpp — the event webhooks in the daemon (SPEC "Observability and
// the HTTP interface", docs/http-api.md "Webhooks"): every obs::Event a
// [[webhook]] table asks for is stored durably in that webhook's queue under
// <spool_dir>/webhooks/ and then POSTed, in batches, to its url.
//
//  - add() (the obs sink) turns the event into its JSON payload with a new
//    event_id and queues the encoded record in memory. One disk job at a
//    time runs on libuv's thread pool: it appends every queue's waiting
//    records with one write and one fdatasync per queue (what arrives while
//    a job runs waits for the next one: the group commit), writes acks, and
//    reads the next batch to send. Nothing is sent before it is synced.
//  - Per webhook one POST at a time: A/AAAA through the daemon's resolver
//    (or the IP literal), TCP, TLS with SNI and PKIX verification against
//    delivery.ca_file (plain HTTP only to loopback; the configuration
//    checks), one 30 s deadline, the response through sts::ResponseParser.
//    A 2xx acks the batch durably; anything else retries the same batch
//    after webhook::retry_delay (10 s ... hourly). Events stored 3 days ago
//    are dropped with a log line. A queue over Options::max_stored_bytes
//    (1 GiB) takes no new events: they are dropped and counted in a warning.
//  - At start each queue is read back from its ack: what was stored and not
//    acknowledged is sent again (at least once; receivers dedup by event_id).
//  - close() stops sending, writes what add() still holds, waits for the
//    disk job, then calls done; stored events stay for the next start.
//    Events add()ed after close() (deferrals of connections cut at
//    shutdown) are still stored by one more disk job, which keeps the loop
//    running until it is done.
//
// Lifetime: loop thread only, apart from the disk job, which touches only
// the stores and its own job object. The service must live until close()'s
// done ran (the daemon keeps it until the loop ends). POST connections are
// uv::StreamConnections that free themselves; a cancelled one is detached.
// Logs one line per POST outcome (url without its query, count, status),
// never a secret.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "dns/resolver.hpp"
#include "mta/tls/tls.hpp"
#include "obs/event.hpp"

namespace sluice::mta {

class WebhookService {
 public:
  using ResolverFn = std::function<dns::Resolver*()>;
  struct Options {
    uint64_t max_stored_bytes = uint64_t{1} << 30;  // per webhook queue
    std::chrono::milliseconds timeout{30000};       // one POST, DNS included
    std::function<int64_t()> now_s;                 // default: the wall clock
    std::function<double()> jitter;                 // [0, 1); default: random
    // Multiplies every retry delay: tests make the back-off short.
    double retry_scale = 1.0;
  };

  // What a [[webhook]] table needs besides its url, read at start and on
  // reload (all or nothing): its secret's first line, its events; and the
  // client TLS context for https (delivery.ca_file).
  struct Settings {
    struct Hook {
      std::string url;
      std::vector<std::string> events;
      std::string secret;  // "" = unsigned
    };
    std::vector<Hook> hooks;
    std::shared_ptr<const tls::TlsContext> tls;  // null when no url is https
  };
  static std::expected<Settings, std::string> load_settings(const conf::Config& config);

  // Opens (makes) <spool_dir>/webhooks/ and one queue per [[webhook]], and
  // starts sending what they hold. Call with the daemon user's identity.
  static std::expected<std::unique_ptr<WebhookService>, std::string> create(
      uv_loop_t* loop, const conf::Config& config, Settings settings, ResolverFn resolver, Options options);
  static std::expected<std::unique_ptr<WebhookService>, std::string> create(
      uv_loop_t* loop, const conf::Config& config, Settings settings, ResolverFn resolver) {
    return create(loop, config, std::move(settings), std::move(resolver), Options{});
  }
  ~WebhookService();
  WebhookService(const WebhookService&) = delete;
  WebhookService& operator=(const WebhookService&) = delete;

  // The obs sink.
  void add(const obs::Event& event);
  // New secrets, events and CA file for the same urls. False (and nothing
  // changed) when the urls differ: that needs a restart (the caller says so).
  bool reload(Settings settings);
  // See above. A second call does nothing.
  void close(std::function<void()> done);

  // For tests: events queued in memory or stored and not yet acknowledged.
  size_t waiting() const;

 private:
  struct Queue;
  struct Job;
  WebhookService(uv_loop_t* loop, ResolverFn resolver, Options options);
  void kick();
  static void work(uv_work_t* req);
  static void after_work(uv_work_t* req, int status);
  void job_done();
  void start_post(Queue& q);
  void connect_next(Queue& q);
  void on_post_result(Queue& q, int status, std::string error);
  void retry_later(Queue& q);
  bool prune_batch(Queue& q);
  void maybe_closed();
  int64_t now_s() const;

  uv_loop_t* loop_;
  ResolverFn resolver_;
  Options options_;
  std::shared_ptr<const tls::TlsContext> tls_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::unique_ptr<Job> job_;  // the disk job in flight
  bool again_ = false;        // kick() while a job ran
  bool closing_ = false;
  std::function<void()> close_done_;
  std::shared_ptr<bool> alive_;
};

}  // namespace sluice::mta
