// addresses.hpp — RFC 5322 §3.4 address lists, as found in To/Cc/Bcc headers
// and in sluice-sendmail's recipient arguments. Pure: no I/O, no clocks, no
// logs, no exceptions for bad input; safe from any thread.
//
// parse_address_list(text) reads an address-list (text after "To:", folding
// CRLFs allowed and ignored) and returns every mailbox it names, groups
// flattened, in order, plus one error string per element that is not a
// valid address. A bad element never stops the rest of the list from being
// read: errors are collected and parsing resumes after the next ",".
//
// What is accepted:
//   - addr-spec ("a@b.example"), name-addr ("Name <a@b>", "<a@b>"), display
//     names made of atoms, quoted strings and dots ("John Q. Public"), the
//     obsolete route form "<@relay:a@b>" (route dropped);
//   - comments in parentheses anywhere between tokens, nested, with
//     backslash quoted-pairs; CR, LF, SP and HT as white space;
//   - groups: "undisclosed-recipients:;", "team: a@x, b@y;" (a group not
//     closed before the end is accepted, a group inside a group is not);
//   - empty elements (",,", leading and trailing commas, obs-addr-list);
//   - a local part without "@domain" ("root", "<root>"): Mailbox::domain is
//     then empty and the caller decides (sluice-sendmail appends
//     "@hostname", as Postfix appends myorigin);
//   - UTF-8 in local parts and domains (RFC 6532) when it is valid UTF-8.
// Every mailbox returned is valid in the RFC 5321 sense once it has a
// domain: local part a dot-string or a quoted-string (re-quoted canonically:
// quotes only when needed), domain a host name (letters, digits, hyphens,
// U-labels) or an IPv4/IPv6 address literal, local part at most 64 octets,
// domain at most 255, the whole address at most 254 (a path of 256 with
// its angle brackets).
// Errors read "TEXT: WHY", TEXT being the offending element as written
// (sanitised, at most 80 octets).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mta/proto/ascii.hpp"

namespace sluice::sendmail {

struct Mailbox {
  std::string display_name;  // quoted strings decoded, words joined by one space; "" if none
  std::string local_part;    // canonical: dot-string as is, otherwise a quoted-string
  std::string domain;        // host name or "[literal]"; "" when none was written

  // "local@domain", or just the local part when there is no domain.
  std::string address() const;
  friend bool operator==(const Mailbox&, const Mailbox&) = default;
};

struct AddressList {
  std::vector<Mailbox> mailboxes;
  std::vector<std::string> errors;
};

AddressList parse_address_list(std::string_view text);

// True when `a` and `b` are the same mailbox: local parts equal octet for
// octet (they may be case-sensitive), domains equal ignoring ASCII case.
bool same_address(const Mailbox& a, const Mailbox& b);

// A key equal for exactly the mailboxes same_address() calls equal: the
// local part, "@", the domain in lower case. For hash sets.
std::string address_key(const Mailbox& m);

// Appends each mailbox of `more` that is not already in `into` (same_address).
void append_unique(std::vector<Mailbox>& into, const std::vector<Mailbox>& more);

// The RFC 5321 form of a local part given its decoded text: as is when it
// is a dot-string, otherwise a quoted-string with '"' and '\' escaped.
// Returns "" when the text cannot be a local part at all (empty, control
// characters, invalid UTF-8, or longer than 64 octets once quoted).
std::string canonical_local_part(std::string_view decoded);

// Envelope-level checks of an address as stored in a maildrop file or sent
// in MAIL/RCPT: "local@domain" with local part a dot-string or
// quoted-string (at most 64 octets), domain a host name or IP address
// literal (at most 255 octets), whole at most 254 octets.
bool valid_address(std::string_view address);
bool valid_domain(std::string_view domain);  // host name or [address literal]

// ASCII case-insensitive equality (header field names, domains).
using ascii::iequals;

// Length of the well-formed UTF-8 sequence of 2 to 4 octets starting at s[i]
// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or 0
// when s[i] does not start one (ASCII included).
size_t utf8_sequence_length(std::string_view s, size_t i);

}  // namespace sluice::sendmail
