// sluice_metrics.hpp — every metric Sluice exports (docs/observability.md,
// "Metrics"), made once in the process-wide Registry, with the fixed label
// values of each as enums so that recording is an array index and one
// relaxed atomic add: no lookup by string, no lock, no allocation.
//
// Who records what:
//  - the event sink (count_event, registered by the daemon with
//    obs::add_sink): messages received by listener, deliveries by status,
//    delivery time, bounces by class;
//  - where it happens: the spool's writer thread (commit time, fsync batch
//    sizes), the server (SMTP rejections, AUTH failures, inbound TLS),
//    outbound connections (outbound TLS), the DNS resolver (lookups by type
//    and outcome), the HTTP server (requests by route and status);
//  - at scrape time, by callbacks the daemon registers (queue sizes, open
//    connections, spool bytes, warnings): see Registry::gauge_fn.
//
// Threads: the record_* functions and the counters are safe from any
// thread; count_event and add_listener run on the loop thread (as every
// sink and the start do). sluice_metrics() makes everything at its first
// call (thread-safe static).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "obs/metrics.hpp"

namespace sluice::obs {

struct Event;

// The process's registry: GET /metrics renders it.
metrics::Registry& registry();

enum class Direction : uint8_t { inbound, outbound };
inline constexpr size_t kDirections = 2;
enum class TlsOutcome : uint8_t {
  ok,            // the handshake completed
  failed,        // it did not (protocol error, the peer went away, timeout)
  cert_refused,  // outbound: the peer's certificate did not verify where it had to
};
inline constexpr size_t kTlsOutcomes = 3;

// The lookups of dns::Resolver, in the order of its result types, and the
// outcomes in the order of dns::Status (dns/resolver.cpp checks both).
enum class DnsType : uint8_t { mx, address, txt, ptr, tlsa };
inline constexpr size_t kDnsTypes = 5;
inline constexpr size_t kDnsOutcomes = 5;  // ok, null_mx, nxdomain, no_route, temporary

enum class DeliveryStatus : uint8_t { sent, deferred, bounced, expired };
inline constexpr size_t kDeliveryStatuses = 4;

// An SMTP reply's class as a label: "4.0".."4.7", "5.0".."5.7" (the reply
// code's first digit and the subject of its RFC 3463 enhanced code; X.0
// when there is none or it is not one of 0-7), "other" for anything else
// (a reply that is not 4xx/5xx). Used for rejections and bounces.
inline constexpr size_t kReplyClasses = 17;
size_t reply_class(int code, std::string_view enhanced);
std::string_view reply_class_name(size_t index);
// Bounces: "5.0".."5.7" (the enhanced status's class; the reply code's
// only without one), "other", "expired" (an expiry event).
inline constexpr size_t kBounceClasses = 10;
struct Response;
size_t bounce_class(const Response& r);

class SluiceMetrics {
 public:
  SluiceMetrics();

  // Events (the loop thread, through obs::add_sink): reception, delivery,
  // deferral, bounce, expiry. Others are ignored.
  void count_event(const Event& e);
  // An SMTP listener's series of sluice_messages_received_total (the
  // daemon, at start, once per listener address; a second call is a no-op).
  void add_listener(std::string_view address);

  void record_tls(Direction d, TlsOutcome o) {
    tls_[static_cast<size_t>(d)][static_cast<size_t>(o)]->add();
  }
  void record_dns(DnsType t, size_t outcome) {
    dns_[static_cast<size_t>(t)][outcome < kDnsOutcomes ? outcome : kDnsOutcomes - 1]->add();
  }
  void record_rejection(int code, std::string_view enhanced) {
    rejections_[reply_class(code, enhanced)]->add();
  }
  void record_auth_failure() { auth_failures_->add(); }
  // Commit handed to the spool -> durable, in microseconds (writer thread).
  void record_spool_commit_us(uint64_t us) { spool_commit_->observe(us); }
  // Messages (commits and envelope updates) made durable by one fdatasync.
  void record_fsync_batch(uint64_t messages) { fsync_batch_->observe(messages); }
  // sluice_http_requests_total of one route, by status: `route` is the
  // route's pattern as registered ("/metrics", "/api/v1/messages"; "other"
  // for a request no route took). Made once per route (the reference is
  // kept by whoever answers the route); count(status) takes the registry's
  // lock only the first time a status is seen.
  class HttpRoute {
   public:
    void count(int status);

   private:
    friend class SluiceMetrics;
    std::string route_;
    std::array<std::atomic<metrics::Counter*>, 500> by_status_{};  // 100..599
  };
  HttpRoute& http_route(std::string_view route);

  uint64_t deliveries(DeliveryStatus s) const { return deliveries_[static_cast<size_t>(s)]->value(); }

 private:
  metrics::Counter* received_api_;
  metrics::Counter* received_maildrop_;
  std::vector<std::pair<std::string, metrics::Counter*>> received_smtp_;  // "smtp:ADDRESS"
  std::string last_reception_id_;  // a message's reception events count once
  metrics::Counter* deliveries_[kDeliveryStatuses];
  metrics::Histogram* delivery_seconds_;
  metrics::Counter* bounces_[kBounceClasses];
  metrics::Counter* tls_[kDirections][kTlsOutcomes];
  metrics::Counter* dns_[kDnsTypes][kDnsOutcomes];
  metrics::Counter* rejections_[kReplyClasses];
  metrics::Counter* auth_failures_;
  metrics::Histogram* spool_commit_;
  metrics::Histogram* fsync_batch_;
  std::mutex http_mu_;
  std::deque<HttpRoute> http_routes_;
};

SluiceMetrics& sluice_metrics();

}  // namespace sluice::obs
