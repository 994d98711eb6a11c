// trust.hpp — whether the AD bit of DNS replies may be believed (for DANE).
//
// Sluice does not validate DNSSEC itself: it asks its resolver to say
// whether an answer is authenticated (the AD bit, dns::TlsaResult::secure).
// That bit is only as trustworthy as the path to the resolver, so it is
// believed only when every resolver asked is on this host (RFC 6698 §4.1,
// RFC 7672 §2.1.1): every configured dns.servers address, or, when none is
// configured, every nameserver of /etc/resolv.conf, on a loopback address
// (127.0.0.0/8, ::1, or an IPv4-mapped 127.x). Pure: the caller reads the
// file. Delivery uses it to decide whether DANE is in force.
#pragma once

#include <span>
#include <string_view>

#include "conf/net.hpp"

namespace sluice::dns {

// 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104.
bool is_loopback(const net::IpAddress& ip);

// The rule above. `servers` is dns.servers (ports do not matter);
// `resolv_conf` the text of /etc/resolv.conf, read only when `servers` is
// empty. A resolv.conf without nameserver lines means the resolver on this
// host (resolv.conf(5), and what c-ares then asks: 127.0.0.1), so it is
// trusted; a nameserver line that does not parse as an address (e.g. with
// a %scope) is not.
bool ad_bit_trusted(std::span<const net::Endpoint> servers, std::string_view resolv_conf);

}  // namespace sluice::dns
