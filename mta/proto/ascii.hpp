// ascii.hpp — the ASCII character rules the protocol code shares: WSP
// (RFC 5234: SP or HTAB) and case-insensitive comparison of ASCII names
// (SMTP verbs, header field names, AUTH mechanisms, domains). Octets outside
// A-Z/a-z compare as they are; no locale. Header-only and constexpr, so any
// library may use it without linking sluice_proto.
#pragma once

#include <cstddef>
#include <string_view>

namespace sluice::ascii {

constexpr bool is_wsp(char c) { return c == ' ' || c == '\t'; }

constexpr char to_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }
constexpr char to_upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c; }

constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (to_lower(a[i]) != to_lower(b[i])) return false;
  return true;
}

}  // namespace sluice::ascii
