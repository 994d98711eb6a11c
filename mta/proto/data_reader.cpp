// data_reader.cpp — the DATA stream decoder (RFC 5321 §4.1.1.4, §4.5.2). Pure.
//
// RFC 5321 §4.1.1.4: "The mail data are terminated by a line containing only
// a period, that is, the character sequence "<CRLF>.<CRLF>", where the first
// <CRLF> is actually the terminator of the previous line."
// RFC 5321 §4.5.2: "When a line of mail text is received by the SMTP server,
// it checks the line. If the line is composed of a single period, it is
// treated as the end of mail indicator. If the first character is a period
// and there are other characters on the line, the first character is
// deleted."
//
// The state machine (one byte of lookahead is never needed: every decision is
// made on the current byte and the state):
//
//   bol_crlf --"."--> dot(terminator candidate)      bol_lf --"."--> dot(not)
//   bol_*    --other--> text (byte re-examined there)
//   dot      --CR--> dot_cr        --LF--> content "." + CRLF, bol_lf
//            --other--> text (the stuffing dot is dropped, byte re-examined)
//   dot_cr   --LF--> candidate ? done : content "." + CRLF, bol_crlf
//            --other--> bare_cr error, text (byte re-examined)
//   text     --run of ordinary bytes--> output as one append
//            --CR--> cr     --LF--> CRLF, bol_lf     --NUL--> nul error
//   cr       --LF--> CRLF, bol_crlf   --other--> bare_cr error, text
//
// CR is never written until its LF is seen, and then as part of "\r\n", so no
// bare CR can reach the output. Because every transition depends only on the
// state and the current byte, and runs are cut exactly where a limit is hit,
// the result does not depend on how the input is split into feed() calls.
#include "mta/proto/ascii.hpp"
#include "mta/proto/data_reader.hpp"

#include <algorithm>
#include <cstring>

namespace sluice::proto {

namespace {

constexpr size_t kMessageIdCap = 998;
constexpr size_t kFieldNameCap = 64;

using ascii::is_wsp;

using ascii::iequals;

constexpr bool special(unsigned char c) { return c == '\r' || c == '\n' || c == '\0'; }

// Length of the run of ordinary bytes (not CR, LF or NUL) at p, at most n.
// Eight bytes at a time: a word with no byte below 0x0e cannot hold any of
// the three, and mail text rarely has such bytes except its line ends.
size_t ordinary_run(const char* p, size_t n) {
  constexpr uint64_t ones = 0x0101010101010101ULL;
  constexpr uint64_t highs = 0x8080808080808080ULL;
  size_t i = 0;
  while (i + 8 <= n) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    // Nonzero iff some byte of w is < 0x0e (classic "hasless" bit trick).
    if (((w - ones * 0x0e) & ~w & highs) != 0) break;
    i += 8;
  }
  for (; i < n; ++i) {
    if (special(static_cast<unsigned char>(p[i]))) return i;
  }
  return n;
}

}  // namespace

bool DataReader::done() const { return state_ == State::done; }

void DataReader::emit(const char* p, size_t n, std::string& out) {
  if (error_ != Error::none || n == 0) return;
  bool too_big = false;
  if (max_size_ - size_ < n) {
    n = static_cast<size_t>(max_size_ - size_);
    too_big = true;
  }
  out.append(p, n);
  size_ += n;
  if (in_headers_) header_text(p, n);
  if (too_big) fail(Error::too_big);
}

void DataReader::emit_eol(std::string& out) {
  if (error_ != Error::none) return;
  if (max_size_ - size_ < 2) {
    fail(Error::too_big);
    return;
  }
  out += "\r\n";
  size_ += 2;
  if (in_headers_) header_eol();
}

bool DataReader::feed(std::string_view& in, std::string& out) {
  const char* p = in.data();
  const char* const end = p + in.size();
  while (p < end && state_ != State::done) {
    switch (state_) {
      case State::bol_crlf:
      case State::bol_lf:
        line_len_ = 0;
        if (*p == '.') {
          dot_after_crlf_ = state_ == State::bol_crlf;
          state_ = State::dot;
          line_len_ = 1;
          ++p;
        } else {
          state_ = State::text;
        }
        break;

      case State::dot:
        if (*p == '\r') {
          state_ = State::dot_cr;
          ++p;
        } else if (*p == '\n') {
          // "." ended by a bare LF: content, never the terminator.
          emit(".", 1, out);
          emit_eol(out);
          state_ = State::bol_lf;
          ++p;
        } else {
          state_ = State::text;  // drop the stuffing dot
        }
        break;

      case State::dot_cr:
        if (*p == '\n') {
          ++p;
          if (dot_after_crlf_) {
            state_ = State::done;
            if (in_headers_ && error_ == Error::none) header_field_end();
          } else {
            // "." CRLF after a bare LF: content.
            emit(".", 1, out);
            emit_eol(out);
            state_ = State::bol_crlf;
          }
        } else {
          fail(Error::bare_cr);
          state_ = State::text;
        }
        break;

      case State::cr:
        if (*p == '\n') {
          ++p;
          emit_eol(out);
          state_ = State::bol_crlf;
        } else {
          fail(Error::bare_cr);
          state_ = State::text;
        }
        break;

      case State::text: {
        const size_t avail = static_cast<size_t>(end - p);
        if (error_ == Error::none) {
          const size_t room = max_line - line_len_;
          const size_t k = ordinary_run(p, std::min(avail, room + 1));
          if (k > room) {
            emit(p, room, out);
            p += room;
            line_len_ = max_line;
            fail(Error::line_too_long);
            break;
          }
          emit(p, k, out);
          line_len_ += k;
          p += k;
        } else {
          p += ordinary_run(p, avail);
        }
        if (p == end) break;
        switch (*p) {
          case '\r':
            state_ = State::cr;
            break;
          case '\n':
            emit_eol(out);
            state_ = State::bol_lf;
            break;
          default:  // NUL
            fail(Error::nul);
            break;
        }
        ++p;
        break;
      }

      case State::done:
        break;
    }
  }
  in.remove_prefix(static_cast<size_t>(p - in.data()));
  return state_ == State::done;
}

// ---- header scan -----------------------------------------------------------
// Runs on the decoded output (CRLF line ends, no bare CR), so it sees the same
// bytes whatever the feed() split. header_text() gets line content in pieces,
// header_eol() each line end.
//
// RFC 5322 §2.2 / §3.2.2: field = name ":" body CRLF; a line starting with WSP
// continues the previous field (unfolding removes the CRLF only).

void DataReader::header_text(const char* p, size_t n) {
  if (n == 0) return;
  size_t i = 0;
  if (header_bol_) {
    header_bol_ = false;
    if (!is_wsp(p[0])) {
      header_field_end();
      header_mode_ = HeaderMode::name;
      header_.clear();
    }
    // else: a continuation line; header_mode_ carries on.
  }
  while (i < n) {
    switch (header_mode_) {
      case HeaderMode::skip:
        return;
      case HeaderMode::name: {
        const void* colon = std::memchr(p + i, ':', n - i);
        const size_t stop = colon ? static_cast<size_t>(static_cast<const char*>(colon) - p) : n;
        if (stop - i > kFieldNameCap - header_.size()) {
          header_mode_ = HeaderMode::skip;  // no field we look for has such a name
          return;
        }
        header_.append(p + i, stop - i);
        i = stop;
        if (colon == nullptr) return;
        ++i;
        // obs-optional allows WSP between the name and the colon.
        std::string_view name = header_;
        while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
        header_mode_ = HeaderMode::skip;
        if (iequals(name, "date")) {
          has_date_ = true;
        } else if (iequals(name, "from")) {
          has_from_ = true;
        } else if (iequals(name, "received")) {
          ++received_;
        } else if (iequals(name, "message-id") && !has_message_id_) {
          has_message_id_ = true;
          header_mode_ = HeaderMode::message_id;
        }
        break;
      }
      case HeaderMode::message_id: {
        if (message_id_.empty()) {
          while (i < n && is_wsp(p[i])) ++i;
        }
        const size_t take = std::min(n - i, kMessageIdCap - message_id_.size());
        message_id_.append(p + i, take);
        return;
      }
    }
  }
}

void DataReader::header_eol() {
  if (header_bol_) {  // an empty line ends the header section
    header_field_end();
    in_headers_ = false;
    header_end_ = size_ - 2;  // the empty line's CRLF is already counted
    return;
  }
  if (header_mode_ == HeaderMode::name) header_mode_ = HeaderMode::skip;  // no colon: not a field
  header_bol_ = true;
}

void DataReader::header_field_end() {
  if (header_mode_ == HeaderMode::message_id) {
    while (!message_id_.empty() && is_wsp(message_id_.back())) message_id_.pop_back();
  }
  header_mode_ = HeaderMode::skip;
}

}  // namespace sluice::proto
