// counts.cpp — see counts.hpp.
#include "tlsrpt/counts.hpp"

#include <fmt/format.h>

#include <array>
#include <nlohmann/json.hpp>
#include <utility>

namespace sluice::tlsrpt {
namespace {

constexpr std::array<std::pair<PolicyType, std::string_view>, 3> kPolicyTypes{{
    {PolicyType::sts, "sts"},
    {PolicyType::tlsa, "tlsa"},
    {PolicyType::no_policy_found, "no-policy-found"},
}};

constexpr std::array<std::pair<ResultType, std::string_view>, 11> kResults{{
    {ResultType::starttls_not_supported, "starttls-not-supported"},
    {ResultType::certificate_host_mismatch, "certificate-host-mismatch"},
    {ResultType::certificate_expired, "certificate-expired"},
    {ResultType::certificate_not_trusted, "certificate-not-trusted"},
    {ResultType::validation_failure, "validation-failure"},
    {ResultType::tlsa_invalid, "tlsa-invalid"},
    {ResultType::dnssec_invalid, "dnssec-invalid"},
    {ResultType::dane_required, "dane-required"},
    {ResultType::sts_policy_fetch_error, "sts-policy-fetch-error"},
    {ResultType::sts_policy_invalid, "sts-policy-invalid"},
    {ResultType::sts_webpki_invalid, "sts-webpki-invalid"},
}};

using json = nlohmann::json;

}  // namespace

std::string_view policy_type_name(PolicyType t) {
  for (auto& [k, v] : kPolicyTypes)
    if (k == t) return v;
  return "no-policy-found";
}
std::optional<PolicyType> policy_type_from(std::string_view name) {
  for (auto& [k, v] : kPolicyTypes)
    if (v == name) return k;
  return std::nullopt;
}
std::string_view result_type_name(ResultType r) {
  for (auto& [k, v] : kResults)
    if (k == r) return v;
  return "validation-failure";
}
std::optional<ResultType> result_type_from(std::string_view name) {
  for (auto& [k, v] : kResults)
    if (v == name) return k;
  return std::nullopt;
}

uint64_t PolicyCounts::failure_total() const {
  uint64_t n = 0;
  for (auto& [k, c] : failures) n += c;
  return n;
}

void add(Day& d, const Session& s, const std::vector<std::string>& rua) {
  DomainCounts& dc = d.domains[s.policy_domain];
  if (!rua.empty()) dc.rua = rua;
  PolicyCounts& pc = dc.policies[s.policy];
  if (s.failure)
    ++pc.failures[*s.failure];
  else
    ++pc.success;
}

void merge(Day& to, const Day& from) {
  for (auto& [domain, dc] : from.domains) {
    DomainCounts& t = to.domains[domain];
    if (!dc.rua.empty()) t.rua = dc.rua;
    for (auto& [key, pc] : dc.policies) {
      PolicyCounts& tp = t.policies[key];
      tp.success += pc.success;
      for (auto& [fk, n] : pc.failures) tp.failures[fk] += n;
    }
  }
}

int64_t day_of(int64_t unix_s) {
  int64_t d = unix_s / 86400;
  if (unix_s % 86400 < 0) --d;
  return d;
}

std::string day_name(int64_t day) {
  // Howard Hinnant's civil_from_days, written out.
  int64_t z = day + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t dd = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  return fmt::format("{:04}-{:02}-{:02}", y, m, dd);
}

std::string encode_day(const Day& d) {
  json domains = json::object();
  for (auto& [domain, dc] : d.domains) {
    json policies = json::array();
    for (auto& [key, pc] : dc.policies) {
      json failures = json::array();
      for (auto& [fk, n] : pc.failures)
        failures.push_back({{"result", result_type_name(fk.result)},
                            {"sending_ip", fk.sending_ip},
                            {"receiving_mx", fk.receiving_mx},
                            {"receiving_ip", fk.receiving_ip},
                            {"reason", fk.reason},
                            {"count", n}});
      policies.push_back({{"type", policy_type_name(key.type)},
                          {"strings", key.strings},
                          {"mx", key.mx},
                          {"success", pc.success},
                          {"failures", std::move(failures)}});
    }
    domains[domain] = {{"rua", dc.rua}, {"policies", std::move(policies)}};
  }
  json j = {{"version", 1}, {"day", d.day}, {"domains", std::move(domains)}};
  return j.dump() + "\n";
}

std::expected<Day, std::string> decode_day(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::unexpected(std::string("not a JSON object"));
  auto str_list = [](const json& a, std::vector<std::string>& out) {
    if (!a.is_array()) return false;
    for (auto& s : a) {
      if (!s.is_string()) return false;
      out.push_back(s.get<std::string>());
    }
    return true;
  };
  auto u64 = [](const json& o, const char* k, uint64_t& out) {
    auto it = o.find(k);
    if (it == o.end() || !it->is_number_unsigned()) return false;
    out = it->get<uint64_t>();
    return true;
  };
  auto str = [](const json& o, const char* k, std::string& out) {
    auto it = o.find(k);
    if (it == o.end() || !it->is_string()) return false;
    out = it->get<std::string>();
    return true;
  };
  // Every field is type-checked before it is read: a day file is ours, but a
  // damaged one must be "left alone" with a log line, never a throw.
  auto version = j.find("version");
  if (version == j.end() || !version->is_number_integer() || version->get<int64_t>() != 1)
    return std::unexpected(std::string("unknown version"));
  Day d;
  auto day = j.find("day");
  if (day == j.end() || !day->is_number_integer()) return std::unexpected(std::string("no day"));
  d.day = day->get<int64_t>();
  auto domains = j.find("domains");
  if (domains == j.end() || !domains->is_object()) return std::unexpected(std::string("no domains"));
  for (auto& [domain, dj] : domains->items()) {
    if (!dj.is_object() || !dj.contains("rua") || !dj.contains("policies") || !dj["policies"].is_array())
      return std::unexpected("a malformed domain " + domain);
    DomainCounts dc;
    if (!str_list(dj["rua"], dc.rua)) return std::unexpected("a malformed rua for " + domain);
    for (auto& pj : dj["policies"]) {
      PolicyKey key;
      PolicyCounts pc;
      std::string type;
      if (!pj.is_object() || !str(pj, "type", type) || !pj.contains("strings") || !pj.contains("mx") ||
          !str_list(pj["strings"], key.strings) || !str_list(pj["mx"], key.mx) || !u64(pj, "success", pc.success) ||
          !pj.contains("failures") || !pj["failures"].is_array())
        return std::unexpected("a malformed policy for " + domain);
      auto t = policy_type_from(type);
      if (!t) return std::unexpected("an unknown policy type for " + domain);
      key.type = *t;
      for (auto& fj : pj["failures"]) {
        FailureKey fk;
        std::string result;
        uint64_t n = 0;
        if (!fj.is_object() || !str(fj, "result", result) || !str(fj, "sending_ip", fk.sending_ip) ||
            !str(fj, "receiving_mx", fk.receiving_mx) || !str(fj, "receiving_ip", fk.receiving_ip) ||
            !str(fj, "reason", fk.reason) || !u64(fj, "count", n))
          return std::unexpected("a malformed failure for " + domain);
        auto r = result_type_from(result);
        if (!r) return std::unexpected("an unknown result type for " + domain);
        fk.result = *r;
        pc.failures[fk] += n;
      }
      PolicyCounts& into = dc.policies[key];
      into.success += pc.success;
      for (auto& [fk, n] : pc.failures) into.failures[fk] += n;
    }
    d.domains[domain] = std::move(dc);
  }
  return d;
}

}  // namespace sluice::tlsrpt
