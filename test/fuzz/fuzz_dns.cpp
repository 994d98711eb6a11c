// fuzz_dns — libFuzzer target for DNS replies as c-ares hands them over
// (dns/answer.hpp): interpret_reply() for MX, A and AAAA and reply_ttls() on
// arbitrary bytes. Invariants: no crash; a `records` answer is never empty; a
// temporary/permanent answer carries a reason.
#include <ares.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "dns/answer.hpp"

using namespace sluice::dns;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const unsigned char> reply(data, size);
  for (QueryType t : {QueryType::mx, QueryType::a, QueryType::aaaa}) {
    Answer a = interpret_reply(t, ARES_SUCCESS, reply);
    if (a.kind == Answer::Kind::records && a.mx.empty() && a.addresses.empty()) std::abort();
    if ((a.kind == Answer::Kind::temporary || a.kind == Answer::Kind::permanent) && a.error.empty())
      std::abort();
  }
  (void)reply_ttls(reply);
  return 0;
}
