// user.hpp — one account of the users file, and the sender policy: which
// envelope senders (MAIL FROM) an authenticated login may use. Pure (part of
// sluice_sasl), so the session state machine can apply the policy without
// linking libcrypt or libuv; the file itself is read by UserDb (users.hpp).
//
// Rules (docs/users.md explains them to administrators):
// - With a sender list, the sender must equal one listed address or be in
//   one listed @domain (that domain exactly, not its subdomains).
// - Without a list, a login that is an address may send as that address only;
//   a login that is not an address may send as nobody (Postfix's
//   reject_sender_login_mismatch would reject it too).
// - Addresses are compared ignoring ASCII case in the local part and the
//   domain, as Postfix's smtpd_sender_login_maps lookups do (its tables fold
//   keys to lower case).
// - The null sender is the session's business (refused on submission ports):
//   here "" is simply not allowed.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::auth {

struct User {
  std::string login;                          // as written in the file
  std::string hash;                           // the crypt(3) hash
  bool has_sender_list = false;               // a non-empty third field
  std::vector<std::string> sender_addresses;  // "local@domain", lower-cased
  std::vector<std::string> sender_domains;    // "example.com" (from "@example.com"), lower-cased
  size_t line = 0;                            // where in the file
};

// "local@domain" with both parts non-empty (the last '@' splits them).
bool is_address(std::string_view s);

// Whether user may use mail_from (the reverse-path's mailbox, without <>) as
// its envelope sender.
bool may_send_as(const User& user, std::string_view mail_from);

// ASCII lower case (bytes >= 0x80 unchanged).
std::string ascii_lower(std::string_view s);

}  // namespace sluice::auth
