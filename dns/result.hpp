// result.hpp — what a lookup of dns::Resolver answers: plain values, no
// c-ares or libuv, so that pure code (queue/attempt, queue/policy) can take
// them as they are and tests can write them by hand.
//
// Status says what the answer means for delivery, decided here in dns/ where
// the answer is known (never by reading `reason`, which is prose for logs and
// bounces). queue/policy turns it into a verdict (docs/dns.md, docs/delivery.md).
#pragma once

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
};

struct MxResult {
  Status status = Status::temporary;
  std::vector<MxHost> hosts;  // ok: the order to try, never empty; every host has an address
  bool implicit_mx = false;   // ok: no MX records, hosts is the domain's own addresses
  std::string reason;         // other statuses: what failed, e.g. "nx.example: domain does not exist (NXDOMAIN)"
};

struct AddrResult {
  Status status = Status::temporary;  // ok, nxdomain, no_route or temporary
  std::vector<net::IpAddress> ipv4;   // ok: at least one of the two is not empty
  std::vector<net::IpAddress> ipv6;
  std::string reason;
};

}  // namespace sluice::dns
