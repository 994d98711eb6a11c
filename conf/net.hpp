// net.hpp — IP addresses, CIDR networks and "host:port" endpoints.
//
// Pure value types with parsers; no sockets are opened here. Used by the
// configuration (listener addresses, trusted_networks, dns.servers) and by the
// SMTP glue to match a client's address against trusted networks.
// Parsers return std::expected with a human-readable error message.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

struct sockaddr;
struct sockaddr_storage;

namespace sluice::net {

struct IpAddress {
  enum class Family : uint8_t { v4, v6 };
  Family family = Family::v4;
  // v4 uses bytes[0..3]; v6 all 16, network byte order.
  std::array<uint8_t, 16> bytes{};

  static std::optional<IpAddress> parse(std::string_view text);
  // From a socket address (AF_INET / AF_INET6). IPv4-mapped IPv6 addresses
  // (::ffff:a.b.c.d) are returned as plain IPv4.
  static std::optional<IpAddress> from_sockaddr(const sockaddr* sa);
  std::string str() const;
  bool operator==(const IpAddress&) const = default;
};

struct Cidr {
  IpAddress base;  // host bits are zero
  int prefix = 0;  // 0..32 or 0..128

  // "10.0.0.0/8", "::1/128"; a bare address means /32 or /128.
  // Host bits set below the prefix are an error ("10.0.0.1/8").
  static std::expected<Cidr, std::string> parse(std::string_view text);
  bool contains(const IpAddress& ip) const;
  std::string str() const;
};

// The parts of "host:port", "[host]:port", "host" or "[host]" (views into
// the text). An unbracketed host holding more than one ':' is an error: an
// IPv6 address needs brackets. `port` is set (possibly empty) when a ':'
// introduced one; `bracketed` tells whether the host was in [ ].
struct HostPort {
  std::string_view host;
  std::optional<std::string_view> port;
  bool bracketed = false;
};
// `ipv6_hint` ends the message for an unbracketed IPv6 address.
std::expected<HostPort, std::string> split_host_port(std::string_view text,
                                                     std::string_view ipv6_hint);
// "1".."65535"; the message names the text ("bad port \"x\": must be 1..65535").
std::expected<uint16_t, std::string> parse_port(std::string_view text);

struct Endpoint {
  IpAddress ip;
  uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;

  // "127.0.0.1:25", "[::1]:587", "0.0.0.0:465". With default_port set, a
  // missing ":port" is allowed ("127.0.0.1" or "[::1]").
  static std::expected<Endpoint, std::string> parse(std::string_view text,
                                                    std::optional<uint16_t> default_port = {});
  // Fills a sockaddr_in / sockaddr_in6; returns its length.
  unsigned to_sockaddr(sockaddr_storage* out) const;
  std::string str() const;  // "127.0.0.1:25" / "[::1]:587"
};

// The name a PTR lookup asks for (RFC 1035 §3.5, RFC 3596 §2.5), without a
// trailing dot: "10.2.0.192.in-addr.arpa", or 32 nibbles then "ip6.arpa".
std::string reverse_name(const IpAddress& ip);

}  // namespace sluice::net
