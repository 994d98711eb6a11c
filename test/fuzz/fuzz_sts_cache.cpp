// fuzz_sts_cache.cpp — the MTA-STS cache file (sts/cache.hpp) over any bytes.
//
// Invariants checked (a violation traps):
//  - decode() accepts only the canonical form: what it accepts encodes back
//    to exactly the input, with a lower-case host-name domain, a valid id,
//    fetched_at >= 0 and a policy as parse_policy gives it;
//  - a refusal carries a reason;
//  - the freshness rules agree with each other for the decoded entry at a
//    few instants: needs_refresh with the same id before the margin is
//    false, at expiry true; valid exactly before fetched_at + max_age.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sts/cache.hpp"

using namespace sluice::sts;

namespace {
void check(bool ok) {
  if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto c = decode(in);
  if (!c) {
    check(!c.error().empty());
    return 0;
  }
  check(encode(*c) == in);
  check(is_host_name(c->domain) && is_policy_id(c->id) && c->fetched_at >= 0);
  check(c->policy.max_age <= kMaxAge);
  const int64_t expiry = c->fetched_at + c->policy.max_age;
  check(!valid(*c, expiry));
  check(c->policy.max_age == 0 || valid(*c, expiry - 1));
  check(needs_refresh(*c, c->id, expiry));
  check(!needs_refresh(*c, c->id, expiry - refresh_margin(c->policy.max_age) - 1) ||
        c->policy.max_age == 0);
  check(needs_refresh(*c, c->id + "x", c->fetched_at));
  return 0;
}
