// message.cpp — see message.hpp. Pure.
//
// RFC 5322 §2.1.1: "Each line of characters MUST be no more than 998
//   characters ... excluding the CRLF."
// RFC 5322 §2.2: header field = name ":" body; name = 1*ftext,
//   ftext = %d33-57 / %d59-126; §4.5.3 (obsolete) allows WSP before ":".
// RFC 5322 §2.2.3: unfolding removes each CRLF that is followed by WSP.
// RFC 5322 §3.6: Date and From are required; Message-ID SHOULD be present.
// RFC 2047 §2: an encoded-word is at most 75 characters.
#include "mta/sendmail/message.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <span>
#include <unordered_set>

#include "mail/headers.hpp"

namespace sluice::sendmail {

namespace {

using uchar = unsigned char;
constexpr size_t kMaxLine = 998;
// A recipient field longer than this is not parsed (it would cost memory
// out of proportion: 10,000 addresses fit in a tenth of it).
constexpr size_t kMaxRecipientField = 1 << 20;

constexpr bool is_wsp(char c) { return c == ' ' || c == '\t'; }
constexpr bool is_utf8_tail(char c) { return (static_cast<uchar>(c) & 0xC0) == 0x80; }

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// The field name at the start of a header line, or "" when it is none.
std::string_view field_name(std::string_view line) {
  size_t i = 0;
  while (i < line.size()) {
    const uchar c = static_cast<uchar>(line[i]);
    if (c < 33 || c > 126 || c == ':') break;
    ++i;
  }
  if (i == 0) return {};
  size_t j = i;
  while (j < line.size() && is_wsp(line[j])) ++j;
  if (j >= line.size() || line[j] != ':') return {};
  return line.substr(0, i);
}

// A cut position in `line` at most `limit`, moved back so that it does not
// split a UTF-8 sequence (at most 3 octets back; always > 0).
size_t utf8_cut(std::string_view line, size_t limit) {
  size_t k = limit;
  for (int back = 0; back < 3 && k > 1 && is_utf8_tail(line[k]); ++back) --k;
  return k;
}

// Appends one physical header line (without CRLF), folded to the limit.
void append_header_line(std::string& out, std::string_view line) {
  std::string held;  // the remainder when it needed a SP in front
  while (line.size() > kMaxLine) {
    size_t p = kMaxLine;
    while (p > 0 && !(is_wsp(line[p]) && !is_wsp(line[p - 1]))) --p;
    if (p > 0) {  // fold before existing white space: the value is unchanged
      out.append(line.substr(0, p));
      out += "\r\n";
      line.remove_prefix(p);
      continue;
    }
    // No white space to fold at: cut, and start the continuation with a SP.
    const size_t k = utf8_cut(line, kMaxLine);
    out.append(line.substr(0, k));
    out += "\r\n";
    std::string rest = " ";
    rest.append(line.substr(k));
    held = std::move(rest);
    line = held;
  }
  out.append(line);
  out += "\r\n";
}

// Appends `text` as CRLF lines, each cut to the limit by `append_line`.
template <typename AppendLine>
void append_lines(std::string& out, std::string_view text, AppendLine append_line) {
  while (!text.empty()) {
    const size_t eol = text.find("\r\n");
    const std::string_view line = text.substr(0, eol);
    append_line(out, line);
    if (eol == std::string_view::npos) break;
    text.remove_prefix(eol + 2);
  }
}

void append_body_line(std::string& out, std::string_view line) {
  while (line.size() > kMaxLine) {
    const size_t k = utf8_cut(line, kMaxLine);
    out.append(line.substr(0, k));
    out += "\r\n";
    line.remove_prefix(k);
  }
  out.append(line);
  out += "\r\n";
}

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = static_cast<uchar>(in[i]) << 16 | static_cast<uchar>(in[i + 1]) << 8 |
                       static_cast<uchar>(in[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == in.size()) {
    const uint32_t v = static_cast<uchar>(in[i]) << 16;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const uint32_t v = static_cast<uchar>(in[i]) << 16 | static_cast<uchar>(in[i + 1]) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

bool is_atext_or_space(uchar c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ' ')
    return true;
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) !=
         std::string_view::npos;
}

}  // namespace

// ---- InputReader -------------------------------------------------------------

InputReader::Status InputReader::end_line() {
  if (dot_ends_ && out_.size() - line_start_ == 1 && out_.back() == '.') {
    out_.resize(line_start_);
    return Status::done;
  }
  if (out_.size() + 2 > max_size_) return Status::too_big;
  out_ += "\r\n";
  line_start_ = out_.size();
  return Status::more;
}

InputReader::Status InputReader::feed(std::string_view chunk) {
  if (status_ != Status::more) return status_;
  size_t i = 0;
  while (i < chunk.size()) {
    const char c = chunk[i];
    if (after_cr_) {
      after_cr_ = false;
      if (c == '\n') {  // the LF of a CRLF: the line end is already out
        ++i;
        continue;
      }
    }
    if (c == '\r' || c == '\n') {
      after_cr_ = c == '\r';
      ++i;
      if (Status s = end_line(); s != Status::more) return status_ = s;
      continue;
    }
    if (c == '\0') return status_ = Status::nul;
    size_t end = chunk.find_first_of(std::string_view("\r\n\0", 3), i);
    if (end == std::string_view::npos) end = chunk.size();
    if (out_.size() + (end - i) > max_size_) return status_ = Status::too_big;
    out_.append(chunk.substr(i, end - i));
    i = end;
  }
  return status_;
}

InputReader::Status InputReader::finish() {
  if (status_ != Status::more) return status_;
  if (out_.size() > line_start_) {
    if (Status s = end_line(); s != Status::more) return status_ = s;
  }
  return status_ = Status::done;
}

// ---- header and body ---------------------------------------------------------

std::string Field::value() const {
  const size_t colon = lines.find(':');
  std::string v;
  if (colon == std::string::npos) return v;
  std::string_view rest = std::string_view(lines).substr(colon + 1);
  v.reserve(rest.size());
  while (!rest.empty()) {
    const size_t eol = rest.find("\r\n");
    v.append(rest.substr(0, eol));
    if (eol == std::string_view::npos) break;
    rest.remove_prefix(eol + 2);
  }
  return v;
}

bool Message::has(std::string_view name) const {
  return std::any_of(header.begin(), header.end(),
                     [&](const Field& f) { return iequals(f.name, name); });
}

size_t Message::count(std::string_view name) const {
  return static_cast<size_t>(std::count_if(header.begin(), header.end(),
                                           [&](const Field& f) { return iequals(f.name, name); }));
}

void Message::remove(std::string_view name) {
  std::erase_if(header, [&](const Field& f) { return iequals(f.name, name); });
}

Message split(std::string_view content) {
  Message m;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t eol = content.find("\r\n", pos);
    const size_t next = eol == std::string_view::npos ? content.size() : eol + 2;
    if (eol == std::string_view::npos) eol = content.size();
    const std::string_view line = content.substr(pos, eol - pos);
    if (line.empty()) {  // the empty line: end of the header section
      pos = next;
      break;
    }
    if (is_wsp(line[0])) {
      if (m.header.empty()) break;  // no field to continue: all body
      m.header.back().lines.append(content.substr(pos, next - pos));
      pos = next;
      continue;
    }
    const std::string_view name = field_name(line);
    if (name.empty()) break;  // not a header line: the body starts here
    m.header.push_back(Field{std::string(name), std::string(content.substr(pos, next - pos))});
    pos = next;
  }
  m.body = std::string(content.substr(pos));
  return m;
}

std::string assemble(const Message& m) {
  std::string out;
  size_t total = m.body.size() + 2;
  for (const Field& f : m.header) total += f.lines.size();
  out.reserve(total + total / 64 + 16);
  for (const Field& f : m.header) append_lines(out, f.lines, append_header_line);
  out += "\r\n";
  append_lines(out, m.body, append_body_line);
  return out;
}

// ---- -t ------------------------------------------------------------------------

Extracted extract_recipients(Message& m) {
  static constexpr std::string_view kResent[] = {"Resent-To", "Resent-Cc", "Resent-Bcc"};
  static constexpr std::string_view kPlain[] = {"To", "Cc", "Bcc"};
  Extracted e;
  for (const Field& f : m.header)
    for (std::string_view n : kResent)
      if (iequals(f.name, n)) e.resent = true;

  std::unordered_set<std::string> seen;
  for (const Field& f : m.header) {
    bool wanted = false;
    for (std::string_view n : e.resent ? std::span(kResent) : std::span(kPlain))
      if (iequals(f.name, n)) wanted = true;
    if (!wanted) continue;
    const std::string value = f.value();
    if (value.size() > kMaxRecipientField) {
      e.errors.push_back(fmt::format("{}: field longer than {} octets", f.name, kMaxRecipientField));
      continue;
    }
    AddressList list = parse_address_list(value);
    for (const std::string& err : list.errors) e.errors.push_back(fmt::format("{}: {}", f.name, err));
    for (Mailbox& mb : list.mailboxes) {
      if (seen.insert(address_key(mb)).second) e.recipients.push_back(std::move(mb));
    }
  }
  m.remove("Bcc");
  m.remove("Resent-Bcc");
  return e;
}

// ---- added fields --------------------------------------------------------------

std::string make_message_id(const Stamp& s) {
  const int64_t micros = s.unix_us - floor_div(s.unix_us, 1000000) * 1000000;
  return mail::message_id(s.unix_us, fmt::format("{:06}.{:x}.{:016x}", micros, s.pid, s.random),
                          s.hostname);
}

std::string format_mailbox(std::string_view full_name, std::string_view address) {
  // Controls out (CR and LF above all: no header injection), invalid UTF-8
  // out, outer spaces trimmed.
  std::string name;
  bool ascii = true;
  for (size_t i = 0; i < full_name.size();) {
    const uchar c = static_cast<uchar>(full_name[i]);
    if (c >= 0x80) {
      const size_t n = utf8_sequence_length(full_name, i);
      if (n == 0) {
        name += '?';
        ++i;
      } else {
        name.append(full_name.substr(i, n));
        ascii = false;
        i += n;
      }
      continue;
    }
    name += c < 0x20 || c == 0x7f ? ' ' : static_cast<char>(c);
    ++i;
  }
  const size_t first = name.find_first_not_of(' ');
  if (first == std::string::npos) return std::string(address);
  name = name.substr(first, name.find_last_not_of(' ') - first + 1);

  std::string out;
  if (!ascii) {
    // RFC 2047 B encoding: 45 octets -> 60 base64 characters -> a 72-character
    // word; words never split a UTF-8 sequence; folded between words.
    for (size_t i = 0; i < name.size();) {
      size_t take = std::min<size_t>(45, name.size() - i);
      while (take > 1 && i + take < name.size() && is_utf8_tail(name[i + take])) --take;
      if (!out.empty()) out += "\r\n ";
      out += "=?UTF-8?B?";
      out += base64(std::string_view(name).substr(i, take));
      out += "?=";
      i += take;
    }
  } else if (std::all_of(name.begin(), name.end(),
                         [](char c) { return is_atext_or_space(static_cast<uchar>(c)); })) {
    out = name;
  } else {
    out = "\"";
    for (char c : name) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += " <";
  out += address;
  out += '>';
  return out;
}

void add_missing_headers(Message& m, const Stamp& s, std::string_view from_address,
                         std::string_view full_name) {
  auto add = [&](std::string_view name, const std::string& value) {
    m.header.push_back(Field{std::string(name), fmt::format("{}: {}\r\n", name, value)});
  };
  const bool date = m.has("Date"), from = m.has("From"), id = m.has("Message-ID");
  if (!date) add("Date", mail::rfc5322_date(s.unix_us, s.utc_offset_s));
  if (!from) add("From", format_mailbox(full_name, from_address));
  if (!id) add("Message-ID", make_message_id(s));
}

}  // namespace sluice::sendmail
