// submit.hpp — turns sluice-sendmail's options and the message it read into
// the maildrop file's content: envelope sender, recipients (arguments and,
// with -t, the header), the headers added, the final size check. Pure: what
// it needs from the system (host name, login, clock, pid, randomness, size
// limit) comes in a Context, so every rule is unit-tested. No I/O, no logs.
//
// Failures carry the sysexits.h code sluice-sendmail exits with:
//   EX_USAGE    no recipients at all; a bad -f address; -F over 256 octets
//   EX_NOUSER   a local recipient (no domain, @hostname, @localhost) without
//               an [aliases] entry (conf/aliases.hpp; every one is named)
//   EX_DATAERR  an invalid recipient (on the command line or, with -t, in
//               the header; every bad one is named), more than
//               kMaxRecipients recipients, the message over the size limit
//               once the added headers are counted, more Received fields
//               than limits.max_hops (a mail loop, as the daemon's 554 5.4.6)
// Rules (docs/sendmail.md):
//   - each recipient argument is an address list ("a@b", "<a@b>",
//     "Bob <b@c>, d@e"); with -t the header's recipients are added to them
//     (as Postfix does), duplicates dropped, argument order first;
//   - an address without "@domain" gets "@hostname" (Postfix appends
//     $myorigin), in arguments, headers and -f alike;
//   - with Context::aliases, each local recipient is replaced by the
//     addresses of its [aliases] entry (duplicates dropped), so the maildrop
//     file names only remote recipients;
//   - envelope sender: -f/-r when given ("" and "<>" are the null sender),
//     else LOGIN@hostname; the From header added when the message has none
//     uses the sender, or LOGIN@hostname for the null sender;
//   - Date, From and Message-ID are added only while Context::
//     add_missing_headers ([relay] add_missing_headers) is on.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <vector>

#include "conf/aliases.hpp"
#include "mta/sendmail/maildrop.hpp"
#include "mta/sendmail/message.hpp"
#include "mta/sendmail/options.hpp"

namespace sluice::sendmail {

inline constexpr size_t kMaxFullName = 256;

struct Failure {
  int exit_code;
  std::string message;  // one line (addresses named), without the program name
};

struct Context {
  std::string login;               // the real user's login name ("uid<N>" without one)
  uint64_t max_message_size = 0;   // limits.max_message_size
  Stamp stamp;                     // clock, pid, random, hostname
  const aliases::Table* aliases = nullptr;  // [aliases]; null: local names not expanded
  bool add_missing_headers = true;  // [relay] add_missing_headers: Date, From, Message-ID
  uint32_t max_hops = 100;          // limits.max_hops: more Received fields are refused
};

// The envelope sender as stored ("" = null sender).
std::expected<std::string, Failure> envelope_sender(const Options& o, const Context& c);
// The recipients named by the command line arguments.
std::expected<std::vector<Mailbox>, Failure> argument_recipients(const Options& o,
                                                                 const Context& c);
// Everything: `content` is InputReader's output.
std::expected<Maildrop, Failure> build_maildrop(const Options& o, std::string_view content,
                                                const Context& c);

// -bs (bs.hpp): one message of the SMTP dialogue. `sender` and `recipients`
// as MAIL and RCPT accepted them (complete addresses, aliases already
// expanded by the session; "" is the null sender), `content` as DATA
// delivered it (CRLF lines, dot-stuffing undone). The same fields are added
// as by build_maildrop() (without -F), duplicates dropped, and the size
// checked (EX_DATAERR).
std::expected<Maildrop, Failure> smtp_maildrop(const std::string& sender,
                                               const std::vector<std::string>& recipients,
                                               std::string_view content, const Context& c);

}  // namespace sluice::sendmail
