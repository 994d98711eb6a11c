// result.hpp — what a lookup of dns::Resolver answers: plain values, no
// c-ares or libuv, so that pure code (queue/attempt, queue/policy) can take
// them as they are and tests can write them by hand.
//
// Status says what the answer means for delivery, decided here in dns/ where
// the answer is known (never by reading `reason`, which is prose for logs and
// bounces). queue/policy turns it into a verdict (docs/dns.md, docs/delivery.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "conf/net.hpp"

namespace sluice::dns {

enum class Status : uint8_t {
  ok,         // hosts / addresses found
  null_mx,    // the domain accepts no mail (RFC 7505): bounce with 556 5.1.10
  nxdomain,   // the name asked for does not exist: bounce 5.1.2
  no_route,   // exists, but no host / address will ever be usable (no MX and no
              // address, MX hosts without addresses, a name or literal DNS cannot
              // carry): bounce 5.4.4
  temporary,  // SERVFAIL, REFUSED, timeout, unreachable server, cancelled: defer 4.4.3
};
inline const char* to_string(Status s) {
  switch (s) {
    case Status::ok: return "ok";
    case Status::null_mx: return "null MX";
    case Status::nxdomain: return "nxdomain";
    case Status::no_route: return "no route";
    case Status::temporary: return "temporary";
  }
  return "?";
}

struct MxHost {
  std::string name;  // lower case, no trailing dot; the domain itself for implicit MX
  uint16_t preference = 0;
  std::vector<net::IpAddress> ipv4;  // in answer order
  std::vector<net::IpAddress> ipv6;  // in answer order
  bool secure = false;  // both its A and AAAA answers had the AD bit (Options::request_ad)
};

struct MxResult {
  Status status = Status::temporary;
  std::vector<MxHost> hosts;  // ok: the order to try, never empty; every host has an address
  bool implicit_mx = false;   // ok: no MX records, hosts is the domain's own addresses
  bool mx_secure = false;     // ok: the MX answer (records, or NODATA for implicit MX) had the AD bit
  std::string reason;         // other statuses: what failed, e.g. "nx.example: domain does not exist (NXDOMAIN)"
};

struct AddrResult {
  Status status = Status::temporary;  // ok, nxdomain, no_route or temporary
  std::vector<net::IpAddress> ipv4;   // ok: at least one of the two is not empty
  std::vector<net::IpAddress> ipv6;
  bool secure = false;  // both the A and the AAAA answer had the AD bit; never for literals
  std::string reason;
};

// TXT and PTR lookups (sluicectl dns-records --check). For these, no_route
// means the name exists without a record of that type (NODATA), or is a name
// DNS cannot carry; nxdomain that the name does not exist.
struct TxtResult {
  Status status = Status::temporary;  // ok, nxdomain, no_route or temporary
  std::vector<std::string> records;   // ok: one per record, its strings joined; never empty
  std::string reason;
};

struct PtrResult {
  Status status = Status::temporary;  // ok, nxdomain, no_route or temporary
  std::vector<std::string> names;     // ok: lower case, no trailing dot; never empty
  std::string reason;
};

// One TLSA record (RFC 6698 §2.1): the numbers as published, the data as
// bytes. Whether it is usable is DANE's question (tls/dane.hpp), not DNS's.
struct TlsaRecord {
  uint8_t usage = 0;          // 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE
  uint8_t selector = 0;       // 0 full certificate, 1 SubjectPublicKeyInfo
  uint8_t matching_type = 0;  // 0 exact, 1 SHA-256, 2 SHA-512
  std::vector<uint8_t> data;  // certificate association data, never empty
  bool operator==(const TlsaRecord&) const = default;
};

// A TLSA lookup (resolve_tlsa, for DANE). RFC 7672
// tells "no records" (nxdomain, no_route: DANE does not apply) from a failed
// lookup (temporary: the caller must not fall back to unauthenticated TLS
// when the answer could have been secure). `secure` is the AD bit of the
// reply, whatever the status; whether to believe it is dns/trust.hpp's rule.
struct TlsaResult {
  Status status = Status::temporary;  // ok, nxdomain, no_route or temporary
  std::vector<TlsaRecord> records;    // ok: the well-formed records, in answer order
  std::size_t malformed = 0;          // ok: TLSA records whose RDATA did not parse (dropped)
  bool secure = false;                // the reply had the AD bit set
  std::string reason;
};

}  // namespace sluice::dns
