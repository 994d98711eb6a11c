// net.cpp — parsing and printing of IP addresses, CIDR networks and endpoints.
//
// Pure functions over value types (inet_pton/inet_ntop do the address
// syntax); no sockets, no name resolution. Safe from any thread. Parsers
// report failure as a message meant for an administrator, naming the text.
#include "conf/net.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace sluice::net {

namespace {

constexpr std::array<uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int max_prefix(IpAddress::Family f) { return f == IpAddress::Family::v4 ? 32 : 128; }

bool is_mapped_v4(const IpAddress& ip) {
  return ip.family == IpAddress::Family::v6 &&
         std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), ip.bytes.begin());
}

IpAddress v4_from_mapped(const IpAddress& ip) {
  IpAddress v4;
  v4.family = IpAddress::Family::v4;
  std::memcpy(v4.bytes.data(), ip.bytes.data() + 12, 4);
  return v4;
}

IpAddress mapped_from_v4(const IpAddress& ip) {
  IpAddress v6;
  v6.family = IpAddress::Family::v6;
  std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), v6.bytes.begin());
  std::memcpy(v6.bytes.data() + 12, ip.bytes.data(), 4);
  return v6;
}

// True when the first `prefix` bits of a and b are equal.
bool prefix_equal(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, int prefix) {
  int full = prefix / 8;
  if (std::memcmp(a.data(), b.data(), static_cast<size_t>(full)) != 0) return false;
  int rest = prefix % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[static_cast<size_t>(full)] & mask) == (b[static_cast<size_t>(full)] & mask);
}

// Zeroes every bit after the first `prefix`.
IpAddress masked(IpAddress ip, int prefix) {
  int len = max_prefix(ip.family) / 8;
  for (int i = 0; i < len; ++i) {
    int bits = prefix - i * 8;
    if (bits >= 8) continue;
    ip.bytes[static_cast<size_t>(i)] &= bits <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - bits));
  }
  return ip;
}

// Decimal digits only, no sign, no spaces.
std::optional<unsigned> parse_decimal(std::string_view text, unsigned max) {
  if (text.empty() || text.size() > 10) return std::nullopt;
  for (char c : text)
    if (c < '0' || c > '9') return std::nullopt;
  unsigned long long v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size() || v > max) return std::nullopt;
  return static_cast<unsigned>(v);
}

}  // namespace

std::expected<uint16_t, std::string> parse_port(std::string_view text) {
  auto v = parse_decimal(text, 65535);
  if (!v || *v == 0) return std::unexpected(fmt::format("bad port \"{}\": must be 1..65535", text));
  return static_cast<uint16_t>(*v);
}

std::expected<HostPort, std::string> split_host_port(std::string_view text,
                                                     std::string_view ipv6_hint) {
  HostPort hp;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos)
      return std::unexpected(fmt::format("\"{}\": missing ']'", text));
    hp.host = text.substr(1, close - 1);
    hp.bracketed = true;
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        return std::unexpected(fmt::format("\"{}\": expected ':' after ']'", text));
      hp.port = rest.substr(1);
    }
    return hp;
  }
  auto colon = text.find(':');
  if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos)
    return std::unexpected(
        fmt::format("\"{}\": an IPv6 address needs brackets{}", text, ipv6_hint));
  hp.host = text.substr(0, colon);
  if (colon != std::string_view::npos) hp.port = text.substr(colon + 1);
  return hp;
}

// ---- IpAddress -------------------------------------------------------------

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof buf) return std::nullopt;
  if (text.find('\0') != std::string_view::npos) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';

  IpAddress ip;
  if (text.find(':') != std::string_view::npos) {
    ip.family = Family::v6;
    if (inet_pton(AF_INET6, buf, ip.bytes.data()) != 1) return std::nullopt;
  } else {
    ip.family = Family::v4;
    if (inet_pton(AF_INET, buf, ip.bytes.data()) != 1) return std::nullopt;
  }
  return ip;
}

std::optional<IpAddress> IpAddress::from_sockaddr(const sockaddr* sa) {
  if (sa == nullptr) return std::nullopt;
  IpAddress ip;
  if (sa->sa_family == AF_INET) {
    sockaddr_in sin;
    std::memcpy(&sin, sa, sizeof sin);
    ip.family = Family::v4;
    std::memcpy(ip.bytes.data(), &sin.sin_addr, 4);
    return ip;
  }
  if (sa->sa_family == AF_INET6) {
    sockaddr_in6 sin6;
    std::memcpy(&sin6, sa, sizeof sin6);
    ip.family = Family::v6;
    std::memcpy(ip.bytes.data(), &sin6.sin6_addr, 16);
    if (is_mapped_v4(ip)) return v4_from_mapped(ip);
    return ip;
  }
  return std::nullopt;
}

std::string IpAddress::str() const {
  char buf[INET6_ADDRSTRLEN];
  int af = family == Family::v4 ? AF_INET : AF_INET6;
  if (inet_ntop(af, bytes.data(), buf, sizeof buf) == nullptr) return "?";
  return buf;
}

// ---- Cidr ------------------------------------------------------------------

std::expected<Cidr, std::string> Cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  std::string_view addr = text.substr(0, slash);
  auto ip = IpAddress::parse(addr);
  if (!ip) return std::unexpected(fmt::format("\"{}\": not an IP address", addr));

  Cidr cidr;
  int max = max_prefix(ip->family);
  if (slash == std::string_view::npos) {
    cidr.prefix = max;
  } else {
    std::string_view len = text.substr(slash + 1);
    auto v = parse_decimal(len, static_cast<unsigned>(max));
    if (!v || len.size() > 3)
      return std::unexpected(fmt::format("\"{}\": prefix length must be 0..{} for {}", text, max,
                                         max == 32 ? "IPv4" : "IPv6"));
    cidr.prefix = static_cast<int>(*v);
  }
  cidr.base = masked(*ip, cidr.prefix);
  if (cidr.base != *ip)
    return std::unexpected(
        fmt::format("\"{}\": host bits are set below the /{} prefix (did you mean {}?)", text,
                    cidr.prefix, cidr.str()));
  return cidr;
}

bool Cidr::contains(const IpAddress& ip) const {
  // IPv4 and IPv4-mapped IPv6 (::ffff:a.b.c.d) are the same host.
  IpAddress candidate = ip;
  if (base.family == IpAddress::Family::v4 && is_mapped_v4(ip)) candidate = v4_from_mapped(ip);
  if (base.family == IpAddress::Family::v6 && ip.family == IpAddress::Family::v4)
    candidate = mapped_from_v4(ip);
  if (candidate.family != base.family) return false;
  return prefix_equal(base.bytes, candidate.bytes, prefix);
}

std::string Cidr::str() const { return fmt::format("{}/{}", base.str(), prefix); }

// ---- Endpoint --------------------------------------------------------------

std::expected<Endpoint, std::string> Endpoint::parse(std::string_view text,
                                                     std::optional<uint16_t> default_port) {
  if (text.empty()) return std::unexpected(std::string("empty address"));
  const std::string_view form = default_port ? "ADDRESS or ADDRESS:PORT" : "ADDRESS:PORT";

  auto parts = split_host_port(
      text, default_port ? ": use [addr]:port or [addr]" : ": use [addr]:port");
  if (!parts) return std::unexpected(parts.error());
  std::string_view host = parts->host;
  Endpoint ep;
  auto ip = IpAddress::parse(host);
  if (!ip)
    return std::unexpected(fmt::format(
        "\"{}\": not an IP address (host names are not allowed here; expected {})", host, form));
  ep.ip = *ip;

  if (parts->port) {
    auto p = parse_port(*parts->port);
    if (!p) return std::unexpected(fmt::format("\"{}\": {}", text, p.error()));
    ep.port = *p;
  } else if (default_port) {
    ep.port = *default_port;
  } else {
    return std::unexpected(fmt::format("\"{}\": missing port (expected {})", text, form));
  }
  return ep;
}

unsigned Endpoint::to_sockaddr(sockaddr_storage* out) const {
  std::memset(out, 0, sizeof *out);
  if (ip.family == IpAddress::Family::v4) {
    sockaddr_in sin;
    std::memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    std::memcpy(&sin.sin_addr, ip.bytes.data(), 4);
    std::memcpy(out, &sin, sizeof sin);
    return sizeof sin;
  }
  sockaddr_in6 sin6;
  std::memset(&sin6, 0, sizeof sin6);
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  std::memcpy(&sin6.sin6_addr, ip.bytes.data(), 16);
  std::memcpy(out, &sin6, sizeof sin6);
  return sizeof sin6;
}

std::string Endpoint::str() const {
  if (ip.family == IpAddress::Family::v6) return fmt::format("[{}]:{}", ip.str(), port);
  return fmt::format("{}:{}", ip.str(), port);
}

std::string reverse_name(const IpAddress& ip) {
  std::string out;
  if (ip.family == IpAddress::Family::v4) {
    for (int i = 3; i >= 0; --i) out += fmt::format("{}.", ip.bytes[i]);
    return out + "in-addr.arpa";
  }
  for (int i = 15; i >= 0; --i) out += fmt::format("{:x}.{:x}.", ip.bytes[i] & 0xf, ip.bytes[i] >> 4);
  return out + "ip6.arpa";
}

}  // namespace sluice::net
