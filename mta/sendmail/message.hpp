// message.hpp — the message sluice-sendmail reads on standard input: line
// ends, the header section, recipients from headers (-t), and the headers
// it adds. Pure: the clock, process id, randomness and host name are passed
// in (Stamp); no I/O, no logs; safe from any thread.
//
// InputReader normalises the input while it streams in, so the size limit
// is enforced before anything unbounded is held:
//   - LF, CRLF and a lone CR each end a line; every line is stored with
//     CRLF, so no bare CR ever reaches the spool (SMTP smuggling defence);
//   - a last line without a line end gets one;
//   - unless ignore_dots (-i/-oi), a line that is exactly "." ends the
//     input, as in classic sendmail, and the rest is not read;
//   - a NUL octet is an error (Status::nul): the SMTP side refuses NUL too;
//   - stored size over max_size is an error (Status::too_big), reported as
//     soon as it is exceeded.
//
// split() cuts stored content into header fields and body. A field starts
// with a name (printable ASCII but ":", then optional WSP, then ":"); lines
// starting with SP or HT belong to the field before them. The header
// section ends at the first empty line (consumed) or at the first line that
// is neither a field nor a continuation (kept, as the first body line:
// assemble() then puts the empty line in front of it). Content that does not
// start with a field has no header section: all of it is body.
//
// assemble() writes header + empty line + body, with every line at most
// 998 octets before its CRLF (RFC 5322 §2.1.1, the spool's line limit): a
// longer header line is folded before its last SP/HT within the limit (or,
// with no white space, at the limit with a SP inserted); a longer body line
// is broken into pieces of at most 998 octets, never inside a UTF-8
// sequence.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mta/sendmail/addresses.hpp"

namespace sluice::sendmail {

class InputReader {
 public:
  enum class Status { more, done, too_big, nul };

  InputReader(uint64_t max_size, bool ignore_dots) : max_size_(max_size), dot_ends_(!ignore_dots) {}

  // Consumes a chunk of input. Returns more while more input is wanted;
  // done once a lone "." line ended the input; too_big or nul on error.
  // Once not `more`, later calls change nothing and return the same status.
  Status feed(std::string_view chunk);
  // End of input: completes the last line. Returns done, or the error.
  Status finish();
  uint64_t size() const { return out_.size(); }
  std::string take() { return std::move(out_); }

 private:
  Status end_line();

  std::string out_;
  size_t line_start_ = 0;  // where the current line begins in out_
  uint64_t max_size_;
  bool dot_ends_;
  bool after_cr_ = false;  // the last octet was a CR (its CRLF is already out)
  Status status_ = Status::more;
};

struct Field {
  std::string name;   // as written, without trailing WSP
  std::string lines;  // the whole field as stored: "Name: value\r\n\tfolded\r\n"
  // The value: everything after the first ':', folding CRLFs removed (the
  // WSP after them kept), the final CRLF removed.
  std::string value() const;
};

struct Message {
  std::vector<Field> header;
  std::string body;  // after the empty line (or from the first non-header line)

  bool has(std::string_view name) const;  // case-insensitive
  size_t count(std::string_view name) const;  // fields of that name, case-insensitive
  void remove(std::string_view name);     // every field of that name
};

Message split(std::string_view content);  // content: CRLF line ends only
std::string assemble(const Message& m);

// -t. When any Resent-To, Resent-Cc or Resent-Bcc field is present, the
// recipients are those fields' (RFC 5322 §3.6.6: the message is being
// re-sent); otherwise To, Cc and Bcc. Every Bcc and Resent-Bcc field is then
// removed. Duplicates are dropped (same_address). Each bad address gives one
// error "FIELD: TEXT: WHY".
struct Extracted {
  std::vector<Mailbox> recipients;
  std::vector<std::string> errors;
  bool resent = false;
};
Extracted extract_recipients(Message& m);

// What add_missing_headers needs to know about "now" and this host.
struct Stamp {
  int64_t unix_us = 0;         // wall clock, microseconds since the epoch
  int32_t utc_offset_s = 0;    // local time zone's offset at that time
  uint32_t pid = 0;
  uint64_t random = 0;         // for Message-ID uniqueness
  std::string hostname;        // valid domain name
};

// Appends, at the end of the header section, each of Date, From and
// Message-ID that the message lacks (names compared case-insensitively;
// existing fields are never changed). From is "From: NAME <address>" with
// -F NAME, otherwise "From: address".
void add_missing_headers(Message& m, const Stamp& s, std::string_view from_address,
                         std::string_view full_name);

// "<20260126135601.123456.4d2.0123456789abcdef@host>": UTC time to the
// microsecond, pid and 64 random bits in hex.
std::string make_message_id(const Stamp& s);
// A From/To value: the address alone when name is empty; otherwise the name
// as atoms, as a quoted-string, or as RFC 2047 "=?UTF-8?B?...?=" encoded
// words (when it has non-ASCII octets; folded every 45 octets of text), then
// " <address>". Control characters in the name become spaces, invalid UTF-8
// becomes '?'.
std::string format_mailbox(std::string_view full_name, std::string_view address);

}  // namespace sluice::sendmail
