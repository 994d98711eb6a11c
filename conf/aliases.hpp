// aliases.hpp — the [aliases] table: where mail to a local name goes
// (docs/aliases.md). Pure: no I/O, no clocks, no logs; safe from any thread.
//
// A recipient is *local* when it has no domain (the bare "<postmaster>" of
// RFC 5321 §4.1.1.3, or a name sluice-sendmail was given), or when its
// domain is `hostname` or "localhost" (ASCII case-insensitive). Sluice has
// no mailboxes, so a local recipient is never delivered as it is: resolve()
// maps its local part (case-insensitively) to the addresses of its entry:
//   1. the entry of that name;
//   2. for "postmaster" without an entry of its own: where "root" goes
//      (which may itself be the "*" entry);
//   3. the "*" entry (every other local name);
//   4. otherwise the recipient is unknown: refused (550 5.1.1 at RCPT,
//      EX_NOUSER from sluice-sendmail).
// A recipient that is not local is left alone (Resolution::not_local).
//
// No recursion: check_target() refuses, at configuration load, a target
// that is itself local, so one expansion always ends in remote addresses.
// Keys are stored lower-case; check_name() and check_target() say why a
// name or a target cannot be used (config.cpp names the key in the problem).
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::aliases {

// Key: a local name in lower case, or "*". Value: 1..kMaxTargets addresses
// ("local@domain", the SMTP form without angle brackets), none of them local.
using Table = std::map<std::string, std::vector<std::string>>;

inline constexpr size_t kMaxTargets = 100;
inline constexpr std::string_view kCatchAll = "*";

// True when `domain` is `hostname` or "localhost", or empty (no domain).
bool local_domain(std::string_view domain, std::string_view hostname);

struct Resolution {
  enum class Kind { not_local, alias, unknown };
  Kind kind = Kind::not_local;
  std::string name;   // the local part in lower case (local recipients only)
  std::string entry;  // the entry used: `name`, "root" (for postmaster) or "*"
  const std::vector<std::string>* targets = nullptr;  // into the table; alias only
};

// `address`: "local@domain", or a bare local part ("postmaster", "root").
Resolution resolve(const Table& table, std::string_view hostname, std::string_view address);

// Why `name` (a key as written) cannot be an alias name, or nullopt. A name
// is "*" or an RFC 5321 dot-string local part of at most 64 octets, ASCII.
std::optional<std::string> check_name(std::string_view name);
// Why `target` cannot be an alias target, or nullopt: it must be a complete
// ASCII address (RFC 5321 Mailbox) whose domain is not local.
std::optional<std::string> check_target(std::string_view target, std::string_view hostname);

// The DSN original recipient (RFC 3461 ORCPT) kept for each address an
// alias stands for: "rfc822;" and `address` in xtext ('+', '=', controls,
// space and non-ASCII octets as "+HH"). `address` must have its domain.
std::string orcpt(std::string_view address);

// The lower-case form of an ASCII string (keys, names).
std::string lower(std::string_view s);

// One line for --check and the start-up log when mail to root (and so to
// postmaster) has nowhere to go, or nullopt.
std::optional<std::string> root_warning(const Table& table);

}  // namespace sluice::aliases
