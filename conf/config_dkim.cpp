// config_dkim.cpp — the [[dkim]] tables of the configuration (conf/config.hpp,
// conf::Dkim): read and checked here, called by parse() in config.cpp. The
// key files themselves are the daemon's (mta/signing.cpp).
#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>

#include "conf/config.hpp"
#include "conf/config_reader.hpp"
#include "mta/proto/ascii.hpp"

namespace sluice::conf {

using namespace reader;

// [[dkim]]: each table needs domain, selector and private_key; a domain and
// selector pair names one DNS record, so it may appear once. The key file is
// read by the daemon (mta/signing.cpp), which names the table when it fails.
void read_dkim(Reader& r, const toml::node& n, const std::string& key, Config& cfg) {
  if (n.is_table()) {
    r.add(key, line_of(n), "write each signature as [[dkim]] (an array of tables), not [dkim]");
    return;
  }
  size_t index = 0;
  r.array(n, key, [&](const toml::node& element, const std::string& element_key) {
    ++index;
    if (!element.is_table()) {
      r.wrong_type(element, element_key, "a table with domain, selector and private_key");
      return;
    }
    Dkim d;
    d.line = line_of(element);
    d.index = index;
    bool ok = true;
    auto name_field = [&](std::string_view name, std::string& dest) {
      return Field{name, [&, name](const toml::node& v, const std::string& k) {
                     auto s = r.string(v, k);
                     if (!s) return;
                     std::string value = *s;
                     for (char& c : value) c = ascii::to_lower(c);
                     if (name == "domain" && !value.empty() && value.back() == '.') value.pop_back();
                     if (auto err = check_domain_name(value)) {
                       r.add(k, line_of(v), *err);
                       return;
                     }
                     dest = std::move(value);
                   }};
    };
    const Field fields[] = {
        name_field("domain", d.domain),
        name_field("selector", d.selector),
        path_field(r, "private_key", d.private_key, false),
        {"headers",
         [&](const toml::node& v, const std::string& k) {
           if (!v.is_array()) {
             r.wrong_type(v, k, "an array of header field names");
             return;
           }
           r.array(v, k, [&](const toml::node& e, const std::string& ek) {
             auto s = r.string(e, ek);
             if (!s) return;
             // RFC 5322 field names: printable US-ASCII except the colon.
             bool good = !s->empty() && std::all_of(s->begin(), s->end(), [](char c) {
               return c > ' ' && c < 0x7f && c != ':';
             });
             if (!good) {
               r.add(ek, line_of(e), fmt::format("\"{}\" is not a header field name", *s));
               return;
             }
             d.headers.push_back(*s);
           });
           bool from = std::any_of(d.headers.begin(), d.headers.end(),
                                   [](const std::string& h) { return ascii::iequals(h, "From"); });
           if (!from && !r.has_problem(k))
             r.add(k, line_of(v), "must include From (RFC 6376 §5.4 requires it signed)");
         }},
    };
    r.walk(element, element_key, fields);
    for (auto [name, value] : {std::pair<const char*, std::string*>{"domain", &d.domain},
                               {"selector", &d.selector},
                               {"private_key", &d.private_key}}) {
      if (!value->empty()) continue;
      if (!r.has_problem(element_key + "." + name))
        r.add(element_key + "." + name, d.line, "missing");
      ok = false;
    }
    if (!ok || r.has_problem(element_key)) return;
    for (const Dkim& other : cfg.dkim) {
      if (other.domain == d.domain && other.selector == d.selector) {
        r.add(element_key + ".selector", d.line,
              fmt::format("{}._domainkey.{} is already used by {}", d.selector, d.domain, other.describe()));
        return;
      }
    }
    cfg.dkim.push_back(std::move(d));
  });
}

bool Dkim::covers(std::string_view d) const {
  return d == domain ||
         (d.size() > domain.size() && d.ends_with(domain) && d[d.size() - domain.size() - 1] == '.');
}

std::string Dkim::describe() const {
  return fmt::format("[[dkim]] {} ({}, selector {})", index, domain, selector);
}

}  // namespace sluice::conf
