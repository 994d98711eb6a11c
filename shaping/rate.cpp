// rate.cpp — rates and the GCRA (shaping/rate.hpp).
#include "shaping/rate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace sluice::shaping {

namespace {
constexpr int64_t kSecond = 1'000'000;
constexpr uint32_t kMaxCount = 1'000'000;
}  // namespace

int64_t Rate::interval_us() const {
  if (count == 0) return 0;
  return std::max<int64_t>(1, period_us / count);
}

std::expected<Rate, std::string> parse_rate(std::string_view text) {
  if (text.empty()) return Rate{};
  const auto bad = [&] {
    return std::unexpected(fmt::format(
        "\"{}\" is not a rate: write N/s, N/m, N/h or N/d (N from 1 to {}), or \"\" for no limit",
        text, kMaxCount));
  };
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 2 != text.size()) return bad();
  uint32_t n = 0;
  const char* first = text.data();
  const char* last = text.data() + slash;
  auto [p, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || p != last || n == 0 || n > kMaxCount) return bad();
  int64_t period = 0;
  switch (text[slash + 1]) {
    case 's': period = kSecond; break;
    case 'm': period = 60 * kSecond; break;
    case 'h': period = 3600 * kSecond; break;
    case 'd': period = 86400 * kSecond; break;
    default: return bad();
  }
  return Rate{n, period};
}

std::string to_string(Rate r) {
  if (r.unlimited()) return "";
  char unit = 's';
  if (r.period_us == 60 * kSecond) unit = 'm';
  else if (r.period_us == 3600 * kSecond) unit = 'h';
  else if (r.period_us == 86400 * kSecond) unit = 'd';
  else if (r.period_us != kSecond) return fmt::format("{}/{}us", r.count, r.period_us);
  return fmt::format("{}/{}", r.count, unit);
}

Rate share(Rate r, uint32_t parts) {
  if (r.unlimited() || parts <= 1) return r;
  return Rate{std::max<uint32_t>(1, r.count / parts), r.period_us};
}

Admission Gcra::peek(Rate rate, uint32_t burst, int64_t now) const {
  if (rate.unlimited()) return {true, 0, UINT32_MAX};
  const int64_t t = rate.interval_us();
  const int64_t tolerance = static_cast<int64_t>(std::max<uint32_t>(burst, 1) - 1) * t;
  const int64_t tat = std::max(tat_us_, now);
  const int64_t allow_at = tat - tolerance;  // the first time an event fits
  if (allow_at > now) return {false, allow_at, 0};
  // After this event TAT moves to tat + t; what fits then is what is left.
  const int64_t slack = now - (tat + t - tolerance);  // >= -t
  const uint32_t remaining = slack < 0 ? 0 : static_cast<uint32_t>(std::min<int64_t>(slack / t + 1, burst));
  return {true, 0, remaining};
}

Admission Gcra::take(Rate rate, uint32_t burst, int64_t now) {
  Admission a = peek(rate, burst, now);
  if (a.allowed && !rate.unlimited()) tat_us_ = std::max(tat_us_, now) + rate.interval_us();
  return a;
}

}  // namespace sluice::shaping
