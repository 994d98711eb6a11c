// line_reader.hpp — splits a byte stream into SMTP command lines. Pure.
//
// A line ends at LF; a CR right before the LF is dropped (bare LF is accepted
// as a line end in the command phase, as Postfix does). Lines longer than
// max_line octets *including* the CRLF are reported once as too_long and the
// rest of that line, up to its LF, is discarded; memory held is bounded by
// max_line. The line end always counts as two octets, CRLF or bare LF: with
// max_line 512, 510 octets of text pass and 511 are too long either way.
// too_long is returned when the over-long line's LF arrives (so one reply
// per line keeps pipelined replies in step); until then next() returns
// nullopt and drops the bytes.
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

  struct Line {
    std::string_view text;  // without the line end
    bool too_long = false;  // text is empty then
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
  bool discarding_ = false;
};

}  // namespace sluice::proto
