// cache_test.cpp — the cache file format and the freshness rules (sts/cache.hpp).
#include "sts/cache.hpp"

#include <catch2/catch.hpp>

using namespace sluice::sts;

namespace {

CachedPolicy sample() {
  CachedPolicy c;
  c.domain = "example.com";
  c.id = "20240101T000000";
  c.policy.mode = Mode::enforce;
  c.policy.max_age = 604800;
  c.policy.mx = {"mx1.example.com", "*.example.net"};
  c.fetched_at = 1764950000;
  return c;
}

const char* kSampleText =
    "sluice-sts 1\ndomain: example.com\nid: 20240101T000000\nfetched_at: 1764950000\n\n"
    "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\nmax_age: 604800\n";

}  // namespace

TEST_CASE("sts cache: encode writes the canonical form, decode reads it back") {
  CHECK(encode(sample()) == kSampleText);
  auto c = decode(kSampleText);
  REQUIRE(c);
  CHECK(c->domain == "example.com");
  CHECK(c->id == "20240101T000000");
  CHECK(c->fetched_at == 1764950000);
  CHECK(c->policy.mode == Mode::enforce);
  CHECK(c->policy.max_age == 604800);
  CHECK(c->policy.mx == std::vector<std::string>{"mx1.example.com", "*.example.net"});

  CachedPolicy none = sample();
  none.policy.mode = Mode::none;
  none.policy.mx.clear();
  none.fetched_at = 0;
  auto back = decode(encode(none));
  REQUIRE(back);
  CHECK(back->policy.mode == Mode::none);
  CHECK(back->policy.mx.empty());
  CHECK(back->fetched_at == 0);
}

TEST_CASE("sts cache: decode refuses anything but the canonical form") {
  const std::string good = kSampleText;
  auto refused = [](std::string text) { return !decode(text).has_value(); };
  CHECK(refused(""));
  CHECK(refused("sluice-sts 2\n" + good.substr(13)));
  CHECK(refused(good.substr(0, good.size() - 1)));  // no final LF
  CHECK(refused(good + "\n"));                      // an extra empty line
  CHECK(refused(good + "mx: extra.example.com\n"));  // after max_age: not canonical
  std::string crlf = good;
  crlf.insert(12, "\r");
  CHECK(refused(crlf));
  auto replace = [&](std::string_view from, std::string_view to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  CHECK(refused(replace("domain: example.com", "domain: Example.com")));
  CHECK(refused(replace("domain: example.com", "domain: example.com.")));
  CHECK(refused(replace("domain: example.com", "domain: ../etc")));
  CHECK(refused(replace("domain: example.com", "domain: ")));
  CHECK(refused(replace("id: 20240101T000000", "id: 2024-01-01")));
  CHECK(refused(replace("id: 20240101T000000", "id: ")));
  CHECK(refused(replace("id: 20240101T000000", "id: 123456789012345678901234567890123")));
  CHECK(refused(replace("fetched_at: 1764950000", "fetched_at: -1")));
  CHECK(refused(replace("fetched_at: 1764950000", "fetched_at: 01764950000")));
  CHECK(refused(replace("fetched_at: 1764950000", "fetched_at: 1764950000 ")));
  CHECK(refused(replace("fetched_at: 1764950000", "fetched_at: 9999999999999999999")));
  CHECK(refused(replace("fetched_at: 1764950000", "fetched_at:")));
  CHECK(refused(replace("mode: enforce", "mode: enforced")));
  CHECK(refused(replace("mode: enforce", "mode:  enforce")));
  CHECK(refused(replace("mx: mx1.example.com\n", "")) == false);  // still canonical with one mx
  CHECK(refused(replace("mx: mx1.example.com", "mx: MX1.example.com")));
  CHECK(refused(replace("max_age: 604800", "max_age: 99999999999")));
  CHECK(refused(replace("\n\nversion", "\nversion")));
  CHECK(refused(std::string(kMaxCacheFile + 1, 'a')));
}

TEST_CASE("sts cache: valid until fetched_at + max_age") {
  const CachedPolicy c = sample();
  CHECK(valid(c, c.fetched_at));
  CHECK(valid(c, c.fetched_at + 604799));
  CHECK_FALSE(valid(c, c.fetched_at + 604800));
  CHECK(valid(c, c.fetched_at - 1000));  // a clock gone backwards
  CachedPolicy zero = c;
  zero.policy.max_age = 0;
  CHECK_FALSE(valid(zero, zero.fetched_at));
}

TEST_CASE("sts cache: refresh on a new id or when max_age nears") {
  CHECK(refresh_margin(604800) == 86400);
  CHECK(refresh_margin(600) == 300);
  CHECK(refresh_margin(1) == 0);
  CHECK(refresh_margin(kMaxAge) == 86400);
  const CachedPolicy c = sample();
  CHECK_FALSE(needs_refresh(c, c.id, c.fetched_at));
  CHECK_FALSE(needs_refresh(c, c.id, c.fetched_at + 604800 - 86401));
  CHECK(needs_refresh(c, c.id, c.fetched_at + 604800 - 86400));
  CHECK(needs_refresh(c, c.id, c.fetched_at + 604800 + 5));
  CHECK(needs_refresh(c, "other", c.fetched_at));
  CHECK(needs_refresh(c, "20240101t000000", c.fetched_at));  // ids are case-sensitive
  CachedPolicy short_lived = c;
  short_lived.policy.max_age = 600;
  CHECK_FALSE(needs_refresh(short_lived, c.id, c.fetched_at + 299));
  CHECK(needs_refresh(short_lived, c.id, c.fetched_at + 300));
}

TEST_CASE("sts cache: at most one fetch per domain and id per 5 minutes") {
  CHECK(fetch_allowed(std::nullopt, "a", 1000));
  const std::optional<FetchAttempt> last = FetchAttempt{"a", 1000};
  CHECK_FALSE(fetch_allowed(last, "a", 1000));
  CHECK_FALSE(fetch_allowed(last, "a", 1000 + kFetchInterval - 1));
  CHECK(fetch_allowed(last, "a", 1000 + kFetchInterval));
  CHECK(fetch_allowed(last, "b", 1001));  // a new id: at once
  CHECK(fetch_allowed(last, "a", 999));   // the clock went backwards
}

TEST_CASE("sts cache: policy ids") {
  CHECK(is_policy_id("a"));
  CHECK(is_policy_id(std::string(32, '9')));
  CHECK_FALSE(is_policy_id(""));
  CHECK_FALSE(is_policy_id(std::string(33, '9')));
  CHECK_FALSE(is_policy_id("a-b"));
}
