// reply.cpp — rendering SMTP replies (RFC 5321 §4.2, RFC 2034 §4). Pure.
//
// RFC 5321 §4.2:
//   Reply-line     = *( Reply-code "-" [ textstring ] CRLF )
//                    Reply-code [ SP textstring ] CRLF
//   Reply-code     = %x32-35 %x30-35 %x30-39
//   textstring     = 1*(%d09 / %d32-126) ; HT, SP, Printable US-ASCII
// RFC 2034 §4: every line of a reply carries the enhanced status code,
//   "status-code SP text", right after the reply code and its separator.
//
// Text is never trusted to be clean: a CR, LF or NUL inside a line (for
// instance an echoed client argument) is written as a space, so a Reply can
// never render as more lines than it has.
#include "mta/proto/reply.hpp"

namespace sluice::proto {

namespace {

void append_code(std::string& out, int code) {
  // Reply codes are three digits; anything else is a programming error, but
  // it must not produce a malformed line, so clamp into range.
  if (code < 100 || code > 999) code = 451;
  out.push_back(static_cast<char>('0' + code / 100));
  out.push_back(static_cast<char>('0' + code / 10 % 10));
  out.push_back(static_cast<char>('0' + code % 10));
}

void append_text(std::string& out, std::string_view text) {
  for (char c : text) {
    out.push_back(c == '\r' || c == '\n' || c == '\0' ? ' ' : c);
  }
}

void append_line(std::string& out, int code, std::string_view enhanced, std::string_view text,
                 bool last) {
  append_code(out, code);
  if (enhanced.empty() && text.empty()) {
    if (!last) out.push_back('-');
  } else {
    out.push_back(last ? ' ' : '-');
    if (!enhanced.empty()) {
      append_text(out, enhanced);
      if (!text.empty()) out.push_back(' ');
    }
    append_text(out, text);
  }
  out += "\r\n";
}

}  // namespace

std::string Reply::text() const {
  std::string s;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i) s += "; ";
    s += lines[i];
  }
  return s;
}

void Reply::append_wire(std::string& out) const {
  if (lines.empty()) {
    append_line(out, code, enhanced, {}, true);
    return;
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    append_line(out, code, enhanced, lines[i], i + 1 == lines.size());
  }
}

std::string Reply::wire() const {
  std::string out;
  append_wire(out);
  return out;
}

}  // namespace sluice::proto
