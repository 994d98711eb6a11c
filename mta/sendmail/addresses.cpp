// addresses.cpp — see addresses.hpp. Pure.
//
// RFC 5322 §3.4 (with the obsolete forms of §4.4 that real mail still uses):
//   address-list  = (address *("," address)) / obs-addr-list
//   obs-addr-list = *([CFWS] ",") address *("," [address / CFWS])
//   address       = mailbox / group
//   mailbox       = name-addr / addr-spec
//   name-addr     = [display-name] angle-addr
//   angle-addr    = [CFWS] "<" addr-spec ">" [CFWS] / obs-angle-addr
//   obs-angle-addr= [CFWS] "<" obs-route addr-spec ">" [CFWS]
//   group         = display-name ":" [group-list] ";" [CFWS]
//   display-name  = phrase        phrase = 1*word / obs-phrase (word *(word / "." / CFWS))
//   addr-spec     = local-part "@" domain
//   local-part    = dot-atom / quoted-string / obs-local-part (word *("." word))
//   domain        = dot-atom / domain-literal / obs-domain (atom *("." atom))
// The text is first cut into tokens (atoms, quoted strings, domain literals,
// the specials "<>:;@,." and bad octets), comments and white space dropped
// but remembered as "space before" for display names; then the tokens are
// read by a small recursive-descent parser (at most two levels deep: list,
// group). Comments nest with a counter, so nothing recurses on the input.
#include "mta/sendmail/addresses.hpp"

#include "mta/proto/command.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <fmt/format.h>

#include <cstdint>
#include <unordered_set>

namespace sluice::sendmail {

// RFC 3629 §4:
//   UTF8-2 = %xC2-DF UTF8-tail
//   UTF8-3 = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) /
//            %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
//   UTF8-4 = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) /
//            %xF4 %x80-8F 2( UTF8-tail )
size_t utf8_sequence_length(std::string_view s, size_t i) {
  auto at = [&](size_t k) -> int {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : -1;
  };
  auto cont = [](int c) { return c >= 0x80 && c <= 0xBF; };
  const int c0 = at(0);
  if (c0 >= 0xC2 && c0 <= 0xDF) return cont(at(1)) ? 2 : 0;
  if (c0 >= 0xE0 && c0 <= 0xEF) {
    const int c1 = at(1);
    const int lo = c0 == 0xE0 ? 0xA0 : 0x80;
    const int hi = c0 == 0xED ? 0x9F : 0xBF;
    return c1 >= lo && c1 <= hi && cont(at(2)) ? 3 : 0;
  }
  if (c0 >= 0xF0 && c0 <= 0xF4) {
    const int c1 = at(1);
    const int lo = c0 == 0xF0 ? 0x90 : 0x80;
    const int hi = c0 == 0xF4 ? 0x8F : 0xBF;
    return c1 >= lo && c1 <= hi && cont(at(2)) && cont(at(3)) ? 4 : 0;
  }
  return 0;
}

namespace {

using uchar = unsigned char;

constexpr size_t kMaxLocal = 64;
constexpr size_t kMaxDomain = 255;
constexpr size_t kMaxAddress = 254;  // a 256-octet path minus "<" and ">"

constexpr bool is_alpha(uchar c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
constexpr bool is_digit(uchar c) { return c >= '0' && c <= '9'; }
constexpr char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

// RFC 5322 §3.2.3 atext (ASCII part).
constexpr bool is_atext(uchar c) {
  if (is_alpha(c) || is_digit(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '/': case '=': case '?': case '^': case '_': case '`': case '{':
    case '|': case '}': case '~':
      return true;
    default:
      return false;
  }
}

// "a\x01b" -> "a?b", capped for error messages.
std::string sanitise(std::string_view s, size_t max = 80) {
  std::string out;
  for (char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    const uchar u = static_cast<uchar>(c);
    out.push_back(u < 0x20 || u == 0x7f ? (c == '\t' || c == '\r' || c == '\n' ? ' ' : '?') : c);
  }
  return out;
}

// ---- tokens ------------------------------------------------------------------

enum class Kind { atom, quoted, literal, special, bad };

struct Token {
  Kind kind;
  std::string text;  // atom as written, quoted string decoded, literal with brackets, special char, or why bad
  size_t begin = 0;  // offsets into the source, for error messages
  size_t end = 0;
  bool space_before = false;  // white space or a comment came before it
};

std::vector<Token> tokenize(std::string_view s) {
  std::vector<Token> out;
  bool space = false;
  size_t i = 0;
  auto push = [&](Kind k, std::string text, size_t begin) {
    out.push_back(Token{k, std::move(text), begin, i, space});
    space = false;
  };
  while (i < s.size()) {
    const size_t begin = i;
    const uchar c = static_cast<uchar>(s[i]);
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = true;
      ++i;
    } else if (c == '(') {  // comment, nested, with quoted-pairs
      size_t depth = 0;
      while (i < s.size()) {
        const char d = s[i];
        if (d == '\\') {
          i += 2;
          continue;
        }
        ++i;
        if (d == '(') ++depth;
        if (d == ')' && --depth == 0) break;
      }
      if (i > s.size()) i = s.size();
      if (depth != 0) {
        push(Kind::bad, "comment not closed with ')'", begin);
      } else {
        space = true;
      }
    } else if (c == '"') {
      std::string value;
      bool closed = false;
      ++i;
      while (i < s.size()) {
        const char d = s[i];
        if (d == '"') {
          closed = true;
          ++i;
          break;
        }
        if (d == '\\') {
          if (i + 1 >= s.size()) {
            ++i;
            break;
          }
          value.push_back(s[i + 1]);
          i += 2;
          continue;
        }
        if (d != '\r' && d != '\n') value.push_back(d);  // folding inside quotes
        ++i;
      }
      if (closed) {
        push(Kind::quoted, std::move(value), begin);
      } else {
        push(Kind::bad, "quoted string not closed with '\"'", begin);
      }
    } else if (c == '[') {
      std::string value = "[";
      bool ok = true, closed = false;
      ++i;
      while (i < s.size()) {
        const uchar d = static_cast<uchar>(s[i]);
        ++i;
        if (d == ']') {
          closed = true;
          break;
        }
        if (d == ' ' || d == '\t' || d == '\r' || d == '\n') continue;
        if (d < 33 || d > 126 || d == '[' || d == '\\') ok = false;
        value.push_back(static_cast<char>(d));
      }
      value.push_back(']');
      if (!closed) {
        push(Kind::bad, "domain literal not closed with ']'", begin);
      } else if (!ok) {
        push(Kind::bad, "invalid character in domain literal", begin);
      } else {
        push(Kind::literal, std::move(value), begin);
      }
    } else if (c == '<' || c == '>' || c == ':' || c == ';' || c == '@' || c == ',' ||
               c == '.') {
      ++i;
      push(Kind::special, std::string(1, static_cast<char>(c)), begin);
    } else if (is_atext(c) || c >= 0x80) {
      while (i < s.size() && (is_atext(static_cast<uchar>(s[i])) || static_cast<uchar>(s[i]) >= 0x80))
        ++i;
      push(Kind::atom, std::string(s.substr(begin, i - begin)), begin);
    } else {
      ++i;
      push(Kind::bad,
           c == ')' || c == ']' || c == '\\'
               ? fmt::format("unexpected '{}'", static_cast<char>(c))
               : fmt::format("invalid character \\x{:02x}", static_cast<unsigned>(c)),
           begin);
    }
  }
  return out;
}

// ---- parser --------------------------------------------------------------------

class Parser {
 public:
  Parser(std::string_view src, std::vector<Token> tokens, AddressList& out)
      : src_(src), t_(std::move(tokens)), out_(out) {}

  void list() {
    while (i_ < t_.size()) {
      if (special(',')) {
        ++i_;
        continue;
      }
      const size_t start = i_;
      const size_t mark = out_.mailboxes.size();
      std::string why;
      bool ok = address(false, why);
      if (ok && i_ < t_.size() && !special(',')) {
        ok = false;
        why = unexpected("after the address");
      }
      if (!ok) {
        out_.mailboxes.resize(mark);
        skip_to(",");
        fail(start, why);
      }
    }
  }

 private:
  bool special(char c) const {
    return i_ < t_.size() && t_[i_].kind == Kind::special && t_[i_].text[0] == c;
  }
  bool word() const {
    return i_ < t_.size() && (t_[i_].kind == Kind::atom || t_[i_].kind == Kind::quoted);
  }

  std::string unexpected(std::string_view where) const {
    if (i_ >= t_.size()) return fmt::format("unexpected end {}", where);
    const Token& t = t_[i_];
    if (t.kind == Kind::bad) return t.text;
    if (t.kind == Kind::special) return fmt::format("unexpected '{}' {}", t.text, where);
    return fmt::format("unexpected \"{}\" {}", sanitise(src_.substr(t.begin, t.end - t.begin), 40),
                       where);
  }

  // Advances to the next special listed in `stop` (not consumed).
  void skip_to(std::string_view stop) {
    while (i_ < t_.size()) {
      const Token& t = t_[i_];
      if (t.kind == Kind::special && stop.find(t.text[0]) != std::string_view::npos) return;
      ++i_;
    }
  }

  void fail(size_t start, const std::string& why) {
    size_t end = i_ > start ? i_ : start + 1;
    if (end > t_.size()) end = t_.size();
    std::string text;
    if (start < t_.size() && end > start)
      text = sanitise(src_.substr(t_[start].begin, t_[end - 1].end - t_[start].begin));
    out_.errors.push_back(text.empty() ? why : fmt::format("{}: {}", text, why));
  }

  // address = mailbox / group; a group only when !in_group.
  bool address(bool in_group, std::string& why) {
    const size_t phrase_begin = i_;
    while (word() || special('.')) ++i_;
    const size_t phrase_end = i_;

    if (special('<')) {
      Mailbox m;
      m.display_name = phrase(phrase_begin, phrase_end);
      ++i_;
      return angle(m, why);  // adds m when valid
    }
    if (special(':')) {
      if (phrase_begin == phrase_end) {
        why = "a group needs a name before ':'";
        return false;
      }
      if (in_group) {
        why = "a group inside a group";
        return false;
      }
      ++i_;
      group();
      return true;
    }
    if (special('@')) {
      Mailbox m;
      if (!local_part(phrase_begin, phrase_end, m, why)) return false;
      ++i_;
      if (!domain(m, why)) return false;
      return finish(m, why);
    }
    if (i_ < t_.size() && !special(',') && !special(';')) {
      why = unexpected(phrase_begin == i_ ? "here" : "in the address");
      return false;
    }
    if (phrase_begin == phrase_end) {
      why = "empty address";
      return false;
    }
    // A bare local part ("root"), or words that are no address ("John Smith").
    Mailbox m;
    if (!local_part(phrase_begin, phrase_end, m, why)) {
      why = "not an address (no '@domain' and no '<...>')";
      return false;
    }
    return finish(m, why);
  }

  // After "<": [obs-route] addr-spec ">" (the domain may be left out).
  bool angle(Mailbox& m, std::string& why) {
    if (special('@')) {  // obs-route "@a,@b:" — checked loosely, then dropped
      while (i_ < t_.size() && !special(':')) {
        const Token& t = t_[i_];
        const bool ok = t.kind == Kind::atom || t.kind == Kind::literal ||
                        (t.kind == Kind::special && (t.text[0] == '@' || t.text[0] == ',' ||
                                                     t.text[0] == '.'));
        if (!ok) {
          why = unexpected("in the route");
          return false;
        }
        ++i_;
      }
      if (!special(':')) {
        why = "route not ended by ':'";
        return false;
      }
      ++i_;
    }
    if (special('>')) {
      why = "empty address <>";
      return false;
    }
    const size_t begin = i_;
    while (word() || special('.')) ++i_;
    if (!local_part(begin, i_, m, why)) return false;
    if (special('@')) {
      ++i_;
      if (!domain(m, why)) return false;
    }
    if (!special('>')) {
      why = unexpected("where '>' was expected");
      return false;
    }
    ++i_;
    return finish(m, why);
  }

  // After ":": mailboxes up to ";" (or the end), each bad one reported alone.
  void group() {
    while (i_ < t_.size()) {
      if (special(';')) {
        ++i_;
        return;
      }
      if (special(',')) {
        ++i_;
        continue;
      }
      const size_t start = i_;
      const size_t mark = out_.mailboxes.size();
      std::string why;
      bool ok = address(true, why);
      if (ok && i_ < t_.size() && !special(',') && !special(';')) {
        ok = false;
        why = unexpected("after the address");
      }
      if (!ok) {
        out_.mailboxes.resize(mark);
        skip_to(",;");
        fail(start, why);
      }
    }
  }

  // word *("." word) in tokens [b, e), decoded into m.local_part (canonical).
  bool local_part(size_t b, size_t e, Mailbox& m, std::string& why) {
    if (b == e) {
      why = "empty local part";
      return false;
    }
    std::string decoded;
    bool expect_word = true;
    for (size_t k = b; k < e; ++k) {
      const Token& t = t_[k];
      const bool is_dot = t.kind == Kind::special;
      if (is_dot == expect_word) {
        why = is_dot ? "misplaced '.' in the local part" : "words without '.' in the local part";
        return false;
      }
      decoded += t.text;
      expect_word = !expect_word;
    }
    if (expect_word) {
      why = "local part ends with '.'";
      return false;
    }
    m.local_part = canonical_local_part(decoded);
    if (m.local_part.empty()) {
      why = decoded.size() > kMaxLocal ? "local part longer than 64 octets"
                                       : "invalid characters in the local part";
      return false;
    }
    return true;
  }

  // After "@": dot-atom / obs-domain / domain-literal.
  bool domain(Mailbox& m, std::string& why) {
    if (i_ < t_.size() && t_[i_].kind == Kind::literal) {
      m.domain = t_[i_++].text;
    } else {
      std::string d;
      while (i_ < t_.size() && t_[i_].kind == Kind::atom) {
        d += t_[i_++].text;
        if (!special('.')) break;
        d += '.';
        ++i_;
      }
      if (d.empty()) {
        why = i_ < t_.size() && t_[i_].kind == Kind::bad ? t_[i_].text
                                                          : "missing domain after '@'";
        return false;
      }
      m.domain = std::move(d);
    }
    if (!valid_domain(m.domain)) {
      why = fmt::format("invalid domain \"{}\"", sanitise(m.domain, 60));
      return false;
    }
    return true;
  }

  bool finish(Mailbox& m, std::string& why) {
    if (m.local_part.size() + 1 + m.domain.size() > kMaxAddress) {
      why = "address longer than 254 octets";
      return false;
    }
    out_.mailboxes.push_back(std::move(m));
    return true;
  }

  std::string phrase(size_t b, size_t e) const {
    std::string s;
    for (size_t k = b; k < e; ++k) {
      if (!s.empty() && t_[k].space_before) s.push_back(' ');
      s += t_[k].text;
    }
    return s;
  }

  std::string_view src_;
  std::vector<Token> t_;
  AddressList& out_;
  size_t i_ = 0;
};

}  // namespace

std::string Mailbox::address() const {
  return domain.empty() ? local_part : local_part + "@" + domain;
}

AddressList parse_address_list(std::string_view text) {
  AddressList out;
  Parser(text, tokenize(text), out).list();
  return out;
}

bool same_address(const Mailbox& a, const Mailbox& b) {
  return a.local_part == b.local_part && iequals(a.domain, b.domain);
}

std::string address_key(const Mailbox& m) {
  std::string key = m.local_part;
  key += '@';
  for (char c : m.domain) key += lower(c);
  return key;
}

void append_unique(std::vector<Mailbox>& into, const std::vector<Mailbox>& more) {
  std::unordered_set<std::string> seen;
  for (const Mailbox& have : into) seen.insert(address_key(have));
  for (const Mailbox& m : more)
    if (seen.insert(address_key(m)).second) into.push_back(m);
}

std::string canonical_local_part(std::string_view decoded) {
  if (decoded.empty()) return "";
  if (proto::valid_dot_string(decoded)) return decoded.size() <= kMaxLocal ? std::string(decoded) : "";
  std::string q = "\"";
  for (size_t i = 0; i < decoded.size();) {
    const uchar c = static_cast<uchar>(decoded[i]);
    if (c >= 0x80) {
      const size_t n = utf8_sequence_length(decoded, i);
      if (n == 0) return "";
      q.append(decoded.substr(i, n));
      i += n;
      continue;
    }
    if (c < 32 || c > 126) return "";
    if (c == '"' || c == '\\') q.push_back('\\');
    q.push_back(static_cast<char>(c));
    ++i;
  }
  q.push_back('"');
  return q.size() <= kMaxLocal ? q : "";
}

// The envelope grammar is the SMTP server's (mta/proto/command.hpp): what
// sendmail accepts is exactly what RCPT TO would.
bool valid_domain(std::string_view d) {
  if (d.empty() || d.size() > kMaxDomain) return false;
  return d.front() == '[' ? proto::valid_address_literal(d) : proto::valid_domain(d);
}

bool valid_address(std::string_view a) {
  if (a.size() > kMaxAddress) return false;
  auto m = proto::parse_path("<" + std::string(a) + ">", false);
  // (parse_path drops a source route: then str() differs and it is refused)
  return m && !m->domain.empty() && m->str() == a;
}

}  // namespace sluice::sendmail
