// command.hpp — the SMTP command parser (RFC 5321 §4.1, RFC 6531 SMTPUTF8). Pure.
//
// parse_command() takes one line without its CRLF and returns a Command or the
// Reply to send (500/501/502/553 with enhanced codes; 504 for AUTH
// mechanisms and 555 for unwanted parameters are the session's). It checks the
// grammar of reverse-paths and forward-paths, the RFC 5321 §4.5.3.1 size
// limits (local part 64, domain 255, path 256 octets) and esmtp-param syntax.
// Which parameters are acceptable in the session's state is the session's
// decision, not the parser's.
//
// Replies (see command.cpp for the reasoning):
//   500 5.5.2  unknown verb, or NUL / CR / LF anywhere in the line
//   502 5.5.1  SEND, SOML, SAML, TURN, ETRN, ATRN (known, not implemented)
//   501 5.5.4  argument missing or not allowed ("EHLO", "DATA x", "VRFY",
//              "AUTH", bad BDAT), "FROM:"/"TO:" missing, path without <>,
//              malformed or duplicate esmtp-parameter
//   501 5.1.7 / 5.1.3  bad reverse-path (MAIL) / forward-path (RCPT)
//              syntax, "RCPT TO:<>", path over 256 octets
//   553 5.1.7 / 5.1.3  local part over 64 or domain over 255 octets
// Tolerated: any case in verbs, "FROM:", "TO:", "LAST"; spaces/tabs between
// the verb and its argument, after "FROM:"/"TO:", between parameters and at
// the end of the line. HELO/EHLO accept any printable argument (validate
// with valid_domain() if policy wants). UTF-8 in paths and parameter values
// is accepted whatever the client declared: requiring SMTPUTF8 on MAIL for
// Mailbox::utf8() paths (RFC 6531 §3.4) is the session's check.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mta/proto/reply.hpp"

namespace sluice::proto {

enum class Verb {
  ehlo, helo, mail, rcpt, data, bdat, rset, noop, quit, vrfy, expn, help, starttls, auth,
};
std::string_view to_string(Verb v);

struct Mailbox {
  std::string local;   // local part as written (quotes kept when quoted)
  std::string domain;  // domain, or address literal with brackets "[1.2.3.4]"; may be empty only for <Postmaster>
  std::string str() const;  // "local@domain", "" for the null path
  bool empty() const { return local.empty() && domain.empty(); }
  bool utf8() const;   // contains non-ASCII octets
};

struct Param {
  std::string keyword;                // upper-cased
  std::optional<std::string> value;   // as written
};

struct Command {
  Verb verb = Verb::noop;
  std::string arg;              // EHLO/HELO domain, VRFY/EXPN/HELP/NOOP argument, AUTH args, BDAT args
  Mailbox path;                 // MAIL / RCPT
  std::vector<Param> params;    // MAIL / RCPT esmtp-parameters, in order
  const Param* find(std::string_view keyword) const;  // keyword upper-case
};

struct Limits {
  static constexpr size_t command_line = 512;  // including CRLF
  static constexpr size_t text_line = 1000;    // including CRLF
  static constexpr size_t local_part = 64;
  static constexpr size_t domain = 255;
  static constexpr size_t path = 256;          // including < >
};

std::expected<Command, Reply> parse_command(std::string_view line);

// Grammar checks usable on their own (also for sender policy and config).
bool valid_domain(std::string_view d, bool allow_utf8 = true);
bool valid_address_literal(std::string_view lit);  // "[1.2.3.4]" / "[IPv6:...]"
bool valid_dot_string(std::string_view s);         // a local part that needs no quotes
// Parses "<...>" (with optional source route, which is dropped).
std::expected<Mailbox, Reply> parse_path(std::string_view text, bool allow_null);

// RFC 3030: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]. parse_command
// has already checked Command::arg with this; the session calls it again to
// get the numbers. nullopt when malformed or the size does not fit 64 bits.
struct BdatArgs {
  uint64_t size = 0;
  bool last = false;
};
std::optional<BdatArgs> parse_bdat(std::string_view arg);

}  // namespace sluice::proto
