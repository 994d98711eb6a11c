// policy.hpp — MTA-STS (RFC 8461) as values, pure: the `_mta-sts` TXT
// record, the policy file, and which MX hosts a policy allows. No I/O, no
// clocks, no logs: the caller brings the TXT strings and the fetched body
// (sts/http.hpp) and decides what to do with the answer.
//
// Rules (the choices beyond the RFC's grammar are in docs/architecture.md,
// "MTA-STS foundations"):
//  - TXT (§3.1): records that do not begin with "v=STSv1" followed by ";" or
//    WSP are discarded; if not exactly one remains, the domain has no usable
//    record. That one must be `v=STSv1` first, then `;`-separated fields:
//    exactly one `id=` of 1-32 ASCII letters/digits, extensions
//    (`name=value`, name 1-32 of alnum _ - . starting alnum, value printable
//    without `=` `;` SP) ignored; a final `;` and WSP around `;` and at the
//    ends are allowed. Tags are case-sensitive (%s in the ABNF).
//  - Policy (§3.2): lines end in LF or CRLF, each `key:` *WSP value; empty
//    lines are skipped; trailing WSP of a value is dropped; keys are
//    case-sensitive. `version: STSv1`, `mode: enforce|testing|none`,
//    `max_age:` 1-10 digits with a value 0..31557600, `mx:` a host name or
//    `*.` + host name (letters, digits, hyphens; labels 1-63; a final dot
//    allowed and dropped; stored lower-case). version, mode and max_age are
//    required and may appear once; `mx` may repeat and is required unless
//    mode is none. Unknown keys are ignored (name as in the ABNF). Control
//    octets other than HTAB (and the line end) anywhere refuse the file, as
//    does input over kMaxPolicy octets.
//  - MX match (§4.1): case-insensitive, a final dot on either side ignored;
//    `*.example.net` matches a name with exactly one more label on the left
//    (`mx.example.net`), not `example.net` nor `a.b.example.net`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::sts {

// Why a `_mta-sts` TXT answer gives no usable record.
enum class TxtError {
  none_published,  // no record begins with v=STSv1
  several,         // more than one STSv1 record at the name
  syntax,          // the one record is malformed (see the reason)
};

struct TxtProblem {
  TxtError error;
  std::string reason;  // for the log line
};

// `records`: each TXT record's strings already joined. Returns the id.
std::expected<std::string, TxtProblem> parse_txt(std::span<const std::string> records);

enum class Mode { enforce, testing, none };
std::string_view mode_name(Mode m);

struct Policy {
  Mode mode = Mode::none;
  uint32_t max_age = 0;         // seconds, at most kMaxAge
  std::vector<std::string> mx;  // patterns, lower-case, no final dot
};

inline constexpr size_t kMaxPolicy = 64 * 1024;  // octets of policy file
inline constexpr uint32_t kMaxAge = 31557600;    // one year (§3.2)

// The policy file's body; the error is a reason for the log line.
std::expected<Policy, std::string> parse_policy(std::string_view text);

// One pattern from a policy (as parse_policy stores it, or as written)
// against an MX host name.
bool mx_pattern_matches(std::string_view pattern, std::string_view host);
// Any of the policy's patterns.
bool mx_allowed(const Policy& policy, std::string_view host);

// A host name as an mx pattern (after "*.") or a policy domain may be:
// labels of letters, digits and hyphens (not first or last), 1-63 octets,
// at most 253 in all, no final dot.
bool is_host_name(std::string_view s);

}  // namespace sluice::sts
