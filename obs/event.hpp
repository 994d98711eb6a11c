// event.hpp — what happened to a message, as one value: the events that the
// JSON log, the webhooks and the metrics all read (SPEC "Observability and
// the HTTP interface").
//
// A place where something happens to a message (the server accepting or
// refusing it, delivery's verdict for a recipient, an admin action) builds
// the Events and calls obs::emit() once with them and the text line it has
// always logged: with `[log] format = "text"` that line is written as
// before (the text format does not change); with "json" each event is one
// JSON object per line (to_json). Then every sink sees every event (the
// webhooks, the metrics). One Event names one recipient: a message accepted
// for three recipients is one text line and three "reception" events.
//
// Threads: emit() and add_sink() on the loop thread only (every event source
// runs there); the sinks run inside emit(). Sinks are registered at start
// and removed with clear_sinks() at shutdown.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace sluice::obs {

enum class EventType : uint8_t {
  reception,  // a message was accepted (committed) for this recipient
  delivery,   // the recipient's server took it
  deferral,   // a temporary failure: tried again later
  bounce,     // a permanent failure: returned to the sender
  expiry,     // still undelivered at max_queue_lifetime: returned to the sender
  rejection,  // refused before it was accepted (SMTP reply, API error)
  admin,      // an admin action on the queue (sluicectl delete/bounce/hold/...)
};
inline constexpr size_t kEventTypes = 7;
std::string_view to_string(EventType type);  // "reception", "delivery", ...
std::optional<EventType> event_type_from(std::string_view name);

struct Response {
  int code = 0;               // 0: none
  std::string enhanced_code;  // "2.0.0", or ""
  std::string text;           // the reply text, one line
};

struct Event {
  EventType type = EventType::reception;
  int64_t time_us = 0;    // wall clock (UNIX epoch, microseconds)
  std::string id;         // queue id; "" for a rejection before one existed
  std::string sender;     // envelope sender ("" is the null sender)
  std::string recipient;  // one recipient ("" when the event has none)
  Response response;
  std::string peer_name;     // reception: the client's EHLO name; delivery: the MX host
  std::string peer_address;  // an IP address, or ""
  std::string tls;           // "none", or how it was protected: reception the TLS
                             // version and cipher; delivery the level (tls= of the text log)
  double delay = 0;          // seconds since the message arrived
  uint32_t attempts = 0;     // delivery attempts for this recipient so far
  std::string source;        // reception/rejection: "smtp:LISTENER", "maildrop", "api", "bounce"
  std::string action;        // admin: "delete", "bounce", "hold", "release", "flush", "requeue"
};

// One JSON object (no newline): the SPEC fields, `response` and `peer` as
// objects, `time` in RFC 3339 UTC with milliseconds; empty strings kept as
// "". Invalid UTF-8 becomes U+FFFD.
std::string to_json(const Event& e);

using Sink = std::function<void(const Event&)>;
void add_sink(Sink sink);
void clear_sinks();

// Logs `text` (text format; nothing when it is empty) or the events (json
// format) at info level, then hands each event to every sink.
void emit(std::span<const Event> events, std::string_view text);
inline void emit(const Event& event, std::string_view text) { emit(std::span<const Event>(&event, 1), text); }

}  // namespace sluice::obs
