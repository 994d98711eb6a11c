// line_reader.cpp — command-line framing. Pure.
//
// Length rule: a line is acceptable when its text (without the line end)
// plus 2 is at most max_line, i.e. the line end always counts as two octets,
// whether the client sent CRLF or a bare LF. With max_line 512, 510 octets of
// text are fine and 511 are too long — with CRLF and with bare LF alike.
// Only one CR right before the LF belongs to the line end; any other CR stays
// in the text (parse_command rejects it).
//
// A too-long line is reported once, as soon as it is known to be too long
// (with or without its LF); from then on its bytes are dropped as they come,
// up to its LF, and the reader goes on with the next line in the same call.
// Replies stay in step with pipelined lines: the lines before it were all
// returned first, and the too-long one gets exactly one report. Past
// kEndless octets the same line is reported once more, as endless.
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
  discarded_ = 0;
  endless_ = false;
}

std::optional<LineReader::Line> LineReader::next(std::string_view& in) {
  while (!in.empty()) {
    const void* hit = std::memchr(in.data(), '\n', in.size());
    const size_t pos = hit ? static_cast<size_t>(static_cast<const char*>(hit) - in.data()) : in.size();
    if (discarding_) {
      // The rest of a line already reported: drop it up to its LF.
      discarded_ += pos;
      in.remove_prefix(hit ? pos + 1 : pos);
      if (discarded_ > kEndless && !endless_) {
        endless_ = true;
        if (hit) discarding_ = false;
        return Line{{}, false, true};
      }
      if (hit) {
        discarding_ = false;
        continue;
      }
      return std::nullopt;
    }
    if (hit == nullptr) {
      // No line end yet: keep what may still be a valid line; past the
      // limit, report it now and drop it.
      if (partial_.size() + in.size() + 1 > max_line_) {
        discarded_ = partial_.size() + in.size();
        partial_.clear();
        in.remove_prefix(in.size());
        discarding_ = true;
        endless_ = discarded_ > kEndless;
        return Line{{}, true, endless_};
      }
      partial_.append(in);
      in.remove_prefix(in.size());
      return std::nullopt;
    }
    const std::string_view head = in.substr(0, pos);
    in.remove_prefix(pos + 1);
    if (partial_.empty()) {
      // Fast path: the whole line is inside `in`; no copy.
      const bool cr = !head.empty() && head.back() == '\r';
      const size_t len = text_length(head.size(), cr);
      if (len + 2 > max_line_) return Line{{}, true, len > kEndless};
      return Line{head.substr(0, len), false};
    }
    // The line started in an earlier call.
    const bool cr = head.empty() ? partial_.back() == '\r' : head.back() == '\r';
    const size_t len = text_length(partial_.size() + head.size(), cr);
    if (len + 2 > max_line_) {
      partial_.clear();
      return Line{{}, true, len > kEndless};
    }
    line_.swap(partial_);
    partial_.clear();
    line_.append(head);
    line_.resize(len);
    return Line{line_, false};
  }
  return std::nullopt;
}

}  // namespace sluice::proto
