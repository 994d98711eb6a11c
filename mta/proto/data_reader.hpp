// data_reader.hpp — decodes the DATA stream after "354". Pure.
//
// Input is the raw bytes from the client; output is the message content as
// stored: every line ends in CRLF, the transparency dot is removed
// (RFC 5321 §4.5.2). The message ends only at CRLF "." CRLF. Bare LF is
// taken as a line end (and written as CRLF); bare CR and NUL are errors; a
// line longer than 998 octets before its line end is an error; content beyond
// max_size is an error. After an error nothing more is output, but input is
// still consumed until the end of data, so the session stays in step.
// The size is counted while streaming — nothing is held but one header line.
//
// The header section (up to the first empty line) is scanned for Message-ID,
// Date and From, which the session logs or adds on submission, and its
// Received fields are counted (the hop count that stops mail loops).
//
// Precisely (SMTP smuggling safety, see data_reader.cpp for the state machine):
//  - The start of the data counts as following a CRLF, so "." CRLF as the
//    very first line ends an empty message.
//  - A line beginning with "." loses that one dot ("..x" -> ".x").
//  - A line that is a lone "." but is NOT CRLF "." CRLF — because it ends in
//    a bare LF ("\r\n.\n") or the line before it ended in a bare LF
//    ("\n.\r\n", "\n.\n") — is content: it is kept as the line "." and
//    written ".\r\n" (never dropped to an empty line, which could end the
//    header section). Anything relaying it dot-stuffs it again.
//  - CR is only valid right before LF: "\r.\r\n" is a bare-CR error, never
//    a terminator.
//  - Line length counts wire octets before the line end, the stuffing dot
//    included: 998 is fine, 999 is Error::line_too_long.
//  - Output stops at the exact octet where the first error is found; a line
//    end is written as a whole "\r\n" or not at all, so the output never
//    holds a bare CR or bare LF. After too_big, size() == max_size.
//  - Splitting the input into feed() calls any other way gives the same
//    output, result, error and header facts.
//  - Header facts: field names are matched case-insensitively (WSP before the
//    colon tolerated); folded lines are unfolded; message_id() is the first
//    Message-ID's value, unfolded, leading/trailing WSP trimmed, capped at 998
//    octets. Scanning stops at the first error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::proto {

class DataReader {
 public:
  enum class Error { none, too_big, bare_cr, nul, line_too_long };

  explicit DataReader(uint64_t max_size = UINT64_MAX) : max_size_(max_size) {}

  // Consumes bytes from `in` (advancing it), appending decoded content to
  // `out`. Returns true once the end-of-data line has been consumed; the
  // bytes after it stay in `in` (pipelined commands).
  bool feed(std::string_view& in, std::string& out);

  bool done() const;
  Error error() const { return error_; }
  static constexpr size_t max_line = 998;  // octets before the line end
  uint64_t size() const { return size_; }  // content octets output so far

  // Header facts (valid once the headers are past or the data is done).
  const std::string& message_id() const { return message_id_; }
  bool has_date() const { return has_date_; }
  bool has_message_id() const { return has_message_id_; }
  bool has_from() const { return has_from_; }
  uint32_t received() const { return received_; }  // Received fields (hops)
  bool in_headers() const { return in_headers_; }
  // Output offset of the empty line that ended the header section (where
  // headers can be added), or UINT64_MAX while still in the headers.
  uint64_t header_end() const { return header_end_; }

 private:
  enum class State : uint8_t {
    bol_crlf,  // at a line start after CRLF (or at the very start)
    bol_lf,    // at a line start after a bare LF
    dot,       // a line start, then "."
    dot_cr,    // a line start, ".", CR
    text,      // inside a line
    cr,        // inside a line, after CR
    done,      // CRLF "." CRLF consumed
  };
  enum class HeaderMode : uint8_t { skip, name, message_id };

  void emit(const char* p, size_t n, std::string& out);
  void emit_eol(std::string& out);
  void fail(Error e) {
    if (error_ == Error::none) error_ = e;
  }
  void header_text(const char* p, size_t n);
  void header_eol();
  void header_field_end();

  uint64_t max_size_;
  uint64_t size_ = 0;
  Error error_ = Error::none;
  State state_ = State::bol_crlf;
  bool dot_after_crlf_ = false;  // in dot/dot_cr: may this line be the terminator?
  size_t line_len_ = 0;          // wire octets of the current line so far
  bool in_headers_ = true;
  uint64_t header_end_ = UINT64_MAX;
  bool has_date_ = false;
  bool has_message_id_ = false;
  bool has_from_ = false;
  uint32_t received_ = 0;
  bool header_bol_ = true;       // the header scanner is at an output line start
  HeaderMode header_mode_ = HeaderMode::skip;
  std::string header_;           // field name of the current header line (capped)
  std::string message_id_;
};

}  // namespace sluice::proto
