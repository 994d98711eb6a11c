// answer.hpp — what one DNS query (MX, A or AAAA) answered, and MX ordering.
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

namespace sluice::dns {

enum class QueryType : uint16_t { a = 1, mx = 15, aaaa = 28 };
const char* to_string(QueryType t);

struct MxRecord {
  std::string host;  // lower case, no trailing dot; "" is the root (null MX)
  uint16_t preference = 0;
  bool operator==(const MxRecord&) const = default;
};

struct Answer {
  enum class Kind : uint8_t {
    records,    // mx or addresses is not empty
    nxdomain,   // the name does not exist
    nodata,     // the name exists but has no record of this type
    temporary,  // SERVFAIL, REFUSED, timeout, unreachable server, malformed reply...
    permanent,  // the query could never succeed (a name DNS cannot carry)
  };
  Kind kind = Kind::temporary;
  std::vector<MxRecord> mx;               // records of an MX query, in answer order
  std::vector<net::IpAddress> addresses;  // records of an A or AAAA query
  std::string error;                      // temporary / permanent: short description
  uint32_t ttl = 0;                       // seconds it may be cached; 0: never

  bool cacheable() const { return kind == Kind::records || kind == Kind::nxdomain || kind == Kind::nodata; }
};

Answer temporary_answer(std::string error);

// The Answer for a c-ares ares_query() completion: `status` is its ARES_*
// status, `reply` the raw reply (may be empty). Records get the smallest TTL
// of the answer section; NXDOMAIN and NODATA get the negative TTL of
// RFC 2308 (min of the SOA's TTL and MINIMUM) or 0 without an SOA.
Answer interpret_reply(QueryType type, int status, std::span<const unsigned char> reply);

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
