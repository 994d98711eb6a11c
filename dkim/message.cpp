// message.cpp — see message.hpp.
#include "dkim/message.hpp"

#include <openssl/base64.h>

#include <fmt/format.h>

#include "mta/proto/ascii.hpp"

namespace sluice::dkim {

namespace {

using ascii::iequals;
using ascii::is_wsp;

std::string_view name_of(std::string_view field) {
  std::string_view name = field.substr(0, field.find(':'));
  while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
  return name;
}

std::string_view value_of(std::string_view field) {
  const size_t colon = field.find(':');
  return colon == std::string_view::npos ? std::string_view() : field.substr(colon + 1);
}

std::string_view trim(std::string_view s) {
  auto space = [](char c) { return is_wsp(c) || c == '\r' || c == '\n'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

// ---- Scan ---------------------------------------------------------------------

void Scan::feed(std::string_view content) {
  while (!in_body_ && !content.empty()) {
    const size_t nl = content.find('\n');
    const std::string_view part = content.substr(0, nl == std::string_view::npos ? content.size() : nl + 1);
    content.remove_prefix(part.size());
    if (!too_large_) {
      if (header_.size() + part.size() > kMaxHeaderSection) {
        too_large_ = true;  // not signed; the empty line is still looked for
        header_.erase(line_start_);
      } else {
        header_.append(part);
      }
    }
    if (nl == std::string_view::npos) {
      if (too_large_) line_start_ = SIZE_MAX;  // the line goes on: it is not empty
      return;
    }
    // A line ended: the empty line ends the header section.
    const bool empty = !too_large_ ? header_.size() - line_start_ == 2 && header_.ends_with("\r\n")
                                   : line_start_ == 0 && part == "\r\n";
    if (empty) {
      if (!too_large_) header_.resize(line_start_);
      in_body_ = true;
    }
    line_start_ = too_large_ ? 0 : header_.size();
  }
  if (in_body_) body_.feed(content);
}

const std::vector<std::string>& Scan::fields() {
  if (!split_) {
    split_ = true;
    if (!too_large_) fields_ = split_fields(header_);
    header_ = std::string();
  }
  return fields_;
}

// ---- the author ------------------------------------------------------------------

std::expected<std::string, std::string> author(std::span<const std::string> fields) {
  const std::string* from = nullptr;
  size_t count = 0;
  for (const std::string& f : fields)
    if (iequals(name_of(f), "From")) {
      ++count;
      from = &f;
    }
  if (count == 0) return std::unexpected(std::string("no From field"));
  if (count > 1) return std::unexpected(fmt::format("{} From fields", count));

  // Outside comments and quoted strings: the mailboxes (split at commas),
  // and in the one mailbox its <angle-addr> if it has one.
  std::vector<std::string> boxes(1);
  std::string angle;
  bool in_angle = false, had_angle = false;
  bool bare_at = false;  // an @ outside <>, quotes and comments
  int depth = 0;      // comment nesting
  bool quoted = false;
  bool escaped = false;
  for (char c : value_of(*from)) {
    if (c == '\r' || c == '\n') continue;  // unfold
    if (escaped) {
      escaped = false;
      if (depth == 0) (in_angle ? angle : boxes.back()) += c;
      continue;
    }
    if (c == '\\' && (quoted || depth > 0)) {
      escaped = true;
      if (depth == 0) (in_angle ? angle : boxes.back()) += c;
      continue;
    }
    if (quoted) {
      if (c == '"') quoted = false;
      (in_angle ? angle : boxes.back()) += c;
      continue;
    }
    if (depth > 0) {
      if (c == '(') ++depth;
      else if (c == ')') --depth;
      continue;
    }
    switch (c) {
      case '(': ++depth; break;
      case '"':
        quoted = true;
        (in_angle ? angle : boxes.back()) += c;
        break;
      case '<':
        if (in_angle || had_angle) return std::unexpected(std::string("a From mailbox with two <addresses>"));
        in_angle = had_angle = true;
        break;
      case '>':
        if (!in_angle) return std::unexpected(std::string("a stray > in From"));
        in_angle = false;
        break;
      case ',':
        if (in_angle) return std::unexpected(std::string("a comma inside <> in From"));
        boxes.emplace_back();
        break;
      case ':':
      case ';':
        if (!in_angle) return std::unexpected(std::string("a group in From"));
        angle += c;
        break;
      default:
        if (c == '@' && !in_angle) bare_at = true;
        (in_angle ? angle : boxes.back()) += c;
    }
  }
  if (quoted || depth > 0 || in_angle) return std::unexpected(std::string("an unterminated From field"));
  size_t mailboxes = 0;
  for (const std::string& b : boxes) mailboxes += trim(b).empty() ? 0 : 1;
  if (had_angle) mailboxes = std::max<size_t>(mailboxes, 1);
  if (mailboxes != 1) return std::unexpected(fmt::format("{} mailboxes in From", mailboxes));

  if (had_angle && bare_at) return std::unexpected(std::string("an address outside <> in From"));
  std::string_view spec = trim(had_angle ? std::string_view(angle) : std::string_view(boxes[0]));
  const size_t at = spec.rfind('@');
  if (at == std::string_view::npos || at == 0) return std::unexpected(std::string("no address in From"));
  std::string_view local = trim(spec.substr(0, at));
  std::string_view domain = trim(spec.substr(at + 1));
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  if (domain.empty() || domain.front() == '[') return std::unexpected(std::string("no domain name in From"));
  std::string out(local);
  out += '@';
  for (char c : domain) {
    if (is_wsp(c) || c == '@' || c == '"') return std::unexpected(std::string("a malformed From domain"));
    out += ascii::to_lower(c);
  }
  return out;
}

// ---- existing signatures ------------------------------------------------------------

std::optional<std::map<std::string, std::string>> parse_tags(std::string_view value) {
  std::map<std::string, std::string> tags;
  while (true) {
    const size_t semi = value.find(';');
    std::string_view spec = value.substr(0, semi);
    if (!trim(spec).empty()) {
      const size_t eq = spec.find('=');
      if (eq == std::string_view::npos) return std::nullopt;
      std::string name(trim(spec.substr(0, eq)));
      std::string v;
      for (char c : spec.substr(eq + 1))
        if (!is_wsp(c) && c != '\r' && c != '\n') v += c;
      if (name.empty() || tags.contains(name)) return std::nullopt;
      tags.emplace(std::move(name), std::move(v));
    } else if (semi != std::string_view::npos) {
      return std::nullopt;  // an empty tag-spec is allowed only after the last ";"
    }
    if (semi == std::string_view::npos) break;
    value.remove_prefix(semi + 1);
  }
  return tags;
}

namespace {

// The field with the value of its b= tag removed (RFC 6376 §3.7).
std::string without_b(std::string_view field) {
  const size_t colon = field.find(':');
  size_t pos = colon + 1;
  while (pos < field.size()) {
    const size_t semi = field.find(';', pos);
    const size_t end = semi == std::string_view::npos ? field.size() : semi;
    const size_t eq = field.find('=', pos);
    if (eq != std::string_view::npos && eq < end && trim(field.substr(pos, eq - pos)) == "b") {
      // Keep the final CRLF when b= is the last tag.
      size_t stop = end;
      if (semi == std::string_view::npos && field.ends_with("\r\n")) stop = field.size() - 2;
      return std::string(field.substr(0, eq + 1)) + std::string(field.substr(stop));
    }
    if (semi == std::string_view::npos) break;
    pos = semi + 1;
  }
  return std::string(field);
}

}  // namespace

bool verifies(std::span<const std::string> fields, size_t index, std::string_view body_hash,
              const Key& key, std::string_view domain, std::string_view selector) {
  if (index >= fields.size() || !iequals(name_of(fields[index]), "DKIM-Signature")) return false;
  auto tags = parse_tags(value_of(fields[index]));
  if (!tags) return false;
  auto get = [&](const char* name) -> std::string_view {
    auto it = tags->find(name);
    return it == tags->end() ? std::string_view() : std::string_view(it->second);
  };
  if (get("v") != "1" || !iequals(get("d"), domain) || !iequals(get("s"), selector) ||
      get("a") != to_string(key.algorithm()) || get("c") != "relaxed/relaxed" || tags->contains("l") ||
      get("bh") != body_hash || get("h").empty())
    return false;
  std::vector<std::string> names;
  std::string_view h = get("h");
  while (true) {
    const size_t colon = h.find(':');
    names.emplace_back(h.substr(0, colon));
    if (colon == std::string_view::npos) break;
    h.remove_prefix(colon + 1);
  }
  std::string_view b64 = get("b");
  std::string sig(b64.size(), '\0');
  size_t len = 0;
  if (!EVP_DecodeBase64(reinterpret_cast<uint8_t*>(sig.data()), &len, sig.size(),
                        reinterpret_cast<const uint8_t*>(b64.data()), b64.size()))
    return false;
  sig.resize(len);
  return key.verify(signing_input(fields, names, without_b(fields[index])), sig);
}

}  // namespace sluice::dkim
