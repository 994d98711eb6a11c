// trust.cpp — the AD-bit trust rule (trust.hpp). Pure.
#include "dns/trust.hpp"

#include <algorithm>

namespace sluice::dns {

namespace {

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

bool is_loopback(const net::IpAddress& ip) {
  const auto& b = ip.bytes;
  if (ip.family == net::IpAddress::Family::v4) return b[0] == 127;
  // ::1
  if (std::all_of(b.begin(), b.begin() + 15, [](uint8_t x) { return x == 0; }) && b[15] == 1) return true;
  // ::ffff:127.x.y.z
  return std::all_of(b.begin(), b.begin() + 10, [](uint8_t x) { return x == 0; }) && b[10] == 0xff &&
         b[11] == 0xff && b[12] == 127;
}

bool ad_bit_trusted(std::span<const net::Endpoint> servers, std::string_view resolv_conf) {
  if (!servers.empty())
    return std::all_of(servers.begin(), servers.end(), [](const net::Endpoint& e) { return is_loopback(e.ip); });
  // resolv.conf: "nameserver ADDRESS" lines; '#' or ';' start a comment line.
  while (!resolv_conf.empty()) {
    size_t nl = resolv_conf.find('\n');
    std::string_view line = resolv_conf.substr(0, nl);
    resolv_conf.remove_prefix(nl == std::string_view::npos ? resolv_conf.size() : nl + 1);
    line = trim(line);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    constexpr std::string_view kKeyword = "nameserver";
    if (!line.starts_with(kKeyword) || line.size() == kKeyword.size() || !blank(line[kKeyword.size()])) continue;
    std::string_view value = trim(line.substr(kKeyword.size()));
    // Anything after the address (glibc ignores it) is not part of it.
    size_t end = 0;
    while (end < value.size() && !blank(value[end]) && value[end] != '#' && value[end] != ';') ++end;
    auto ip = net::IpAddress::parse(value.substr(0, end));
    if (!ip || !is_loopback(*ip)) return false;
  }
  return true;
}

}  // namespace sluice::dns
