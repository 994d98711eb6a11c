// shaper.cpp — per-site shaping decisions (shaping/shaper.hpp; strategy in
// docs/shaping.md).
//
// Keys in the Store: "rate:"+site (the site's messages, burst 1) and
// "conn:"+site (its connection leases); overrides are stored by site name.
#include "shaping/shaper.hpp"

#include <algorithm>
#include <deque>
#include <regex>

namespace sluice::shaping {

namespace {

constexpr int64_t kStoreRetryUs = 200'000;          // the store said full: ask again then
constexpr int64_t kForgetUs = 3600LL * 1'000'000;   // a site unused this long is forgotten
constexpr int64_t kSweepUs = 60LL * 1'000'000;      // forget at most once a minute
constexpr size_t kMaxDomains = 20;
constexpr size_t kReasonReplyMax = 200;

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool contains_icase(std::string_view hay, std::string_view needle) {
  if (needle.empty()) return true;
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return lower(a) == lower(b); });
  return it != hay.end();
}

bool is_regex(std::string_view pattern) {
  return pattern.size() >= 2 && pattern.starts_with('/') && pattern.ends_with('/');
}

}  // namespace

struct Shaper::Impl {
  struct Entry {
    explicit Entry(const Site& s) : aimd(s.connections, s.adaptive) {}
    Aimd aimd;
    uint32_t open = 0;        // connections holding a lease
    uint32_t pending = 0;     // connects waiting for the store
    int64_t not_before = 0;   // the last rate answer's "not before"
    uint32_t tokens = 1;      // from the last rate answer (a fresh key has its burst)
    std::optional<Override> automation;
    std::deque<std::string> domains;  // most recent last
    int64_t last_used = 0;
  };

  Store& store;
  Settings settings;
  std::vector<std::optional<std::regex>> rule_res;  // per rule: compiled "/re/"
  std::map<std::string, size_t, std::less<>> by_name;  // configured site → index in settings.sites
  std::map<std::string, Entry, std::less<>> sites;
  int64_t latest_now = 0;  // the newest `now` seen, for calls without one
  int64_t last_sweep = 0;

  Impl(Store& s, Settings st) : store(s) { apply(std::move(st)); }

  void apply(Settings st) {
    settings = std::move(st);
    by_name.clear();
    for (size_t i = 0; i < settings.sites.size(); ++i)
      by_name.emplace(std::string(site_name(settings.sites[i])), i);  // the first of a name wins
    rule_res.clear();
    for (const Rule& r : settings.rules) {
      std::optional<std::regex> re;
      if (is_regex(r.reply)) {
        // The configuration reader checked it (check_reply_pattern); a
        // pattern that still fails matches nothing.
        try {
          re.emplace(r.reply.substr(1, r.reply.size() - 2),
                     std::regex::ECMAScript | std::regex::icase);
        } catch (const std::regex_error&) {
        }
      }
      rule_res.push_back(std::move(re));
    }
  }

  static std::string_view site_name(const Site& s) {
    if (!s.name.empty()) return s.name;
    return s.mx.empty() ? std::string_view{} : std::string_view{s.mx.front()};
  }

  // The settings of a site by name: a configured one, else the defaults.
  const Site& config(std::string_view name) const {
    auto it = by_name.find(name);
    return it == by_name.end() ? settings.defaults : settings.sites[it->second];
  }
  bool configured(std::string_view name) const { return &config(name) != &settings.defaults; }

  Entry& entry(std::string_view name) {
    auto it = sites.find(name);
    if (it == sites.end()) {
      it = sites.emplace(std::string(name), Entry(config(name))).first;
      it->second.last_used = latest_now;
    }
    return it->second;
  }
  const Entry* find(std::string_view name) const {
    auto it = sites.find(name);
    return it == sites.end() ? nullptr : &it->second;
  }

  void touch(Entry& e, int64_t now) {
    latest_now = std::max(latest_now, now);
    e.last_used = std::max(e.last_used, now);
  }

  static const Override* in_force(const Entry& e, int64_t now) {
    return e.automation && e.automation->until_us > now ? &*e.automation : nullptr;
  }

  uint32_t concurrency(const Entry& e, int64_t now) const {
    uint32_t c = e.aimd.current();
    if (const Override* o = in_force(e, now); o && o->connections > 0) c = std::min(c, o->connections);
    return c;
  }

  uint32_t store_limit(std::string_view name, const Entry& e, int64_t now) const {
    uint32_t c = config(name).connections;
    if (const Override* o = in_force(e, now); o && o->connections > 0) c = std::min(c, o->connections);
    return c;
  }

  Rate rate(std::string_view name, const Entry& e, int64_t now) const {
    if (const Override* o = in_force(e, now); o && !o->rate.unlimited()) return o->rate;
    return config(name).rate;
  }

  void sweep(int64_t now) {
    latest_now = std::max(latest_now, now);
    if (now - last_sweep < kSweepUs) return;
    last_sweep = now;
    std::erase_if(sites, [now](const auto& kv) {
      const Entry& e = kv.second;
      return e.open == 0 && e.pending == 0 && !in_force(e, now) && e.not_before <= now &&
             e.last_used + kForgetUs <= now;
    });
  }

  const Rule* match(std::string_view site, std::string_view reply) const {
    for (size_t i = 0; i < settings.rules.size(); ++i) {
      const Rule& r = settings.rules[i];
      if (r.site != "*" && r.site != site) continue;
      const bool hit = is_regex(r.reply)
                           ? (rule_res[i] && std::regex_search(reply.begin(), reply.end(), *rule_res[i]))
                           : contains_icase(reply, r.reply);
      if (hit) return &r;
    }
    return nullptr;
  }
};

Shaper::Shaper(Store& store, Settings settings)
    : impl_(std::make_unique<Impl>(store, std::move(settings))) {}

Shaper::~Shaper() = default;

void Shaper::set_settings(Settings settings) {
  impl_->apply(std::move(settings));
  for (auto& [name, e] : impl_->sites) {
    const Site& s = impl_->config(name);
    if (s.adaptive != e.aimd.adaptive()) e.aimd = Aimd(s.connections, s.adaptive);
    else e.aimd.set_max(s.connections);
  }
}

std::string Shaper::site_of(std::string_view destination, std::span<const std::string> mx_hosts) {
  std::string name;
  for (const Site& s : impl_->settings.sites) {
    const bool hit = std::any_of(s.mx.begin(), s.mx.end(), [&](const std::string& p) {
      return std::any_of(mx_hosts.begin(), mx_hosts.end(),
                         [&](const std::string& h) { return mx_matches(p, h); });
    });
    if (hit) {
      name = Impl::site_name(s);
      break;
    }
  }
  if (name.empty()) {
    std::vector<std::string> hosts(mx_hosts.begin(), mx_hosts.end());
    if (hosts.empty()) hosts.emplace_back(destination);
    std::sort(hosts.begin(), hosts.end());
    hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
    name = "mx:";
    for (size_t i = 0; i < hosts.size(); ++i) {
      if (i > 0) name += ',';
      name += hosts[i];
    }
  }
  Impl::Entry& e = impl_->entry(name);
  e.last_used = std::max(e.last_used, impl_->latest_now);
  auto& d = e.domains;
  if (auto it = std::find(d.begin(), d.end(), destination); it != d.end()) d.erase(it);
  d.emplace_back(destination);
  while (d.size() > kMaxDomains) d.pop_front();
  return name;
}

bool Shaper::may_start(std::string_view site, int64_t now) const {
  const Impl::Entry* e = impl_->find(site);
  if (!e) return true;
  if (const Override* o = Impl::in_force(*e, now); o && o->suspended) return false;
  if (e->not_before > now) return false;
  return e->open + e->pending < impl_->concurrency(*e, now);
}

void Shaper::connect(const std::string& site, int64_t now, std::function<void(Grant)> done) {
  impl_->sweep(now);
  Impl::Entry& e = impl_->entry(site);
  impl_->touch(e, now);
  if (const Override* o = Impl::in_force(e, now); o && o->suspended)
    return done(Grant{false, 0, o->until_us});
  if (e.open + e.pending >= impl_->concurrency(e, now)) return done(Grant{false, 0, 0});
  ++e.pending;
  Impl* impl = impl_.get();
  impl_->store.acquire("conn:" + site, impl_->store_limit(site, e, now),
                       [impl, site, now, done = std::move(done)](std::optional<uint64_t> lease) {
                         // The entry stays while a connect is pending.
                         Impl::Entry& en = impl->entry(site);
                         if (en.pending > 0) --en.pending;
                         if (!lease) return done(Grant{false, 0, now + kStoreRetryUs});
                         ++en.open;
                         done(Grant{true, *lease, 0});
                       });
}

void Shaper::disconnect(const std::string& site, uint64_t lease) {
  if (auto it = impl_->sites.find(site); it != impl_->sites.end()) {
    Impl::Entry& e = it->second;
    if (e.open > 0) --e.open;
    e.last_used = std::max(e.last_used, impl_->latest_now);
  }
  impl_->store.release("conn:" + site, lease);
}

uint32_t Shaper::messages_per_connection(std::string_view site) const {
  return impl_->config(site).messages_per_connection;
}

void Shaper::message(const std::string& site, int64_t now, std::function<void(Admission)> done) {
  impl_->sweep(now);
  Impl::Entry& e = impl_->entry(site);
  impl_->touch(e, now);
  if (const Override* o = Impl::in_force(e, now); o && o->suspended) {
    e.not_before = std::max(e.not_before, o->until_us);
    return done(Admission{false, o->until_us, 0});
  }
  const Rate r = impl_->rate(site, e, now);
  if (r.unlimited()) {
    e.tokens = UINT32_MAX;
    return done(Admission{true, 0, UINT32_MAX});
  }
  Impl* impl = impl_.get();
  impl_->store.take("rate:" + site, r, 1, [impl, site, done = std::move(done)](Admission a) {
    Impl::Entry& en = impl->entry(site);
    en.tokens = a.remaining;
    if (!a.allowed) en.not_before = std::max(en.not_before, a.retry_at_us);
    done(a);
  });
}

std::optional<Rule> Shaper::feedback(const std::string& site, const Feedback& f, int64_t now) {
  impl_->sweep(now);
  Impl::Entry& e = impl_->entry(site);
  impl_->touch(e, now);
  switch (f.kind) {
    case Feedback::Kind::success: e.aimd.success(); break;
    case Feedback::Kind::throttled:
    case Feedback::Kind::timeout:
    case Feedback::Kind::tls_failure: e.aimd.congestion(); break;
    case Feedback::Kind::refused: break;
  }
  if (f.reply.empty()) return std::nullopt;
  const Rule* r = impl_->match(site, f.reply);
  if (!r) return std::nullopt;
  Override o;
  o.suspended = r->suspend_us > 0;
  if (!o.suspended) {
    o.rate = r->rate;
    o.connections = r->connections;
  }
  o.until_us = now + (o.suspended ? r->suspend_us : r->duration_us);
  const std::string_view reply = std::string_view(f.reply).substr(0, kReasonReplyMax);
  o.reason = r->source + " matched \"" + std::string(reply) + "\"";
  e.automation = o;
  impl_->store.put_override(site, o);
  return *r;
}

void Shaper::sync(int64_t now) {
  impl_->sweep(now);
  Impl* impl = impl_.get();
  impl_->store.overrides([impl, now](std::map<std::string, Override> all) {
    for (auto& [name, e] : impl->sites) {
      auto it = all.find(name);
      e.automation = it == all.end() ? std::nullopt : std::optional<Override>(it->second);
    }
    // Another node's rule on a site this node has not used yet.
    for (auto& [name, o] : all) {
      if (o.until_us <= now || impl->find(name)) continue;
      impl->entry(name).automation = o;
    }
  });
}

std::vector<SiteState> Shaper::snapshot(int64_t now) const {
  std::vector<SiteState> out;
  for (const auto& [name, e] : impl_->sites) {
    const Site& s = impl_->config(name);
    SiteState st;
    st.name = name;
    st.source = impl_->configured(name) ? s.source : "";
    st.domains.assign(e.domains.begin(), e.domains.end());
    st.connections = e.open;
    st.concurrency = impl_->concurrency(e, now);
    st.max_concurrency = e.aimd.max();
    st.rate = impl_->rate(name, e, now);
    st.tokens = e.tokens;
    if (const Override* o = Impl::in_force(e, now)) st.automation = *o;
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace sluice::shaping
