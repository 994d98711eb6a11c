// myself.hpp — is a next hop this Sluice? The one place that answers it,
// so that delivery never connects to itself (SPEC "Applications on the
// local relay", docs/delivery.md "Mail loops").
//
// A next hop (an address and the port delivery would connect to) is
// "myself" when it matches a socket Sluice listens on:
//   - a listener on one address (127.0.0.1:25, 192.0.2.7:25, [::1]:25)
//     matches that address and port only;
//   - a wildcard listener (0.0.0.0:25, [::]:25) matches its port at every
//     local address of its family: the interfaces' addresses (given; the
//     daemon gathers them with getifaddrs at start), and for IPv4 all of
//     127.0.0.0/8, for IPv6 ::1. An IPv6 listener is IPv6-only (the server
//     binds it with IPV6_V6ONLY), so [::]:25 does not cover 127.0.0.1:25.
// The address is normalised first as the kernel would route it: an
// IPv4-mapped IPv6 address (::ffff:192.0.2.7) is that IPv4 address, and
// 0.0.0.0 / :: (which Linux connects to the local host) are 127.0.0.1 / ::1.
//
// prune_mx() applies the rule of RFC 5321 §5.1 (and Postfix's): MX hosts
// that are myself, and every host of equal or lower preference (an equal or
// higher number), are dropped; a host is myself when any of its addresses
// is. What an empty result means (bounce 5.4.6) is queue/policy's.
//
// Pure value type: no sockets, clocks or logs; built once per start (and
// reload) and then shared read-only (std::shared_ptr<const Myself>).
// Table-tested in myself_test.cpp.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "conf/net.hpp"
#include "dns/result.hpp"

namespace sluice::queue {

class Myself {
 public:
  Myself() = default;  // listens nowhere: nothing is myself
  // `listeners`: every socket Sluice listens on (the configuration's
  // listeners); `interfaces`: the machine's addresses (any order, any family).
  Myself(std::span<const net::Endpoint> listeners, std::span<const net::IpAddress> interfaces);

  // Would a connection to ip:port reach this Sluice?
  bool is(const net::IpAddress& ip, uint16_t port) const;
  // Is any address of this MX host myself (at `port`)?
  bool host_is(const dns::MxHost& host, uint16_t port) const;
  // The hosts (in their order) left once those that are myself, and those
  // of equal or lower preference, are dropped. Empty: every usable host
  // loops back.
  std::vector<dns::MxHost> prune_mx(std::span<const dns::MxHost> hosts, uint16_t port) const;

 private:
  bool local(const net::IpAddress& ip) const;

  std::vector<net::Endpoint> listeners_;
  std::vector<net::IpAddress> interfaces_;
};

}  // namespace sluice::queue
