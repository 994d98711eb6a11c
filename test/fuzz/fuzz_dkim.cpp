// fuzz_dkim.cpp — DKIM canonicalisation (dkim/dkim.hpp) over any header
// section and body: folding, 8-bit octets, very long fields, bare CR/LF.
//
// The first input byte picks a split between header section and body and a
// piece size. Invariants checked (a violation traps):
//  - relaxed_header() of every field: exactly one CRLF, at the end; no other
//    CR or LF; in the value no two SPs in a row, no WSP at its start or end;
//    the name part lower-case. (Input is first made what the spool holds:
//    CR only in CRLF, as proto::DataReader guarantees.)
//  - the body hash is the same fed whole or in pieces of any size;
//  - header_list() names each default field once per occurrence at most
//    plus once, and signing_input() is the relaxed fields it chose plus the
//    relaxed signature field without its CRLF.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dkim/dkim.hpp"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_relaxed(std::string_view f) {
  const std::string r = sluice::dkim::relaxed_header(f);
  check(r.size() >= 3 && r.ends_with("\r\n"));
  const std::string_view body(r.data(), r.size() - 2);
  check(body.find('\r') == std::string_view::npos && body.find('\n') == std::string_view::npos);
  const size_t colon = body.find(':');
  check(colon != std::string_view::npos);
  for (size_t i = 0; i < colon; ++i) check(!(body[i] >= 'A' && body[i] <= 'Z'));
  const std::string_view value = body.substr(colon + 1);
  check(value.find("  ") == std::string_view::npos);
  check(value.empty() || (value.front() != ' ' && value.back() != ' '));
  check(value.find('\t') == std::string_view::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // Stored form: every CR is part of a CRLF, every LF ends one.
  std::string stored;
  for (size_t i = 1; i < size; ++i) {
    const char c = static_cast<char>(data[i]);
    if (c == '\r' || c == '\n') {
      stored += "\r\n";
      if (c == '\r' && i + 1 < size && data[i + 1] == '\n') ++i;
    } else {
      stored += c;
    }
  }
  const std::string_view in = stored;
  const size_t split = data[0] % (in.size() + 1);
  const size_t piece = 1 + data[0] % 13;
  const std::string_view header = in.substr(0, split), body = in.substr(split);

  const std::vector<std::string> fields = sluice::dkim::split_fields(header);
  for (const std::string& f : fields) check_relaxed(f);

  sluice::dkim::BodyHash whole, pieces;
  whole.feed(body);
  for (size_t i = 0; i < body.size(); i += piece) pieces.feed(body.substr(i, piece));
  check(whole.finish_base64() == pieces.finish_base64());

  const auto names = sluice::dkim::header_list(fields, sluice::dkim::default_headers());
  check(names.size() <= fields.size() + sluice::dkim::default_headers().size());
  const std::string sig_field = "DKIM-Signature: v=1; b=\r\n";
  const std::string input = sluice::dkim::signing_input(fields, names, sig_field);
  check(input.ends_with("dkim-signature:v=1; b="));
  return 0;
}
