// dot_stuffer.cpp — see dot_stuffer.hpp. Pure.
//
// RFC 5321 §4.5.2: "Before sending a line of mail text, the SMTP client
//   checks the first character of the line. If it is a period, one
//   additional period is inserted at the beginning of the line."
// RFC 5321 §2.3.8: "SMTP client implementations MUST NOT transmit [CR and LF]
//   except when they are intended as line terminators and then MUST
//   transmit them only as a <CRLF> sequence."
#include "mta/client/dot_stuffer.hpp"

namespace sluice::client {

void DotStuffer::feed(std::string_view chunk, std::string& out) {
  out.reserve(out.size() + chunk.size() + chunk.size() / 64 + 4);
  size_t i = 0;
  while (i < chunk.size()) {
    const char c = chunk[i];
    if (after_cr_) {
      after_cr_ = false;
      if (c == '\n') {  // the LF of a CRLF whose CR already went out as CRLF
        ++i;
        continue;
      }
    }
    if (c == '\r') {
      out += "\r\n";
      after_cr_ = true;
      bol_ = true;
      ++i;
      continue;
    }
    if (c == '\n') {  // bare LF
      out += "\r\n";
      bol_ = true;
      ++i;
      continue;
    }
    if (bol_ && c == '.') out.push_back('.');
    bol_ = false;
    size_t end = chunk.find_first_of("\r\n", i);
    if (end == std::string_view::npos) end = chunk.size();
    out.append(chunk.substr(i, end - i));
    i = end;
  }
}

void DotStuffer::finish(std::string& out) {
  if (!bol_) out += "\r\n";
  out += ".\r\n";
  reset();
}

}  // namespace sluice::client
