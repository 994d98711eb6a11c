// envelope.hpp — what the spool keeps about a message besides its content.
//
// Plain values; encode()/decode() give the binary form stored in the spool's
// commit records (format in docs/spool.md). decode() never trusts its input:
// malformed bytes give an error, never a crash. encode() always writes the
// newest version (3); decode_envelope() also reads versions 1 and 2, giving
// the fields they lack their defaults.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "queue/tls_level.hpp"

namespace sluice::queue {

enum class RcptStatus : uint8_t { pending = 0, sent = 1, deferred = 2, bounced = 3 };
std::string_view to_string(RcptStatus s);

enum class BodyType : uint8_t { unspecified = 0, seven_bit = 1, eight_bit_mime = 2 };

struct Recipient {
  std::string address;      // as given in RCPT TO, without <>
  std::string orcpt;        // DSN ORCPT parameter, "" when absent
  uint8_t notify = 0;       // DSN NOTIFY flags (bit 0 success, 1 failure, 2 delay, 3 never)
  RcptStatus status = RcptStatus::pending;
  std::string last_reply;   // last remote reply or local reason, e.g. "550 5.1.1 no such user"
  // Delivery state (envelope version 2; 0 / "" when read from version 1).
  uint32_t attempts = 0;         // delivery attempts that reached a verdict for this recipient
  int64_t last_attempt_us = 0;   // when the last one ended; 0 never
  std::string dsn_status;        // enhanced status of the last verdict ("4.4.1", "5.1.1"), "" none
  std::string remote_host;       // the server whose reply last_reply is; "" when Sluice made it up
  // Envelope version 3 (none when read from 1 or 2): how the session that gave
  // the last verdict was protected (delivery fills it; docs/transport-security.md).
  TlsLevel tls = TlsLevel::none;
  bool operator==(const Recipient&) const = default;
};

// One entry of a message's attempt history (the newest kMaxHistory are kept).
struct Attempt {
  int64_t time_us = 0;
  int32_t recipient = -1;   // index into Envelope::recipients; -1 the whole job / connection
  std::string host;         // remote server, "" when none was reached
  std::string reply;        // the reply or reason recorded
  bool operator==(const Attempt&) const = default;
};
inline constexpr size_t kMaxHistory = 20;

struct Envelope {
  std::string id;            // queue id
  int64_t arrival_us = 0;    // microseconds since the epoch
  std::string sender;        // "" is the null sender <>
  std::vector<Recipient> recipients;
  uint64_t size = 0;         // content bytes as stored (CRLF line ends, Received included)
  BodyType body = BodyType::unspecified;
  bool smtputf8 = false;
  std::string envid;         // DSN ENVID
  uint8_t ret = 0;           // DSN RET: 0 unset, 1 FULL, 2 HDRS
  std::string client_address;
  std::string helo;
  std::string auth_user;
  std::string message_id;    // Message-ID header value, for logs
  // Delivery state (envelope version 2; defaults when read from version 1).
  uint32_t attempts = 0;        // delivery rounds made (see docs/delivery.md)
  int64_t next_attempt_us = 0;  // when the next round is due; 0 as soon as possible
  bool held = false;            // sluicectl queue hold: no delivery until released
  std::vector<Attempt> history; // oldest first; add_history() keeps it bounded
  // Envelope version 3 (false when read from 1 or 2); RFC 8689, see
  // docs/transport-security.md "REQUIRETLS".
  bool requiretls = false;      // MAIL FROM:<...> REQUIRETLS: deliver only over authenticated TLS
  bool tls_optional = false;    // a "TLS-Required: No" header field, and requiretls not set
  bool operator==(const Envelope&) const = default;
};

// Appends to env.history, dropping the oldest entries beyond kMaxHistory.
void add_history(Envelope& env, Attempt a);

std::string encode(const Envelope& env);
// Appends the same bytes as encode() to `out` (the spool builds its commit
// records this way, without an extra copy).
void encode_append(const Envelope& env, std::string& out);
std::expected<Envelope, std::string> decode_envelope(std::string_view bytes);

}  // namespace sluice::queue
