// settings.hpp — what the configuration says about shaping ([shaping],
// [[shaping.site]], [[shaping.rule]], the provider rules file), as values.
// conf/ reads them (conf/config_shaping.cpp); shaping/ acts on them. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shaping/rate.hpp"

namespace sluice::shaping {

// A site: the recipient domains whose MX hosts match `mx` (SPEC "Shaping
// and limits"). Without a configured site, each MX host set is a site of its
// own with the [shaping] defaults (KumoMTA's MX rollup).
struct Site {
  std::string name;              // [[shaping.site]] name; default: the first mx pattern
  std::vector<std::string> mx;   // lower case; "*.example.com" = any depth below example.com
  uint32_t connections = 20;     // the ceiling; adaptive concurrency moves below it
  uint32_t messages_per_connection = 100;  // then the connection closes (0 = no limit)
  Rate rate;                     // messages per site; unlimited when not set
  bool adaptive = true;
  std::string source;            // "sluice.toml:42" or "providers.toml:17", for sluicectl
};

// Automation on remote replies.
struct Rule {
  std::string site = "*";        // a site name, or "*" for every site
  std::string reply;             // substring of the reply, or "/regex/" (ECMAScript, case-insensitive)
  Rate rate;                     // what the site is limited to (unlimited: rate untouched)
  uint32_t connections = 0;      // ... and its connections (0: untouched)
  int64_t duration_us = 0;       // for how long
  int64_t suspend_us = 0;        // or: no delivery to the site at all for this long
  std::string source;            // where it was written, for sluicectl and the log
};

struct Settings {
  Site defaults;                 // name and mx empty: what a site nobody configured gets
  std::vector<Site> sites;       // the admin's first, then the provider file's
  std::vector<Rule> rules;       // likewise: the first matching rule wins
};

// Whether host name `host` (lower case, no trailing dot) matches `pattern`:
// equal, or pattern "*.d" and host ends in ".d" (any depth).
bool mx_matches(std::string_view pattern, std::string_view host);

// Whether a rule's `reply` pattern can be used: not empty, and when written
// "/re/", an ECMAScript regular expression that compiles. nullopt when it
// can; else the error, for the configuration reader to report.
std::optional<std::string> check_reply_pattern(std::string_view pattern);

}  // namespace sluice::shaping
