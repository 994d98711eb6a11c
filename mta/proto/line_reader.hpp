// line_reader.hpp — splits a byte stream into SMTP command lines. Pure.
//
// A line ends at LF; a CR right before the LF is dropped (bare LF is accepted
// as a line end in the command phase, as Postfix does). Lines longer than
// max_line octets *including* the CRLF are reported once as too_long and the
// rest of that line, up to its LF, is discarded; memory held is bounded by
// max_line. The line end always counts as two octets, CRLF or bare LF: with
// max_line 512, 510 octets of text pass and 511 are too long either way.
// too_long is returned as soon as the limit is passed, before the line's LF
// arrives (RFC 5321 §4.5.3.1.4: the client learns at once, not when an
// endless line finally ends); the rest of that line, up to its LF, is then
// dropped without a second report. A line that goes on past kEndless octets
// is reported once more, as endless: the session closes the connection then.
// A complete line that is both (it arrived whole) has both flags set.
// next() consumes from `in` (it advances the view) and returns a complete
// line, or nullopt when `in` is exhausted without one (the partial line is
// kept inside). It consumes only up to the returned line's LF: the bytes
// after it stay in `in` (e.g. message data after "DATA"). The returned text
// view is valid until the next call, and no longer than the caller's buffer:
// when the whole line was inside `in`, it points there (no copy).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::proto {

class LineReader {
 public:
  explicit LineReader(size_t max_line = 512) : max_line_(max_line) {}

  // A line longer than this is not a client that made a mistake.
  static constexpr size_t kEndless = 64 * 1024;

  struct Line {
    std::string_view text;  // without the line end
    bool too_long = false;  // text is empty then
    bool endless = false;   // over kEndless octets (text is empty)
  };

  std::optional<Line> next(std::string_view& in);
  void set_max_line(size_t n) { max_line_ = n; }
  // Forget any partial line (after STARTTLS, or when DATA takes over).
  void reset();
  size_t buffered() const { return partial_.size(); }

 private:
  size_t max_line_;
  std::string partial_;
  std::string line_;
  bool discarding_ = false;  // inside a line already reported too_long
  size_t discarded_ = 0;     // octets of that line so far
  bool endless_ = false;     // ... and it was reported endless
};

}  // namespace sluice::proto
