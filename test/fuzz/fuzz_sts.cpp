// fuzz_sts.cpp — MTA-STS values (sts/policy.hpp): the `_mta-sts` TXT record,
// the policy file and MX patterns, over any bytes.
//
// The input is cut at NUL octets: the pieces are the TXT records, the whole
// input is the policy file, and its first two lines a pattern and a host.
// Invariants checked (a violation traps):
//  - parse_txt: an id is 1-32 letters/digits and comes only when exactly
//    one record begins with v=STSv1; "none published" exactly when no
//    record does, "several" exactly when more than one does; the canonical
//    record "v=STSv1; id=ID;" parses back to the same id.
//  - parse_policy: a policy has max_age <= kMaxAge, mx patterns lower-case
//    without a final dot (and some unless mode is none); written back in
//    canonical form it parses to the same policy; each pattern matches the
//    hosts it should (itself, any case, a final dot; "*." one label more)
//    and not its parent or two labels more.
//  - mx_pattern_matches: indifferent to case and a final dot on either side.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sts/policy.hpp"

using namespace sluice::sts;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  return out;
}

bool begins_stsv1(std::string_view r) {
  return r.starts_with("v=STSv1") && (r.size() == 7 || r[7] == ';' || r[7] == ' ' || r[7] == '\t');
}

void check_txt(std::string_view in) {
  std::vector<std::string> records;
  size_t start = 0;
  while (records.size() < 8) {
    size_t nul = in.find('\0', start);
    records.emplace_back(in.substr(start, nul == std::string_view::npos ? std::string_view::npos : nul - start));
    if (nul == std::string_view::npos) break;
    start = nul + 1;
  }
  size_t stsv1 = 0;
  for (const auto& r : records) stsv1 += begins_stsv1(r);
  auto id = parse_txt(records);
  if (id) {
    check(stsv1 == 1);
    check(!id->empty() && id->size() <= 32);
    for (char c : *id) check(alnum(c));
    const std::vector<std::string> canonical{"v=STSv1; id=" + *id + ";"};
    auto again = parse_txt(canonical);
    check(again && *again == *id);
  } else {
    check((id.error().error == TxtError::none_published) == (stsv1 == 0));
    check((id.error().error == TxtError::several) == (stsv1 > 1));
    check(!id.error().reason.empty());
  }
}

void check_pattern(const std::string& p) {
  check(!p.empty() && p.back() != '.');
  for (char c : p) check(!(c >= 'A' && c <= 'Z'));
  if (p.starts_with("*.")) {
    const std::string parent = p.substr(2);
    check(mx_pattern_matches(p, "mx." + parent));
    check(mx_pattern_matches(p, upper("mx." + parent) + "."));
    check(!mx_pattern_matches(p, parent));
    check(!mx_pattern_matches(p, "a.b." + parent));
  } else {
    check(mx_pattern_matches(p, p));
    check(mx_pattern_matches(upper(p) + ".", p));
    check(!mx_pattern_matches(p, "a." + p));
  }
}

void check_policy(std::string_view in) {
  auto p = parse_policy(in);
  if (!p) {
    check(!p.error().empty());
    return;
  }
  check(p->max_age <= kMaxAge);
  check(!p->mx.empty() || p->mode == Mode::none);
  std::string canonical = "version: STSv1\r\nmode: " + std::string(mode_name(p->mode)) + "\r\n";
  for (const auto& mx : p->mx) {
    check_pattern(mx);
    check(mx_allowed(*p, mx.starts_with("*.") ? "x" + mx.substr(1) : mx));
    canonical += "mx: " + mx + "\r\n";
  }
  canonical += "max_age: " + std::to_string(p->max_age) + "\r\n";
  if (canonical.size() > kMaxPolicy) return;
  auto again = parse_policy(canonical);
  check(again.has_value());
  check(again->mode == p->mode && again->max_age == p->max_age && again->mx == p->mx);
}

void check_match(std::string_view in) {
  size_t lf = in.find('\n');
  if (lf == std::string_view::npos) return;
  std::string_view pattern = in.substr(0, lf), rest = in.substr(lf + 1);
  std::string_view host = rest.substr(0, rest.find('\n'));
  const bool m = mx_pattern_matches(pattern, host);
  check(m == mx_pattern_matches(upper(pattern), upper(host)));
  if (!pattern.ends_with('.') && !host.ends_with('.')) {
    check(m == mx_pattern_matches(std::string(pattern) + ".", host));
    check(m == mx_pattern_matches(pattern, std::string(host) + "."));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  check_txt(in);
  check_policy(in);
  check_match(in);
  return 0;
}
