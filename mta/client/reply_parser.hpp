// reply_parser.hpp — reads SMTP replies from a remote server, bounded and
// sanitised (RFC 5321 §4.2, RFC 2034 enhanced status codes). Pure: no I/O,
// no clocks, no logs.
//
// next(in) consumes bytes from `in` (advancing the view) and returns
//   - a complete proto::Reply, having consumed exactly up to the line end of
//     its last line (what follows stays in `in`: the caller can drop it, as
//     the client session does with plaintext after "220" to STARTTLS);
//   - nullopt when `in` is exhausted without a complete reply (the partial
//     line and the lines so far are kept inside; memory is bounded below);
//   - a ReplyError: the server is broken or hostile. The parser then stays
//     failed (every later call returns the same error) until reset(); the
//     caller closes the connection ("bad reply from server").
//
// What is accepted (the RFC 5321 grammar, leniently where harmless):
//   reply-line = code ( "-" / SP ) [text] CRLF, and a last line may be the
//                bare code; code = one digit 2..5 then two digits 0..9.
//   A bare LF also ends a line (as Postfix's client accepts).
// Errors:
//   line_too_long   a line over max_line (2048) octets, its line end
//                   included — RFC 5321 allows 512, so four times that is
//                   only exceeded by something that is not an SMTP server.
//                   Reported as soon as the 2049th octet arrives, not at the
//                   line end, so an endless line costs nothing.
//   too_many_lines  a reply of more than max_lines (100) lines
//   nul             a NUL octet anywhere
//   bare_cr         a CR not followed by LF
//   bad_code        a line that does not start with a valid code followed by
//                   "-", SP or the line end ("2500", "abc", "150 x", "")
//   code_mismatch   a continuation line with a different code than the first
//
// The text kept is sanitised: HT becomes SP, every other octet outside
// printable ASCII (controls, DEL, 8-bit) becomes '?', so nothing a server
// says can forge a log line or a DSN header. Each line's text is capped at
// max_kept_line (512) octets ("..." marks a cut); a Reply therefore holds at
// most 100 lines of 512 octets.
//
// Enhanced status codes (RFC 2034 §4, RFC 3463): when the first line's text
// starts with "class.subject.detail" (class equal to the reply's first
// digit, subject and detail of 1..3 digits) followed by SP or the end, it is
// moved to Reply::enhanced, and removed from every line that starts with the
// same code.
#pragma once

#include <cstddef>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "mta/proto/reply.hpp"

namespace sluice::client {

enum class ReplyError { line_too_long, too_many_lines, nul, bare_cr, bad_code, code_mismatch };
// "line too long", "too many lines", ...
std::string_view to_string(ReplyError e);

class ReplyParser {
 public:
  static constexpr size_t max_line = 2048;       // octets, line end included
  static constexpr size_t max_lines = 100;       // lines in one reply
  static constexpr size_t max_kept_line = 512;   // octets of text kept per line

  using Result = std::expected<std::optional<proto::Reply>, ReplyError>;

  Result next(std::string_view& in);
  // Forget everything: partial line, partial reply, error.
  void reset();
  bool failed() const { return error_.has_value(); }
  // A reply or line has started but is not complete.
  bool partial() const { return !line_.empty() || cr_ || in_reply_; }

 private:
  // A complete line (without its line end): nullopt when the reply goes on.
  std::expected<std::optional<proto::Reply>, ReplyError> end_line();
  ReplyError fail(ReplyError e);

  std::string line_;
  bool cr_ = false;          // the last octet was a CR
  bool in_reply_ = false;    // continuation lines seen
  proto::Reply cur_;
  std::optional<ReplyError> error_;
};

// Printable ASCII only (HT -> SP, other octets -> '?'), at most `max` octets
// with "..." marking a cut. For anything from a server that reaches a log
// line or a DSN.
std::string sanitise(std::string_view text, size_t max);

// One line for logs and DSNs: "550 5.1.1 text; more text", sanitised and at
// most `max` octets.
std::string describe(const proto::Reply& r, size_t max = 1000);

}  // namespace sluice::client
