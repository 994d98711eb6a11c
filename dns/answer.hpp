// answer.hpp — what one DNS query (MX, A, AAAA, TXT, PTR or TLSA) answered,
// and MX ordering.
//
// Internal to dns/: the resolver turns every c-ares reply into an Answer
// (records, NXDOMAIN, NODATA, or an error) with the TTL it may be cached
// for, and orders MX records for delivery. Pure functions over bytes and
// values: no sockets, clocks or logs, safe from any thread. Input comes from
// the network, so nothing here asserts on it: a reply that does not parse
// becomes a temporary Answer ("malformed reply").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "conf/net.hpp"
#include "dns/result.hpp"

namespace sluice::dns {

// A new type: its number here, its name in to_string, its records' field in
// Answer and its parser in interpret_reply (answer.cpp), a case in fuzz_dns.
enum class QueryType : uint16_t { a = 1, ptr = 12, mx = 15, txt = 16, aaaa = 28, tlsa = 52 };
const char* to_string(QueryType t);
// Whether the query is sent with the AD bit set (RFC 6840 §5.7), asking a
// validating resolver to say whether the answer is authenticated. TLSA
// always; the others too with Options::request_ad.
bool requests_ad(QueryType t);

struct MxRecord {
  std::string host;  // lower case, no trailing dot; "" is the root (null MX)
  uint16_t preference = 0;
  bool operator==(const MxRecord&) const = default;
};

struct Answer {
  enum class Kind : uint8_t {
    records,    // the field of the query's type (mx, addresses, txt, ptr) is not empty;
                // TLSA: tlsa is not empty or tlsa_malformed > 0
    nxdomain,   // the name does not exist
    nodata,     // the name exists but has no record of this type
    temporary,  // SERVFAIL, REFUSED, timeout, unreachable server, malformed reply...
    permanent,  // the query could never succeed (a name DNS cannot carry)
  };
  Kind kind = Kind::temporary;
  std::vector<MxRecord> mx;               // records of an MX query, in answer order
  std::vector<net::IpAddress> addresses;  // records of an A or AAAA query
  std::vector<std::string> txt;           // TXT: one per record, its strings joined (RFC 7208 §3.3)
  std::vector<std::string> ptr;           // PTR: the names, lower case, no trailing dot
  std::vector<TlsaRecord> tlsa;           // TLSA: the well-formed records, in answer order
  std::size_t tlsa_malformed = 0;         // TLSA: records whose RDATA did not parse
  bool authenticated = false;             // the reply's AD bit (records, nxdomain, nodata)
  std::string error;                      // temporary / permanent: short description
  uint32_t ttl = 0;                       // seconds it may be cached; 0: never

  bool cacheable() const { return kind == Kind::records || kind == Kind::nxdomain || kind == Kind::nodata; }
};

Answer temporary_answer(std::string error);

// The Answer for a c-ares ares_query() or ares_send() completion: `status`
// is its ARES_* status, `reply` the raw reply (may be empty). ares_send()
// reports ARES_SUCCESS for any RCODE: the reply's own RCODE and answer count
// then say NXDOMAIN, NODATA, SERVFAIL... as ares_query() would have. Records get the smallest TTL
// of the answer section; NXDOMAIN and NODATA get the negative TTL of
// RFC 2308 (min of the SOA's TTL and MINIMUM) or 0 without an SOA.
Answer interpret_reply(QueryType type, int status, std::span<const unsigned char> reply);

// One TLSA RDATA (RFC 6698 §2.1): usage, selector, matching type, then the
// data. nullopt when it is shorter than four octets (no data). Values are
// not judged here: any number parses.
std::optional<TlsaRecord> parse_tlsa_rdata(std::span<const unsigned char> rdata);

// TTLs read from a raw DNS reply: the smallest TTL in the answer section (if
// it has records) and the negative-caching TTL from an SOA in the authority
// section (if there is one). nullopt when the reply does not parse.
struct ReplyTtls {
  std::optional<uint32_t> answer;
  std::optional<uint32_t> negative;
};
std::optional<ReplyTtls> reply_ttls(std::span<const unsigned char> reply);

// MX records in the order to try them: root ("") entries dropped, sorted by
// preference, a host listed twice kept once at its best preference, hosts of
// equal preference shuffled with `random` (returns a number in [0, bound)),
// then at most `cap` kept. Before shuffling, equal-preference hosts are put in
// name order, so the result depends on `random` only, not on answer order.
std::vector<MxRecord> order_mx(std::vector<MxRecord> records, std::size_t cap,
                               const std::function<uint32_t(uint32_t)>& random);

}  // namespace sluice::dns
