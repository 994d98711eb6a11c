// fuzz_api_request.cpp — the body of POST /api/v1/messages (api/request.hpp)
// and the message built from it (api/mime.hpp), over any bytes.
//
// Invariants checked (a violation traps; an exception escaping is a crash):
//  - decode_request never throws; a FieldError always has a message;
//  - a decoded request always builds; the built message is CRLF lines only
//    (no bare CR or LF), ends with CRLF, has no NUL and no line over 998
//    octets; every recipient is an address with an '@';
//  - the pieces on the raw bytes: quoted_printable of the normalised input
//    is CRLF lines of at most 76 octets of printable ASCII and TAB; header_field of
//    the input without CR/LF is CRLF lines only; scan_headers stays inside
//    the input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "api/mime.hpp"
#include "api/request.hpp"

using namespace sluice::api;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// CRLF lines only; returns the longest line.
size_t crlf_only(std::string_view m) {
  size_t longest = 0, start = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\r') {
      check(i + 1 < m.size() && m[i + 1] == '\n');
      longest = std::max(longest, i - start);
      start = i + 2;
      ++i;
    } else {
      check(m[i] != '\n');
    }
  }
  check(start == m.size());
  return longest;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  auto r = decode_request(in, Limits{50});
  if (!r) {
    check(!r.error().message.empty());
  } else {
    for (const auto& a : r->recipients()) check(a.find('@') != std::string::npos);
    uint64_t n = 0;
    const std::string m = build_message(*r, BuildContext{1'700'000'000'000'000, "<x@y.test>", [&n] { return n++; }});
    check(!m.empty());
    check(crlf_only(m) <= 998);
    check(m.find('\0') == std::string::npos);
    const HeaderScan s = scan_headers(m);
    check(s.header_end <= m.size());
  }

  const std::string q = quoted_printable(normalise_line_ends(in));
  check(crlf_only(q) <= 76);
  for (char c : q) check(c == '\r' || c == '\n' || c == '\t' || (static_cast<unsigned char>(c) >= 32 && static_cast<unsigned char>(c) < 127));
  if (in.find_first_of("\r\n") == std::string_view::npos) crlf_only(header_field("X-Fuzz", in));
  check(scan_headers(in).header_end <= in.size());
  return 0;
}
