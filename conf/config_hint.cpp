// config_hint.cpp — "it belongs in [delivery]": where a key written under the
// wrong table belongs (config.hpp table_hint). Pure.
#include <fmt/format.h>

#include <string>
#include <utility>
#include <vector>

#include "conf/config.hpp"

namespace sluice::conf {

namespace {

// Every table's keys, for the hint on a key written under the wrong table.
// (config_test checks it against conf/sluice.toml.)
const std::vector<std::pair<std::string_view, std::vector<std::string_view>>> kTables = {
    {"", {"hostname", "spool_dir", "control_socket", "user"}},
    {"listener", {"address", "mode"}},
    {"tls", {"certificate", "private_key"}},
    {"auth", {"users_file"}},
    {"relay", {"trusted_networks", "add_missing_headers"}},
    {"limits", {"max_message_size", "max_recipients", "max_connections", "max_connections_per_client",
                "max_hops", "command_timeout", "data_timeout", "auth_failure_delay", "min_free_space",
                "messages_per_login", "auth_failures_per_client"}},
    {"delivery", {"max_connections", "max_connections_per_destination", "port", "retry_schedule",
                  "max_queue_lifetime", "tls", "relayhost", "relayhost_username",
                  "relayhost_password_file", "relayhost_tls", "relayhost_tls_name", "ca_file", "mta_sts", "dane"}},
    {"dns", {"servers"}},
    {"tls_reports", {"enabled", "organization", "contact"}},
    {"dkim", {"domain", "selector", "private_key", "headers"}},
    {"shaping", {"connections", "messages_per_connection", "rate", "adaptive", "providers"}},
    {"shaping.site", {"name", "mx", "connections", "messages_per_connection", "rate", "adaptive"}},
    {"shaping.rule", {"site", "reply", "rate", "connections", "duration", "suspend"}},
    {"cluster", {"redis", "redis_password_file"}},
    {"http", {"address", "api_keys_file", "certificate", "private_key"}},
    {"log", {"format"}},
    {"webhook", {"url", "events", "secret_file"}},
};

}  // namespace

std::optional<std::string> table_hint(std::string_view key) {
  const size_t dot = key.rfind('.');
  const std::string_view name = dot == std::string_view::npos ? key : key.substr(dot + 1);
  std::string_view table = dot == std::string_view::npos ? std::string_view() : key.substr(0, dot);
  if (const size_t bracket = table.find('['); bracket != std::string_view::npos)
    table = table.substr(0, bracket);  // listener[2] -> listener
  std::vector<std::string> homes;
  for (const auto& [t, keys] : kTables) {
    if (t == table) continue;
    for (std::string_view k : keys)
      if (k == name)
        homes.push_back(t.empty() ? std::string("at the top of the file, before any [table]")
                                  : t == "listener" || t == "dkim" || t == "shaping.site" || t == "shaping.rule" || t == "webhook" ? fmt::format("in a [[{}]] block", t)
                                                    : fmt::format("in [{}]", t));
  }
  if (homes.empty()) return std::nullopt;
  std::string out = "it belongs " + homes[0];
  for (size_t i = 1; i < homes.size(); ++i) out += " or " + homes[i];
  return out;
}

}  // namespace sluice::conf
