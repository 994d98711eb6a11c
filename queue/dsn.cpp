// dsn.cpp — RFC 3464 bounce messages (see dsn.hpp).
//
// Layout of what make_dsn() writes (CRLF line ends):
//   header section (From, To, Subject, Date, Message-ID, Auto-Submitted, MIME)
//   multipart/report; report-type=delivery-status
//     1. text/plain: what happened, per recipient, for a person
//     2. message/delivery-status: per-message fields, then one group per
//        recipient (Final-Recipient, Action: failed, Status, Remote-MTA,
//        Diagnostic-Code, Last-Attempt-Date)
//     3. text/rfc822-headers: the original message's header section
// With SMTPUTF8 (the original was SMTPUTF8, or an address is not ASCII) parts
// 2 and 3 are message/global-delivery-status and message/global-headers and
// non-ASCII addresses are typed utf-8 (RFC 6533).
// A bounce of a REQUIRETLS message (RFC 8689 §5) is redacted: part 3 is left
// out, so it carries no header or body of the original; and bounce_envelope()
// sets its own requiretls. Either alone would satisfy the RFC; both together
// mean the bounce leaks nothing of the original even if it were ever sent
// without REQUIRETLS (docs/transport-security.md "REQUIRETLS").
#include "queue/dsn.hpp"


#include <algorithm>
#include <cstdio>
#include <vector>

#include "mail/headers.hpp"
#include "queue/policy.hpp"

namespace sluice::queue {
namespace {

constexpr size_t kFoldAt = 78;      // preferred line length
constexpr size_t kMaxLine = 998;    // RFC 5322 hard limit, CRLF excluded
constexpr size_t kMaxPiece = 900;   // a word longer than this is cut into pieces
constexpr std::string_view kCrlf = "\r\n";

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// One line of text for a header field or a sentence: control characters
// (CR and LF included) become spaces, runs of spaces stay.
std::string one_line(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) c = ' ';
  }
  return out;
}

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// Lays `text` out in lines of at most `width` octets where the words allow
// (never more than kMaxLine): the first line starts with `first`, later ones
// with `indent`. Words longer than kMaxPiece are cut. Appends CRLF-ended lines.
void layout(std::string& out, std::string_view first, std::string_view indent, std::string_view text,
            size_t width) {
  std::string line(first);
  bool empty = true;  // nothing but the prefix on `line` yet
  bool any = false;   // a word was laid out
  auto flush = [&] {
    out += line;
    out += kCrlf;
    line.assign(indent);
    empty = true;
  };
  const std::string clean = one_line(text);
  for (std::string_view w : words(clean)) {
    while (!w.empty()) {
      std::string_view piece = w.substr(0, kMaxPiece);
      w.remove_prefix(piece.size());
      size_t need = line.size() + (empty ? 0 : 1) + piece.size();
      if (!empty && need > width) flush();
      if (!empty) line += ' ';
      line += piece;
      empty = false;
      any = true;
    }
  }
  if (!empty || !any) flush();  // the last words, or the bare prefix of an empty text
}

// A header or report field, folded (continuation lines start with a space).
void field(std::string& out, std::string_view name, std::string_view value) {
  std::string prefix(name);
  prefix += ": ";
  layout(out, prefix, " ", value, kFoldAt);
}

std::string hex16(uint64_t v) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// RFC 3461 xtext: "+XX" is the byte XX.
std::string xtext_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+' && i + 2 < s.size()) {
      int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(char(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

// "mx1.example.com[192.0.2.1]:25" -> "mx1.example.com" (Remote-MTA is a name).
std::string mta_name(std::string_view host) {
  size_t b = host.find('[');
  if (b != std::string_view::npos && b > 0) host = host.substr(0, b);
  return one_line(host);
}

std::string angle(std::string_view id) {
  std::string s = one_line(id);
  if (s.empty()) return s;
  if (s.front() != '<') s.insert(s.begin(), '<');
  if (s.back() != '>') s.push_back('>');
  return s;
}

// The original header section with CRLF line ends, each line at most
// kMaxLine octets (longer ones continue on lines starting with a space).
std::string headers_part(std::string_view headers) {
  std::string out;
  size_t i = 0;
  while (i < headers.size()) {
    size_t nl = headers.find('\n', i);
    size_t end = nl == std::string_view::npos ? headers.size() : nl;
    std::string_view line = headers.substr(i, end - i);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    i = nl == std::string_view::npos ? headers.size() : nl + 1;
    std::string clean(line);
    for (char& c : clean)
      if (c == '\r' || c == '\0') c = ' ';
    std::string_view rest = clean;
    bool first = true;
    while (first || !rest.empty()) {
      size_t room = first ? kMaxLine : kMaxLine - 1;
      if (!first) out += ' ';
      out.append(rest.substr(0, room));
      out += kCrlf;
      rest.remove_prefix(std::min(room, rest.size()));
      first = false;
    }
  }
  return out;
}

std::string address_field(std::string_view address, bool global) {
  std::string a = one_line(address);
  return (global && !is_ascii(a) ? "utf-8; " : "rfc822; ") + a;
}

}  // namespace

std::string_view header_section(std::string_view content) {
  size_t end = content.find("\r\n\r\n");
  std::string_view h;
  if (content.starts_with("\r\n")) h = {};
  else if (end != std::string_view::npos) h = content.substr(0, end + 2);
  else h = content;
  if (h.size() > kMaxDsnHeaderBytes) {
    std::string_view cut = h.substr(0, kMaxDsnHeaderBytes);
    size_t last = cut.rfind("\r\n");
    h = last == std::string_view::npos ? cut : cut.substr(0, last + 2);
  }
  return h;
}

std::string make_dsn(const Envelope& original, std::span<const FailedRecipient> failed,
                     std::string_view reporting_mta, std::string_view original_headers,
                     int64_t now_us, std::string_view bounce_message_id) {
  const std::string mta = one_line(reporting_mta);
  bool global = original.smtputf8 || !is_ascii(original.sender);
  for (const FailedRecipient& f : failed)
    if (!is_ascii(f.address) || !is_ascii(f.orcpt)) global = true;

  // 1. For a person.
  std::string text;
  text += "This is the mail delivery system at " + mta + "." + std::string(kCrlf) + std::string(kCrlf);
  const bool redact = original.requiretls;
  layout(text, "", "",
         redact ? "Your message could not be delivered to one or more of its recipients. Each "
                  "one is listed below with the reason. Your message was sent with REQUIRETLS, "
                  "so none of its content or headers is attached."
                : "Your message could not be delivered to one or more of its recipients. Each "
                  "one is listed below with the reason. The headers of your message are "
                  "attached.",
         76);
  text += kCrlf;
  for (const FailedRecipient& f : failed) {
    text += "<" + one_line(f.address) + ">:" + std::string(kCrlf);
    if (!f.reason.empty()) layout(text, "    ", "    ", f.reason, 76);
    if (!f.diagnostic.empty()) {
      std::string said = f.remote_mta.empty() ? f.diagnostic
                                              : "host " + f.remote_mta + " said: " + f.diagnostic;
      layout(text, "    ", "    ", said, 76);
    } else if (f.reason.empty()) {
      layout(text, "    ", "    ", "delivery failed", 76);
    }
    text += kCrlf;
  }

  // 2. For a program.
  std::string report;
  field(report, "Reporting-MTA", "dns; " + mta);
  field(report, "X-Sluice-Queue-ID", original.id);
  if (!original.envid.empty()) field(report, "Original-Envelope-Id", one_line(original.envid));
  field(report, "Arrival-Date", mail::rfc5322_date(original.arrival_us));
  for (const FailedRecipient& f : failed) {
    report += kCrlf;
    field(report, "Final-Recipient", address_field(f.address, global));
    if (size_t semi = f.orcpt.find(';'); semi != std::string::npos) {
      std::string type = one_line(f.orcpt.substr(0, semi));
      std::string addr = one_line(xtext_decode(f.orcpt.substr(semi + 1)));
      if (!type.empty() && !addr.empty()) field(report, "Original-Recipient", type + "; " + addr);
    }
    field(report, "Action", "failed");
    field(report, "Status", policy::valid_status(f.status) ? f.status : "5.0.0");
    if (!f.remote_mta.empty()) field(report, "Remote-MTA", "dns; " + mta_name(f.remote_mta));
    if (!f.diagnostic.empty())
      field(report, "Diagnostic-Code", (f.remote_mta.empty() ? "X-Sluice; " : "smtp; ") + f.diagnostic);
    if (f.last_attempt_us != 0) field(report, "Last-Attempt-Date", mail::rfc5322_date(f.last_attempt_us));
  }

  // 3. The original headers.
  std::string headers = redact ? std::string() : headers_part(header_section(original_headers));

  const bool text8 = !is_ascii(text), report8 = !is_ascii(report), headers8 = !is_ascii(headers);
  auto cte = [](bool eight) { return eight ? "8bit" : "7bit"; };

  std::string boundary;
  for (uint64_t k = 0;; ++k) {
    boundary = "=_" + original.id + "." +
               hex16(fnv1a(std::string(bounce_message_id) + "/" + std::to_string(k)));
    if (text.find(boundary) == std::string::npos && report.find(boundary) == std::string::npos &&
        headers.find(boundary) == std::string::npos)
      break;
  }

  std::string out;
  out.reserve(text.size() + report.size() + headers.size() + 1024);
  field(out, "From", "MAILER-DAEMON@" + mta + " (Mail Delivery System)");
  field(out, "To", "<" + one_line(original.sender) + ">");
  field(out, "Subject", "Undelivered Mail Returned to Sender");
  field(out, "Date", mail::rfc5322_date(now_us));
  field(out, "Message-ID", angle(bounce_message_id));
  field(out, "Auto-Submitted", "auto-replied");
  field(out, "MIME-Version", "1.0");
  out += "Content-Type: multipart/report; report-type=delivery-status;";
  out += kCrlf;
  out += "\tboundary=\"" + boundary + "\"";
  out += kCrlf;
  if (text8 || report8 || headers8) field(out, "Content-Transfer-Encoding", "8bit");
  out += kCrlf;
  out += "This is a MIME-encapsulated message.";
  out += kCrlf;
  out += kCrlf;

  out += "--" + boundary + std::string(kCrlf);
  field(out, "Content-Description", "Notification");
  field(out, "Content-Type", "text/plain; charset=utf-8");
  field(out, "Content-Transfer-Encoding", cte(text8));
  out += kCrlf;
  out += text;  // ends with an empty line already

  out += "--" + boundary + std::string(kCrlf);
  field(out, "Content-Description", "Delivery report");
  field(out, "Content-Type", global ? "message/global-delivery-status" : "message/delivery-status");
  if (report8) field(out, "Content-Transfer-Encoding", "8bit");
  out += kCrlf;
  out += report;
  out += kCrlf;

  if (!redact) {
    out += "--" + boundary + std::string(kCrlf);
    field(out, "Content-Description", "Undelivered Message Headers");
    field(out, "Content-Type", global && headers8 ? "message/global-headers" : "text/rfc822-headers");
    if (headers8) field(out, "Content-Transfer-Encoding", "8bit");
    out += kCrlf;
    out += headers;
    out += kCrlf;
  }
  out += "--" + boundary + "--" + std::string(kCrlf);
  return out;
}

Envelope bounce_envelope(const Envelope& original, std::string_view content,
                         std::string_view bounce_message_id, int64_t now_us) {
  Envelope e;
  e.arrival_us = now_us;
  e.sender.clear();  // the null sender: a bounce never bounces
  Recipient r;
  r.address = original.sender;
  e.recipients.push_back(std::move(r));
  e.body = is_ascii(content) ? BodyType::seven_bit : BodyType::eight_bit_mime;
  e.smtputf8 = original.smtputf8 || !is_ascii(original.sender);
  e.message_id = angle(bounce_message_id);
  e.requiretls = original.requiretls;  // RFC 8689 §5
  return e;
}

}  // namespace sluice::queue
