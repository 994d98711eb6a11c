// policy.cpp — the `_mta-sts` TXT record, the policy file and MX patterns
// (RFC 8461 §3.1, §3.2, §4.1). See policy.hpp for the rules.
#include "sts/policy.hpp"

#include <fmt/format.h>

#include "mta/proto/ascii.hpp"

namespace sluice::sts {

namespace {

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_alpha(c) || is_digit(c); }

std::string_view trim_wsp(std::string_view s) {
  while (!s.empty() && ascii::is_wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && ascii::is_wsp(s.back())) s.remove_suffix(1);
  return s;
}

// (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / "."): the extension name
// of both the TXT record and the policy file.
bool is_ext_name(std::string_view s) {
  if (s.empty() || s.size() > 32 || !is_alnum(s[0])) return false;
  for (char c : s)
    if (!is_alnum(c) && c != '_' && c != '-' && c != '.') return false;
  return true;
}

// 1*(%x21-3A / %x3C / %x3E-7E): printable, no "=" and no ";".
bool is_txt_ext_value(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e || c == '=' || c == ';') return false;
  }
  return true;
}

// "v=STSv1" then the end, ";" or WSP: the records §3.1 keeps.
bool begins_stsv1(std::string_view r) {
  constexpr std::string_view kV = "v=STSv1";
  if (!r.starts_with(kV)) return false;
  return r.size() == kV.size() || r[kV.size()] == ';' || ascii::is_wsp(r[kV.size()]);
}

std::expected<std::string, TxtProblem> syntax(std::string reason) {
  return std::unexpected(TxtProblem{TxtError::syntax, std::move(reason)});
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii::to_lower(c);
  return out;
}

std::string_view drop_final_dot(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return s;
}

}  // namespace

bool is_host_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!is_alnum(c) && c != '-') return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::expected<std::string, TxtProblem> parse_txt(std::span<const std::string> records) {
  const std::string* found = nullptr;
  for (const std::string& r : records) {
    if (!begins_stsv1(r)) continue;
    if (found) return std::unexpected(TxtProblem{TxtError::several, "several v=STSv1 records"});
    found = &r;
  }
  if (!found) return std::unexpected(TxtProblem{TxtError::none_published, "no v=STSv1 record"});

  std::string_view rest = std::string_view(*found).substr(7);  // after "v=STSv1"
  std::string id;
  bool fields = false;
  while (true) {
    rest = trim_wsp(rest);
    if (rest.empty()) break;
    if (rest.front() != ';') return syntax("expected ';' between fields");
    rest.remove_prefix(1);
    rest = trim_wsp(rest);
    if (rest.empty()) break;  // a final ";"
    size_t end = rest.find(';');
    std::string_view field = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
    // WSP may follow a field only before the next ";" (or the end).
    std::string_view f = trim_wsp(field);
    size_t eq = f.find('=');
    if (eq == std::string_view::npos) return syntax(fmt::format("field without '=': {:.40}", f));
    std::string_view name = f.substr(0, eq), value = f.substr(eq + 1);
    fields = true;
    if (name == "id") {
      if (!id.empty()) return syntax("more than one id");
      if (value.empty() || value.size() > 32) return syntax("id must be 1 to 32 letters or digits");
      for (char c : value)
        if (!is_alnum(c)) return syntax("id must be 1 to 32 letters or digits");
      id = value;
    } else if (name == "v") {
      return syntax("v= repeated");
    } else if (!is_ext_name(name) || !is_txt_ext_value(value)) {
      return syntax(fmt::format("malformed field: {:.40}", f));
    }
  }
  if (!fields || id.empty()) return syntax("no id");
  return id;
}

std::string_view mode_name(Mode m) {
  switch (m) {
    case Mode::enforce: return "enforce";
    case Mode::testing: return "testing";
    case Mode::none: return "none";
  }
  return "none";
}

std::expected<Policy, std::string> parse_policy(std::string_view text) {
  auto fail = [](std::string reason) { return std::unexpected(std::move(reason)); };
  if (text.size() > kMaxPolicy) return fail(fmt::format("policy over {} octets", kMaxPolicy));

  Policy p;
  bool have_version = false, have_mode = false, have_max_age = false;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t lf = text.find('\n');
    std::string_view line = text.substr(0, lf);
    text = lf == std::string_view::npos ? std::string_view{} : text.substr(lf + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    for (char c : line) {
      auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f) return fail(fmt::format("line {}: control character", line_no));
    }
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail(fmt::format("line {}: no ':'", line_no));
    std::string_view key = line.substr(0, colon);
    std::string_view value = trim_wsp(line.substr(colon + 1));
    auto once = [&](bool& seen) -> bool {
      if (seen) return false;
      seen = true;
      return true;
    };
    if (key == "version") {
      if (!once(have_version)) return fail(fmt::format("line {}: version repeated", line_no));
      if (value != "STSv1") return fail(fmt::format("line {}: version is not STSv1", line_no));
    } else if (key == "mode") {
      if (!once(have_mode)) return fail(fmt::format("line {}: mode repeated", line_no));
      if (value == "enforce") p.mode = Mode::enforce;
      else if (value == "testing") p.mode = Mode::testing;
      else if (value == "none") p.mode = Mode::none;
      else return fail(fmt::format("line {}: unknown mode", line_no));
    } else if (key == "max_age") {
      if (!once(have_max_age)) return fail(fmt::format("line {}: max_age repeated", line_no));
      if (value.empty() || value.size() > 10) return fail(fmt::format("line {}: max_age is not 1 to 10 digits", line_no));
      uint64_t n = 0;
      for (char c : value) {
        if (!is_digit(c)) return fail(fmt::format("line {}: max_age is not 1 to 10 digits", line_no));
        n = n * 10 + static_cast<uint64_t>(c - '0');
      }
      if (n > kMaxAge) return fail(fmt::format("line {}: max_age over {}", line_no, kMaxAge));
      p.max_age = static_cast<uint32_t>(n);
    } else if (key == "mx") {
      std::string_view host = drop_final_dot(value);
      if (host.starts_with("*.")) host.remove_prefix(2);
      if (!is_host_name(host)) return fail(fmt::format("line {}: mx is not a host name or *.host", line_no));
      p.mx.push_back(lower(drop_final_dot(value)));
    } else if (!is_ext_name(key)) {
      return fail(fmt::format("line {}: malformed key", line_no));
    }
    // Any other well-formed key is an extension: ignored (§3.2).
  }
  if (!have_version) return fail("no version");
  if (!have_mode) return fail("no mode");
  if (!have_max_age) return fail("no max_age");
  if (p.mx.empty() && p.mode != Mode::none) return fail("no mx");
  return p;
}

bool mx_pattern_matches(std::string_view pattern, std::string_view host) {
  pattern = drop_final_dot(pattern);
  host = drop_final_dot(host);
  if (pattern.empty() || host.empty()) return false;
  if (pattern.starts_with("*.")) {
    std::string_view parent = pattern.substr(1);  // ".example.net"
    if (host.size() <= parent.size()) return false;
    size_t label_len = host.size() - parent.size();
    std::string_view label = host.substr(0, label_len);
    if (label.find('.') != std::string_view::npos) return false;
    return ascii::iequals(host.substr(label_len), parent);
  }
  return ascii::iequals(pattern, host);
}

bool mx_allowed(const Policy& policy, std::string_view host) {
  for (const std::string& pattern : policy.mx)
    if (mx_pattern_matches(pattern, host)) return true;
  return false;
}

}  // namespace sluice::sts
