// reply_parser.cpp — see reply_parser.hpp. Pure.
//
// RFC 5321 §4.2:
//   Greeting   = ( "220 " (Domain / address-literal) [ SP textstring ] CRLF ) /
//                ( "220-" (Domain / address-literal) [ SP textstring ] CRLF
//                 *( "220-" [ textstring ] CRLF )
//                 "220" [ SP textstring ] CRLF )
//   Reply-line = *( Reply-code "-" [ textstring ] CRLF )
//                Reply-code [ SP textstring ] CRLF
//   Reply-code = %x32-35 %x30-35 %x30-39
//   textstring = 1*(%d09 / %d32-126)
// RFC 5321 §4.5.3.1.5: "The maximum total length of a reply line including
//   the reply code and the <CRLF> is 512 octets." (We allow 2048.)
// RFC 5321 §4.2.1: in a multiline reply "the reply code on each line MUST be
//   the same".
// RFC 2034 §4: status-code = class "." subject "." detail, at the start of
//   the text of every line; RFC 3463: class = "2" / "4" / "5",
//   subject = 1*3digit, detail = 1*3digit.
//
// The second digit is accepted as 0..9 (not just 0..5): nothing depends on
// it and refusing it would only turn an odd server into a deferral.
#include "mta/client/reply_parser.hpp"

#include <utility>

namespace sluice::client {

using proto::Reply;

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Length of an RFC 3463 status code at the start of `t` whose class is
// `cls`, followed by SP or the end; 0 when there is none.
size_t enhanced_length(std::string_view t, char cls) {
  if (cls != '2' && cls != '4' && cls != '5') return 0;
  if (t.size() < 5 || t[0] != cls || t[1] != '.') return 0;
  size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    const size_t start = i;
    while (i < t.size() && is_digit(t[i]) && i - start < 4) ++i;
    const size_t n = i - start;
    if (n == 0 || n > 3) return 0;
    if (part == 0) {
      if (i >= t.size() || t[i] != '.') return 0;
      ++i;
    }
  }
  if (i < t.size() && t[i] != ' ') return 0;
  return i;
}

}  // namespace

std::string_view to_string(ReplyError e) {
  switch (e) {
    case ReplyError::line_too_long: return "line too long";
    case ReplyError::too_many_lines: return "too many lines";
    case ReplyError::nul: return "NUL in reply";
    case ReplyError::bare_cr: return "bare CR in reply";
    case ReplyError::bad_code: return "malformed reply code";
    case ReplyError::code_mismatch: return "reply code changes between lines";
  }
  return "?";
}

std::string sanitise(std::string_view text, size_t max) {
  const bool cut = text.size() > max;
  const size_t keep = cut ? (max >= 3 ? max - 3 : max) : text.size();
  std::string out;
  out.reserve(cut ? max : keep);
  for (size_t i = 0; i < keep; ++i) {
    const char c = text[i];
    if (c == '\t') {
      out.push_back(' ');
    } else if (c >= 0x20 && c <= 0x7e) {
      out.push_back(c);
    } else {
      out.push_back('?');
    }
  }
  if (cut && max >= 3) out += "...";
  return out;
}

std::string describe(const Reply& r, size_t max) {
  std::string s = std::to_string(r.code);
  if (!r.enhanced.empty()) {
    s += ' ';
    s += r.enhanced;
  }
  const std::string text = r.text();
  if (!text.empty()) {
    s += ' ';
    s += text;
  }
  return sanitise(s, max);
}

void ReplyParser::reset() {
  line_.clear();
  cr_ = false;
  in_reply_ = false;
  cur_ = Reply{};
  error_.reset();
}

ReplyError ReplyParser::fail(ReplyError e) {
  error_ = e;
  line_.clear();
  cur_ = Reply{};
  return e;
}

ReplyParser::Result ReplyParser::next(std::string_view& in) {
  if (error_) return std::unexpected(*error_);
  size_t i = 0;
  while (i < in.size()) {
    const char c = in[i];
    if (cr_ && c != '\n') {
      in.remove_prefix(i);
      return std::unexpected(fail(ReplyError::bare_cr));
    }
    if (c == '\n') {  // CRLF, or a bare LF, which is taken as a line end too
      cr_ = false;
      ++i;
      auto r = end_line();
      if (!r || *r) {  // an error, or a whole reply
        in.remove_prefix(i);
        if (!r) return std::unexpected(r.error());
        return std::move(*r);
      }
      continue;
    }
    if (c == '\r') {
      cr_ = true;
      ++i;
      continue;
    }
    if (c == '\0') {
      in.remove_prefix(i);
      return std::unexpected(fail(ReplyError::nul));
    }
    // The line end takes two octets; a line of max_line - 2 text octets fits.
    if (line_.size() + 2 >= max_line) {
      in.remove_prefix(i);
      return std::unexpected(fail(ReplyError::line_too_long));
    }
    line_.push_back(c);
    ++i;
  }
  in.remove_prefix(i);
  return std::optional<Reply>{};
}

std::expected<std::optional<Reply>, ReplyError> ReplyParser::end_line() {
  const std::string_view l = line_;
  if (l.size() < 3 || l[0] < '2' || l[0] > '5' || !is_digit(l[1]) || !is_digit(l[2]) ||
      (l.size() > 3 && l[3] != ' ' && l[3] != '-')) {
    return std::unexpected(fail(ReplyError::bad_code));
  }
  const int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
  const bool last = l.size() == 3 || l[3] == ' ';
  if (in_reply_ && code != cur_.code) return std::unexpected(fail(ReplyError::code_mismatch));
  if (!in_reply_) {
    cur_ = Reply{};
    cur_.code = code;
    in_reply_ = true;
  }
  if (cur_.lines.size() >= max_lines) return std::unexpected(fail(ReplyError::too_many_lines));
  cur_.lines.push_back(sanitise(l.size() > 4 ? l.substr(4) : std::string_view{}, max_kept_line));
  line_.clear();
  if (!last) return std::optional<Reply>{};

  // Complete: lift the enhanced status code out of the text.
  Reply r = std::move(cur_);
  cur_ = Reply{};
  in_reply_ = false;
  const char cls = static_cast<char>('0' + r.code / 100);
  const size_t n = enhanced_length(r.lines.front(), cls);
  if (n > 0) {
    r.enhanced = r.lines.front().substr(0, n);
    for (auto& text : r.lines) {
      if (text.starts_with(r.enhanced) &&
          (text.size() == n || text[n] == ' ')) {
        text.erase(0, text.size() == n ? n : n + 1);
      }
    }
  }
  return std::optional<Reply>{std::move(r)};
}

}  // namespace sluice::client
