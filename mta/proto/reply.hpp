// reply.hpp — an SMTP reply as a value: code, enhanced status code, text.
//
// wire() renders it for sending ("250-..." continuation lines, CRLF ends, the
// enhanced code repeated on every line as RFC 2034 asks). Pure.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sluice::proto {

struct Reply {
  int code = 0;               // 211..554
  std::string enhanced;       // "2.1.0"; empty for the greeting/EHLO lines
  std::vector<std::string> lines;

  Reply() = default;
  Reply(int c, std::string_view enh, std::string_view text)
      : code(c), enhanced(enh), lines{std::string(text)} {}

  bool positive() const { return code >= 200 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500; }
  std::string text() const;   // lines joined with "; "
  std::string wire() const;   // "250-2.0.0 a\r\n250 2.0.0 b\r\n"
  void append_wire(std::string& out) const;
};

}  // namespace sluice::proto
