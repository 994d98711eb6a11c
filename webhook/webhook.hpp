// webhook.hpp — the pure parts of the event webhooks (SPEC "Observability
// and the HTTP interface", docs/http-api.md "Webhooks"): which obs::Event
// becomes which webhook event, its JSON payload, a batch body, the
// X-Sluice-Signature header, the retry back-off and the 3-day limit, and
// the name of a webhook's queue directory. No I/O, clocks or randomness:
// the caller passes the event id's random bytes, the time and the jitter.
// The on-disk record format is webhook/record.hpp; the durable store
// webhook/store.hpp; the sender and the daemon's service mta/webhooks.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "http/url.hpp"
#include "obs/event.hpp"

namespace sluice::webhook {

// delivery → "delivered", deferral → "deferred", bounce → "bounced",
// expiry → "expired", reception → "accepted"; nullopt for the others
// (rejection, admin), which no webhook receives.
std::optional<std::string_view> event_name(obs::EventType type);

// 32 lower-case hex digits of 16 random bytes: an event's unique id, made
// once when it is stored, so a resend carries the same one.
std::string event_id(std::span<const uint8_t, 16> random);

// One event as a JSON object (no newline): event_id, event, id, recipient,
// sender, time (RFC 3339 UTC, milliseconds), response {code, enhanced_code,
// text} (code 0 when there was no reply, e.g. a connection failure),
// attempts, delay (seconds), mx and mx_address (delivered, deferred,
// bounced: the host last tried, "" when none), tls ("" = none), source
// (accepted only). Invalid UTF-8 becomes U+FFFD. `event` must have a name
// (event_name).
std::string payload(const obs::Event& event, std::string_view event_id);

// A batch: at most max_events payloads and max_bytes of body (always at
// least the first payload), as a JSON array.
inline constexpr size_t kMaxBatchEvents = 100;
inline constexpr size_t kMaxBatchBytes = 256 * 1024;
struct Batch {
  std::string body;  // "[p1,p2,...]"
  size_t count = 0;  // payloads taken from the front
};
Batch build_batch(std::span<const std::string> payloads, size_t max_events = kMaxBatchEvents,
                  size_t max_bytes = kMaxBatchBytes);

// The X-Sluice-Signature value: "t=T,v1=HEX", HEX the lower-case hex
// HMAC-SHA256 under `secret` of the decimal T, ".", and the body.
std::string signature(std::string_view secret, int64_t unix_seconds, std::string_view body);

// The request bytes of one POST of `body` to `url`: Host, User-Agent
// Sluice, Content-Type application/json, Content-Length, Connection: close,
// and X-Sluice-Signature when `signature_value` is not empty.
std::string post_request(const http::Url& url, std::string_view body, std::string_view signature_value);

// The wait before the n-th retry of a failed POST (failures >= 1): 10 s,
// 30 s, 1 min, 5 min, 15 min, then every hour; times a jitter factor from
// 0.9 to 1.1 (`jitter` in [0, 1): 0 → 0.9, 0.5 → 1.0).
std::chrono::milliseconds retry_delay(uint32_t failures, double jitter);

// Events still undelivered this long after they were stored are dropped.
inline constexpr int64_t kMaxAgeSeconds = 3 * 24 * 3600;
inline bool too_old(int64_t stored_s, int64_t now_s) { return now_s - stored_s >= kMaxAgeSeconds; }

// The directory of a webhook's queue under <spool_dir>/webhooks/: 32 hex
// digits of the SHA-256 of its url, so reordering [[webhook]] tables keeps
// each queue.
std::string queue_name(std::string_view url);

// The url for log lines: without its query.
std::string url_for_log(std::string_view url);

}  // namespace sluice::webhook
