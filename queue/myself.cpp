// myself.cpp — is a next hop this Sluice (see myself.hpp).
#include "queue/myself.hpp"

#include <algorithm>
#include <optional>

namespace sluice::queue {

namespace {

using Family = net::IpAddress::Family;

bool all_zero(const net::IpAddress& ip) {
  const std::size_t n = ip.family == Family::v4 ? 4 : 16;
  return std::all_of(ip.bytes.begin(), ip.bytes.begin() + n, [](uint8_t b) { return b == 0; });
}

// Where a connection to `ip` really goes: ::ffff:a.b.c.d is a.b.c.d, and
// the unspecified address is the local host's loopback.
net::IpAddress normalise(net::IpAddress ip) {
  if (ip.family == Family::v6 && std::all_of(ip.bytes.begin(), ip.bytes.begin() + 10,
                                             [](uint8_t b) { return b == 0; }) &&
      ip.bytes[10] == 0xff && ip.bytes[11] == 0xff) {
    net::IpAddress v4;
    std::copy(ip.bytes.begin() + 12, ip.bytes.end(), v4.bytes.begin());
    ip = v4;
  }
  if (all_zero(ip)) {
    if (ip.family == Family::v4) {
      ip.bytes[0] = 127;
      ip.bytes[3] = 1;
    } else {
      ip.bytes[15] = 1;
    }
  }
  return ip;
}

bool loopback(const net::IpAddress& ip) {
  if (ip.family == Family::v4) return ip.bytes[0] == 127;
  return std::all_of(ip.bytes.begin(), ip.bytes.begin() + 15, [](uint8_t b) { return b == 0; }) &&
         ip.bytes[15] == 1;
}

}  // namespace

Myself::Myself(std::span<const net::Endpoint> listeners, std::span<const net::IpAddress> interfaces)
    : listeners_(listeners.begin(), listeners.end()) {
  for (const auto& ip : interfaces) interfaces_.push_back(normalise(ip));
}

bool Myself::local(const net::IpAddress& ip) const {
  return loopback(ip) || std::find(interfaces_.begin(), interfaces_.end(), ip) != interfaces_.end();
}

bool Myself::is(const net::IpAddress& target, uint16_t port) const {
  const net::IpAddress ip = normalise(target);
  for (const auto& l : listeners_) {
    if (l.port != port || l.ip.family != ip.family) continue;
    if (all_zero(l.ip) ? local(ip) : l.ip == ip) return true;
  }
  return false;
}

bool Myself::host_is(const dns::MxHost& host, uint16_t port) const {
  auto mine = [&](const net::IpAddress& ip) { return is(ip, port); };
  return std::any_of(host.ipv4.begin(), host.ipv4.end(), mine) ||
         std::any_of(host.ipv6.begin(), host.ipv6.end(), mine);
}

std::vector<dns::MxHost> Myself::prune_mx(std::span<const dns::MxHost> hosts, uint16_t port) const {
  std::optional<uint16_t> best_self;  // the best (lowest) preference that is myself
  for (const auto& h : hosts)
    if (host_is(h, port) && (!best_self || h.preference < *best_self)) best_self = h.preference;
  std::vector<dns::MxHost> left;
  for (const auto& h : hosts)
    if (!best_self || h.preference < *best_self) left.push_back(h);
  return left;
}

}  // namespace sluice::queue
