// settings.cpp — the pure helpers of shaping/settings.hpp.
#include "shaping/settings.hpp"

#include <fmt/format.h>

#include <regex>

namespace sluice::shaping {

bool mx_matches(std::string_view pattern, std::string_view host) {
  if (pattern.starts_with("*.")) {
    const std::string_view suffix = pattern.substr(1);  // ".d"
    return host.size() > suffix.size() && host.ends_with(suffix);
  }
  return pattern == host;
}

std::optional<std::string> check_reply_pattern(std::string_view pattern) {
  if (pattern.empty()) return "reply must not be empty: write a part of the reply, or \"/regex/\"";
  if (pattern.size() < 2 || !pattern.starts_with('/') || !pattern.ends_with('/')) return std::nullopt;
  const std::string re(pattern.substr(1, pattern.size() - 2));
  if (re.empty()) return "reply \"//\" is an empty regular expression";
  // std::regex reports a bad pattern only by throwing; it stays here.
  try {
    std::regex compiled(re, std::regex::ECMAScript | std::regex::icase);
  } catch (const std::regex_error& e) {
    return fmt::format("reply \"{}\" is not a regular expression (ECMAScript): {}", pattern, e.what());
  }
  return std::nullopt;
}

}  // namespace sluice::shaping
