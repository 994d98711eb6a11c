// redis_codec.hpp — the pure parts of the Redis store (shaping/redis_store.hpp):
// the [cluster] redis URL and the Override as it is kept in Redis. No I/O.
//
// URL: "redis://HOST:PORT" (HOST an IPv4 address or a bracketed IPv6 one;
// PORT 1-65535, 6379 when left out; an optional final "/") or
// "unix:/absolute/path". No user or password part: sluice.toml is readable
// by sendmail users, so the password comes from redis_password_file (SPEC
// "Several nodes"). No host names: hiredis would resolve them with a
// blocking getaddrinfo on the loop.
//
// Override: one JSON object per site in the "sluice:overrides" hash,
// {"count":N,"period_us":N,"connections":N,"suspended":B,"until_us":N,"reason":S}.
// decode_override refuses anything else (another version, a hand edit).
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "shaping/store.hpp"

namespace sluice::shaping {

struct RedisEndpoint {
  std::string host;  // an IP address (IPv6 without brackets); empty for a Unix socket
  uint16_t port = 0;
  std::string path;  // the Unix socket; empty for TCP
  bool unix_socket() const { return !path.empty(); }
  // "redis://127.0.0.1:6379", "redis://[::1]:6379", "unix:/run/redis.sock".
  std::string str() const;
  bool operator==(const RedisEndpoint&) const = default;
};

std::expected<RedisEndpoint, std::string> parse_redis_url(std::string_view url);

std::string encode_override(const Override& o);
std::optional<Override> decode_override(std::string_view json);

}  // namespace sluice::shaping
