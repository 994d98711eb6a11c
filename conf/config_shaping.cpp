// config_shaping.cpp — [shaping], [[shaping.site]], [[shaping.rule]], the
// provider file and [cluster] (conf/config.hpp; docs/shaping.md). Called
// by parse() in config.cpp; the provider file is read here, the only file
// parse() reads besides its own text.
#include <fmt/format.h>
#include <toml++/toml.h>

#include <fstream>
#include <iterator>
#include <optional>

#include "conf/config.hpp"
#include "conf/config_reader.hpp"
#include "mta/proto/ascii.hpp"
#include "shaping/rate.hpp"
#include "shaping/redis_codec.hpp"

namespace sluice::conf {

namespace {

using namespace reader;

// conf/shaping-providers.toml as shipped, compiled in (CMake writes it).
constexpr std::string_view kBuiltinProviders =
#include "conf/shaping_providers.inc"
    ;

// A rate that may be left out (then [shaping]'s applies).
Field rate_field(Reader& r, std::string_view name, std::optional<shaping::Rate>& dest) {
  return {name, [&r, &dest](const toml::node& n, const std::string& key) {
            if (auto v = r.rate(n, key)) dest = *v;
          }};
}

// messages_per_connection: 0 means no limit.
Field per_connection_field(Reader& r, std::string_view name, std::optional<uint32_t>& dest) {
  return {name, [&r, &dest](const toml::node& n, const std::string& key) {
            if (auto v = r.integer(n, key, 0, 1'000'000)) dest = static_cast<uint32_t>(*v);
          }};
}

Field connections_field(Reader& r, std::string_view name, std::optional<uint32_t>& dest) {
  return {name, [&r, &dest](const toml::node& n, const std::string& key) {
            if (auto v = r.integer(n, key, 1, 100'000)) dest = static_cast<uint32_t>(*v);
          }};
}

void read_sites(Reader& r, const toml::node& n, const std::string& key, std::string_view file,
                std::vector<SiteDraft>& out) {
  if (n.is_table()) {
    r.add(key, line_of(n), "write each site as [[shaping.site]] (an array of tables)");
    return;
  }
  r.array(n, key, [&](const toml::node& element, const std::string& ek) {
    if (!element.is_table()) {
      r.wrong_type(element, ek, "a table with mx and limits");
      return;
    }
    SiteDraft d;
    d.site.source = fmt::format("{}:{}", file, line_of(element));
    const Field fields[] = {
        string_field(r, "name", d.site.name),
        {"mx",
         [&](const toml::node& v, const std::string& k) {
           if (!v.is_array()) {
             r.wrong_type(v, k, "an array of MX host names or \"*.domain\" patterns");
             return;
           }
           r.array(v, k, [&](const toml::node& e, const std::string& mk) {
             auto s = r.string(e, mk);
             if (!s) return;
             std::string p = *s;
             for (char& c : p) c = ascii::to_lower(c);
             if (!p.empty() && p.back() == '.') p.pop_back();
             const std::string_view name = p.starts_with("*.") ? std::string_view(p).substr(2) : p;
             if (auto err = check_domain_name(name)) {
               r.add(mk, line_of(e), fmt::format("\"{}\": {}", *s, *err));
               return;
             }
             d.site.mx.push_back(std::move(p));
           });
         }},
        connections_field(r, "connections", d.connections),
        per_connection_field(r, "messages_per_connection", d.messages_per_connection),
        rate_field(r, "rate", d.rate),
        {"adaptive",
         [&](const toml::node& v, const std::string& k) {
           if (auto b = r.boolean(v, k)) d.adaptive = *b;
         }},
    };
    r.walk(element, ek, fields);
    if (d.site.mx.empty() && !r.has_problem(ek + ".mx")) r.add(ek + ".mx", line_of(element), "missing");
    if (r.has_problem(ek)) return;
    if (d.site.name.empty()) d.site.name = d.site.mx.front();
    out.push_back(std::move(d));
  });
}

void read_rules(Reader& r, const toml::node& n, const std::string& key, std::string_view file,
                std::vector<shaping::Rule>& out) {
  if (n.is_table()) {
    r.add(key, line_of(n), "write each rule as [[shaping.rule]] (an array of tables)");
    return;
  }
  r.array(n, key, [&](const toml::node& element, const std::string& ek) {
    if (!element.is_table()) {
      r.wrong_type(element, ek, "a table with reply and what it limits");
      return;
    }
    shaping::Rule rule;
    rule.source = fmt::format("{}:{}", file, line_of(element));
    std::optional<shaping::Rate> rate;
    std::optional<uint32_t> connections;
    std::optional<Duration> duration, suspend;
    bool has_reply = false;
    const Field fields[] = {
        string_field(r, "site", rule.site),
        {"reply",
         [&](const toml::node& v, const std::string& k) {
           auto s = r.string(v, k);
           if (!s) return;
           if (auto err = shaping::check_reply_pattern(*s)) {
             r.add(k, line_of(v), *err);
             return;
           }
           rule.reply = *s;
           has_reply = true;
         }},
        rate_field(r, "rate", rate),
        connections_field(r, "connections", connections),
        {"duration",
         [&](const toml::node& v, const std::string& k) { duration = r.duration(v, k); }},
        {"suspend", [&](const toml::node& v, const std::string& k) { suspend = r.duration(v, k); }},
    };
    r.walk(element, ek, fields);
    if (!has_reply && !r.has_problem(ek + ".reply")) r.add(ek + ".reply", line_of(element), "missing");
    if (r.has_problem(ek)) return;
    const int line = line_of(element);
    if (suspend && (duration || rate || connections)) {
      r.add(ek + ".suspend", line, "a rule either suspends the site or limits it for a duration, not both");
      return;
    }
    if (!suspend && !duration) {
      r.add(ek + ".duration", line, "missing: say for how long the rule holds (or suspend = \"2h\")");
      return;
    }
    if (duration && !rate && !connections) {
      r.add(ek, line, "limits nothing: give rate, connections, or both (or suspend)");
      return;
    }
    auto us = [](Duration d) { return static_cast<int64_t>(d.count()) * 1000; };
    if ((suspend && us(*suspend) <= 0) || (duration && us(*duration) <= 0)) {
      r.add(ek + (suspend ? ".suspend" : ".duration"), line, "must be longer than 0");
      return;
    }
    if (rate) rule.rate = *rate;
    if (connections) rule.connections = *connections;
    if (duration) rule.duration_us = us(*duration);
    if (suspend) rule.suspend_us = us(*suspend);
    out.push_back(std::move(rule));
  });
}

// The provider file: only [[shaping.site]] and [[shaping.rule]]. Its
// problems are reported under shaping.providers, naming the file's line.
void read_providers(Reader& r, Config& cfg, std::vector<SiteDraft>& sites) {
  const std::string& which = cfg.shaping.providers;
  if (which.empty()) return;
  std::string text;
  std::string name = "builtin shaping-providers.toml";
  const int line = r.line("shaping.providers");
  if (which == "builtin") {
    text = kBuiltinProviders;
  } else {
    std::ifstream f(which);
    if (!f) {
      r.add("shaping.providers", line, fmt::format("cannot read {}", which));
      return;
    }
    text.assign(std::istreambuf_iterator<char>(f), {});
    name = which;
  }
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    r.add("shaping.providers", line,
          fmt::format("{}:{}: TOML syntax error: {}", name, e.source().begin.line, e.description()));
    return;
  }
  Reader pr;
  const Field inner[] = {
      {"site", [&](const toml::node& v, const std::string& k) { read_sites(pr, v, k, name, sites); }},
      {"rule",
       [&](const toml::node& v, const std::string& k) {
         read_rules(pr, v, k, name, cfg.shaping.settings.rules);
       }},
  };
  const Field top[] = {
      {"shaping", [&](const toml::node& v, const std::string& k) { pr.walk(v, k, inner); }},
  };
  pr.walk(root, "", top);
  for (auto& p : pr.problems)
    r.add("shaping.providers", line, fmt::format("{}:{}: {}: {}", name, p.line, p.key, p.message));
}

}  // namespace

void read_shaping(Reader& r, const toml::node& n, const std::string& key, Config& cfg,
                  ShapingDraft& draft) {
  const std::string file = cfg.source.empty() ? std::string("sluice.toml") : cfg.source;
  const Field fields[] = {
      connections_field(r, "connections", draft.connections),
      per_connection_field(r, "messages_per_connection", draft.messages_per_connection),
      rate_field(r, "rate", draft.rate),
      bool_field(r, "adaptive", cfg.shaping.settings.defaults.adaptive),
      {"providers",
       [&](const toml::node& v, const std::string& k) {
         auto s = r.string(v, k);
         if (!s) return;
         if (!s->empty() && *s != "builtin" && s->front() != '/')
           r.add(k, line_of(v), fmt::format("\"{}\": \"builtin\", \"\" or an absolute path", *s));
         else
           cfg.shaping.providers = *s;
       }},
      {"site", [&](const toml::node& v, const std::string& k) { read_sites(r, v, k, file, draft.sites); }},
      {"rule",
       [&](const toml::node& v, const std::string& k) {
         read_rules(r, v, k, file, cfg.shaping.settings.rules);
       }},
  };
  r.walk(n, key, fields);
}

void read_cluster(Reader& r, const toml::node& n, const std::string& key, Config& cfg) {
  const Field f[] = {
      string_field(r, "redis", cfg.cluster.redis),
      path_field(r, "redis_password_file", cfg.cluster.redis_password_file, false),
  };
  r.walk(n, key, f);
}

void finish_shaping(Reader& r, Config& cfg, ShapingDraft& draft) {
  shaping::Settings& s = cfg.shaping.settings;
  s.defaults.connections = draft.connections.value_or(cfg.delivery.max_connections_per_destination);
  s.defaults.messages_per_connection = draft.messages_per_connection.value_or(100);
  s.defaults.rate = draft.rate.value_or(shaping::Rate{});
  s.defaults.source = "[shaping]";
  read_providers(r, cfg, draft.sites);
  s.sites.clear();
  for (auto& d : draft.sites) {
    shaping::Site site = std::move(d.site);
    site.connections = d.connections.value_or(s.defaults.connections);
    site.messages_per_connection = d.messages_per_connection.value_or(s.defaults.messages_per_connection);
    site.rate = d.rate.value_or(s.defaults.rate);
    site.adaptive = d.adaptive.value_or(s.defaults.adaptive);
    s.sites.push_back(std::move(site));
  }
  for (const auto& rule : s.rules) {
    if (rule.site == "*") continue;
    bool known = false;
    for (const auto& site : s.sites) known = known || site.name == rule.site;
    if (!known)
      r.add("shaping.rule", r.line("shaping.rule"),
            fmt::format("{}: site \"{}\" is not the name of any [[shaping.site]] (or \"*\")", rule.source,
                        rule.site));
  }
  const Cluster& c = cfg.cluster;
  if (!c.redis.empty()) {
    if (auto url = shaping::parse_redis_url(c.redis); !url)
      r.add("cluster.redis", r.line("cluster.redis"), url.error());
  } else if (!c.redis_password_file.empty()) {
    r.add("cluster.redis_password_file", r.line("cluster.redis_password_file"),
          "set without cluster.redis");
  }
}

}  // namespace sluice::conf
