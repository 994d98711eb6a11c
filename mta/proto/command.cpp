// command.cpp — SMTP command parsing (RFC 5321 §4.1, RFC 6531 §3.3,
// RFC 3030 §2). Pure: no I/O, no allocation beyond the returned values.
//
// Replies produced here (every one with an enhanced code, RFC 2034/3463):
//   500 5.5.2  unknown verb; NUL, CR or LF inside the line
//   502 5.5.1  verbs of RFC 821/1985 we do not implement (SEND, SOML, SAML,
//              TURN, ETRN, ATRN)
//   501 5.5.4  command syntax: missing/extra argument, "FROM:"/"TO:" missing,
//              path not in angle brackets, malformed esmtp-parameters,
//              duplicate parameter, bad BDAT arguments
//   501 5.1.7  bad reverse-path (MAIL) syntax; path longer than 256 octets
//   501 5.1.3  bad forward-path (RCPT) syntax, null forward-path; path too long
//   553 5.1.7 / 553 5.1.3  local part over 64 or domain over 255 octets
//              ("mailbox name not allowed"). The path limit uses 501 because
//              RFC 5321 §4.5.3.1.10 names it "501 Path too long"; the
//              local-part and domain limits are about a mailbox name the
//              grammar accepts but we refuse, which is what 553 means.
// Unknown or inappropriate parameter keywords (555) and unimplemented AUTH
// mechanisms (504) are the session's decision.
#include "mta/proto/ascii.hpp"
#include "mta/proto/command.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <charconv>

namespace sluice::proto {

namespace {

using uchar = unsigned char;

constexpr bool is_alpha(uchar c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
constexpr bool is_digit(uchar c) { return c >= '0' && c <= '9'; }
constexpr bool is_wsp(uchar c) { return c == ' ' || c == '\t'; }
using ascii::to_upper;

using ascii::iequals;

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view trim_wsp_left(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && is_wsp(static_cast<uchar>(s[i]))) ++i;
  return s.substr(i);
}

std::string_view trim_wsp_right(std::string_view s) {
  size_t n = s.size();
  while (n > 0 && is_wsp(static_cast<uchar>(s[n - 1]))) --n;
  return s.substr(0, n);
}

// RFC 6531 §3.3 (from RFC 3629 §4):
//   UTF8-non-ascii = UTF8-2 / UTF8-3 / UTF8-4
//   UTF8-2 = %xC2-DF UTF8-tail
//   UTF8-3 = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) /
//            %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
//   UTF8-4 = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) /
//            %xF4 %x80-8F 2( UTF8-tail )
//   UTF8-tail = %x80-BF
// Returns the length of the sequence starting at s[i], or 0 if malformed.
size_t utf8_non_ascii(std::string_view s, size_t i) {
  auto at = [&](size_t k) -> int { return i + k < s.size() ? static_cast<uchar>(s[i + k]) : -1; };
  auto tail = [](int c) { return c >= 0x80 && c <= 0xBF; };
  const int c0 = at(0);
  if (c0 >= 0xC2 && c0 <= 0xDF) return tail(at(1)) ? 2 : 0;
  if (c0 >= 0xE0 && c0 <= 0xEF) {
    const int c1 = at(1);
    const bool ok1 = c0 == 0xE0 ? (c1 >= 0xA0 && c1 <= 0xBF)
                     : c0 == 0xED ? (c1 >= 0x80 && c1 <= 0x9F)
                                  : tail(c1);
    return ok1 && tail(at(2)) ? 3 : 0;
  }
  if (c0 >= 0xF0 && c0 <= 0xF4) {
    const int c1 = at(1);
    const bool ok1 = c0 == 0xF0 ? (c1 >= 0x90 && c1 <= 0xBF)
                     : c0 == 0xF4 ? (c1 >= 0x80 && c1 <= 0x8F)
                                  : tail(c1);
    return ok1 && tail(at(2)) && tail(at(3)) ? 4 : 0;
  }
  return 0;
}

// RFC 5322 §3.2.3:
//   atext = ALPHA / DIGIT / "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
//           "-" / "/" / "=" / "?" / "^" / "_" / "`" / "{" / "|" / "}" / "~"
// (RFC 6531 adds UTF8-non-ascii, handled by the callers.)
constexpr bool is_atext_ascii(uchar c) {
  if (is_alpha(c) || is_digit(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '/': case '=': case '?': case '^': case '_':
    case '`': case '{': case '|': case '}': case '~':
      return true;
    default:
      return false;
  }
}

// RFC 5321 §4.1.2:  Dot-string = Atom *("."  Atom)
//                   Atom       = 1*atext
// RFC 6531 §3.3:    atext     =/ UTF8-non-ascii
bool dot_string(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  for (size_t i = 0; i < s.size();) {
    const uchar c = static_cast<uchar>(s[i]);
    if (c == '.') {
      if (s[i - 1] == '.') return false;  // i > 0: s.front() is not '.'
      ++i;
    } else if (c < 0x80) {
      if (!is_atext_ascii(c)) return false;
      ++i;
    } else {
      const size_t n = utf8_non_ascii(s, i);
      if (n == 0) return false;
      i += n;
    }
  }
  return true;
}

// RFC 5321 §4.1.2:
//   Quoted-string   = DQUOTE *QcontentSMTP DQUOTE
//   QcontentSMTP    = qtextSMTP / quoted-pairSMTP
//   quoted-pairSMTP = %d92 %d32-126
//   qtextSMTP       = %d32-33 / %d35-91 / %d93-126
// RFC 6531 §3.3:    qtextSMTP =/ UTF8-non-ascii
// Returns the length of the quoted string at the start of s (closing quote
// included), or 0 if s does not start with a well-formed one.
size_t quoted_string_length(std::string_view s) {
  if (s.empty() || s[0] != '"') return 0;
  for (size_t i = 1; i < s.size();) {
    const uchar c = static_cast<uchar>(s[i]);
    if (c == '"') return i + 1;
    if (c == '\\') {
      if (i + 1 >= s.size()) return 0;
      const uchar q = static_cast<uchar>(s[i + 1]);
      if (q < 32 || q > 126) return 0;
      i += 2;
    } else if (c >= 32 && c <= 126) {
      ++i;  // %d32-33 / %d35-91 / %d93-126: '"' and '\' are handled above
    } else if (c >= 0x80) {
      const size_t n = utf8_non_ascii(s, i);
      if (n == 0) return 0;
      i += n;
    } else {
      return 0;  // controls: NUL, CR, LF, HT...
    }
  }
  return 0;
}

// RFC 5321 §4.1.2:
//   sub-domain = Let-dig [Ldh-str]
//   Let-dig    = ALPHA / DIGIT
//   Ldh-str    = *( ALPHA / DIGIT / "-" ) Let-dig
// RFC 6531 §3.3:  sub-domain =/ U-label
// A label is at most 63 octets (RFC 1035). A U-label (one with non-ASCII
// UTF-8) is checked as letters/digits/hyphens/UTF-8 with no hyphen at either
// end; its length limit applies to its A-label form, which we do not compute,
// so it is bounded only by the domain limit.
bool valid_label(std::string_view l, bool allow_utf8) {
  if (l.empty() || l.front() == '-' || l.back() == '-') return false;
  bool ascii = true;
  for (size_t i = 0; i < l.size();) {
    const uchar c = static_cast<uchar>(l[i]);
    if (is_alpha(c) || is_digit(c) || c == '-') {
      ++i;
    } else if (c >= 0x80 && allow_utf8) {
      const size_t n = utf8_non_ascii(l, i);
      if (n == 0) return false;
      ascii = false;
      i += n;
    } else {
      return false;
    }
  }
  return !ascii || l.size() <= 63;
}

// RFC 5321 §4.1.2:  Domain = sub-domain *("." sub-domain)
// Grammar only; the 255-octet limit is checked by the callers.
bool valid_domain_syntax(std::string_view d, bool allow_utf8) {
  if (d.empty()) return false;
  for (;;) {
    const size_t dot = d.find('.');
    if (!valid_label(d.substr(0, dot), allow_utf8)) return false;
    if (dot == std::string_view::npos) return true;
    d.remove_prefix(dot + 1);  // a trailing dot leaves an empty, invalid label
  }
}

std::unexpected<Reply> fail(int code, std::string_view enh, std::string_view text) {
  return std::unexpected(Reply(code, enh, text));
}

// Index of the '>' closing the path that starts at s[0] == '<', skipping
// quoted strings (a quoted local part may contain '>'), or npos.
size_t find_path_end(std::string_view s) {
  bool quoted = false;
  for (size_t i = 1; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      return i;
    }
  }
  return std::string_view::npos;
}

// RFC 5321 §4.1.2:
//   esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
bool valid_esmtp_keyword(std::string_view k) {
  if (k.empty() || !(is_alpha(static_cast<uchar>(k[0])) || is_digit(static_cast<uchar>(k[0]))))
    return false;
  for (char ch : k) {
    const uchar c = static_cast<uchar>(ch);
    if (!is_alpha(c) && !is_digit(c) && c != '-') return false;
  }
  return true;
}

// RFC 5321 §4.1.2:  esmtp-value = 1*(%d33-60 / %d62-126)
// RFC 6531 §3.3:    esmtp-value =/ UTF8-non-ascii
bool valid_esmtp_value(std::string_view v) {
  if (v.empty()) return false;
  for (size_t i = 0; i < v.size();) {
    const uchar c = static_cast<uchar>(v[i]);
    if (c >= 33 && c <= 126 && c != '=') {
      ++i;
    } else if (c >= 0x80) {
      const size_t n = utf8_non_ascii(v, i);
      if (n == 0) return false;
      i += n;
    } else {
      return false;
    }
  }
  return true;
}

// RFC 5321 §4.1.2 / §4.1.1.2-3:
//   Mail-parameters = esmtp-param *(SP esmtp-param)
//   Rcpt-parameters = esmtp-param *(SP esmtp-param)
//   esmtp-param     = esmtp-keyword ["=" esmtp-value]
// `s` is what follows the path's '>'; it is empty or starts with SP.
// Runs of spaces (and tabs) between parameters are tolerated.
std::expected<std::vector<Param>, Reply> parse_params(std::string_view s) {
  std::vector<Param> params;
  if (s.empty()) return params;
  if (!is_wsp(static_cast<uchar>(s[0]))) {
    return fail(501, "5.5.4", "Syntax error: space expected after the address");
  }
  for (;;) {
    s = trim_wsp_left(s);
    if (s.empty()) break;
    size_t end = 0;
    while (end < s.size() && !is_wsp(static_cast<uchar>(s[end]))) ++end;
    const std::string_view token = s.substr(0, end);
    s.remove_prefix(end);

    const size_t eq = token.find('=');
    const std::string_view keyword = token.substr(0, eq);
    if (!valid_esmtp_keyword(keyword)) {
      return fail(501, "5.5.4", "Syntax error in parameters");
    }
    Param p;
    p.keyword.reserve(keyword.size());
    for (char c : keyword) p.keyword.push_back(to_upper(c));
    if (eq != std::string_view::npos) {
      const std::string_view value = token.substr(eq + 1);
      if (!valid_esmtp_value(value)) {
        return fail(501, "5.5.4", "Syntax error in parameter value");
      }
      p.value = std::string(value);
    }
    for (const Param& q : params) {
      if (q.keyword == p.keyword) return fail(501, "5.5.4", "Duplicate parameter");
    }
    params.push_back(std::move(p));
  }
  return params;
}

struct VerbName {
  std::string_view name;
  Verb verb;
};

constexpr std::array<VerbName, 14> kVerbs{{
    {"EHLO", Verb::ehlo}, {"HELO", Verb::helo}, {"MAIL", Verb::mail},
    {"RCPT", Verb::rcpt}, {"DATA", Verb::data}, {"BDAT", Verb::bdat},
    {"RSET", Verb::rset}, {"NOOP", Verb::noop}, {"QUIT", Verb::quit},
    {"VRFY", Verb::vrfy}, {"EXPN", Verb::expn}, {"HELP", Verb::help},
    {"STARTTLS", Verb::starttls}, {"AUTH", Verb::auth},
}};

// Verbs of RFC 821 and later extensions that we recognise but do not offer.
constexpr std::array<std::string_view, 6> kNotImplemented{
    "SEND", "SOML", "SAML", "TURN", "ETRN", "ATRN"};

// MAIL FROM:<reverse-path> [SP Mail-parameters]
// RCPT TO:<forward-path> [SP Rcpt-parameters]
// RFC 5321 §4.1.1.2: "MAIL FROM:" Reverse-path [SP Mail-parameters] CRLF
// RFC 5321 §4.1.1.3: "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" /
//                    Forward-path ) [SP Rcpt-parameters] CRLF
// Like Postfix we accept spaces between the colon and the '<'.
std::expected<Command, Reply> parse_mail_rcpt(Verb verb, std::string_view rest) {
  const bool mail = verb == Verb::mail;
  const std::string_view prefix = mail ? "FROM:" : "TO:";
  const std::string_view usage = mail ? "Syntax: MAIL FROM:<address>" : "Syntax: RCPT TO:<address>";
  if (!istarts_with(rest, prefix)) return fail(501, "5.5.4", usage);
  rest = trim_wsp_left(rest.substr(prefix.size()));
  if (rest.empty() || rest[0] != '<') return fail(501, "5.5.4", usage);
  const size_t end = find_path_end(rest);
  if (end == std::string_view::npos) return fail(501, "5.5.4", usage);

  Command cmd;
  cmd.verb = verb;
  auto path = parse_path(rest.substr(0, end + 1), mail);
  if (!path) return std::unexpected(std::move(path.error()));
  cmd.path = std::move(*path);
  auto params = parse_params(rest.substr(end + 1));
  if (!params) return std::unexpected(std::move(params.error()));
  cmd.params = std::move(*params);
  return cmd;
}

}  // namespace

std::string_view to_string(Verb v) {
  for (const VerbName& n : kVerbs) {
    if (n.verb == v) return n.name;
  }
  return "?";
}

std::string Mailbox::str() const {
  if (empty()) return {};
  if (domain.empty()) return local;
  std::string s;
  s.reserve(local.size() + 1 + domain.size());
  s += local;
  s += '@';
  s += domain;
  return s;
}

bool Mailbox::utf8() const {
  for (char c : local) {
    if (static_cast<uchar>(c) >= 0x80) return true;
  }
  for (char c : domain) {
    if (static_cast<uchar>(c) >= 0x80) return true;
  }
  return false;
}

const Param* Command::find(std::string_view keyword) const {
  for (const Param& p : params) {
    if (iequals(p.keyword, keyword)) return &p;
  }
  return nullptr;
}

bool valid_domain(std::string_view d, bool allow_utf8) {
  return d.size() <= Limits::domain && valid_domain_syntax(d, allow_utf8);
}

// RFC 5321 §4.1.3:
//   address-literal      = "[" ( IPv4-address-literal / IPv6-address-literal /
//                                General-address-literal ) "]"
//   IPv4-address-literal = Snum 3("."  Snum)
//   IPv6-address-literal = "IPv6:" IPv6-addr
//   General-address-literal = Standardized-tag ":" 1*dcontent
// The IP forms are checked with inet_pton; general literals are refused
// (no tag is standardized for mail).
bool valid_dot_string(std::string_view s) { return dot_string(s); }

bool valid_address_literal(std::string_view lit) {
  if (lit.size() < 3 || lit.front() != '[' || lit.back() != ']') return false;
  std::string_view inner = lit.substr(1, lit.size() - 2);
  char buf[64];  // longest IPv6 text form is 45 octets
  unsigned char addr[sizeof(in6_addr)];
  int family = AF_INET;
  if (istarts_with(inner, "IPv6:")) {
    inner.remove_prefix(5);
    family = AF_INET6;
  }
  if (inner.empty() || inner.size() >= sizeof(buf)) return false;
  for (char c : inner) {
    const uchar u = static_cast<uchar>(c);
    const bool ok = family == AF_INET ? (is_digit(u) || c == '.')
                                      : (is_digit(u) || (to_upper(c) >= 'A' && to_upper(c) <= 'F') ||
                                         c == ':' || c == '.');
    if (!ok) return false;
  }
  inner.copy(buf, inner.size());
  buf[inner.size()] = '\0';
  return inet_pton(family, buf, addr) == 1;
}

// RFC 5321 §4.1.2:
//   Reverse-path   = Path / "<>"
//   Forward-path   = Path
//   Path           = "<" [ A-d-l ":" ] Mailbox ">"
//   A-d-l          = At-domain *( "," At-domain )
//                    ; Note that this form, the so-called "source
//                    ; route", MUST BE accepted, SHOULD NOT be
//                    ; generated, and SHOULD be ignored.
//   At-domain      = "@" Domain
//   Mailbox        = Local-part "@" ( Domain / address-literal )
//   Local-part     = Dot-string / Quoted-string
// plus "<Postmaster>" (case-insensitive) as a forward-path (§4.1.1.3).
// allow_null selects the reverse-path (MAIL) rules: "<>" allowed,
// "<Postmaster>" without a domain not, enhanced codes 5.1.7 instead of 5.1.3.
std::expected<Mailbox, Reply> parse_path(std::string_view text, bool allow_null) {
  const std::string_view enh = allow_null ? "5.1.7" : "5.1.3";
  const std::string_view bad =
      allow_null ? "Bad sender address syntax" : "Bad recipient address syntax";
  if (text.size() < 2 || text.front() != '<' || text.back() != '>') {
    return fail(501, "5.5.4", "Syntax error: address must be in angle brackets");
  }
  std::string_view inner = text.substr(1, text.size() - 2);
  if (inner.empty()) {
    if (allow_null) return Mailbox{};
    return fail(501, enh, "Bad recipient address syntax: null address not allowed");
  }
  if (!allow_null && iequals(inner, "postmaster")) {
    return Mailbox{std::string(inner), {}};
  }

  if (inner[0] == '@') {
    // Source route: validate and drop. At-domain holds a Domain only (no
    // address literal), so the first ':' ends it.
    const size_t colon = inner.find(':');
    if (colon == std::string_view::npos) return fail(501, enh, bad);
    std::string_view adl = inner.substr(0, colon);
    for (;;) {
      const size_t comma = adl.find(',');
      const std::string_view at_domain = adl.substr(0, comma);
      if (at_domain.size() < 2 || at_domain[0] != '@' || !valid_domain(at_domain.substr(1), true)) {
        return fail(501, enh, bad);
      }
      if (comma == std::string_view::npos) break;
      adl.remove_prefix(comma + 1);
    }
    inner.remove_prefix(colon + 1);
  }

  size_t local_len = 0;
  if (!inner.empty() && inner[0] == '"') {
    local_len = quoted_string_length(inner);
    if (local_len == 0) return fail(501, enh, bad);
  } else {
    local_len = inner.find('@');
    if (local_len == std::string_view::npos) return fail(501, enh, bad);
    if (!dot_string(inner.substr(0, local_len))) return fail(501, enh, bad);
  }
  if (local_len >= inner.size() || inner[local_len] != '@') return fail(501, enh, bad);
  const std::string_view local = inner.substr(0, local_len);
  const std::string_view domain = inner.substr(local_len + 1);
  const bool domain_ok = !domain.empty() && domain[0] == '['
                             ? valid_address_literal(domain)
                             : valid_domain_syntax(domain, true);
  if (!domain_ok) return fail(501, enh, bad);

  // RFC 5321 §4.5.3.1.1-3 size limits.
  if (local.size() > Limits::local_part) return fail(553, enh, "Local part too long");
  if (domain.size() > Limits::domain) return fail(553, enh, "Domain too long");
  if (text.size() > Limits::path) return fail(501, enh, "Path too long");
  return Mailbox{std::string(local), std::string(domain)};
}

std::optional<BdatArgs> parse_bdat(std::string_view arg) {
  // RFC 3030 §2:  bdat-cmd   = "BDAT" SP chunk-size [ SP end-marker ] CRLF
  //               chunk-size = 1*DIGIT
  //               end-marker = "LAST"
  arg = trim_wsp_right(trim_wsp_left(arg));
  size_t n = 0;
  while (n < arg.size() && is_digit(static_cast<uchar>(arg[n]))) ++n;
  if (n == 0) return std::nullopt;
  BdatArgs out;
  const auto [ptr, ec] = std::from_chars(arg.data(), arg.data() + n, out.size);
  if (ec != std::errc() || ptr != arg.data() + n) return std::nullopt;
  std::string_view rest = arg.substr(n);
  if (rest.empty()) return out;
  if (!is_wsp(static_cast<uchar>(rest[0]))) return std::nullopt;
  rest = trim_wsp_left(rest);
  if (!iequals(rest, "LAST")) return std::nullopt;
  out.last = true;
  return out;
}

// RFC 5321 §4.1.1:
//   ehlo = "EHLO" SP ( Domain / address-literal ) CRLF
//   helo = "HELO" SP Domain CRLF
//   data = "DATA" CRLF           rset = "RSET" CRLF
//   quit = "QUIT" CRLF           noop = "NOOP" [ SP String ] CRLF
//   vrfy = "VRFY" SP String CRLF expn = "EXPN" SP String CRLF
//   help = "HELP" [ SP String ] CRLF
// RFC 3207: "STARTTLS" CRLF.  RFC 4954: "AUTH" SP sasl-mech [SP initial-response].
// Verbs are case-insensitive. We tolerate spaces/tabs between the verb and its
// argument and trailing spaces/tabs at the end of the line.
std::expected<Command, Reply> parse_command(std::string_view line) {
  for (char c : line) {
    if (c == '\0' || c == '\r' || c == '\n') {
      return fail(500, "5.5.2", "Syntax error: invalid character in command");
    }
  }
  line = trim_wsp_right(line);
  size_t verb_end = 0;
  while (verb_end < line.size() && !is_wsp(static_cast<uchar>(line[verb_end]))) ++verb_end;
  const std::string_view verb_text = line.substr(0, verb_end);
  const std::string_view rest = trim_wsp_left(line.substr(verb_end));

  const VerbName* found = nullptr;
  for (const VerbName& n : kVerbs) {
    if (iequals(verb_text, n.name)) {
      found = &n;
      break;
    }
  }
  if (found == nullptr) {
    for (std::string_view n : kNotImplemented) {
      if (iequals(verb_text, n)) return fail(502, "5.5.1", "Command not implemented");
    }
    return fail(500, "5.5.2", "Command unrecognized");
  }

  Command cmd;
  cmd.verb = found->verb;
  switch (cmd.verb) {
    case Verb::ehlo:
    case Verb::helo: {
      // Clients send all sorts of things here (bare names, unbracketed IPs,
      // "localhost.localdomain", even two words); like Postfix we accept any
      // printable text and leave policy to the session (valid_domain()).
      const std::string_view usage =
          cmd.verb == Verb::ehlo ? "Syntax: EHLO hostname" : "Syntax: HELO hostname";
      if (rest.empty()) return fail(501, "5.5.4", usage);
      for (char ch : rest) {
        const uchar c = static_cast<uchar>(ch);
        if ((c < 0x20 && c != '\t') || c == 0x7f) return fail(501, "5.5.4", usage);
      }
      cmd.arg = std::string(rest);
      return cmd;
    }
    case Verb::mail:
    case Verb::rcpt:
      return parse_mail_rcpt(cmd.verb, rest);
    case Verb::data:
    case Verb::rset:
    case Verb::quit:
    case Verb::starttls:
      if (!rest.empty()) {
        std::string usage = "Syntax: ";
        usage += to_string(cmd.verb);
        usage += " takes no argument";
        return fail(501, "5.5.4", usage);
      }
      return cmd;
    case Verb::noop:
    case Verb::help:
      cmd.arg = std::string(rest);
      return cmd;
    case Verb::vrfy:
    case Verb::expn:
      if (rest.empty()) {
        return fail(501, "5.5.4",
                    cmd.verb == Verb::vrfy ? "Syntax: VRFY address" : "Syntax: EXPN mailing-list");
      }
      cmd.arg = std::string(rest);
      return cmd;
    case Verb::auth:
      if (rest.empty()) return fail(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
      cmd.arg = std::string(rest);
      return cmd;
    case Verb::bdat:
      if (!parse_bdat(rest)) return fail(501, "5.5.4", "Syntax: BDAT size [LAST]");
      cmd.arg = std::string(rest);
      return cmd;
  }
  return fail(500, "5.5.2", "Command unrecognized");
}

}  // namespace sluice::proto
