// dsn.hpp — bounces: RFC 3464 delivery status notifications.
//
// make_dsn() composes the whole content of a bounce message (headers and a
// multipart/report body) for the recipients of one message that failed; the
// glue stores it as a new message with the null sender <> through the same
// spool and scheduler, addressed to the original envelope sender. Pure: the
// time and the bounce's Message-ID come from the caller, nothing is random,
// so the same input always gives the same bytes.
//
// The output uses CRLF line ends only and no line is longer than 998 octets
// (RFC 5322 §2.1.1): long diagnostic fields are folded, long text wrapped and
// over-long header lines of the original message split. The MIME boundary
// never occurs anywhere in the parts. A message with the null sender never
// gets a bounce: the scheduler never asks for one (make_dsn() itself does not
// check).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "queue/envelope.hpp"

namespace sluice::queue {

// One recipient to report as failed (Action: failed).
struct FailedRecipient {
  std::string address;      // Final-Recipient
  std::string orcpt;        // the DSN ORCPT parameter as received ("rfc822;a+2Bb@x"), "" none
  std::string status;       // RFC 3463 status: "5.1.1"; "4.4.7" when it expired
  std::string diagnostic;   // the reply: "550 5.1.1 <a@x>: no such user"
  std::string remote_mta;   // the server that gave `diagnostic`; "" when Sluice made it up
  int64_t last_attempt_us = 0;  // Last-Attempt-Date; 0 leaves it out
  std::string reason;       // a sentence for the human-readable part; "" derives one
  bool operator==(const FailedRecipient&) const = default;
};

// Bytes of the original header section included at most (text/rfc822-headers).
inline constexpr size_t kMaxDsnHeaderBytes = 64 * 1024;

// The header section at the start of `content` (a message in stored form):
// everything before the first empty line, cut at kMaxDsnHeaderBytes on a line
// boundary. Reading the first kMaxDsnHeaderBytes + 4 bytes of a message is
// enough (Spool::read_body's max_bytes).
std::string_view header_section(std::string_view content);

// The bounce content. `original` is the failed message's envelope (sender,
// id, arrival, ENVID; with requiretls the bounce is redacted: no part with
// the original's headers, RFC 8689 §5); `reporting_mta` the host name Sluice uses
// (`hostname`); `original_headers` its header section (header_section() is
// applied again, so the first bytes of the content will do); `now_us` the
// Date; `bounce_message_id` the bounce's own Message-ID, with or without <>
// (e.g. "<" + bounce queue id + "@" + hostname + ">").
std::string make_dsn(const Envelope& original, std::span<const FailedRecipient> failed,
                     std::string_view reporting_mta, std::string_view original_headers,
                     int64_t now_us, std::string_view bounce_message_id);

// The envelope for a bounce with `content`: null sender, the original sender
// as the one recipient, arrival `now_us`, 8BITMIME when the content has 8-bit
// bytes, SMTPUTF8 when the original was SMTPUTF8 or its sender is not ASCII,
// REQUIRETLS when the original was sent with it (RFC 8689 §5).
// (Incoming::commit() fills in id and size.)
Envelope bounce_envelope(const Envelope& original, std::string_view content,
                         std::string_view bounce_message_id, int64_t now_us);

}  // namespace sluice::queue
