// mime.cpp — building the structured form into MIME (mime.hpp).
#include "api/mime.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "mail/headers.hpp"

namespace sluice::api {

namespace {

constexpr size_t kFoldAt = 78;        // RFC 5322 §2.1.1 SHOULD
constexpr size_t kWordBytes = 45;     // 60 base64 characters: 10 + 60 + 2 = 72 <= 75 (RFC 2047 §2)
constexpr std::string_view kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kHex = "0123456789ABCDEF";

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}
bool wsp(char c) { return c == ' ' || c == '\t'; }

std::string base64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) |
                       static_cast<uint8_t>(in[i + 2]);
    for (int s : {18, 12, 6, 0}) out += kB64[(v >> s) & 63];
  }
  if (i + 1 == in.size()) {
    const uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// Length of the UTF-8 sequence starting with lead octet c (1 for anything
// that is not a valid lead: the JSON parser only lets valid UTF-8 through,
// but the fuzz target calls these directly).
size_t utf8_len(unsigned char c) {
  if (c >= 0xf0 && c < 0xf8) return 4;
  if (c >= 0xe0) return c < 0xf0 ? 3 : 1;
  if (c >= 0xc0) return 2;
  return 1;
}

// RFC 2047 encoded words for text, each at most kWordBytes octets of it
// (the first at most first_bytes, to fit beside a field name), never
// cutting a UTF-8 sequence.
std::vector<std::string> encoded_words(std::string_view text, size_t first_bytes = kWordBytes) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const size_t budget = out.empty() ? first_bytes : kWordBytes;
    size_t n = 0;
    while (n < text.size()) {
      const size_t len = std::min(utf8_len(static_cast<unsigned char>(text[n])), text.size() - n);
      if (n + len > budget && n > 0) break;
      n += len;
    }
    out.push_back("=?UTF-8?B?" + base64(text.substr(0, n)) + "?=");
    text.remove_prefix(n);
  }
  return out;
}

// Appends tokens to a header field, folding before a token when the line
// would pass kFoldAt. Each token carries its leading separator (" ", ", "):
// a fold puts CRLF before the token's whitespace.
struct Folder {
  std::string out;
  size_t line = 0;     // octets on the current line
  bool empty_ = true;  // nothing after "Name:" yet
  explicit Folder(std::string_view name) {
    out = fmt::format("{}:", name);
    line = out.size();
  }
  // sep_keep: octets that stay at the end of the line before a fold (","),
  // then the whitespace that begins the next line, then the text.
  void add(std::string_view sep_keep, std::string_view space, std::string_view text) {
    const bool fold = !empty_ && !space.empty() &&
                      line + sep_keep.size() + space.size() + text.size() > kFoldAt;
    out += sep_keep;
    if (fold) {
      out += "\r\n";
      line = 0;
    } else {
      line += sep_keep.size();
    }
    out += space;
    out += text;
    line += space.size() + text.size();
    empty_ = false;
  }
  std::string done() && {
    out += "\r\n";
    return std::move(out);
  }
};

bool is_atext(char c) {
  const auto u = static_cast<unsigned char>(c);
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return u < 0x80 && std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

// A display name as a phrase: atoms, a quoted-string, or encoded words
// (then one token per word, for folding).
std::vector<std::string> phrase(std::string_view name) {
  if (!is_ascii(name)) return encoded_words(name);
  // Atoms separated by single spaces stay as they are.
  bool atoms = !name.empty() && name.front() != ' ' && name.back() != ' ' &&
               name.find("  ") == std::string_view::npos;
  for (char c : name)
    if (!is_atext(c) && c != ' ') atoms = false;
  if (atoms) return {std::string(name)};
  std::string q = "\"";
  for (char c : name) {
    if (c == '"' || c == '\\') q += '\\';
    q += c == '\t' ? ' ' : c;
  }
  q += '"';
  return {q};
}

std::string mailbox_text(const Address& a) {
  if (a.name.empty()) return a.address;
  std::string out;
  for (const auto& w : phrase(a.name)) out += w + " ";
  return out + "<" + a.address + ">";
}

std::string address_field(std::string_view name, const std::vector<Address>& list) {
  Folder f(name);
  bool first = true;
  for (const auto& a : list) {
    std::vector<std::string> words;
    if (!a.name.empty()) words = phrase(a.name);
    words.push_back(a.name.empty() ? a.address : "<" + a.address + ">");
    for (size_t i = 0; i < words.size(); ++i) {
      f.add(i == 0 && !first ? "," : "", " ", words[i]);
    }
    first = false;
  }
  return std::move(f).done();
}

// RFC 2231 parameter value characters that need no %-encoding (attribute-char
// minus what some readers mishandle).
bool attr_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$&+-.^_`|~").find(c) != std::string_view::npos;
}

// Content-Disposition with the filename (mime.hpp).
std::string disposition(std::string_view filename) {
  if (is_ascii(filename)) {
    std::string q;
    for (char c : filename) {
      if (c == '"' || c == '\\') q += '\\';
      q += c == '\t' ? ' ' : c;
    }
    return fmt::format("Content-Disposition: attachment;\r\n filename=\"{}\"\r\n", q);
  }
  // RFC 2231 §3-4: pieces of at most ~60 characters, never cutting "%XX".
  std::vector<std::string> pieces(1);
  for (char c : filename) {
    std::string enc;
    if (attr_char(c)) {
      enc = std::string(1, c);
    } else {
      const auto u = static_cast<unsigned char>(c);
      enc = {'%', kHex[u >> 4], kHex[u & 15]};
    }
    if (pieces.back().size() + enc.size() > 60) pieces.emplace_back();
    pieces.back() += enc;
  }
  std::string out = "Content-Disposition: attachment";
  for (size_t i = 0; i < pieces.size(); ++i)
    out += fmt::format(";\r\n filename*{}*={}{}", i, i == 0 ? "utf-8''" : "", pieces[i]);
  return out + "\r\n";
}

std::string content_type_line(std::string_view type, std::string_view filename) {
  // The legacy name= parameter only for ASCII names (readers that know RFC
  // 2231 take filename* from Content-Disposition).
  if (!is_ascii(filename)) return fmt::format("Content-Type: {}\r\n", type);
  std::string q;
  for (char c : filename) {
    if (c == '"' || c == '\\') q += '\\';
    q += c == '\t' ? ' ' : c;
  }
  return fmt::format("Content-Type: {};\r\n name=\"{}\"\r\n", type, q);
}

struct Part {
  std::string headers;  // with CRLFs, without the empty line
  std::string body;     // CRLF lines
};

Part text_part(std::string_view subtype, std::string_view text) {
  return Part{fmt::format("Content-Type: text/{}; charset=utf-8\r\nContent-Transfer-Encoding: "
                          "quoted-printable\r\n",
                          subtype),
              quoted_printable(normalise_line_ends(text))};
}

class Boundaries {
 public:
  explicit Boundaries(const std::function<uint64_t()>& random) : random_(random) {}
  std::string next() {
    const uint64_t a = random_ ? random_() : 0x5eed0000u + n_;
    const uint64_t b = random_ ? random_() : n_;
    ++n_;
    return fmt::format("=_sluice_{:016x}{:08x}", a, static_cast<uint32_t>(b));
  }

 private:
  const std::function<uint64_t()>& random_;
  uint64_t n_ = 0;
};

bool contains(const Part& p, std::string_view b) {
  return p.headers.find(b) != std::string::npos || p.body.find(b) != std::string::npos;
}

Part multipart(std::string_view subtype, const std::vector<Part>& parts, Boundaries& bs) {
  std::string b = bs.next();
  while (std::any_of(parts.begin(), parts.end(), [&](const Part& p) { return contains(p, b); })) b = bs.next();
  Part out;
  out.headers = fmt::format("Content-Type: multipart/{};\r\n boundary=\"{}\"\r\n", subtype, b);
  // RFC 2046 §5.1.1: the CRLF before "--boundary" belongs to the
  // delimiter, so each part's own last line end is kept by one more CRLF.
  bool first = true;
  for (const auto& p : parts) {
    out.body += fmt::format("{}--{}\r\n", first ? "" : "\r\n", b);
    out.body += p.headers;
    out.body += "\r\n";
    out.body += p.body;
    first = false;
  }
  out.body += fmt::format("\r\n--{}--\r\n", b);
  return out;
}

}  // namespace

std::string header_field(std::string_view name, std::string_view value) {
  Folder f(name);
  if (!is_ascii(value)) {
    // "Name: " and the first word within kFoldAt: 12 characters of
    // "=?UTF-8?B?" and "?=", 4 base64 characters per 3 octets.
    const size_t room = kFoldAt > name.size() + 2 + 12 + 8 ? kFoldAt - name.size() - 2 - 12 : 8;
    for (const auto& w : encoded_words(value, std::min(kWordBytes, room / 4 * 3))) f.add("", " ", w);
    return std::move(f).done();
  }
  // Segments: leading whitespace, then a run of non-whitespace. A fold goes
  // before a segment's whitespace (which then begins the continuation line).
  bool first = true;
  size_t i = 0;
  while (i < value.size()) {
    size_t j = i;
    while (j < value.size() && wsp(value[j])) ++j;
    size_t k = j;
    while (k < value.size() && !wsp(value[k])) ++k;
    std::string_view space = value.substr(i, j - i), word = value.substr(j, k - j);
    if (first) {
      // After "Name:" a space, then the value as written.
      f.add("", " ", std::string(space) + std::string(word));
      first = false;
    } else if (word.empty()) {
      f.add(space, "", "");  // trailing whitespace stays on the line
    } else {
      f.add("", space, word);
    }
    i = k;
  }
  if (first) f.add("", " ", "");
  return std::move(f).done();
}

std::string format_mailbox(const Address& a) { return mailbox_text(a); }

std::string quoted_printable(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  size_t line = 0;
  auto put = [&](std::string_view tok) {
    if (line + tok.size() > 75) {
      out += "=\r\n";
      line = 0;
    }
    out += tok;
    line += tok.size();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const auto u = static_cast<unsigned char>(c);
    if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      out += "\r\n";
      line = 0;
      ++i;
      continue;
    }
    const bool at_end = i + 1 == text.size() || (text[i + 1] == '\r' && i + 2 < text.size() && text[i + 2] == '\n');
    const bool literal = (u >= 33 && u <= 126 && c != '=') || (wsp(c) && !at_end);
    // "From " and "." at the start of a line are encoded too: mbox
    // munging and dot-stuffing mishaps cannot touch them then.
    const bool guard = line == 0 && (c == '.' || (c == 'F' && text.substr(i, 5) == "From "));
    if (literal && !guard) {
      put(std::string_view(&c, 1));
    } else {
      const char enc[3] = {'=', kHex[u >> 4], kHex[u & 15]};
      put(std::string_view(enc, 3));
    }
  }
  if (!out.empty() && !out.ends_with("\r\n")) out += "\r\n";
  return out;
}

std::string base64_lines(std::string_view bytes) {
  const std::string all = base64(bytes);
  std::string out;
  out.reserve(all.size() + all.size() / 38 + 2);
  for (size_t i = 0; i < all.size(); i += 76) {
    out.append(all, i, 76);
    out += "\r\n";
  }
  return out;
}

std::string build_message(const MessageRequest& r, const BuildContext& ctx) {
  if (r.raw) return r.content;
  std::string h;
  h += address_field("From", {r.from});
  if (!r.to.empty()) h += address_field("To", r.to);
  if (!r.cc.empty()) h += address_field("Cc", r.cc);
  if (r.has_subject) h += header_field("Subject", r.subject);
  auto has = [&](std::string_view name) {
    return std::any_of(r.headers.begin(), r.headers.end(), [&](const auto& kv) {
      return kv.first.size() == name.size() &&
             std::equal(name.begin(), name.end(), kv.first.begin(), [](char a, char b) {
               return (a | 0x20) == (b | 0x20);
             });
    });
  };
  if (!has("Date")) {
    h += fmt::format("Date: {}\r\n", mail::rfc5322_date(ctx.unix_us));
  }
  if (!has("Message-ID") && !ctx.message_id.empty()) h += fmt::format("Message-ID: {}\r\n", ctx.message_id);
  for (const auto& [name, value] : r.headers) h += header_field(name, value);
  h += "MIME-Version: 1.0\r\n";

  Boundaries bs(ctx.random);
  std::vector<Part> bodies;
  if (r.has_text) bodies.push_back(text_part("plain", r.text));
  if (r.has_html) bodies.push_back(text_part("html", r.html));
  std::vector<Part> top;
  if (bodies.size() == 2)
    top.push_back(multipart("alternative", bodies, bs));
  else if (bodies.size() == 1)
    top.push_back(std::move(bodies[0]));
  for (const auto& a : r.attachments) {
    Part p;
    p.headers = content_type_line(a.content_type, a.filename) + disposition(a.filename) +
                "Content-Transfer-Encoding: base64\r\n";
    p.body = base64_lines(a.content);
    top.push_back(std::move(p));
  }
  if (top.empty()) top.push_back(text_part("plain", ""));  // decode_request never lets this happen
  Part whole = r.attachments.empty() ? std::move(top[0]) : multipart("mixed", top, bs);
  return h + whole.headers + "\r\n" + whole.body;
}

HeaderScan scan_headers(std::string_view content) {
  HeaderScan s;
  size_t pos = 0;
  std::string current;  // the current field, unfolded (capped)
  auto field_end = [&] {
    const size_t colon = current.find(':');
    if (colon == std::string::npos) return;
    std::string name = current.substr(0, colon);
    while (!name.empty() && wsp(name.back())) name.pop_back();
    for (char& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    std::string_view value = std::string_view(current).substr(colon + 1);
    while (!value.empty() && wsp(value.front())) value.remove_prefix(1);
    while (!value.empty() && wsp(value.back())) value.remove_suffix(1);
    if (name == "date") s.date = true;
    if (name == "from") s.from = true;
    if (name == "message-id" && !s.message_id) {
      s.message_id = true;
      s.message_id_value = std::string(value.substr(0, 998));
    }
  };
  while (pos < content.size()) {
    size_t nl = content.find("\r\n", pos);
    if (nl == std::string_view::npos) nl = content.size();
    const std::string_view line = content.substr(pos, nl - pos);
    if (line.empty()) break;  // the empty line
    if (wsp(line.front())) {
      if (current.size() < 2000) current += line;
    } else {
      field_end();
      current.assign(line.substr(0, 2000));
    }
    pos = std::min(nl + 2, content.size());
  }
  field_end();
  s.header_end = std::min(pos, content.size());
  return s;
}

}  // namespace sluice::api
