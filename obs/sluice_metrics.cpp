// sluice_metrics.cpp — the metrics of sluice_metrics.hpp: names, help texts,
// label values and buckets in one place (docs/observability.md lists them).
#include "obs/sluice_metrics.hpp"

#include <fmt/format.h>

#include "obs/event.hpp"

namespace sluice::obs {

namespace {

constexpr std::string_view kDirectionNames[kDirections] = {"inbound", "outbound"};
constexpr std::string_view kTlsOutcomeNames[kTlsOutcomes] = {"ok", "failed", "cert_refused"};
constexpr std::string_view kDnsTypeNames[kDnsTypes] = {"mx", "address", "txt", "ptr", "tlsa"};
constexpr std::string_view kDnsOutcomeNames[kDnsOutcomes] = {"ok", "null_mx", "nxdomain", "no_route",
                                                             "temporary"};
constexpr std::string_view kDeliveryStatusNames[kDeliveryStatuses] = {"sent", "deferred", "bounced",
                                                                      "expired"};
constexpr std::string_view kReplyClassNames[kReplyClasses] = {
    "4.0", "4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7",
    "5.0", "5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7", "other"};

// Delivery time, in milliseconds: from a quick first attempt to the days a
// message may wait (max_queue_lifetime is 5 days by default).
constexpr uint64_t kDeliveryMs[] = {50,      100,     250,      500,      1'000,      2'500,
                                    5'000,   10'000,  30'000,   60'000,   300'000,    900'000,
                                    3'600'000, 14'400'000, 86'400'000, 432'000'000};
// Spool commit, in microseconds: a group commit on an SSD takes 0.2-2 ms.
constexpr uint64_t kCommitUs[] = {100,    250,    500,     1'000,   2'500,   5'000,    10'000,
                                  25'000, 50'000, 100'000, 250'000, 500'000, 1'000'000, 2'500'000};
constexpr uint64_t kBatch[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};

constexpr std::string_view kReceivedHelp =
    "Messages accepted into the queue (durably committed), by where they came in: an SMTP "
    "listener's address, \"maildrop\" or \"api\". Bounces Sluice writes are not counted.";

}  // namespace

metrics::Registry& registry() {
  static metrics::Registry r;
  return r;
}

size_t reply_class(int code, std::string_view enhanced) {
  int digit = code / 100;
  if (code == 0 && !enhanced.empty()) digit = enhanced[0] - '0';
  if (digit != 4 && digit != 5) return kReplyClasses - 1;
  size_t subject = 0;
  if (enhanced.size() >= 3 && enhanced[1] == '.' && enhanced[2] >= '0' && enhanced[2] <= '7' &&
      (enhanced.size() == 3 || enhanced[3] == '.'))
    subject = size_t(enhanced[2] - '0');
  return (digit == 4 ? 0 : 8) + subject;
}

// sluice_bounces_total's index: 5.0..5.7 as 0..7, 8 "other", 9 "expired".
// The enhanced status decides (a bounce's reply may be a 4xx that ended
// in a permanent status); the reply code only without one.
size_t bounce_class(const Response& r) {
  const size_t c = r.enhanced_code.empty() ? reply_class(r.code, "") : reply_class(0, r.enhanced_code);
  return c >= 8 && c < 16 ? c - 8 : 8;
}

std::string_view reply_class_name(size_t index) {
  return kReplyClassNames[index < kReplyClasses ? index : kReplyClasses - 1];
}

SluiceMetrics::SluiceMetrics() {
  auto& r = registry();
  received_api_ = &r.counter("sluice_messages_received_total", kReceivedHelp, {{"listener", "api"}});
  received_maildrop_ =
      &r.counter("sluice_messages_received_total", kReceivedHelp, {{"listener", "maildrop"}});
  for (size_t i = 0; i < kDeliveryStatuses; ++i)
    deliveries_[i] = &r.counter(
        "sluice_deliveries_total",
        "Delivery outcomes, one per recipient and attempt: sent (the next hop took it), deferred (a "
        "temporary failure: tried again later), bounced (a permanent failure: returned to the "
        "sender), expired (still undelivered at max_queue_lifetime: returned to the sender).",
        {{"status", std::string(kDeliveryStatusNames[i])}});
  delivery_seconds_ = &r.histogram(
      "sluice_delivery_seconds",
      "Time from a message's arrival to its delivery to a recipient (sent recipients only).",
      kDeliveryMs, 1000);
  for (size_t i = 0; i < kBounceClasses; ++i)
    bounces_[i] = &r.counter(
        "sluice_bounces_total",
        "Recipients returned to their sender (bounced or expired), by the class of the status that "
        "decided it: 5.Y of its enhanced status code (5.1 addressing, 5.2 mailbox, 5.4 routing, "
        "5.7 policy, ...; 5.0 without a usable one), \"expired\" for max_queue_lifetime, \"other\" "
        "for anything else.",
        {{"class", i < 8 ? std::string(kReplyClassNames[8 + i]) : i == 8 ? "other" : "expired"}});
  for (size_t i = 0; i < kReplyClasses; ++i)
    rejections_[i] = &r.counter(
        "sluice_smtp_rejections_total",
        "Commands and connections the SMTP server refused, by the reply's first digit and the class "
        "of its enhanced code (4.7, 5.1, 5.7, ...; X.0 without one).",
        {{"code", std::string(kReplyClassNames[i])}});
  auth_failures_ = &r.counter("sluice_auth_failures_total",
                              "SMTP AUTH attempts whose login or password was wrong.");
  for (size_t d = 0; d < kDirections; ++d)
    for (size_t o = 0; o < kTlsOutcomes; ++o) {
      if (d == size_t(Direction::inbound) && o == size_t(TlsOutcome::cert_refused)) {
        tls_[d][o] = tls_[d][size_t(TlsOutcome::failed)];  // no certificate is asked of clients
        continue;
      }
      tls_[d][o] = &r.counter(
          "sluice_tls_handshakes_total",
          "TLS handshakes by direction (inbound: SMTP clients; outbound: delivery) and outcome: ok, "
          "failed, cert_refused (outbound: the certificate did not verify where it had to).",
          {{"direction", std::string(kDirectionNames[d])}, {"outcome", std::string(kTlsOutcomeNames[o])}});
    }
  for (size_t t = 0; t < kDnsTypes; ++t)
    for (size_t o = 0; o < kDnsOutcomes; ++o)
      dns_[t][o] = &r.counter(
          "sluice_dns_lookups_total",
          "DNS lookups answered (from the cache or the network), by type (mx, address: A and AAAA "
          "together, txt, ptr, tlsa) and outcome (ok, null_mx, nxdomain, no_route, temporary).",
          {{"type", std::string(kDnsTypeNames[t])}, {"outcome", std::string(kDnsOutcomeNames[o])}});
  spool_commit_ = &r.histogram(
      "sluice_spool_commit_seconds",
      "Time from a message's commit being handed to the spool to its being durable (fdatasync done).",
      kCommitUs, 1'000'000);
  fsync_batch_ = &r.histogram(
      "sluice_spool_fsync_batch_messages",
      "Messages (commits and envelope updates) made durable by one fdatasync: the group commit's batch.",
      kBatch, 1);
}

void SluiceMetrics::add_listener(std::string_view address) {
  const std::string source = fmt::format("smtp:{}", address);
  for (const auto& [s, c] : received_smtp_)
    if (s == source) return;
  received_smtp_.emplace_back(
      source, &registry().counter("sluice_messages_received_total", kReceivedHelp,
                                  {{"listener", std::string(address)}}));
}

void SluiceMetrics::count_event(const Event& e) {
  switch (e.type) {
    case EventType::reception: {
      // One event per recipient, all of a message's in one emit(): count it once.
      if (e.id == last_reception_id_) return;
      last_reception_id_ = e.id;
      if (e.source == "api") {
        received_api_->add();
      } else if (e.source == "maildrop") {
        received_maildrop_->add();
      } else if (e.source.starts_with("smtp:")) {
        for (const auto& [s, c] : received_smtp_)
          if (s == e.source) {
            c->add();
            return;
          }
        add_listener(std::string_view(e.source).substr(5));  // a listener nobody announced
        received_smtp_.back().second->add();
      }
      return;  // "bounce": written by Sluice, not received
    }
    case EventType::delivery:
      deliveries_[size_t(DeliveryStatus::sent)]->add();
      delivery_seconds_->observe_value(e.delay);
      return;
    case EventType::deferral:
      deliveries_[size_t(DeliveryStatus::deferred)]->add();
      return;
    case EventType::bounce:
      deliveries_[size_t(DeliveryStatus::bounced)]->add();
      bounces_[bounce_class(e.response)]->add();
      return;
    case EventType::expiry:
      deliveries_[size_t(DeliveryStatus::expired)]->add();
      bounces_[kBounceClasses - 1]->add();
      return;
    case EventType::rejection:
    case EventType::admin:
      return;
  }
}

void SluiceMetrics::HttpRoute::count(int status) {
  if (status < 100 || status > 599) status = 599;
  auto& slot = by_status_[size_t(status - 100)];
  metrics::Counter* c = slot.load(std::memory_order_acquire);
  if (!c) {
    c = &registry().counter("sluice_http_requests_total",
                            "HTTP requests answered, by route and status code.",
                            {{"route", route_}, {"status", fmt::format("{}", status)}});
    slot.store(c, std::memory_order_release);
  }
  c->add();
}

SluiceMetrics::HttpRoute& SluiceMetrics::http_route(std::string_view route) {
  std::lock_guard lk(http_mu_);
  for (auto& h : http_routes_)
    if (h.route_ == route) return h;
  auto& h = http_routes_.emplace_back();
  h.route_ = route;
  return h;
}

SluiceMetrics& sluice_metrics() {
  static SluiceMetrics m;
  return m;
}

}  // namespace sluice::obs
