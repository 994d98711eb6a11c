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
//    relaxed signature field without its CRLF;
//  - dkim/message.hpp: Scan finds the same fields and body hash fed whole
//    or in pieces; author() gives an address with one @ before a lower-case
//    domain without WSP, or an error; parse_tags() gives names and values
//    without WSP; verifies() on every field neither crashes nor leaks.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dkim/dkim.hpp"
#include "dkim/message.hpp"

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

  // The intake's view: the whole message streamed through a Scan.
  sluice::dkim::Scan a, b;
  a.feed(in);
  for (size_t i = 0; i < in.size(); i += piece) b.feed(in.substr(i, piece));
  check(a.too_large() == b.too_large());
  check(a.fields() == b.fields());
  const std::string bh = a.body_hash();
  check(bh == b.body_hash());
  if (auto who = sluice::dkim::author(a.fields())) {
    const size_t at = who->rfind('@');
    check(at != std::string::npos && at > 0 && at + 1 < who->size());
    for (char c : std::string_view(*who).substr(at + 1)) check(c != ' ' && c != '\t' && !(c >= 'A' && c <= 'Z'));
  }
  static const sluice::dkim::Key key = [] {
    uint8_t seed[32] = {1};
    return std::move(*sluice::dkim::Key::ed25519_seed(seed));
  }();
  for (size_t i = 0; i < a.fields().size(); ++i) {
    const std::string& f = a.fields()[i];
    if (auto tags = sluice::dkim::parse_tags(std::string_view(f).substr(f.find(':') + 1)))
      for (const auto& [name, value] : *tags) {
        check(!name.empty());
        check(value.find(' ') == std::string::npos && value.find('\t') == std::string::npos);
      }
    (void)sluice::dkim::verifies(a.fields(), i, bh, key, "example.com", "s");
  }
  return 0;
}
