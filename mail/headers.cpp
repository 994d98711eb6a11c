// headers.cpp — see headers.hpp.
#include "mail/headers.hpp"

#include <fmt/format.h>

#include <chrono>

namespace sluice::mail {

namespace {

struct Civil {
  std::chrono::year_month_day day;
  std::chrono::weekday weekday;
  int hour, minute, second;
};

Civil civil(int64_t unix_seconds) {
  using namespace std::chrono;
  const sys_seconds t{seconds{unix_seconds}};
  const sys_days day = floor<days>(t);
  const hh_mm_ss hms{t - day};
  return {year_month_day{day}, weekday{day}, static_cast<int>(hms.hours().count()),
          static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count())};
}

int64_t floor_seconds(int64_t unix_us) {
  return unix_us / 1'000'000 - (unix_us % 1'000'000 < 0 ? 1 : 0);
}

}  // namespace

std::string rfc5322_date(int64_t unix_us, int32_t utc_offset_s) {
  static constexpr std::string_view kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const Civil c = civil(floor_seconds(unix_us) + utc_offset_s);
  const int32_t off = utc_offset_s < 0 ? -utc_offset_s : utc_offset_s;
  return fmt::format("{}, {:02} {} {:04} {:02}:{:02}:{:02} {}{:02}{:02}",
                     kDays[c.weekday.c_encoding()], static_cast<unsigned>(c.day.day()),
                     kMonths[static_cast<unsigned>(c.day.month()) - 1],
                     static_cast<int>(c.day.year()), c.hour, c.minute, c.second,
                     utc_offset_s < 0 ? '-' : '+', off / 3600, off % 3600 / 60);
}

std::string message_id(int64_t unix_us, std::string_view unique, std::string_view host) {
  const Civil c = civil(floor_seconds(unix_us));
  return fmt::format("<{:04}{:02}{:02}{:02}{:02}{:02}.{}@{}>", static_cast<int>(c.day.year()),
                     static_cast<unsigned>(c.day.month()), static_cast<unsigned>(c.day.day()),
                     c.hour, c.minute, c.second, unique, host);
}

std::string received(const Trace& t) {
  std::string h;
  if (t.local_uid) {
    h = fmt::format("Received: by {} (Sluice, from userid {})\r\n\tid {}", t.by, *t.local_uid, t.id);
  } else if (!t.api_key.empty()) {
    h = fmt::format("Received: from [{}] (API key {})", t.client_address, t.api_key);
    if (!t.tls_info.empty()) h += fmt::format("\r\n\t(using {})", t.tls_info);
    h += fmt::format("\r\n\tby {} (Sluice) with {} id {}", t.by, t.with, t.id);
  } else {
    h = fmt::format("Received: from {} ([{}])", t.helo, t.client_address);
    if (!t.tls_info.empty()) h += fmt::format("\r\n\t(using {})", t.tls_info);
    h += fmt::format("\r\n\tby {} (Sluice) with {} id {}", t.by, t.with, t.id);
  }
  if (!t.for_recipient.empty()) h += fmt::format("\r\n\tfor <{}>", t.for_recipient);
  h += fmt::format("; {}\r\n", rfc5322_date(t.unix_us));
  return h;
}

std::string missing_fields(const Present& have, const Trace& t, std::string_view sender,
                           std::string* message_id_out) {
  std::string add;
  if (!have.date) add += fmt::format("Date: {}\r\n", rfc5322_date(t.unix_us));
  if (!have.message_id) {
    std::string id = message_id(t.unix_us, t.id, t.by);
    add += fmt::format("Message-ID: {}\r\n", id);
    if (message_id_out) *message_id_out = std::move(id);
  }
  if (!have.from) {
    if (sender.empty())
      add += fmt::format("From: MAILER-DAEMON@{}\r\n", t.by);
    else
      add += fmt::format("From: {}\r\n", sender);
  }
  return add;
}

// ---- TLS-Required (RFC 8689 §3) -------------------------------------------
//   tls-required = "TLS-Required:" [FWS] "No" CRLF
// Stored content has CRLF line ends only; a line starting with WSP continues
// the field (unfolding removes the CRLF). The header section ends at the
// first empty line.

namespace {

bool wsp(char c) { return c == ' ' || c == '\t'; }

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = char(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = char(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim_wsp(std::string_view s) {
  while (!s.empty() && wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && wsp(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

bool TlsRequiredScan::matches() const {
  if (too_long_ || field_.empty() || wsp(field_.front())) return false;
  std::string_view f = field_;
  const size_t colon = f.find(':');
  return colon != std::string_view::npos && iequal(trim_wsp(f.substr(0, colon)), "tls-required") &&
         iequal(trim_wsp(f.substr(colon + 1)), "no");
}

void TlsRequiredScan::field_end() {
  if (matches()) found_ = true;
  field_.clear();
  too_long_ = false;
}

void TlsRequiredScan::feed(std::string_view content) {
  for (size_t i = 0; i < content.size() && in_headers_; ++i) {
    const char c = content[i];
    if (c == '\n') {
      // cr_ is set: the line ended (a bare LF cannot occur in stored form;
      // taken as a line end all the same).
      cr_ = false;
      if (bol_) {  // an empty line: the header section is over
        field_end();
        in_headers_ = false;
        return;
      }
      bol_ = true;
      continue;
    }
    if (cr_) {  // a CR not before LF: content of the line
      if (field_.size() < kCap) field_.push_back('\r'); else too_long_ = true;
      cr_ = false;
    }
    if (c == '\r') {
      cr_ = true;
      continue;
    }
    if (bol_) {
      bol_ = false;
      if (!wsp(c)) field_end();  // a new field starts; else a continuation
    }
    if (field_.size() < kCap)
      field_.push_back(c);
    else
      too_long_ = true;
  }
}

}  // namespace sluice::mail
