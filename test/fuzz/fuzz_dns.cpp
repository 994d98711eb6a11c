// fuzz_dns — libFuzzer target for DNS replies as c-ares hands them over
// (dns/answer.hpp): interpret_reply() for MX, A, AAAA, TXT, PTR and TLSA
// (success as ares_query reports it, and any RCODE as ares_send does),
// parse_tlsa_rdata() and reply_ttls() on arbitrary bytes. Invariants: no
// crash; a `records` answer is never empty (TLSA: a record or a malformed
// one counted); a temporary/permanent answer carries a reason and is never
// authenticated; a parsed TLSA record has data.
#include <ares.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "dns/answer.hpp"

using namespace sluice::dns;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const unsigned char> reply(data, size);
  for (QueryType t : {QueryType::mx, QueryType::a, QueryType::aaaa, QueryType::txt, QueryType::ptr,
                      QueryType::tlsa}) {
    Answer a = interpret_reply(t, ARES_SUCCESS, reply);
    if (a.kind == Answer::Kind::records && a.mx.empty() && a.addresses.empty() && a.txt.empty() &&
        a.ptr.empty() && a.tlsa.empty() && a.tlsa_malformed == 0)
      std::abort();
    if ((a.kind == Answer::Kind::temporary || a.kind == Answer::Kind::permanent) &&
        (a.error.empty() || a.authenticated))
      std::abort();
  }
  if (auto t = parse_tlsa_rdata(reply); t && t->data.empty()) std::abort();
  (void)reply_ttls(reply);
  return 0;
}
