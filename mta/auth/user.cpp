// user.cpp — the sender policy (rules in user.hpp). Pure.
#include "mta/auth/user.hpp"

namespace sluice::auth {

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

bool is_address(std::string_view s) {
  const size_t at = s.rfind('@');
  return at != std::string_view::npos && at > 0 && at + 1 < s.size();
}

bool may_send_as(const User& user, std::string_view mail_from) {
  if (!is_address(mail_from)) return false;
  const std::string from = ascii_lower(mail_from);
  if (!user.has_sender_list) {
    return is_address(user.login) && ascii_lower(user.login) == from;
  }
  for (const auto& a : user.sender_addresses) {
    if (a == from) return true;
  }
  const std::string_view domain = std::string_view(from).substr(from.rfind('@') + 1);
  for (const auto& d : user.sender_domains) {
    if (d == domain) return true;
  }
  return false;
}

}  // namespace sluice::auth
