// request.cpp — decoding POST /api/v1/messages bodies (request.hpp).
//
// Every field is looked up with find() and its type checked with is_*()
// before get_ref<>(): nlohmann's value() and at() throw on a wrong type, and
// this is untrusted input. The parser runs with allow_exceptions=false; it
// refuses invalid UTF-8 in strings itself, so every string here is UTF-8.
#include "api/request.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <optional>

#include "mta/proto/command.hpp"

namespace sluice::api {

namespace {

using json = nlohmann::json;

constexpr size_t kMaxHeaders = 100;
constexpr size_t kMaxAttachments = 100;
constexpr size_t kMaxHeaderName = 76;
constexpr size_t kMaxHeaderValue = 8000;
constexpr size_t kMaxSubject = 8000;
constexpr size_t kMaxName = 256;       // a display name
constexpr size_t kMaxFilename = 256;
constexpr size_t kMaxContentType = 256;
// An ASCII header value is folded at its whitespace: a run of non-space
// (kMaxWord) after a run of spaces (kMaxSpace) after the longest field name
// and ": " stays under 998 octets.
constexpr size_t kMaxWord = 850;
constexpr size_t kMaxSpace = 50;
constexpr size_t kMaxLine = 998;       // RFC 5322 §2.1.1, without CRLF

std::unexpected<FieldError> fail(std::string field, std::string message) {
  return std::unexpected(FieldError{std::move(field), std::move(message)});
}

bool ascii_iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto low = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
           return low(x) == low(y);
         });
}

// C0 controls other than TAB, and DEL. (C1 controls are two UTF-8 octets
// and harmless in encoded words.)
bool has_control(std::string_view s, bool allow_tab) {
  return std::any_of(s.begin(), s.end(), [allow_tab](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && !(allow_tab && u == '\t')) || u == 0x7f;
  });
}

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// RFC 2045 token characters.
bool is_token_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7f) return false;
  return std::string_view("()<>@,;:\\\"/[]?=").find(c) == std::string_view::npos;
}
bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_token_char);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A mailbox as MAIL FROM / RCPT TO take it (without <>), with a domain.
std::optional<std::string> check_address(std::string_view a, std::string& why) {
  if (a.empty()) {
    why = "empty address";
    return std::nullopt;
  }
  if (has_control(a, false)) {
    why = "control character in the address";
    return std::nullopt;
  }
  if (a.front() == '@') {
    why = "source routes are not accepted";
    return std::nullopt;
  }
  auto m = proto::parse_path(fmt::format("<{}>", a), false);
  if (!m) {
    why = fmt::format("not a valid address ({})", m.error().text());
    return std::nullopt;
  }
  if (m->domain.empty()) {
    why = "the address needs a domain (local@domain)";
    return std::nullopt;
  }
  return m->str();
}

// "a@b" or, when names are allowed, "Name <a@b>" / "<a@b>".
std::expected<Address, FieldError> decode_address(const json& v, const std::string& field,
                                                  bool allow_name) {
  if (!v.is_string()) return fail(field, "must be a string (an address)");
  std::string_view s = trim(v.get_ref<const std::string&>());
  Address out;
  if (allow_name && !s.empty() && s.back() == '>') {
    const size_t lt = s.rfind('<');
    if (lt == std::string_view::npos) return fail(field, "'>' without '<'");
    std::string_view name = trim(s.substr(0, lt));
    if (name.size() >= 2 && name.front() == '"' && name.back() == '"') name = name.substr(1, name.size() - 2);
    if (has_control(name, false)) return fail(field, "control character in the display name");
    if (name.find('"') != std::string_view::npos || name.find('\\') != std::string_view::npos)
      return fail(field, "the display name may not contain '\"' or '\\'");
    if (name.size() > kMaxName) return fail(field, fmt::format("display name longer than {} octets", kMaxName));
    out.name = std::string(name);
    s = s.substr(lt + 1, s.size() - lt - 2);
  }
  std::string why;
  auto a = check_address(s, why);
  if (!a) return fail(field, why);
  out.address = std::move(*a);
  return out;
}

std::expected<std::vector<Address>, FieldError> decode_list(const json& obj, std::string_view key,
                                                            bool allow_name, bool required) {
  std::vector<Address> out;
  const auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) return fail(std::string(key), "missing (an array of addresses)");
    return out;
  }
  if (!it->is_array()) return fail(std::string(key), "must be an array of addresses");
  size_t i = 0;
  for (const json& v : *it) {
    auto a = decode_address(v, fmt::format("{}[{}]", key, i), allow_name);
    if (!a) return std::unexpected(std::move(a.error()));
    out.push_back(std::move(*a));
    ++i;
  }
  return out;
}

// Header text (subject, header values): no CR, LF or other controls
// (header injection); an ASCII value may not have a run longer than fits a
// folded line.
std::optional<FieldError> check_header_text(std::string_view v, const std::string& field, size_t max) {
  if (v.find('\r') != std::string_view::npos || v.find('\n') != std::string_view::npos)
    return FieldError{field, "CR or LF not allowed in a header field"};
  if (has_control(v, true)) return FieldError{field, "control character not allowed"};
  if (v.size() > max) return FieldError{field, fmt::format("longer than {} octets", max)};
  size_t run = 0, spaces = 0;
  for (char c : v) {
    const bool ws = c == ' ' || c == '\t';
    run = ws ? 0 : run + 1;
    spaces = ws ? spaces + 1 : 0;
    if (run > kMaxWord) return FieldError{field, fmt::format("a word longer than {} octets cannot be folded", kMaxWord)};
    if (spaces > kMaxSpace) return FieldError{field, fmt::format("more than {} spaces in a row", kMaxSpace)};
  }
  return std::nullopt;
}

std::expected<std::string, FieldError> string_field(const json& obj, std::string_view key,
                                                    const std::string& field) {
  const auto it = obj.find(key);
  if (it == obj.end()) return fail(field, "missing");
  if (!it->is_string()) return fail(field, "must be a string");
  return it->get_ref<const std::string&>();
}

constexpr std::string_view kReserved[] = {
    "From", "To", "Cc", "Bcc", "Subject", "MIME-Version", "Content-Type",
    "Content-Transfer-Encoding", "Content-Disposition", "Content-ID", "Received",
    "DKIM-Signature", "Return-Path",
};

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

bool reserved_header(std::string_view name) {
  return std::any_of(std::begin(kReserved), std::end(kReserved),
                     [name](std::string_view r) { return ascii_iequals(r, name); });
}

std::vector<std::string> MessageRequest::recipients() const {
  std::vector<std::string> out;
  for (const auto* list : {&to, &cc, &bcc})
    for (const auto& a : *list)
      if (std::find(out.begin(), out.end(), a.address) == out.end()) out.push_back(a.address);
  return out;
}

bool MessageRequest::smtputf8() const {
  if (!is_ascii(from.address)) return true;
  for (const auto* list : {&to, &cc, &bcc})
    for (const auto& a : *list)
      if (!is_ascii(a.address)) return true;
  return false;
}

std::string normalise_line_ends(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 32 + 2);
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out += c;
    }
  }
  if (!out.empty() && !out.ends_with("\r\n")) out += "\r\n";
  return out;
}

std::expected<std::string, std::string> base64_decode_lenient(std::string_view text) {
  std::array<int8_t, 256> value;
  value.fill(-1);
  for (size_t i = 0; i < kAlphabet.size(); ++i) value[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  std::string out;
  out.reserve(text.size() / 4 * 3 + 3);
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0, chars = 0;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (c == '=') {
      ++pad;
      continue;
    }
    if (pad > 0) return std::unexpected("'=' padding in the middle");
    const int8_t v = value[static_cast<unsigned char>(c)];
    if (v < 0) return std::unexpected("a character outside the base64 alphabet");
    ++chars;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (chars % 4 == 1) return std::unexpected("truncated base64 (one character too many or too few)");
  if (pad > 2 || (pad > 0 && (chars + pad) % 4 != 0)) return std::unexpected("wrong '=' padding");
  return out;
}

std::expected<MessageRequest, FieldError> decode_request(std::string_view body, const Limits& limits) {
  const json doc = json::parse(body.begin(), body.end(), nullptr, false);
  if (doc.is_discarded()) return fail("", "the body is not valid JSON (UTF-8)");
  if (!doc.is_object()) return fail("", "the body must be a JSON object");

  static constexpr std::string_view kKnown[] = {"from", "to", "cc", "bcc", "content", "subject",
                                                "text", "html", "headers", "attachments"};
  for (const auto& [key, v] : doc.items()) {
    (void)v;
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown))
      return fail(key.size() <= 64 && is_token(key) ? key : "", "unknown field");
  }

  MessageRequest r;
  r.raw = doc.contains("content");
  const auto from = doc.find("from");
  if (from == doc.end()) return fail("from", "missing (the sender's address)");
  auto f = decode_address(*from, "from", !r.raw);
  if (!f) return std::unexpected(std::move(f.error()));
  r.from = std::move(*f);

  auto to = decode_list(doc, "to", !r.raw, true);
  if (!to) return std::unexpected(std::move(to.error()));
  r.to = std::move(*to);

  if (r.raw) {
    for (std::string_view k : {"cc", "bcc", "subject", "text", "html", "headers", "attachments"})
      if (doc.contains(k)) return fail(std::string(k), "not allowed with \"content\" (a whole message)");
    auto c = string_field(doc, "content", "content");
    if (!c) return std::unexpected(std::move(c.error()));
    if (c->empty()) return fail("content", "empty message");
    if (c->find('\0') != std::string::npos) return fail("content", "NUL character in the message");
    r.content = normalise_line_ends(*c);
    size_t line = 1, start = 0;
    for (size_t nl; (nl = r.content.find("\r\n", start)) != std::string::npos; start = nl + 2, ++line)
      if (nl - start > kMaxLine)
        return fail("content", fmt::format("line {} is longer than {} octets", line, kMaxLine));
  } else {
    auto cc = decode_list(doc, "cc", true, false);
    if (!cc) return std::unexpected(std::move(cc.error()));
    r.cc = std::move(*cc);
    auto bcc = decode_list(doc, "bcc", true, false);
    if (!bcc) return std::unexpected(std::move(bcc.error()));
    r.bcc = std::move(*bcc);

    if (doc.contains("subject")) {
      auto s = string_field(doc, "subject", "subject");
      if (!s) return std::unexpected(std::move(s.error()));
      if (auto e = check_header_text(*s, "subject", kMaxSubject)) return std::unexpected(std::move(*e));
      r.has_subject = true;
      r.subject = std::move(*s);
    }
    for (auto [key, has, out] : {std::tuple{"text", &r.has_text, &r.text},
                                 std::tuple{"html", &r.has_html, &r.html}}) {
      if (!doc.contains(key)) continue;
      auto s = string_field(doc, key, key);
      if (!s) return std::unexpected(std::move(s.error()));
      if (s->find('\0') != std::string::npos) return fail(key, "NUL character");
      *has = true;
      *out = std::move(*s);
    }

    if (const auto h = doc.find("headers"); h != doc.end()) {
      if (!h->is_object()) return fail("headers", "must be an object of name: value strings");
      if (h->size() > kMaxHeaders) return fail("headers", fmt::format("more than {} fields", kMaxHeaders));
      for (const auto& [name, value] : h->items()) {
        // RFC 5322 §3.6.8: field-name = 1*ftext, printable ASCII but ':'.
        const bool name_ok = !name.empty() && name.size() <= kMaxHeaderName &&
                             std::all_of(name.begin(), name.end(), [](char c) {
                               const auto u = static_cast<unsigned char>(c);
                               return u >= 33 && u <= 126 && c != ':';
                             });
        if (!name_ok) return fail("headers", "a field name must be 1 to 76 printable ASCII characters without ':'");
        const std::string field = "headers." + name;
        if (reserved_header(name))
          return fail(field, "set by the request's own fields (from, to, cc, subject, ...) or by Sluice");
        if (!value.is_string()) return fail(field, "must be a string");
        const std::string& v = value.get_ref<const std::string&>();
        if (auto e = check_header_text(v, field, kMaxHeaderValue)) return std::unexpected(std::move(*e));
        for (const auto& [n, _] : r.headers)
          if (ascii_iequals(n, name)) return fail(field, "given twice (names ignore case)");
        r.headers.emplace_back(name, v);
      }
    }

    if (const auto a = doc.find("attachments"); a != doc.end()) {
      if (!a->is_array()) return fail("attachments", "must be an array of objects");
      if (a->size() > kMaxAttachments)
        return fail("attachments", fmt::format("more than {} attachments", kMaxAttachments));
      size_t i = 0;
      for (const json& item : *a) {
        const std::string at = fmt::format("attachments[{}]", i++);
        if (!item.is_object()) return fail(at, "must be an object {filename, content_type, content}");
        for (const auto& [key, v] : item.items()) {
          (void)v;
          if (key != "filename" && key != "content_type" && key != "content")
            return fail(key.size() <= 64 && is_token(key) ? at + "." + key : at, "unknown field");
        }
        Attachment att;
        if (!item.contains("filename")) return fail(at + ".filename", "missing");
        auto fn = string_field(item, "filename", at + ".filename");
        if (!fn) return std::unexpected(std::move(fn.error()));
        if (fn->empty() || fn->size() > kMaxFilename || has_control(*fn, false) ||
            fn->find_first_of("/\\") != std::string::npos)
          return fail(at + ".filename",
                      fmt::format("1 to {} octets, without control characters, '/' or '\\'", kMaxFilename));
        att.filename = std::move(*fn);
        att.content_type = "application/octet-stream";
        if (item.contains("content_type")) {
          auto ct = string_field(item, "content_type", at + ".content_type");
          if (!ct) return std::unexpected(std::move(ct.error()));
          // type "/" subtype, then parameters as printable ASCII.
          const std::string_view s = *ct;
          const size_t slash = s.find('/');
          const size_t semi = s.find(';');
          const std::string_view head = trim(s.substr(0, semi));
          const bool ok = slash != std::string_view::npos && slash < semi && s.size() <= kMaxContentType &&
                          is_token(head.substr(0, head.find('/'))) &&
                          is_token(head.substr(head.find('/') + 1)) && is_ascii(s) && !has_control(s, false);
          if (!ok) return fail(at + ".content_type", "must be a MIME type \"type/subtype\" (parameters after ';' allowed)");
          if (ascii_iequals(head.substr(0, head.find('/')), "multipart") ||
              ascii_iequals(head.substr(0, head.find('/')), "message"))
            return fail(at + ".content_type", "multipart/* and message/* are not accepted as attachments");
          att.content_type = std::string(s);
        }
        if (!item.contains("content")) return fail(at + ".content", "missing (base64)");
        auto c = string_field(item, "content", at + ".content");
        if (!c) return std::unexpected(std::move(c.error()));
        auto bytes = base64_decode_lenient(*c);
        if (!bytes) return fail(at + ".content", "not base64: " + bytes.error());
        att.content = std::move(*bytes);
        r.attachments.push_back(std::move(att));
      }
    }
    if (!r.has_text && !r.has_html && r.attachments.empty())
      return fail("text", "the message needs \"text\", \"html\", attachments or \"content\"");
  }

  const size_t n = r.recipients().size();
  if (n == 0) return fail("to", "no recipients");
  if (n > limits.max_recipients)
    return fail(r.raw || (r.cc.empty() && r.bcc.empty()) ? "to" : "to/cc/bcc",
                fmt::format("{} recipients, more than limits.max_recipients ({})", n, limits.max_recipients));
  return r;
}

}  // namespace sluice::api
