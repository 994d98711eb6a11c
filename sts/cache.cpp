// cache.cpp — see cache.hpp.
#include "sts/cache.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace sluice::sts {

namespace {

bool alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

bool lower_host(std::string_view s) {
  return is_host_name(s) && std::none_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

// Takes "PREFIX" + value + "\n" from the front of `in`.
std::optional<std::string_view> take_field(std::string_view& in, std::string_view prefix) {
  if (!in.starts_with(prefix)) return std::nullopt;
  const size_t lf = in.find('\n');
  if (lf == std::string_view::npos) return std::nullopt;
  std::string_view value = in.substr(prefix.size(), lf - prefix.size());
  in.remove_prefix(lf + 1);
  return value;
}

}  // namespace

bool is_policy_id(std::string_view id) {
  return !id.empty() && id.size() <= 32 && std::all_of(id.begin(), id.end(), alnum);
}

std::string encode(const CachedPolicy& c) {
  std::string out = fmt::format("sluice-sts 1\ndomain: {}\nid: {}\nfetched_at: {}\n\nversion: STSv1\nmode: {}\n",
                                c.domain, c.id, c.fetched_at, mode_name(c.policy.mode));
  for (const auto& mx : c.policy.mx) out += fmt::format("mx: {}\n", mx);
  out += fmt::format("max_age: {}\n", c.policy.max_age);
  return out;
}

std::expected<CachedPolicy, std::string> decode(std::string_view text) {
  if (text.size() > kMaxCacheFile) return std::unexpected("file too big");
  std::string_view in = text;
  if (!in.starts_with("sluice-sts 1\n")) return std::unexpected("not a sluice-sts 1 file");
  in.remove_prefix(13);
  CachedPolicy c;
  auto domain = take_field(in, "domain: ");
  if (!domain || !lower_host(*domain)) return std::unexpected("bad domain line");
  c.domain = *domain;
  auto id = take_field(in, "id: ");
  if (!id || !is_policy_id(*id)) return std::unexpected("bad id line");
  c.id = *id;
  auto at = take_field(in, "fetched_at: ");
  if (!at || at->empty() || at->size() > 18 || (at->size() > 1 && (*at)[0] == '0') ||
      !std::all_of(at->begin(), at->end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
    return std::unexpected("bad fetched_at line");
  auto [end, ec] = std::from_chars(at->data(), at->data() + at->size(), c.fetched_at);
  if (ec != std::errc() || end != at->data() + at->size()) return std::unexpected("bad fetched_at line");
  if (!in.starts_with('\n')) return std::unexpected("no empty line before the policy");
  in.remove_prefix(1);
  auto policy = parse_policy(in);
  if (!policy) return std::unexpected("bad policy: " + policy.error());
  c.policy = std::move(*policy);
  if (encode(c) != text) return std::unexpected("not in canonical form");
  return c;
}

bool valid(const CachedPolicy& c, int64_t now) {
  return now < c.fetched_at + static_cast<int64_t>(c.policy.max_age);
}

int64_t refresh_margin(uint32_t max_age) {
  return std::min<int64_t>(max_age / 2, kMaxRefreshMargin);
}

bool needs_refresh(const CachedPolicy& c, std::string_view txt_id, int64_t now) {
  if (txt_id != c.id) return true;
  return now >= c.fetched_at + static_cast<int64_t>(c.policy.max_age) - refresh_margin(c.policy.max_age);
}

bool fetch_allowed(const std::optional<FetchAttempt>& last, std::string_view txt_id, int64_t now) {
  if (!last || last->id != txt_id) return true;
  // A clock gone backwards does not block fetching for longer than the interval.
  return now >= last->at + kFetchInterval || now < last->at;
}

}  // namespace sluice::sts
