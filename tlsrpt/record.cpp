// record.cpp — see record.hpp.
#include "tlsrpt/record.hpp"

#include <algorithm>
#include <string_view>

namespace sluice::tlsrpt {
namespace {

constexpr std::string_view kVersion = "v=TLSRPTv1";

bool wsp(char c) { return c == ' ' || c == '\t'; }
bool alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && wsp(s.back())) s.remove_suffix(1);
  return s;
}

bool is_tlsrpt(std::string_view r) {
  if (!r.starts_with(kVersion)) return false;
  return r.size() == kVersion.size() || r[kVersion.size()] == ';' || wsp(r[kVersion.size()]);
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A URI as the record may carry it: printable, no WSP, no ',' or ';' (the
// delimiters), no '!' (RFC 8460 §3: it must be %-encoded).
bool uri_chars(std::string_view u) {
  if (u.empty()) return false;
  return std::all_of(u.begin(), u.end(), [](char c) {
    return c > 0x20 && c < 0x7f && c != ',' && c != ';' && c != '!';
  });
}

// The address of a mailto: URI, or "" when it is not a usable one.
std::string mailto_address(std::string_view uri) {
  constexpr std::string_view scheme = "mailto:";
  if (uri.size() <= scheme.size()) return {};
  for (std::size_t i = 0; i < scheme.size(); ++i) {
    char c = uri[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != scheme[i]) return {};
  }
  std::string_view rest = uri.substr(scheme.size());
  rest = rest.substr(0, rest.find('?'));
  std::string out;
  for (std::size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == '%') {
      if (i + 2 >= rest.size()) return {};
      int h = hex(rest[i + 1]), l = hex(rest[i + 2]);
      if (h < 0 || l < 0) return {};
      out.push_back(static_cast<char>(h * 16 + l));
      i += 2;
    } else {
      out.push_back(rest[i]);
    }
  }
  auto at = out.rfind('@');
  if (at == std::string::npos || at == 0 || at + 1 == out.size()) return {};
  for (char c : out)
    if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>' || c == ',' || c == '"') return {};
  return out;
}

bool ext_name(std::string_view n) {
  if (n.empty() || n.size() > 32 || !alnum(n[0])) return false;
  return std::all_of(n.begin(), n.end(), [](char c) { return alnum(c) || c == '_' || c == '-' || c == '.'; });
}

bool ext_value(std::string_view v) {
  if (v.empty()) return false;
  return std::all_of(v.begin(), v.end(), [](char c) {
    return c >= 0x21 && c <= 0x7e && c != ';' && c != '=';
  });
}

}  // namespace

std::expected<Record, TxtProblem> parse_txt(std::span<const std::string> records) {
  const std::string* found = nullptr;
  for (const auto& r : records) {
    if (!is_tlsrpt(r)) continue;
    if (found) return std::unexpected(TxtProblem{TxtError::several, "more than one v=TLSRPTv1 record"});
    found = &r;
  }
  if (!found) return std::unexpected(TxtProblem{TxtError::none_published, "no v=TLSRPTv1 record"});
  auto bad = [](std::string why) { return std::unexpected(TxtProblem{TxtError::syntax, std::move(why)}); };

  std::string_view rest = std::string_view(*found).substr(kVersion.size());
  Record rec;
  bool have_rua = false;
  while (true) {
    rest = trim(rest);
    if (rest.empty()) break;
    if (rest.front() != ';') return bad("expected ';'");
    rest.remove_prefix(1);
    rest = trim(rest);
    if (rest.empty()) break;  // a final ';'
    auto end = rest.find(';');
    std::string_view field = trim(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
    auto eq = field.find('=');
    if (eq == std::string_view::npos) return bad("a field without '='");
    std::string_view name = field.substr(0, eq), value = field.substr(eq + 1);
    if (name == "rua") {
      if (have_rua) return bad("more than one rua=");
      have_rua = true;
      while (true) {
        auto comma = value.find(',');
        std::string_view uri = trim(value.substr(0, comma));
        if (!uri_chars(uri)) return bad("a malformed rua URI");
        auto colon = uri.find(':');
        if (colon == std::string_view::npos || colon == 0 || !alnum(uri[0])) return bad("a rua URI without a scheme");
        std::string a = mailto_address(uri);
        if (!a.empty() && std::find(rec.mailto.begin(), rec.mailto.end(), a) == rec.mailto.end())
          rec.mailto.push_back(std::move(a));
        if (comma == std::string_view::npos) break;
        value.remove_prefix(comma + 1);
      }
    } else if (!ext_name(name) || !ext_value(value)) {
      return bad("a malformed field");
    }
  }
  if (!have_rua) return bad("no rua=");
  if (rec.mailto.empty()) return std::unexpected(TxtProblem{TxtError::no_mailto, "no mailto: in rua="});
  return rec;
}

}  // namespace sluice::tlsrpt
