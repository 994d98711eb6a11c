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

}  // namespace sluice::mail
