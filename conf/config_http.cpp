// config_http.cpp — the [http], [log] and [[webhook]] tables of the
// configuration (conf/config.hpp: Http, Log, Webhook): read and checked
// here, called by parse() in config.cpp (docs/configuration.md,
// docs/http-api.md, docs/observability.md).
#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>

#include "conf/config.hpp"
#include "conf/config_reader.hpp"
#include "http/url.hpp"

namespace sluice::conf {

using namespace reader;

namespace {

constexpr std::string_view kWebhookEvents[] = {"delivered", "deferred", "bounced", "expired", "accepted"};

bool loopback(const net::IpAddress& ip) {
  if (ip.family == net::IpAddress::Family::v4) return ip.bytes[0] == 127;
  for (size_t i = 0; i < 15; ++i)
    if (ip.bytes[i] != 0) return false;
  return ip.bytes[15] == 1;
}

}  // namespace

void read_http(Reader& r, const toml::node& n, const std::string& key, Http& h) {
  const Field f[] = {
      {"address",
       [&](const toml::node& v, const std::string& k) {
         auto s = r.string(v, k);
         if (!s || s->empty()) return;
         auto ep = net::Endpoint::parse(*s);
         if (!ep) {
           r.add(k, line_of(v), ep.error());
           return;
         }
         h.address = *s;
         h.endpoint = *ep;
       }},
      path_field(r, "api_keys_file", h.api_keys_file, false),
      path_field(r, "certificate", h.certificate, false),
      path_field(r, "private_key", h.private_key, false),
  };
  r.walk(n, key, f);
}

void read_log(Reader& r, const toml::node& n, const std::string& key, Log& l) {
  static constexpr std::pair<std::string_view, LogFormat> kFormats[] = {{"text", LogFormat::text},
                                                                        {"json", LogFormat::json}};
  const Field f[] = {
      {"format",
       [&](const toml::node& v, const std::string& k) {
         if (auto fm = r.choice<LogFormat>(v, k, kFormats)) l.format = *fm;
       }},
  };
  r.walk(n, key, f);
}

void read_webhooks(Reader& r, const toml::node& n, const std::string& key, Config& cfg) {
  if (n.is_table()) {
    r.add(key, line_of(n), "write each webhook as [[webhook]] (an array of tables), not [webhook]");
    return;
  }
  size_t index = 0;
  r.array(n, key, [&](const toml::node& element, const std::string& element_key) {
    ++index;
    if (!element.is_table()) {
      r.wrong_type(element, element_key, "a table with url, events and secret_file");
      return;
    }
    Webhook w;
    w.line = line_of(element);
    w.index = index;
    bool have_events = false;
    const Field fields[] = {
        {"url",
         [&](const toml::node& v, const std::string& k) {
           auto s = r.string(v, k);
           if (!s) return;
           auto u = http::parse_url(*s);
           if (!u) {
             r.add(k, line_of(v), fmt::format("\"{}\": {}", *s, u.error()));
             return;
           }
           // Plain HTTP only where nobody can listen in: a loopback address.
           auto ip = net::IpAddress::parse(u->host);
           if (!u->tls && !(ip && loopback(*ip))) {
             r.add(k, line_of(v), fmt::format("\"{}\": must be https:// (http:// only to a loopback address)", *s));
             return;
           }
           w.url = *s;
         }},
        {"events",
         [&](const toml::node& v, const std::string& k) {
           have_events = true;
           if (!v.is_array()) {
             r.wrong_type(v, k, "an array of event names");
             return;
           }
           r.array(v, k, [&](const toml::node& e, const std::string& ek) {
             auto s = r.string(e, ek);
             if (!s) return;
             if (std::find(std::begin(kWebhookEvents), std::end(kWebhookEvents), *s) == std::end(kWebhookEvents)) {
               r.add(ek, line_of(e),
                     fmt::format("\"{}\" is not one of delivered, deferred, bounced, expired, accepted", *s));
               return;
             }
             if (std::find(w.events.begin(), w.events.end(), *s) == w.events.end()) w.events.push_back(*s);
           });
           if (w.events.empty() && !r.has_problem(k)) r.add(k, line_of(v), "names no event");
         }},
        path_field(r, "secret_file", w.secret_file, false),
    };
    r.walk(element, element_key, fields);
    if (w.url.empty()) {
      if (!r.has_problem(element_key)) r.add(element_key + ".url", w.line, "required");
      return;
    }
    if (!have_events) w.events = {"delivered", "deferred", "bounced", "expired"};
    cfg.webhooks.push_back(std::move(w));
  });
}

// [http]: a listener that is not on loopback carries API keys and message
// content across a network: TLS is required there (SPEC). Certificate and
// private key come as a pair.
void check_http(Reader& r, Config& cfg) {
  Http& h = cfg.http;
  if (h.certificate.empty() != h.private_key.empty())
    r.add(h.certificate.empty() ? "http.certificate" : "http.private_key",
          r.line(h.certificate.empty() ? "http.private_key" : "http.certificate"),
          "http.certificate and http.private_key go together");
  if (h.endpoint && h.certificate.empty() && !loopback(h.endpoint->ip))
    r.add("http.address", r.line("http.address"),
          fmt::format("\"{}\" is not a loopback address: set http.certificate and http.private_key "
                      "(the API carries keys and mail), or listen on 127.0.0.1",
                      h.address));
  // One queue per url under <spool_dir>/webhooks (named from the url): the
  // same url twice would be two tables sharing one queue.
  for (size_t i = 0; i < cfg.webhooks.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (cfg.webhooks[i].url == cfg.webhooks[j].url)
        r.add(fmt::format("webhook[{}].url", cfg.webhooks[i].index), cfg.webhooks[i].line,
              fmt::format("\"{}\" is also the url of webhook[{}]; one table per url", cfg.webhooks[i].url,
                          cfg.webhooks[j].index));
  for (const auto& l : cfg.listeners)
    if (h.endpoint && l.endpoint == *h.endpoint)
      r.add("http.address", r.line("http.address"),
            fmt::format("\"{}\" is also the address of a [[listener]]", h.address));
}

}  // namespace sluice::conf
