// redis_codec.cpp — the Redis URL and the stored Override (shaping/redis_codec.hpp).
#include "shaping/redis_codec.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <sys/un.h>

#include <charconv>
#include <nlohmann/json.hpp>

namespace sluice::shaping {

namespace {

constexpr uint16_t kDefaultPort = 6379;

bool is_ipv4(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}
bool is_ipv6(const std::string& s) {
  in6_addr a{};
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

}  // namespace

std::string RedisEndpoint::str() const {
  // A path that begins "//" is written in the URL spelling (unix://PATH),
  // which parse_redis_url reads back as the same path: "unix:" + "///x"
  // would read back as "/x" (found by fuzz_redis_url).
  if (unix_socket()) return (path.starts_with("//") ? "unix://" : "unix:") + path;
  if (host.find(':') != std::string::npos) return fmt::format("redis://[{}]:{}", host, port);
  return fmt::format("redis://{}:{}", host, port);
}

std::expected<RedisEndpoint, std::string> parse_redis_url(std::string_view url) {
  const auto bad = [&](std::string_view why) {
    return std::unexpected(fmt::format("redis \"{}\": {}", url, why));
  };
  if (url.find('\0') != std::string_view::npos) return bad("a NUL byte");
  if (url.starts_with("unix:")) {
    std::string_view path = url.substr(5);
    if (path.starts_with("///")) {
      // unix:///path is the URL spelling of unix:/path.
      path.remove_prefix(2);
    }
    if (!path.starts_with('/')) return bad("write unix:/absolute/path");
    if (path.size() >= sizeof(sockaddr_un::sun_path)) return bad("the socket path is too long");
    RedisEndpoint e;
    e.path = std::string(path);
    return e;
  }
  if (!url.starts_with("redis://")) {
    if (url.starts_with("rediss://")) return bad("TLS to Redis is not supported; use a Unix socket or a private network");
    return bad("write redis://HOST:PORT or unix:/path");
  }
  std::string_view rest = url.substr(8);
  if (rest.find('@') != std::string_view::npos)
    return bad("never a password in the URL: put it in [cluster] redis_password_file");
  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find_first_of("/?#") != std::string_view::npos)
    return bad("no database or options: write redis://HOST:PORT");
  RedisEndpoint e;
  std::string_view port;
  if (rest.starts_with('[')) {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) return bad("an IPv6 address needs its closing ]");
    e.host = std::string(rest.substr(1, close - 1));
    if (!is_ipv6(e.host)) return bad("not an IPv6 address between [ ]");
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return bad("write [ADDRESS]:PORT");
      port = rest.substr(1);
      if (port.empty()) return bad("an empty port");
    }
  } else {
    const size_t colon = rest.rfind(':');
    if (colon != std::string_view::npos) {
      port = rest.substr(colon + 1);
      if (port.empty()) return bad("an empty port");
      rest = rest.substr(0, colon);
    }
    e.host = std::string(rest);
    if (e.host.empty()) return bad("no host");
    if (!is_ipv4(e.host))
      return bad("HOST must be an IP address (127.0.0.1, [::1]): names are not resolved, so the loop never waits");
  }
  e.port = kDefaultPort;
  if (!port.empty()) {
    uint32_t n = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (ec != std::errc() || p != port.data() + port.size() || n == 0 || n > 65535)
      return bad("the port is a number from 1 to 65535");
    e.port = static_cast<uint16_t>(n);
  }
  return e;
}

std::string encode_override(const Override& o) {
  nlohmann::json j = {
      {"count", o.rate.count},          {"period_us", o.rate.period_us},
      {"connections", o.connections},   {"suspended", o.suspended},
      {"until_us", o.until_us},         {"reason", o.reason},
  };
  // Invalid UTF-8 in a reason (it quotes a remote reply) becomes U+FFFD.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<Override> decode_override(std::string_view text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  const auto uint_field = [&](const char* name, uint64_t max) -> std::optional<uint64_t> {
    auto it = j.find(name);
    if (it == j.end() || !it->is_number_unsigned()) return std::nullopt;
    const uint64_t v = it->get<uint64_t>();
    if (v > max) return std::nullopt;
    return v;
  };
  const auto count = uint_field("count", UINT32_MAX);
  const auto period = uint_field("period_us", INT64_MAX);
  const auto connections = uint_field("connections", UINT32_MAX);
  const auto until = uint_field("until_us", INT64_MAX);
  const auto suspended = j.find("suspended");
  const auto reason = j.find("reason");
  if (!count || !period || !connections || !until || suspended == j.end() || !suspended->is_boolean() ||
      reason == j.end() || !reason->is_string())
    return std::nullopt;
  if (*count != 0 && *period == 0) return std::nullopt;
  Override o;
  o.rate = Rate{static_cast<uint32_t>(*count), static_cast<int64_t>(*period)};
  o.connections = static_cast<uint32_t>(*connections);
  o.suspended = suspended->get<bool>();
  o.until_us = static_cast<int64_t>(*until);
  o.reason = reason->get<std::string>();
  return o;
}

}  // namespace sluice::shaping
