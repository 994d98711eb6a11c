// config.cpp — reads sluice.toml into a Config (see config.hpp and
// docs/configuration.md for every key).
//
// toml++ does the TOML syntax; this file walks the resulting tree once,
// table by table. Each table has a list of known keys with a reader per key;
// any other key is reported as unknown. Readers check the type and the value
// and store it, or add a Problem naming the full key and its line (the walk
// and the value converters are config_reader.*; the tables, their keys and
// the values' meaning are here). Checks that involve several keys
// (listeners, tls pair, relayhost credentials) run after the walk. Every
// problem is collected; nothing stops at the first.
//
// Pure apart from reading the file and, when hostname is not set, asking the
// system for its name (gethostname, getaddrinfo). Safe from any thread.
#include "conf/config.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <pwd.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <span>

#include "conf/config_reader.hpp"

namespace sluice::conf {

std::string_view to_string(ListenerMode m) {
  switch (m) {
    case ListenerMode::submission:
      return "submission";
    case ListenerMode::submissions:
      return "submissions";
    case ListenerMode::relay:
      return "relay";
  }
  return "?";
}

std::string_view to_string(DeliveryTls t) {
  switch (t) {
    case DeliveryTls::none:
      return "none";
    case DeliveryTls::opportunistic:
      return "opportunistic";
    case DeliveryTls::required:
      return "required";
    case DeliveryTls::verify:
      return "verify";
  }
  return "?";
}

std::string Problem::str(std::string_view source) const {
  std::string out;
  if (!source.empty()) {
    out += source;
    if (line > 0) out += fmt::format(":{}", line);
    out += ": ";
  } else if (line > 0) {
    out += fmt::format("line {}: ", line);
  }
  if (!key.empty()) {
    out += key;
    out += ": ";
  }
  out += message;
  return out;
}

// ---- durations and sizes ---------------------------------------------------

namespace {

// Splits "35M" into 35 and "M". Fails on a missing number, a sign or overflow.
std::expected<std::pair<uint64_t, std::string_view>, std::string> split_number(
    std::string_view text, std::string_view what) {
  if (text.empty()) return std::unexpected(fmt::format("empty {}", what));
  if (text.front() == '-')
    return std::unexpected(fmt::format("\"{}\": a {} cannot be negative", text, what));
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0)
    return std::unexpected(fmt::format("\"{}\": a {} starts with a number", text, what));
  uint64_t value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + digits, value);
  if (ec != std::errc{} || p != text.data() + digits)
    return std::unexpected(fmt::format("\"{}\": number too large", text));
  return std::pair{value, text.substr(digits)};
}

// The longest duration accepted: 100 years, so that callers can add any
// configured duration to a clock reading without overflow.
constexpr int64_t kMaxDurationMs = int64_t{36500} * 24 * 3600 * 1000;

}  // namespace

std::expected<Duration, std::string> parse_duration(std::string_view text) {
  auto split = split_number(text, "duration");
  if (!split) return std::unexpected(split.error());
  auto [value, unit] = *split;

  static constexpr std::pair<std::string_view, int64_t> kUnits[] = {
      {"", 1000},          {"ms", 1},           {"s", 1000},
      {"m", 60 * 1000},    {"h", 3600 * 1000},  {"d", 24 * 3600 * 1000},
      {"w", 7 * 24 * 3600 * 1000},
  };
  auto found = std::find_if(std::begin(kUnits), std::end(kUnits),
                            [&](const auto& u) { return u.first == unit; });
  if (found == std::end(kUnits))
    return std::unexpected(
        fmt::format("\"{}\": unknown unit \"{}\" (use ms, s, m, h, d or w)", text, unit));
  int64_t ms_per_unit = found->second;

  if (value > static_cast<uint64_t>(kMaxDurationMs / ms_per_unit))
    return std::unexpected(fmt::format("\"{}\": too long (at most 100 years)", text));
  return Duration(static_cast<int64_t>(value) * ms_per_unit);
}

std::expected<uint64_t, std::string> parse_size(std::string_view text) {
  auto split = split_number(text, "size");
  if (!split) return std::unexpected(split.error());
  auto [value, unit] = *split;

  // Case does not matter, and a trailing B is optional: "35M" = "35mb".
  std::string u(unit);
  for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (u.size() == 2 && u[1] == 'B' && u[0] != 'B') u.pop_back();
  static constexpr std::pair<std::string_view, uint64_t> kUnits[] = {
      {"", 1}, {"B", 1}, {"K", 1ull << 10}, {"M", 1ull << 20}, {"G", 1ull << 30},
  };
  auto found = std::find_if(std::begin(kUnits), std::end(kUnits),
                            [&](const auto& m) { return m.first == u; });
  if (found == std::end(kUnits))
    return std::unexpected(fmt::format(
        "\"{}\": unknown unit \"{}\" (use K, M or G, or no unit for bytes)", text, unit));
  uint64_t multiplier = found->second;

  if (value > std::numeric_limits<uint64_t>::max() / multiplier)
    return std::unexpected(fmt::format("\"{}\": too large", text));
  return value * multiplier;
}

std::string config_path(std::string_view flag_value) {
  if (!flag_value.empty()) return std::string(flag_value);
  const char* env = std::getenv("SLUICE_CONFIG");
  if (env != nullptr && *env != '\0') return env;
  return "/etc/sluice/sluice.toml";
}

// ---- host names --------------------------------------------------------------

namespace {

// Why `name` is not a valid domain name, or nullopt when it is one.
std::optional<std::string> domain_name_error(std::string_view name) {
  if (name.empty()) return "empty";
  if (name.size() > 253)
    return fmt::format("\"{}...\" is {} characters long; at most 253 are allowed",
                       name.substr(0, 20), name.size());
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    std::string_view label = name.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty())
      return fmt::format("\"{}\": empty label (leading, trailing or doubled dot)", name);
    if (label.size() > 63)
      return fmt::format("\"{}\": label \"{}\" is longer than 63 characters", name, label);
    for (char c : label) {
      bool ok =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      if (!ok)
        return fmt::format(
            "\"{}\": character '{}' is not allowed (letters, digits, hyphens, dots)", name,
            c >= 0x20 && c < 0x7f ? std::string(1, c)
                                  : fmt::format("\\x{:02x}", static_cast<unsigned char>(c)));
    }
    if (label.front() == '-' || label.back() == '-')
      return fmt::format("\"{}\": label \"{}\" starts or ends with a hyphen", name, label);
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> check_domain_name(std::string_view name) { return domain_name_error(name); }

std::string machine_hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  std::string name = buf;

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_CANONNAME;
  addrinfo* res = nullptr;
  if (getaddrinfo(name.c_str(), nullptr, &hints, &res) == 0 && res != nullptr) {
    const char* canon = res->ai_canonname;
    if (canon != nullptr && std::strchr(canon, '.') != nullptr && !domain_name_error(canon))
      name = canon;
    freeaddrinfo(res);
  }
  return name;
}

// ---- the tables and their keys -------------------------------------------------

namespace {

using namespace reader;

// "[name]:port", "name:port", "[addr]:port", "name" (port 25).
std::expected<std::pair<std::string, uint16_t>, std::string> parse_relayhost(
    std::string_view text) {
  auto parts = net::split_host_port(text, ", e.g. \"[2001:db8::1]:587\"");
  if (!parts) return std::unexpected(parts.error());
  const std::string_view host = parts->host;
  const bool bracketed = parts->bracketed;
  if (parts->port && parts->port->empty())
    return std::unexpected(fmt::format("\"{}\": empty port", text));
  bool is_ip = net::IpAddress::parse(host).has_value();
  if (!is_ip) {
    if (bracketed && host.find(':') != std::string_view::npos)
      return std::unexpected(fmt::format("\"{}\": \"{}\" is not an IPv6 address", text, host));
    if (auto err = domain_name_error(host))
      return std::unexpected(fmt::format("\"{}\": not a host name or address: {}", text, *err));
  }

  uint16_t port_number = 25;
  if (parts->port) {
    auto p = net::parse_port(*parts->port);
    if (!p) return std::unexpected(fmt::format("\"{}\": {}", text, p.error()));
    port_number = *p;
  }
  return std::pair{std::string(host), port_number};
}

constexpr std::pair<std::string_view, ListenerMode> kModes[] = {
    {"submission", ListenerMode::submission},
    {"submissions", ListenerMode::submissions},
    {"relay", ListenerMode::relay},
};

constexpr std::pair<std::string_view, DeliveryTls> kDeliveryTls[] = {
    {"none", DeliveryTls::none},
    {"opportunistic", DeliveryTls::opportunistic},
    {"required", DeliveryTls::required},
    {"verify", DeliveryTls::verify},
};

// [[listener]]: each element needs a valid address and mode; addresses must
// differ. Only complete listeners reach cfg.listeners.
void read_listeners(Reader& r, const toml::node& n, const std::string& key, Config& cfg) {
  if (n.is_table()) {
    r.add(key, line_of(n),
          "write each listener as [[listener]] (an array of tables), not [listener]");
    return;
  }
  std::vector<size_t> written_index;  // position in the file of each cfg.listeners entry
  size_t index = 0;
  r.array(n, key, [&](const toml::node& element, const std::string& element_key) {
    ++index;
    if (!element.is_table()) {
      r.wrong_type(element, element_key, "a table with address and mode");
      return;
    }
    Listener listener;
    bool address_ok = false;
    bool mode_ok = false;
    bool have_address = false;
    bool have_mode = false;
    int address_line = line_of(element);
    const Field fields[] = {
        {"address",
         [&](const toml::node& v, const std::string& k) {
           have_address = true;
           address_line = line_of(v);
           auto s = r.string(v, k);
           if (!s) return;
           auto ep = net::Endpoint::parse(*s);
           if (!ep) {
             r.add(k, line_of(v), ep.error());
             return;
           }
           listener.address = *s;
           listener.endpoint = *ep;
           address_ok = true;
         }},
        {"mode",
         [&](const toml::node& v, const std::string& k) {
           have_mode = true;
           if (auto m = r.choice<ListenerMode>(v, k, kModes)) {
             listener.mode = *m;
             mode_ok = true;
           }
         }},
    };
    r.walk(element, element_key, fields);
    if (!have_address)
      r.add(element_key + ".address", line_of(element), "missing (e.g. address = \"0.0.0.0:587\")");
    if (!have_mode)
      r.add(element_key + ".mode", line_of(element), "missing (submission, submissions or relay)");
    if (!address_ok) return;

    for (size_t i = 0; i < cfg.listeners.size(); ++i) {
      const net::Endpoint& other = cfg.listeners[i].endpoint;
      if (other.ip == listener.endpoint.ip && other.port == listener.endpoint.port) {
        r.add(element_key + ".address", address_line,
              fmt::format("\"{}\" is already used by {}[{}]", listener.address, key,
                          written_index[i]));
        return;
      }
    }
    if (!mode_ok) return;
    cfg.listeners.push_back(std::move(listener));
    written_index.push_back(index);
  });
}

void read_relay(Reader& r, const toml::node& n, const std::string& key, Relay& relay) {
  const Field fields[] = {
      {"trusted_networks",
       [&](const toml::node& v, const std::string& k) {
         relay.trusted_networks.clear();
         r.array(v, k, [&](const toml::node& element, const std::string& element_key) {
           auto s = r.string(element, element_key);
           if (!s) return;
           auto cidr = net::Cidr::parse(*s);
           if (!cidr) {
             r.add(element_key, line_of(element), cidr.error());
             return;
           }
           relay.trusted_networks.push_back(*cidr);
         });
       }},
      bool_field(r, "add_missing_headers", relay.add_missing_headers),
  };
  r.walk(n, key, fields);
}

void read_limits(Reader& r, const toml::node& n, const std::string& key, Limits& limits) {
  const Field fields[] = {
      {"max_message_size",
       [&](const toml::node& v, const std::string& k) {
         if (auto s = r.size(v, k)) limits.max_message_size = *s;
       }},
      count_field(r, "max_recipients", limits.max_recipients),
      count_field(r, "max_connections", limits.max_connections),
      count_field(r, "max_connections_per_client", limits.max_connections_per_client),
      count_field(r, "max_hops", limits.max_hops),
      duration_field(r, "command_timeout", limits.command_timeout),
      duration_field(r, "data_timeout", limits.data_timeout),
      duration_field(r, "auth_failure_delay", limits.auth_failure_delay),
      {"min_free_space",
       [&](const toml::node& v, const std::string& k) {
         if (auto s = r.size(v, k, /*zero_allowed=*/true)) limits.min_free_space = *s;  // 0: no reserve
       }},
      rate_field(r, "messages_per_login", limits.messages_per_login),
      rate_field(r, "auth_failures_per_client", limits.auth_failures_per_client),
  };
  r.walk(n, key, fields);
}

void read_delivery(Reader& r, const toml::node& n, const std::string& key, Delivery& d) {
  const Field fields[] = {
      count_field(r, "max_connections", d.max_connections),
      count_field(r, "max_connections_per_destination", d.max_connections_per_destination),
      {"port",
       [&](const toml::node& v, const std::string& k) {
         if (auto p = r.integer(v, k, 1, 65535)) d.port = static_cast<uint16_t>(*p);
       }},
      {"retry_schedule",
       [&](const toml::node& v, const std::string& k) {
         std::vector<Duration> schedule;
         bool ok = true;
         r.array(v, k, [&](const toml::node& element, const std::string& element_key) {
           auto dur = r.duration(element, element_key);
           if (dur)
             schedule.push_back(*dur);
           else
             ok = false;
         });
         if (!v.is_array() || !ok) return;
         if (schedule.empty()) {
           r.add(k, line_of(v), "must list at least one duration");
           return;
         }
         d.retry_schedule = std::move(schedule);
       }},
      duration_field(r, "max_queue_lifetime", d.max_queue_lifetime),
      {"tls",
       [&](const toml::node& v, const std::string& k) {
         if (auto t = r.choice<DeliveryTls>(v, k, kDeliveryTls)) d.tls = *t;
       }},
      {"relayhost",
       [&](const toml::node& v, const std::string& k) {
         auto s = r.string(v, k);
         if (!s) return;
         if (s->empty()) {
           d.relayhost.clear();
           return;
         }
         auto parsed = parse_relayhost(*s);
         if (!parsed) {
           r.add(k, line_of(v), parsed.error());
           return;
         }
         d.relayhost = *s;
         d.relayhost_name = parsed->first;
         d.relayhost_port = parsed->second;
       }},
      string_field(r, "relayhost_username", d.relayhost_username),
      path_field(r, "relayhost_password_file", d.relayhost_password_file, false),
      {"relayhost_tls",
       [&](const toml::node& v, const std::string& k) {
         if (auto t = r.choice<DeliveryTls>(v, k, kDeliveryTls)) d.relayhost_tls = *t;
       }},
      {"relayhost_tls_name",
       [&](const toml::node& v, const std::string& k) {
         auto s = r.string(v, k);
         if (!s) return;
         if (s->empty()) {
           d.relayhost_tls_name.clear();
           return;
         }
         if (auto err = domain_name_error(*s))
           r.add(k, line_of(v), fmt::format("\"{}\": not a host name: {}", *s, *err));
         else
           d.relayhost_tls_name = *s;
       }},
      path_field(r, "ca_file", d.ca_file, false),
      bool_field(r, "mta_sts", d.mta_sts),
      bool_field(r, "dane", d.dane),
  };
  r.walk(n, key, fields);
}

void read_dns(Reader& r, const toml::node& n, const std::string& key, Dns& dns) {
  const Field fields[] = {
      {"servers",
       [&](const toml::node& v, const std::string& k) {
         r.array(v, k, [&](const toml::node& element, const std::string& element_key) {
           auto s = r.string(element, element_key);
           if (!s) return;
           auto ep = net::Endpoint::parse(*s, 53);
           if (!ep) {
             r.add(element_key, line_of(element), ep.error());
             return;
           }
           dns.servers.push_back(*ep);
         });
       }},
  };
  r.walk(n, key, fields);
}

// [aliases]: every key is a local name (or "*"), its value an address or an
// array of addresses. The targets are checked in check_aliases(), once
// hostname is known; `lines` keeps where each target was written.
struct AliasLines {
  struct Target {
    std::string key;  // "aliases.NAME[i]"
    int line;
    std::string address;
  };
  std::vector<Target> targets;
};

void read_aliases(Reader& r, const toml::node& n, const std::string& key, Config& cfg,
                  AliasLines& lines) {
  const toml::table* table = n.as_table();
  if (table == nullptr) {
    r.wrong_type(n, key, "a table");
    return;
  }
  std::map<std::string, std::string> written;  // lower-case name -> key as written
  for (auto&& [k, value] : *table) {
    const std::string name(k.str());
    const std::string entry_key = fmt::format("{}.{}", key, name);
    if (auto why = aliases::check_name(name)) {
      r.add(entry_key, line_of(value), *why);
      continue;
    }
    const std::string lower = aliases::lower(name);
    if (auto [it, fresh] = written.emplace(lower, entry_key); !fresh) {
      const auto& [a, b] = std::minmax(entry_key, it->second);
      r.add(entry_key, line_of(value),
            fmt::format("{} and {} are the same name (names ignore case)", a, b));
      continue;
    }
    std::vector<std::string> targets;
    auto add_target = [&](const toml::node& v, const std::string& target_key) {
      auto s = r.string(v, target_key);
      if (!s) return;
      if (std::find(targets.begin(), targets.end(), *s) != targets.end()) {
        r.add(target_key, line_of(v), fmt::format("\"{}\" is listed twice", *s));
        return;
      }
      targets.push_back(*s);
      lines.targets.push_back({target_key, line_of(v), *s});
    };
    if (value.is_string()) {
      add_target(value, entry_key + "[1]");
    } else if (value.is_array()) {
      if (value.as_array()->empty()) {
        r.add(entry_key, line_of(value), "needs at least one address");
        continue;
      }
      if (value.as_array()->size() > aliases::kMaxTargets) {
        r.add(entry_key, line_of(value),
              fmt::format("at most {} addresses per name", aliases::kMaxTargets));
        continue;
      }
      r.array(value, entry_key, add_target);
    } else {
      r.wrong_type(value, entry_key, "an address or an array of addresses");
      continue;
    }
    cfg.aliases[lower] = std::move(targets);
  }
}

// Alias targets must be complete addresses that are not local themselves.
void check_aliases(Reader& r, const Config& cfg, const AliasLines& lines) {
  for (const auto& t : lines.targets)
    if (auto why = aliases::check_target(t.address, cfg.hostname)) r.add(t.key, t.line, *why);
}

// Checks that involve several keys, run once every key has been read.
void check(Reader& r, Config& cfg, bool hostname_set) {
  if (!hostname_set && !r.seen.contains("hostname")) {
    cfg.hostname = machine_hostname();
    if (auto err = domain_name_error(cfg.hostname))
      r.add("hostname", 0,
            fmt::format("not set, and this machine's name is not usable: {}; set hostname", *err));
  } else if (auto err = hostname_set ? domain_name_error(cfg.hostname) : std::nullopt) {
    r.add("hostname", r.line("hostname"), fmt::format("not a valid domain name: {}", *err));
  }

  if (cfg.listeners.empty() && !r.has_problem("listener"))
    r.add("listener", 0, "at least one [[listener]] with address and mode is required");

  const Tls& tls = cfg.tls;
  if (!tls.certificate.empty() && tls.private_key.empty())
    r.add("tls.private_key", r.line("tls.private_key", r.line("tls.certificate")),
          "required when tls.certificate is set");
  if (tls.certificate.empty() && !tls.private_key.empty())
    r.add("tls.certificate", r.line("tls.certificate", r.line("tls.private_key")),
          "required when tls.private_key is set");
  // Implicit TLS cannot work without a certificate (587 can still answer
  // in plaintext and refuse AUTH, so it is only a warning at start-up).
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    if (cfg.listeners[i].mode != ListenerMode::submissions || !tls.certificate.empty()) continue;
    std::string key = fmt::format("listener[{}].mode", i + 1);
    r.add(key, r.line(key), "\"submissions\" (implicit TLS) needs [tls] certificate and private_key");
  }

  check_tls_reports(r, cfg);

  const Delivery& d = cfg.delivery;
  bool has_user = !d.relayhost_username.empty();
  bool has_password = !d.relayhost_password_file.empty();
  if (has_user && !has_password)
    r.add("delivery.relayhost_password_file",
          r.line("delivery.relayhost_password_file", r.line("delivery.relayhost_username")),
          "required when delivery.relayhost_username is set");
  if (!has_user && has_password)
    r.add("delivery.relayhost_username",
          r.line("delivery.relayhost_username", r.line("delivery.relayhost_password_file")),
          "required when delivery.relayhost_password_file is set");
  if ((has_user || has_password) && d.relayhost.empty() && !r.has_problem("delivery.relayhost"))
    r.add("delivery.relayhost",
          r.line("delivery.relayhost",
                 r.line("delivery.relayhost_username", r.line("delivery.relayhost_password_file"))),
          "is empty, but relayhost credentials are set (they are only used with a relayhost)");
  // TLS towards the relayhost: written out, or "verify" with credentials
  // (a password goes only to a relayhost whose certificate verifies), else
  // what delivery.tls says for every other server.
  Delivery& dm = cfg.delivery;
  const bool tls_written = r.seen.contains("delivery.relayhost_tls");
  if (!tls_written) dm.relayhost_tls = (has_user || has_password) ? DeliveryTls::verify : d.tls;
  if ((has_user || has_password) && tls_written &&
      (d.relayhost_tls == DeliveryTls::none || d.relayhost_tls == DeliveryTls::opportunistic))
    r.add("delivery.relayhost_tls", r.line("delivery.relayhost_tls"),
          fmt::format("\"{}\" cannot be used with relayhost credentials: the password goes only "
                      "to a relayhost whose certificate verifies against delivery.ca_file; leave "
                      "the key out (\"verify\") or write \"required\" to skip verification",
                      to_string(d.relayhost_tls)));
  if (!d.relayhost_tls_name.empty() && d.relayhost.empty() && !r.has_problem("delivery.relayhost"))
    r.add("delivery.relayhost_tls_name", r.line("delivery.relayhost_tls_name"),
          "is set, but delivery.relayhost is empty");
  // With a relayhost every message goes to it: only relayhost_tls verifies.
  const bool verifies = d.relayhost.empty() ? d.tls == DeliveryTls::verify
                                            : d.relayhost_tls == DeliveryTls::verify;
  if (verifies && !r.has_problem("delivery.ca_file") && ::access(d.ca_file.c_str(), R_OK) != 0)
    r.add("delivery.ca_file", r.line("delivery.ca_file"),
          fmt::format("\"{}\": {}; certificates are verified against it{}", d.ca_file,
                      std::strerror(errno),
                      (has_user || has_password) && !tls_written
                          ? " (relayhost credentials make delivery.relayhost_tls \"verify\")"
                          : ""));

  Limits& l = cfg.limits;
  if (!r.seen.contains("limits.min_free_space")) l.min_free_space = l.max_message_size / 2 * 3;
}

}  // namespace

Result parse(std::string_view toml_text, std::string_view source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    return std::unexpected(
        std::vector<Problem>{Problem{"", static_cast<int>(e.source().begin.line),
                                     fmt::format("TOML syntax error: {}", e.description())}});
  }

  Config cfg;
  cfg.source = std::string(source_name);
  cfg.relay.trusted_networks = {*net::Cidr::parse("127.0.0.0/8"), *net::Cidr::parse("::1/128")};
  using std::chrono::hours;
  using std::chrono::minutes;
  cfg.delivery.retry_schedule = {minutes(5), minutes(10), minutes(30),
                                 hours(1),   hours(2),    hours(4)};

  Reader r;
  bool hostname_set = false;
  AliasLines alias_lines;
  ShapingDraft shaping;
  auto section = [&r](auto read, auto& dest) {
    return
        [&r, read, &dest](const toml::node& n, const std::string& key) { read(r, n, key, dest); };
  };
  const Field fields[] = {
      {"hostname",
       [&](const toml::node& n, const std::string& key) {
         if (auto s = r.string(n, key)) {
           cfg.hostname = *s;
           hostname_set = true;
         }
       }},
      path_field(r, "spool_dir", cfg.spool_dir, true),
      {"control_socket",
       [&](const toml::node& n, const std::string& key) {
         auto s = r.string(n, key);
         if (!s) return;
         // sockaddr_un.sun_path holds 108 bytes including the final NUL.
         if (s->size() > 107)
           r.add(key, line_of(n),
                 fmt::format("too long for a Unix socket path ({} bytes, at most 107)", s->size()));
         else if (s->empty() || s->front() != '/')
           r.add(key, line_of(n), fmt::format("\"{}\": must be an absolute path", *s));
         else
           cfg.control_socket = *s;
       }},
      {"user",
       [&](const toml::node& n, const std::string& key) {
         auto s = r.string(n, key);
         if (!s) return;
         if (s->empty()) {
           r.add(key, line_of(n), "must not be empty");
         } else {
           cfg.user = *s;
           cfg.user_line = line_of(n);
         }
       }},
      {"listener",
       [&](const toml::node& n, const std::string& key) { read_listeners(r, n, key, cfg); }},
      {"tls",
       [&](const toml::node& n, const std::string& key) {
         const Field tls[] = {
             path_field(r, "certificate", cfg.tls.certificate, false),
             path_field(r, "private_key", cfg.tls.private_key, false),
         };
         r.walk(n, key, tls);
       }},
      {"auth",
       [&](const toml::node& n, const std::string& key) {
         const Field auth[] = {path_field(r, "users_file", cfg.auth.users_file, false)};
         r.walk(n, key, auth);
       }},
      {"relay", section(read_relay, cfg.relay)},
      {"limits", section(read_limits, cfg.limits)},
      {"delivery", section(read_delivery, cfg.delivery)},
      {"dns", section(read_dns, cfg.dns)},
      {"tls_reports",
       [&](const toml::node& n, const std::string& key) { read_tls_reports(r, n, key, cfg.tls_reports); }},
      {"dkim", [&](const toml::node& n, const std::string& key) { read_dkim(r, n, key, cfg); }},
      {"shaping",
       [&](const toml::node& n, const std::string& key) { read_shaping(r, n, key, cfg, shaping); }},
      {"cluster", [&](const toml::node& n, const std::string& key) { read_cluster(r, n, key, cfg); }},
      {"http", [&](const toml::node& n, const std::string& key) { read_http(r, n, key, cfg.http); }},
      {"log", [&](const toml::node& n, const std::string& key) { read_log(r, n, key, cfg.log); }},
      {"webhook", [&](const toml::node& n, const std::string& key) { read_webhooks(r, n, key, cfg); }},
      {"aliases",
       [&](const toml::node& n, const std::string& key) {
         read_aliases(r, n, key, cfg, alias_lines);
       }},
  };
  r.walk(root, "", fields);
  check(r, cfg, hostname_set);
  finish_shaping(r, cfg, shaping);
  check_http(r, cfg);
  check_aliases(r, cfg, alias_lines);
  for (auto& p : r.problems)
    if (p.message == "unknown key")
      if (auto where = table_hint(p.key)) p.message += "; " + *where;

  if (r.problems.empty()) return cfg;
  // Report in file order; problems without a line come last.
  auto order = [](const Problem& p) {
    return p.line > 0 ? p.line : std::numeric_limits<int>::max();
  };
  std::stable_sort(r.problems.begin(), r.problems.end(),
                   [&](const Problem& a, const Problem& b) { return order(a) < order(b); });
  return std::unexpected(std::move(r.problems));
}

std::expected<Account, Problem> lookup_user(const Config& cfg) {
  std::vector<char> buf(16384);
  struct passwd pw, *found = nullptr;
  int err = 0;
  while ((err = ::getpwnam_r(cfg.user.c_str(), &pw, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (1u << 20))
    buf.resize(buf.size() * 2);
  if (err == 0 && found) return Account{pw.pw_uid, pw.pw_gid, cfg.user};
  std::string why = err != 0 ? std::strerror(err) : "no such account";
  return std::unexpected(Problem{
      "user", cfg.user_line,
      fmt::format("\"{}\": {}; create it (packaging/postinst does: useradd --system sluice), "
                  "or write user = \"root\" to run as root on purpose",
                  cfg.user, why)});
}

Result load_file(const std::string& path) {
  auto fail = [](std::string message) {
    return std::unexpected(std::vector<Problem>{Problem{"", 0, std::move(message)}});
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(fmt::format("cannot open: {}", std::strerror(errno)));
  std::string text;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return fail(fmt::format("cannot read: {}", std::strerror(err)));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return parse(text, path);
}

}  // namespace sluice::conf
