// fuzz_tlsrpt.cpp — the TLS-RPT `_smtp._tls` TXT record (tlsrpt/record.hpp)
// and the day file the daemon keeps (tlsrpt/counts.hpp), over any bytes.
//
// The input is cut at NUL octets: the pieces are the TXT records; the whole
// input is also read as a day file. Invariants checked (a violation traps):
//  - parse_txt: a result only when exactly one record begins with
//    v=TLSRPTv1; "none published" exactly when none does, "several" exactly
//    when more than one does; every address kept is non-empty, printable
//    ASCII with an '@' that is neither first nor last, without WSP, <, >,
//    ',' or '"', and appears once; written back as
//    "v=TLSRPTv1; rua=mailto:A,mailto:B" (when no '%', '?' or ';' would need
//    escaping) it parses to the same addresses.
//  - decode_day: a day that decodes encodes and decodes to the same value.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tlsrpt/counts.hpp"
#include "tlsrpt/record.hpp"

using namespace sluice::tlsrpt;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool is_record(std::string_view r) {
  constexpr std::string_view v = "v=TLSRPTv1";
  return r.starts_with(v) && (r.size() == v.size() || r[v.size()] == ';' || r[v.size()] == ' ' || r[v.size()] == '\t');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> records;
  std::size_t start = 0;
  while (true) {
    auto nul = in.find('\0', start);
    records.emplace_back(in.substr(start, nul == std::string_view::npos ? std::string_view::npos : nul - start));
    if (nul == std::string_view::npos) break;
    start = nul + 1;
  }
  std::size_t published = 0;
  for (const auto& r : records) published += is_record(r);
  auto rec = parse_txt(records);
  if (published == 0) check(!rec && rec.error().error == TxtError::none_published);
  if (published > 1) check(!rec && rec.error().error == TxtError::several);
  if (rec) {
    check(published == 1);
    check(!rec->mailto.empty());
    std::string canonical = "v=TLSRPTv1; rua=";
    bool plain = true;
    for (std::size_t i = 0; i < rec->mailto.size(); ++i) {
      const std::string& a = rec->mailto[i];
      auto at = a.rfind('@');
      check(at != std::string::npos && at > 0 && at + 1 < a.size());
      for (char c : a) {
        check(c > 0x20 && c < 0x7f && c != '<' && c != '>' && c != ',' && c != '"');
        if (c == '%' || c == '?' || c == ';' || c == '!') plain = false;
      }
      for (std::size_t j = 0; j < i; ++j) check(rec->mailto[j] != a);
      canonical += (i ? ",mailto:" : "mailto:") + a;
    }
    if (plain) {
      std::vector<std::string> again{canonical};
      auto back = parse_txt(again);
      check(back && back->mailto == rec->mailto);
    }
  }
  if (auto day = decode_day(in)) {
    auto back = decode_day(encode_day(*day));
    check(back && *back == *day);
  }
  return 0;
}
