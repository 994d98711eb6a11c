// fuzz_redis_url.cpp — the [cluster] redis URL and the Override as stored in
// Redis (shaping/redis_codec.hpp), over any bytes.
//
// Invariants checked (a violation traps):
//  - parse_redis_url: an endpoint is either a Unix socket (absolute path) or
//    a host with a non-zero port; no URL with '@' after "redis://" is
//    accepted (never a password in the URL); str() parses back to the
//    same endpoint.
//  - decode_override: what it accepts, encode_override writes back to
//    something that decodes to the same Override.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "shaping/redis_codec.hpp"

using namespace sluice::shaping;

namespace {
void check(bool ok) {
  if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto e = parse_redis_url(in)) {
    if (e->unix_socket()) {
      check(e->path.starts_with('/') && e->host.empty());
    } else {
      check(!e->host.empty() && e->port != 0);
      check(in.starts_with("redis://") && in.find('@') == std::string_view::npos);
    }
    auto again = parse_redis_url(e->str());
    check(again.has_value() && *again == *e);
  }
  if (auto o = decode_override(in)) {
    auto again = decode_override(encode_override(*o));
    check(again.has_value() && *again == *o);
  }
  return 0;
}
