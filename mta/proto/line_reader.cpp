// line_reader.cpp — command-line framing. Pure.
//
// Length rule: a line is acceptable when its text (without the line end)
// plus 2 is at most max_line, i.e. the line end always counts as two octets,
// whether the client sent CRLF or a bare LF. With max_line 512, 510 octets of
// text are fine and 511 are too long — with CRLF and with bare LF alike.
// Only one CR right before the LF belongs to the line end; any other CR stays
// in the text (parse_command rejects it).
//
// A too-long line is reported once, when its LF arrives (so replies stay in
// step with pipelined lines); until then its bytes are dropped as they come.
//
// Memory: when a whole line lies inside `in`, the returned view points into
// `in` and nothing is copied. Otherwise the partial line is kept in partial_,
// which never grows beyond max_line - 1 octets (the longest text that can
// still be acceptable, plus a CR that may turn out to be the line end's).
#include "mta/proto/line_reader.hpp"

#include <cstring>

namespace sluice::proto {

namespace {

// Text length of a line whose raw octets before the LF are `raw`.
size_t text_length(size_t raw, bool ends_with_cr) { return ends_with_cr ? raw - 1 : raw; }

}  // namespace

void LineReader::reset() {
  partial_.clear();
  discarding_ = false;
}

std::optional<LineReader::Line> LineReader::next(std::string_view& in) {
  if (in.empty()) return std::nullopt;
  const void* hit = std::memchr(in.data(), '\n', in.size());
  if (hit == nullptr) {
    // No line end yet: keep what may still be a valid line, drop the rest.
    if (!discarding_) {
      if (partial_.size() + in.size() + 1 > max_line_) {
        partial_.clear();
        discarding_ = true;
      } else {
        partial_.append(in);
      }
    }
    in.remove_prefix(in.size());
    return std::nullopt;
  }
  const size_t pos = static_cast<size_t>(static_cast<const char*>(hit) - in.data());
  const std::string_view head = in.substr(0, pos);
  in.remove_prefix(pos + 1);

  if (discarding_) {
    discarding_ = false;
    return Line{{}, true};
  }
  if (partial_.empty()) {
    // Fast path: the whole line is inside `in`; no copy.
    const bool cr = !head.empty() && head.back() == '\r';
    const size_t len = text_length(head.size(), cr);
    if (len + 2 > max_line_) return Line{{}, true};
    return Line{head.substr(0, len), false};
  }
  // The line started in an earlier call.
  const bool cr = head.empty() ? partial_.back() == '\r' : head.back() == '\r';
  const size_t len = text_length(partial_.size() + head.size(), cr);
  if (len + 2 > max_line_) {
    partial_.clear();
    return Line{{}, true};
  }
  line_.swap(partial_);
  partial_.clear();
  line_.append(head);
  line_.resize(len);
  return Line{line_, false};
}

}  // namespace sluice::proto
