// shaper_test.cpp — the Shaper on a LocalStore with an injected clock.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "shaping/local_store.hpp"
#include "shaping/shaper.hpp"

using namespace sluice::shaping;

namespace {
constexpr int64_t kS = 1'000'000;
constexpr int64_t kMin = 60 * kS;

Site site(std::string name, std::vector<std::string> mx, uint32_t connections, Rate rate = {},
          bool adaptive = true) {
  Site s;
  s.name = std::move(name);
  s.mx = std::move(mx);
  s.connections = connections;
  s.rate = rate;
  s.adaptive = adaptive;
  s.source = "sluice.toml:1";
  return s;
}

Settings settings_with(std::vector<Site> sites, std::vector<Rule> rules = {}) {
  Settings st;
  st.defaults.connections = 5;
  st.defaults.messages_per_connection = 100;
  st.sites = std::move(sites);
  st.rules = std::move(rules);
  return st;
}

Grant connect(Shaper& sh, const std::string& site, int64_t now) {
  Grant out;
  bool called = false;
  sh.connect(site, now, [&](Grant g) { out = g; called = true; });
  REQUIRE(called);
  return out;
}

Admission message(Shaper& sh, const std::string& site, int64_t now) {
  Admission out;
  bool called = false;
  sh.message(site, now, [&](Admission a) { out = a; called = true; });
  REQUIRE(called);
  return out;
}

const SiteState* state(const std::vector<SiteState>& all, std::string_view name) {
  for (const SiteState& s : all)
    if (s.name == name) return &s;
  return nullptr;
}

const std::vector<std::string> kGmailMx{"alt1.aspmx.l.google.com", "aspmx.l.google.com"};
}  // namespace

TEST_CASE("Shaper: a 5/s site's messages are spaced 200 ms apart") {
  int64_t now = 1000 * kS;
  LocalStore store([&] { return now; });
  Shaper sh(store, settings_with({site("gmail", {"*.google.com"}, 10, Rate{5, kS})}));
  CHECK(sh.site_of("gmail.com", kGmailMx) == "gmail");
  CHECK(sh.may_start("gmail", now));
  CHECK(message(sh, "gmail", now).allowed);
  Admission a = message(sh, "gmail", now);
  CHECK_FALSE(a.allowed);
  CHECK(a.retry_at_us == now + 200'000);
  CHECK_FALSE(sh.may_start("gmail", now));  // "not before" from the denied answer
  CHECK_FALSE(sh.may_start("gmail", now + 199'999));
  CHECK(sh.may_start("gmail", now + 200'000));
  // Ten messages, each at its retry time: nine intervals.
  // (The store's clock and the Shaper's `now` are the same clock.)
  const int64_t start = now;
  now += 200'000;
  const int64_t first = now;
  for (int i = 0; i < 10; ++i) {
    Admission x = message(sh, "gmail", now);
    if (!x.allowed) {
      now = x.retry_at_us;
      x = message(sh, "gmail", now);
    }
    REQUIRE(x.allowed);
  }
  CHECK(now - first == 9 * 200'000);
  now = start;
  // An unlimited site never waits.
  CHECK(sh.site_of("example.org", std::vector<std::string>{"mx.example.org"}) == "mx:mx.example.org");
  for (int i = 0; i < 100; ++i) CHECK(message(sh, "mx:mx.example.org", now).allowed);
}

TEST_CASE("Shaper: local concurrency first, then the store's shared leases") {
  int64_t now = 1000 * kS;
  LocalStore store([&] { return now; });
  // Two nodes on one store; the site's ceiling is 3 across both.
  const Settings st = settings_with({site("big", {"*.big.example"}, 3, {}, false)});
  Shaper a(store, st), b(store, st);
  Grant g1 = connect(a, "big", now), g2 = connect(a, "big", now);
  REQUIRE(g1.ok);
  REQUIRE(g2.ok);
  CHECK(g1.lease != g2.lease);
  CHECK(a.may_start("big", now));
  Grant g3 = connect(b, "big", now);
  REQUIRE(g3.ok);
  CHECK(store.leases("conn:big") == 3);
  // b has room locally (1 of 3 open) but the store is full: ask again in 200 ms.
  CHECK(b.may_start("big", now));
  Grant refused = connect(b, "big", now);
  CHECK_FALSE(refused.ok);
  CHECK(refused.retry_at_us == now + 200'000);
  // a leaves one: b gets it.
  a.disconnect("big", g1.lease);
  CHECK(store.leases("conn:big") == 2);
  Grant g4 = connect(b, "big", now);
  REQUIRE(g4.ok);
  // b is now at its local limit? No: 2 open of 3; a third locally hits the store.
  CHECK_FALSE(connect(b, "big", now).ok);
  // Local concurrency full: retry_at 0 (wait for a disconnect).
  Shaper c(store, settings_with({site("small", {"mx.small.example"}, 10)}));
  REQUIRE(connect(c, "small", now).ok);
  REQUIRE(connect(c, "small", now).ok);  // adaptive: starts at 2
  CHECK_FALSE(c.may_start("small", now));
  Grant full = connect(c, "small", now);
  CHECK_FALSE(full.ok);
  CHECK(full.retry_at_us == 0);
  CHECK(store.leases("conn:small") == 2);
  const auto snap = c.snapshot(now);
  REQUIRE(state(snap, "small"));
  CHECK(state(snap, "small")->connections == 2);
  CHECK(state(snap, "small")->concurrency == 2);
  CHECK(state(snap, "small")->max_concurrency == 10);
}

TEST_CASE("Shaper: adaptive concurrency follows feedback") {
  int64_t now = 1000 * kS;
  LocalStore store([&] { return now; });
  Shaper sh(store, settings_with({site("s", {"mx.s.example"}, 6)}));
  auto conc = [&] { return state(sh.snapshot(now), "s")->concurrency; };
  sh.site_of("s.example", std::vector<std::string>{"mx.s.example"});
  CHECK(conc() == 2);
  for (int i = 0; i < 2; ++i) sh.feedback("s", {Feedback::Kind::success, "250 ok"}, now);
  CHECK(conc() == 3);
  for (int i = 0; i < 3; ++i) sh.feedback("s", {Feedback::Kind::success, "550 no such user"}, now);
  CHECK(conc() == 4);
  sh.feedback("s", {Feedback::Kind::refused, ""}, now);  // no signal
  CHECK(conc() == 4);
  sh.feedback("s", {Feedback::Kind::throttled, "421 too many connections"}, now);
  CHECK(conc() == 2);
  sh.feedback("s", {Feedback::Kind::timeout, ""}, now);
  CHECK(conc() == 1);
  sh.feedback("s", {Feedback::Kind::tls_failure, ""}, now);
  CHECK(conc() == 1);
  REQUIRE(connect(sh, "s", now).ok);
  CHECK_FALSE(sh.may_start("s", now));
  for (int i = 0; i < 100; ++i) sh.feedback("s", {Feedback::Kind::success, "250 ok"}, now);
  CHECK(conc() == 6);  // the ceiling
}

TEST_CASE("Shaper: a 4.7.28 rule limits rate and connections, in the store, until it expires") {
  int64_t now = 1000 * kS;
  LocalStore store([&] { return now; });
  Rule r;
  r.reply = "4.7.28";
  r.rate = Rate{10, kMin};
  r.connections = 1;
  r.duration_us = 30 * kMin;
  r.source = "providers.toml:17";
  Shaper sh(store, settings_with({site("gmail", {"*.google.com"}, 10)}, {r}));
  sh.site_of("gmail.com", kGmailMx);
  for (int i = 0; i < 10; ++i) sh.feedback("gmail", {Feedback::Kind::success, "250 ok"}, now);
  REQUIRE(state(sh.snapshot(now), "gmail")->concurrency > 1);
  const std::string reply =
      "421 4.7.28 Our system has detected an unusual rate of unsolicited mail " + std::string(300, 'x');
  auto fired = sh.feedback("gmail", {Feedback::Kind::throttled, reply}, now);
  REQUIRE(fired);
  CHECK(fired->source == "providers.toml:17");
  // In the store for every node.
  std::map<std::string, Override> all;
  store.overrides([&](auto m) { all = m; });
  REQUIRE(all.count("gmail") == 1);
  const Override& o = all.at("gmail");
  CHECK(o.rate == Rate{10, kMin});
  CHECK(o.connections == 1);
  CHECK_FALSE(o.suspended);
  CHECK(o.until_us == now + 30 * kMin);
  CHECK(o.reason == "providers.toml:17 matched \"" + reply.substr(0, 200) + "\"");
  // In force here.
  auto snap = sh.snapshot(now);
  const SiteState* s = state(snap, "gmail");
  REQUIRE(s);
  CHECK(s->concurrency == 1);
  CHECK(s->rate == Rate{10, kMin});
  REQUIRE(s->automation);
  CHECK(*s->automation == o);
  Grant g = connect(sh, "gmail", now);
  REQUIRE(g.ok);
  CHECK_FALSE(sh.may_start("gmail", now));
  CHECK(connect(sh, "gmail", now).retry_at_us == 0);
  CHECK(message(sh, "gmail", now).allowed);
  now += kS;
  Admission next = message(sh, "gmail", now);
  CHECK_FALSE(next.allowed);
  CHECK(next.retry_at_us == now - kS + 6 * kS);  // 10/m
  sh.disconnect("gmail", g.lease);
  // Other replies and other kinds fire nothing.
  CHECK_FALSE(sh.feedback("gmail", {Feedback::Kind::success, "250 2.0.0 ok"}, now));
  CHECK_FALSE(sh.feedback("gmail", {Feedback::Kind::timeout, ""}, now));
  // Expired: back to the configured site (unlimited rate, adaptive concurrency).
  now += 30 * kMin;
  snap = sh.snapshot(now);
  s = state(snap, "gmail");
  REQUIRE(s);
  CHECK_FALSE(s->automation);
  CHECK(s->rate.unlimited());
  CHECK(s->concurrency >= 1);
  CHECK(message(sh, "gmail", now).allowed);
  CHECK(message(sh, "gmail", now).allowed);
  store.overrides([&](auto m) { all = m; });
  CHECK(all.empty());
}

TEST_CASE("Shaper: a /regex/ rule, case-insensitive, for one site; the first matching rule wins") {
  int64_t now = 1000 * kS;
  LocalStore store([&] { return now; });
  Rule other;
  other.site = "yahoo";
  other.reply = "/.*/";
  other.connections = 1;
  other.duration_us = kMin;
  other.source = "a:1";
  Rule re;
  re.site = "gmail";
  re.reply = "/^421 4\\.7\\.[0-9]+ .*RATE LIMITED/";
  re.rate = Rate{1, kS};
  re.duration_us = 10 * kMin;
  re.source = "b:2";
  Rule later;
  later.reply = "rate limited";
  later.connections = 2;
  later.duration_us = kMin;
  later.source = "c:3";
  Shaper sh(store, settings_with({site("gmail", {"*.google.com"}, 10), site("yahoo", {"*.yahoodns.net"}, 10)},
                                 {other, re, later}));
  auto f = sh.feedback("gmail", {Feedback::Kind::throttled, "421 4.7.0 you are rate limited"}, now);
  REQUIRE(f);
  CHECK(f->source == "b:2");
  CHECK(state(sh.snapshot(now), "gmail")->rate == Rate{1, kS});
  // Not matching the regex (no enhanced code): the substring rule after it.
  f = sh.feedback("gmail", {Feedback::Kind::throttled, "421 Rate Limited"}, now);
  REQUIRE(f);
  CHECK(f->source == "c:3");
  // A default site: only "*" rules apply.
  f = sh.feedback("mx:mx.other.example", {Feedback::Kind::throttled, "421 rate limited"}, now);
  REQUIRE(f);
  CHECK(f->source == "c:3");
  CHECK_FALSE(sh.feedback("mx:mx.other.example", {Feedback::Kind::success, "250 fine"}, now));
  f = sh.feedback("yahoo", {Feedback::Kind::success, "250 fine"}, now);
  REQUIRE(f);
  CHECK(f->source == "a:1");
}

TEST_CASE("Shaper: a suspension stops connects and messages until it ends") {
  int64_t now = 1000 * kS;
  LocalStore store([&] { return now; });
  Rule r;
  r.reply = "5.7.1 blocked";
  r.suspend_us = 2 * 60 * kMin;
  r.source = "sluice.toml:30";
  Shaper sh(store, settings_with({}, {r}));
  const std::string name = sh.site_of("example.net", std::vector<std::string>{"mx2.example.net", "mx1.example.net"});
  CHECK(name == "mx:mx1.example.net,mx2.example.net");
  REQUIRE(sh.feedback(name, {Feedback::Kind::success, "554 5.7.1 Blocked by policy"}, now));
  const int64_t end = now + 2 * 60 * kMin;
  CHECK_FALSE(sh.may_start(name, now));
  Grant g = connect(sh, name, now);
  CHECK_FALSE(g.ok);
  CHECK(g.retry_at_us == end);
  Admission a = message(sh, name, now);
  CHECK_FALSE(a.allowed);
  CHECK(a.retry_at_us == end);
  const SiteState* s = nullptr;
  auto snap = sh.snapshot(now);
  s = state(snap, name);
  REQUIRE(s);
  REQUIRE(s->automation);
  CHECK(s->automation->suspended);
  CHECK(s->automation->until_us == end);
  CHECK_FALSE(sh.may_start(name, end - 1));
  now = end;
  CHECK(sh.may_start(name, now));
  CHECK(connect(sh, name, now).ok);
  CHECK(message(sh, name, now).allowed);
  // Other sites are not touched.
  CHECK(sh.may_start("mx:mx.unrelated.example", now));
}

TEST_CASE("Shaper: site_of, destinations kept, snapshot, messages_per_connection") {
  int64_t now = 1000 * kS;
  LocalStore store([&] { return now; });
  Site ms = site("", {"*.outlook.com", "*.protection.outlook.com"}, 8, Rate{600, kMin});
  ms.messages_per_connection = 20;
  ms.source = "providers.toml:40";
  Settings st = settings_with({site("gmail", {"*.google.com", "*.googlemail.com"}, 10), ms});
  st.defaults.messages_per_connection = 50;
  Shaper sh(store, st);
  CHECK(sh.site_of("gmail.com", kGmailMx) == "gmail");
  CHECK(sh.site_of("custom.example", std::vector<std::string>{"mx.custom.example", "alt.googlemail.com"}) ==
        "gmail");  // any host matching
  CHECK(sh.site_of("contoso.com", std::vector<std::string>{"contoso-com.mail.protection.outlook.com"}) ==
        "*.outlook.com");  // no name: the first pattern
  CHECK(sh.site_of("a.example", std::vector<std::string>{"mx.b.example", "mx.a.example", "mx.b.example"}) ==
        "mx:mx.a.example,mx.b.example");
  CHECK(sh.site_of("b.example", std::vector<std::string>{"mx.a.example", "mx.b.example"}) ==
        "mx:mx.a.example,mx.b.example");
  CHECK(sh.site_of("10.0.0.1", std::vector<std::string>{}) == "mx:10.0.0.1");
  CHECK(sh.messages_per_connection("*.outlook.com") == 20);
  CHECK(sh.messages_per_connection("gmail") == 100);
  CHECK(sh.messages_per_connection("mx:mx.a.example,mx.b.example") == 50);
  for (int i = 0; i < 30; ++i) sh.site_of(fmt::format("d{}.example", i), kGmailMx);
  sh.site_of("d12.example", kGmailMx);  // seen again: the most recent
  Grant g = connect(sh, "*.outlook.com", now);
  REQUIRE(g.ok);
  REQUIRE(message(sh, "*.outlook.com", now).allowed);

  const auto snap = sh.snapshot(now);
  CHECK(snap.size() == 4);
  const SiteState* gm = state(snap, "gmail");
  REQUIRE(gm);
  CHECK(gm->source == "sluice.toml:1");
  REQUIRE(gm->domains.size() == 20);
  CHECK(gm->domains.back() == "d12.example");
  CHECK(gm->domains.front() == "d10.example");
  CHECK(gm->connections == 0);
  CHECK(gm->concurrency == 2);
  CHECK(gm->max_concurrency == 10);
  CHECK(gm->rate.unlimited());
  const SiteState* o = state(snap, "*.outlook.com");
  REQUIRE(o);
  CHECK(o->source == "providers.toml:40");
  CHECK(o->domains == std::vector<std::string>{"contoso.com"});
  CHECK(o->connections == 1);
  CHECK(o->max_concurrency == 8);
  CHECK(o->rate == Rate{600, kMin});
  CHECK(o->tokens == 0);
  CHECK_FALSE(o->automation);
  const SiteState* d = state(snap, "mx:mx.a.example,mx.b.example");
  REQUIRE(d);
  CHECK(d->source.empty());
  CHECK(d->domains == std::vector<std::string>{"a.example", "b.example"});
  CHECK(d->max_concurrency == 5);
  sh.disconnect("*.outlook.com", g.lease);
  CHECK(store.leases("conn:*.outlook.com") == 0);
}

TEST_CASE("Shaper: set_settings keeps open connections and adaptive state") {
  int64_t now = 1000 * kS;
  LocalStore store([&] { return now; });
  Shaper sh(store, settings_with({site("s", {"mx.s.example"}, 10)}));
  for (int i = 0; i < 20; ++i) sh.feedback("s", {Feedback::Kind::success, ""}, now);
  const uint32_t grown = state(sh.snapshot(now), "s")->concurrency;
  CHECK(grown > 2);
  Grant g = connect(sh, "s", now);
  REQUIRE(g.ok);
  // A reload with a higher ceiling and a rate: state kept, new settings used.
  sh.set_settings(settings_with({site("s", {"mx.s.example"}, 12, Rate{1, kS})}));
  auto snap = sh.snapshot(now);
  CHECK(state(snap, "s")->concurrency == grown);
  CHECK(state(snap, "s")->connections == 1);
  CHECK(state(snap, "s")->max_concurrency == 12);
  CHECK(state(snap, "s")->rate == Rate{1, kS});
  CHECK(message(sh, "s", now).allowed);
  CHECK_FALSE(message(sh, "s", now).allowed);
  // A lower ceiling clamps.
  sh.set_settings(settings_with({site("s", {"mx.s.example"}, 3)}));
  CHECK(state(sh.snapshot(now), "s")->concurrency == 3);
  sh.disconnect("s", g.lease);
  CHECK(store.leases("conn:s") == 0);
  CHECK(state(sh.snapshot(now), "s")->connections == 0);
  // The site is no longer configured: its name is now a default site's settings.
  sh.set_settings(settings_with({}));
  CHECK(state(sh.snapshot(now), "s")->max_concurrency == 5);
}

TEST_CASE("Shaper: sync brings other nodes' rules; idle sites are forgotten") {
  int64_t now = 1000 * kS;
  LocalStore store([&] { return now; });
  Rule r;
  r.reply = "4.7.28";
  r.connections = 1;
  r.duration_us = 30 * kMin;
  r.source = "x:1";
  const Settings st = settings_with({site("gmail", {"*.google.com"}, 10)}, {r});
  Shaper a(store, st), b(store, st);
  b.site_of("gmail.com", kGmailMx);
  REQUIRE(a.feedback("gmail", {Feedback::Kind::throttled, "421 4.7.28 slow down"}, now));
  CHECK_FALSE(state(b.snapshot(now), "gmail")->automation);
  b.sync(now);
  REQUIRE(state(b.snapshot(now), "gmail")->automation);
  CHECK(state(b.snapshot(now), "gmail")->concurrency == 1);
  // A node that never saw the site learns it too.
  Shaper c(store, st);
  c.sync(now);
  REQUIRE(state(c.snapshot(now), "gmail"));
  CHECK(state(c.snapshot(now), "gmail")->concurrency == 1);

  // Forgetting: nothing open, nothing in force, unused for an hour.
  Shaper d(store, settings_with({}));
  const std::string name = d.site_of("q.example", std::vector<std::string>{"mx.q.example"});
  Grant g = connect(d, name, now);
  REQUIRE(g.ok);
  const std::string busy = d.site_of("w.example", std::vector<std::string>{"mx.w.example"});
  Grant open = connect(d, busy, now);
  REQUIRE(open.ok);
  d.disconnect(name, g.lease);
  now += 61 * kMin;
  d.sync(now);
  CHECK_FALSE(state(d.snapshot(now), name));
  CHECK(state(d.snapshot(now), busy));  // a connection still open
  CHECK(d.may_start(name, now));
}
