// fuzz_dane.cpp — DANE matching (mta/tls/dane.hpp) over hostile TLSA records
// and certificate chains: certificates that are not DER, cut short, or whose
// SubjectPublicKeyInfo is odd.
//
// Input: one byte N (records = N % 8), then N records as usage, selector,
// matching type, a length byte and that many data octets; the rest is the
// chain, each certificate a 16-bit big-endian length and its bytes.
// Invariants (a violation traps): the verdict is the same twice; it is
// no_usable_records exactly when no record is usable(); a match names
// certificates inside the chain, in increasing order, {0} for DANE-EE; a
// mismatch names none; every verdict has a reason.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "mta/tls/dane.hpp"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using sluice::dns::TlsaRecord;
  using sluice::tls::dane::Verdict;
  std::span<const uint8_t> in(data, size);
  if (in.empty()) return 0;
  size_t n = in[0] % 8;
  in = in.subspan(1);
  std::vector<TlsaRecord> records;
  for (size_t i = 0; i < n && in.size() >= 4; ++i) {
    size_t len = std::min<size_t>(in[3], in.size() - 4);
    records.push_back(TlsaRecord{in[0], in[1], in[2], {in.begin() + 4, in.begin() + 4 + static_cast<long>(len)}});
    in = in.subspan(4 + len);
  }
  std::vector<std::vector<uint8_t>> chain;
  while (in.size() >= 2) {
    size_t len = std::min<size_t>(size_t{in[0]} << 8 | in[1], in.size() - 2);
    chain.emplace_back(in.begin() + 2, in.begin() + 2 + static_cast<long>(len));
    in = in.subspan(2 + len);
  }

  Verdict v = sluice::tls::dane::match(records, chain);
  Verdict again = sluice::tls::dane::match(records, chain);
  check(v.outcome == again.outcome && v.certificates == again.certificates && v.reason == again.reason);
  bool any_usable = false;
  for (const auto& r : records) any_usable |= sluice::tls::dane::usable(r);
  check((v.outcome == Verdict::Outcome::no_usable_records) == !any_usable);
  check(!v.reason.empty());
  if (v.outcome == Verdict::Outcome::match) {
    check(!v.certificates.empty());
    for (size_t i = 0; i < v.certificates.size(); ++i) {
      check(v.certificates[i] < chain.size());
      check(i == 0 || v.certificates[i - 1] < v.certificates[i]);
    }
    if (v.usage == sluice::tls::dane::dane_ee) check(v.certificates == std::vector<size_t>{0});
  } else {
    check(v.certificates.empty());
  }
  return 0;
}
