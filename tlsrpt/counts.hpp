// counts.hpp — what TLS-RPT (RFC 8460) counts, as values: per UTC day, per
// policy domain, per policy (§4.4 "policy": type, policy strings, MX
// patterns), the successful sessions and the failed ones per {result type,
// sending IP, receiving MX, receiving IP, failure reason code}. Pure: no I/O,
// clocks or logs. encode_day()/decode_day() are the JSON form of one day as
// the daemon keeps it in <spool_dir>/tlsrpt/ (mta/tls_reports.hpp).
#pragma once

#include <compare>
#include <cstdint>
#include <expected>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::tlsrpt {

enum class PolicyType { sts, tlsa, no_policy_found };
// "sts", "tlsa", "no-policy-found" (§4.4 policy-type).
std::string_view policy_type_name(PolicyType t);
std::optional<PolicyType> policy_type_from(std::string_view name);

// §4.3 result types.
enum class ResultType {
  starttls_not_supported,
  certificate_host_mismatch,
  certificate_expired,
  certificate_not_trusted,
  validation_failure,
  tlsa_invalid,
  dnssec_invalid,
  dane_required,
  sts_policy_fetch_error,
  sts_policy_invalid,
  sts_webpki_invalid,
};
// "starttls-not-supported", ... as in §4.3.
std::string_view result_type_name(ResultType r);
std::optional<ResultType> result_type_from(std::string_view name);

struct PolicyKey {
  PolicyType type = PolicyType::no_policy_found;
  std::vector<std::string> strings;  // STS policy lines / TLSA records
  std::vector<std::string> mx;       // STS mx: patterns
  auto operator<=>(const PolicyKey&) const = default;
  bool operator==(const PolicyKey&) const = default;
};

struct FailureKey {
  ResultType result = ResultType::validation_failure;
  std::string sending_ip;
  std::string receiving_mx;
  std::string receiving_ip;
  std::string reason;  // failure-reason-code; empty: none
  auto operator<=>(const FailureKey&) const = default;
  bool operator==(const FailureKey&) const = default;
};

struct PolicyCounts {
  uint64_t success = 0;
  std::map<FailureKey, uint64_t> failures;
  uint64_t failure_total() const;
  bool operator==(const PolicyCounts&) const = default;
};

struct DomainCounts {
  std::vector<std::string> rua;  // the mailto: addresses the domain published (latest)
  std::map<PolicyKey, PolicyCounts> policies;
  bool operator==(const DomainCounts&) const = default;
};

// One UTC day: `day` counts days since 1970-01-01.
struct Day {
  int64_t day = 0;
  std::map<std::string, DomainCounts> domains;  // by policy domain (lower case)
  bool operator==(const Day&) const = default;
};

// One session's outcome. `failure` unset: a successful session.
struct Session {
  std::string policy_domain;
  PolicyKey policy;
  std::optional<FailureKey> failure;
};

// Adds one session to `d` (rua: the domain's current mailto addresses).
void add(Day& d, const Session& s, const std::vector<std::string>& rua);
// Adds every count of `from` into `to` (same day).
void merge(Day& to, const Day& from);

// The UTC day of a time, and "YYYY-MM-DD" of a day.
int64_t day_of(int64_t unix_s);
std::string day_name(int64_t day);

std::string encode_day(const Day& d);
std::expected<Day, std::string> decode_day(std::string_view json);

}  // namespace sluice::tlsrpt
