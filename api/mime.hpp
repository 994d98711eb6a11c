// mime.hpp — the message a POST /api/v1/messages request stands for, in
// stored form (CRLF lines, at most 998 octets each, no bare CR or LF, not
// dot-stuffed). Pure: the time, the Message-ID and the randomness for the
// MIME boundaries come in; no I/O, no logs, never throws.
//
// What build_message writes for the structured form (docs/http-api.md, "The
// MIME built"):
//   From, To, Cc (when given), Subject (when given), Date and Message-ID
//   (unless "headers" sets them), the request's "headers", MIME-Version;
//   text only                  text/plain; charset=utf-8
//   html only                  text/html; charset=utf-8
//   text + html                multipart/alternative (text first, then html)
//   with attachments           multipart/mixed: the above, then each
//                              attachment (Content-Disposition: attachment)
// - Text bodies are quoted-printable (76-octet lines): readable for mostly
//   ASCII text, any line length and any UTF-8 survive 7-bit transport, and
//   DKIM body hashes never meet a re-encoding relay. Attachments are base64
//   in 76-character lines.
// - Header text with non-ASCII octets (Subject, display names, "headers"
//   values) is RFC 2047 "=?UTF-8?B?...?=" encoded words of at most 75
//   characters, never splitting a UTF-8 character, one per folded line.
//   ASCII text is folded at its own spaces to lines of about 78 octets.
// - Attachment filenames: ASCII as a quoted-string; otherwise RFC 2231
//   (filename*0*=utf-8''%E2%82%AC...; continued in pieces).
// - Boundaries are "=_sluice_" and 24 random hex digits: a sequence that
//   neither quoted-printable nor base64 output can contain (both encode '=');
//   each is checked against the parts all the same.
// The raw form ("content") is returned as decoded (already CRLF lines).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "api/request.hpp"

namespace sluice::api {

struct BuildContext {
  int64_t unix_us = 0;            // the Date
  std::string message_id;         // "<...@host>"
  std::function<uint64_t()> random;  // boundaries; null: a fixed sequence (tests)
};

std::string build_message(const MessageRequest& r, const BuildContext& ctx);

// ---- pieces, public for the tests and the fuzz target ----

// Unstructured header text (RFC 5322 §3.2.5 / RFC 2047 §5(1)) for a field
// called `name`: the whole field with its CRLF, folded.
std::string header_field(std::string_view name, std::string_view value);
// A mailbox for From/To/Cc: "addr", "Name <addr>", "\"Na,me\" <addr>" or
// "=?UTF-8?B?...?= <addr>".
std::string format_mailbox(const Address& a);
std::string quoted_printable(std::string_view text);  // CRLF lines in, CRLF lines out
std::string base64_lines(std::string_view bytes);     // 76-character lines, each with CRLF

// What the raw form's header section holds, for the intake (which adds a
// missing Date, Message-ID or From).
struct HeaderScan {
  size_t header_end = 0;  // octets of the header section, up to the empty line (excluded)
  bool date = false, message_id = false, from = false;
  std::string message_id_value;  // trimmed, unfolded; "" none
};
HeaderScan scan_headers(std::string_view content);

}  // namespace sluice::api
