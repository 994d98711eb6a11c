// settings.cpp — MX patterns and reply patterns (shaping/settings.hpp).
#include "shaping/settings.hpp"

#include <regex>

namespace sluice::shaping {

bool mx_matches(std::string_view pattern, std::string_view host) {
  if (pattern.starts_with("*.")) {
    const std::string_view suffix = pattern.substr(1);  // ".example.com"
    return host.size() > suffix.size() && host.ends_with(suffix);
  }
  return pattern == host;
}

bool is_regex(std::string_view pattern) {
  return pattern.size() >= 2 && pattern.front() == '/' && pattern.back() == '/';
}

std::optional<std::string> check_reply_pattern(std::string_view pattern) {
  if (pattern.empty() || pattern == "//") return "must not be empty";
  if (!is_regex(pattern)) return std::nullopt;
  // std::regex reports a bad expression only by throwing.
  try {
    std::regex re(pattern.begin() + 1, pattern.end() - 1,
                  std::regex::ECMAScript | std::regex::icase);
  } catch (const std::regex_error& e) {
    return std::string("not a valid regular expression: ") + e.what();
  }
  return std::nullopt;
}

}  // namespace sluice::shaping
