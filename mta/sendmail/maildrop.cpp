// maildrop.cpp — see maildrop.hpp. Pure.
#include "mta/sendmail/maildrop.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <unordered_set>

#include "mta/sendmail/addresses.hpp"

namespace sluice::sendmail {

namespace {

// "A@B.example" and "A@b.EXAMPLE" are one recipient; "a@b" is another.
std::string dedup_key(std::string_view address) {
  std::string key(address);
  const size_t at = key.rfind('@');
  if (at == std::string::npos) return key;
  for (size_t i = at + 1; i < key.size(); ++i)
    if (key[i] >= 'A' && key[i] <= 'Z') key[i] = static_cast<char>(key[i] + 32);
  return key;
}

// Shown in errors: printable ASCII kept, the rest as '?', at most 60 octets.
std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 60)) {
    const unsigned char u = static_cast<unsigned char>(c);
    out += u >= 0x20 && u < 0x7f ? c : '?';
  }
  if (s.size() > 60) out += "...";
  return out;
}

// Splits off the next LF-terminated envelope line, or says why it cannot.
std::expected<std::string_view, std::string> next_line(std::string_view& in) {
  const size_t scan = std::min(in.size(), kMaxEnvelopeLine + 1);
  const size_t lf = in.substr(0, scan).find('\n');
  if (lf == std::string_view::npos) {
    if (in.size() > kMaxEnvelopeLine)
      return std::unexpected(fmt::format("envelope line longer than {} octets", kMaxEnvelopeLine));
    return std::unexpected("the file ends inside the envelope");
  }
  const std::string_view line = in.substr(0, lf);
  in.remove_prefix(lf + 1);
  if (line.find('\r') != std::string_view::npos) return std::unexpected("CR in an envelope line");
  if (line.find('\0') != std::string_view::npos) return std::unexpected("NUL in an envelope line");
  return line;
}

// "KEYWORD VALUE" or "KEYWORD": the value (nullopt when there is none), or
// nothing at all when the keyword differs.
struct Keyed {
  bool matches = false;
  std::optional<std::string_view> value;
};
Keyed keyed(std::string_view line, std::string_view keyword) {
  if (!line.starts_with(keyword)) return {};
  if (line.size() == keyword.size()) return {true, std::nullopt};
  if (line[keyword.size()] != ' ') return {};
  return {true, line.substr(keyword.size() + 1)};
}

}  // namespace

std::optional<std::string> check_message(std::string_view m) {
  size_t line_start = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    const char c = m[i];
    if (c == '\0') return fmt::format("NUL in the message at octet {}", i);
    if (c == '\r') {
      if (i + 1 >= m.size() || m[i + 1] != '\n')
        return fmt::format("CR without LF in the message at octet {}", i);
      if (i - line_start > kMaxMessageLine)
        return fmt::format("message line longer than {} octets at octet {}", kMaxMessageLine,
                           line_start);
      ++i;
      line_start = i + 1;
    } else if (c == '\n') {
      return fmt::format("LF without CR in the message at octet {}", i);
    }
  }
  if (line_start != m.size()) return "the message does not end with CRLF";
  return std::nullopt;
}

std::expected<std::string, std::string> encode_maildrop(const Maildrop& m) {
  if (!m.sender.empty() && !valid_address(m.sender))
    return std::unexpected(fmt::format("invalid sender address \"{}\"", shown(m.sender)));
  if (m.recipients.empty()) return std::unexpected("no recipients");
  if (m.recipients.size() > kMaxRecipients)
    return std::unexpected(fmt::format("more than {} recipients", kMaxRecipients));
  size_t envelope = 64 + m.sender.size();
  std::unordered_set<std::string> seen;
  for (const std::string& r : m.recipients) {
    if (!valid_address(r))
      return std::unexpected(fmt::format("invalid recipient address \"{}\"", shown(r)));
    if (!seen.insert(dedup_key(r)).second)
      return std::unexpected(fmt::format("recipient \"{}\" listed twice", shown(r)));
    envelope += r.size() + 6;
  }
  if (auto err = check_message(m.message)) return std::unexpected(*err);

  std::string out;
  out.reserve(envelope + m.message.size());
  out += fmt::format("{} {}\n", kMaildropMagic, kMaildropVersion);
  out += m.sender.empty() ? std::string("sender\n") : fmt::format("sender {}\n", m.sender);
  for (const std::string& r : m.recipients) out += fmt::format("rcpt {}\n", r);
  out += fmt::format("size {}\n\n", m.message.size());
  out += m.message;
  return out;
}

std::expected<Maildrop, std::string> decode_maildrop(std::string_view in) {
  Maildrop m;
  auto line = next_line(in);
  if (!line) return std::unexpected(line.error());
  {
    Keyed magic = keyed(*line, kMaildropMagic);
    if (!magic.matches || !magic.value) return std::unexpected("not a maildrop file");
    if (*magic.value != fmt::format("{}", kMaildropVersion))
      return std::unexpected(
          fmt::format("unsupported maildrop version \"{}\"", shown(*magic.value)));
  }

  line = next_line(in);
  if (!line) return std::unexpected(line.error());
  Keyed sender = keyed(*line, "sender");
  if (!sender.matches) return std::unexpected("expected the sender line");
  if (sender.value) {
    if (!valid_address(*sender.value))
      return std::unexpected(fmt::format("invalid sender address \"{}\"", shown(*sender.value)));
    m.sender = std::string(*sender.value);
  }

  std::unordered_set<std::string> seen;
  for (;;) {
    line = next_line(in);
    if (!line) return std::unexpected(line.error());
    Keyed rcpt = keyed(*line, "rcpt");
    if (!rcpt.matches) break;
    if (!rcpt.value || !valid_address(*rcpt.value))
      return std::unexpected(
          fmt::format("invalid recipient address \"{}\"", shown(rcpt.value.value_or(""))));
    if (!seen.insert(dedup_key(*rcpt.value)).second) continue;
    if (m.recipients.size() == kMaxRecipients)
      return std::unexpected(fmt::format("more than {} recipients", kMaxRecipients));
    m.recipients.emplace_back(*rcpt.value);
  }
  if (m.recipients.empty()) return std::unexpected("no recipients");

  Keyed size = keyed(*line, "size");
  if (!size.matches || !size.value) return std::unexpected("expected a rcpt or the size line");
  const std::string_view digits = *size.value;
  uint64_t n = 0;
  if (digits.empty() || (digits.size() > 1 && digits[0] == '0') ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::unexpected(fmt::format("invalid size \"{}\"", shown(digits)));
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size())
    return std::unexpected(fmt::format("invalid size \"{}\"", shown(digits)));

  line = next_line(in);
  if (!line) return std::unexpected(line.error());
  if (!line->empty()) return std::unexpected("expected the empty line after the size");
  if (n != in.size())
    return std::unexpected(
        fmt::format("size says {} octets but {} follow", n, in.size()));
  if (auto err = check_message(in)) return std::unexpected(*err);
  m.message = std::string(in);
  return m;
}

std::string maildrop_file_name(int64_t unix_us, uint32_t pid, uint64_t random) {
  return fmt::format("{:013x}{:08x}{:016x}", static_cast<uint64_t>(unix_us) & 0xfffffffffffffull,
                     pid, random);
}

bool valid_maildrop_file_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
         });
}

}  // namespace sluice::sendmail
