// cache.hpp — one cached MTA-STS policy as a value, its file format, and the
// freshness rules (RFC 8461 §3.3, §5, §10.2), pure: no files, clocks or logs.
// The caller (mta/sts_policies.*) brings "now" in Unix seconds, reads and
// writes the files, and runs the lookups.
//
// File format (one file per policy domain, <spool_dir>/sts/DOMAIN), text,
// LF line ends, exactly this canonical form and nothing else:
//     sluice-sts 1
//     domain: example.com
//     id: 20240101T000000
//     fetched_at: 1764950000
//
//     version: STSv1
//     mode: enforce
//     mx: mx1.example.com
//     mx: *.example.net
//     max_age: 604800
// The part after the empty line is the policy in canonical form (parsed
// again with parse_policy). decode() refuses anything encode() would not
// have written (a value that re-encodes differently), so a corrupt or
// hand-edited file is refused whole, never half believed.
//
// Freshness, all with an injected `now`:
//  - valid: now < fetched_at + max_age (a policy from the future, a clock
//    gone backwards, counts as valid: it was fetched, and max_age still
//    bounds it once the clock is right).
//  - needs_refresh: the TXT id differs from the cached one, or less than
//    refresh_margin(max_age) = min(max_age / 2, 1 day) of the lifetime is
//    left (§10.2: refresh before expiry, so a policy never lapses while its
//    host is reachable).
//  - fetch_allowed: at most one fetch per domain and TXT id per
//    kFetchInterval (5 minutes), whatever its outcome; a new id may be
//    fetched at once.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "sts/policy.hpp"

namespace sluice::sts {

struct CachedPolicy {
  std::string domain;  // the policy domain: lower-case host name, no final dot
  std::string id;      // the TXT record's id the policy was fetched under
  Policy policy;
  int64_t fetched_at = 0;  // Unix seconds
};

inline constexpr size_t kMaxCacheFile = kMaxPolicy + 1024;  // octets decode() accepts
inline constexpr int64_t kFetchInterval = 300;              // seconds, per domain and id
inline constexpr int64_t kMaxRefreshMargin = 86400;         // seconds

// The canonical file text. `c` must hold a valid domain, id and policy (as
// parse_txt and parse_policy give them).
std::string encode(const CachedPolicy& c);
// The file text back; the error is a reason for the log line.
std::expected<CachedPolicy, std::string> decode(std::string_view text);

// A TXT id as parse_txt returns it: 1-32 ASCII letters/digits.
bool is_policy_id(std::string_view id);

bool valid(const CachedPolicy& c, int64_t now);
int64_t refresh_margin(uint32_t max_age);
// Whether a TXT answer with `txt_id` calls for a fetch (before the rate limit).
bool needs_refresh(const CachedPolicy& c, std::string_view txt_id, int64_t now);

// The last fetch started for a domain (success or not).
struct FetchAttempt {
  std::string id;
  int64_t at = 0;
};
bool fetch_allowed(const std::optional<FetchAttempt>& last, std::string_view txt_id, int64_t now);

}  // namespace sluice::sts
