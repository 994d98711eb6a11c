// envelope.hpp — what the spool keeps about a message besides its content.
//
// Plain values; encode()/decode() give the binary form stored in the spool's
// commit records (format in docs/spool.md). decode() never trusts its input:
// malformed bytes give an error, never a crash.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::queue {

enum class RcptStatus : uint8_t { pending = 0, sent = 1, deferred = 2, bounced = 3 };
std::string_view to_string(RcptStatus s);

enum class BodyType : uint8_t { unspecified = 0, seven_bit = 1, eight_bit_mime = 2 };

struct Recipient {
  std::string address;      // as given in RCPT TO, without <>
  std::string orcpt;        // DSN ORCPT parameter, "" when absent
  uint8_t notify = 0;       // DSN NOTIFY flags (bit 0 success, 1 failure, 2 delay, 3 never)
  RcptStatus status = RcptStatus::pending;
  std::string last_reply;   // last remote reply or local reason
  bool operator==(const Recipient&) const = default;
};

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
  bool operator==(const Envelope&) const = default;
};

std::string encode(const Envelope& env);
// Appends the same bytes as encode() to `out` (the spool builds its commit
// records this way, without an extra copy).
void encode_append(const Envelope& env, std::string& out);
std::expected<Envelope, std::string> decode_envelope(std::string_view bytes);

}  // namespace sluice::queue
