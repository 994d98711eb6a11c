// config.hpp — Sluice's configuration: the TOML file of SPEC.md.
//
// load_file()/parse() read the whole file, apply every default, validate every
// value and return either a Config or the full list of problems, each naming
// the key (e.g. "limits.max_recipients", "listener[1].address") and the line.
// Pure apart from reading the file; safe to call from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "conf/aliases.hpp"
#include "conf/net.hpp"
#include "shaping/rate.hpp"
#include "shaping/settings.hpp"

namespace sluice::conf {

using Duration = std::chrono::milliseconds;

enum class ListenerMode { submission, submissions, relay };
std::string_view to_string(ListenerMode m);

struct Listener {
  std::string address;  // as written, e.g. "0.0.0.0:587"
  net::Endpoint endpoint;
  ListenerMode mode = ListenerMode::relay;
};

struct Tls {
  std::string certificate;  // PEM chain; empty = no TLS
  std::string private_key;
};

struct Auth {
  std::string users_file;
};

struct Relay {
  std::vector<net::Cidr> trusted_networks;  // default 127.0.0.0/8, ::1/128
  // Date, Message-ID and From added when missing on the relay listener and
  // by sluice-sendmail, as on the submission ports.
  bool add_missing_headers = true;
  // Clients in trusted_networks relay without AUTH and are not subject to
  // limits.max_connections_per_client (as Postfix exempts mynetworks).
  bool trusts(const net::IpAddress& ip) const {
    for (const auto& net : trusted_networks)
      if (net.contains(ip)) return true;
    return false;
  }
};

struct Limits {
  uint64_t max_message_size = 35ull * 1024 * 1024;
  uint32_t max_recipients = 1000;
  uint32_t max_connections = 10000;
  uint32_t max_connections_per_client = 50;
  // A message with more Received fields than this is refused at the end of
  // DATA with 554 5.4.6 (RFC 5321 §6.3): a mail loop ends there.
  uint32_t max_hops = 100;
  Duration command_timeout = std::chrono::minutes(5);
  Duration data_timeout = std::chrono::minutes(10);
  // Every failed AUTH is answered no sooner than this after it began.
  Duration auth_failure_delay = std::chrono::seconds(1);
  // MAIL FROM gets 452 4.3.1 when the spool's file system has less free
  // space than this (plus a declared SIZE). Resolved after reading: when not
  // written it is 1.5 × max_message_size; "0" turns the reserve off.
  uint64_t min_free_space = 0;
  // Submission limits (docs/shaping.md "Submission limits"), held in the
  // shaping store so they count across sessions (and nodes):
  // MAIL FROM of an authenticated login past this gets 450 4.7.1; unlimited = off.
  shaping::Rate messages_per_login;
  // Failed password checks per client address; past it AUTH gets 454 4.7.0
  // without a check. Clients in relay.trusted_networks are exempt.
  shaping::Rate auth_failures_per_client{30, 3600'000'000};
};

enum class DeliveryTls { none, opportunistic, required, verify };
std::string_view to_string(DeliveryTls t);

struct Delivery {
  uint32_t max_connections = 500;
  uint32_t max_connections_per_destination = 20;
  uint16_t port = 25;
  std::vector<Duration> retry_schedule;  // default 5m 10m 30m 1h 2h 4h
  Duration max_queue_lifetime = std::chrono::hours(24 * 5);
  DeliveryTls tls = DeliveryTls::opportunistic;
  std::string relayhost;       // as written; empty = MX delivery
  std::string relayhost_name;  // host name or address literal without brackets
  uint16_t relayhost_port = 25;
  std::string relayhost_username;
  std::string relayhost_password_file;
  // TLS towards the relayhost. Resolved after reading: "verify" when
  // credentials are set and the key is not written, else delivery.tls.
  DeliveryTls relayhost_tls = DeliveryTls::opportunistic;
  // The name the relayhost's certificate must carry when relayhost is an
  // address literal; empty: the relayhost's name (or its address, checked
  // against the certificate's IP entries).
  std::string relayhost_tls_name;
  // Trust anchors (PEM bundle) for every certificate verification.
  std::string ca_file = "/etc/ssl/certs/ca-certificates.crt";
  // RFC 8461: apply the MTA-STS policies recipient domains publish.
  bool mta_sts = true;
  // RFC 7672: look up TLSA records for MX hosts whose addresses are
  // DNSSEC-secure (believed only from loopback resolvers, dns/trust.hpp).
  bool dane = true;
  // The name a relayhost certificate is verified against (relayhost_tls_name,
  // else relayhost_name).
  const std::string& relayhost_verify_name() const {
    return relayhost_tls_name.empty() ? relayhost_name : relayhost_tls_name;
  }
};

struct Dns {
  std::vector<net::Endpoint> servers;  // empty = /etc/resolv.conf; port defaults to 53
};

// [tls_reports]: SMTP TLS Reporting (RFC 8460, docs/transport-security.md).
struct TlsReports {
  bool enabled = false;
  std::string organization;  // organization-name in reports; default: hostname
  std::string contact;       // From of the reports and contact-info; required when enabled
};

// [shaping], [[shaping.site]], [[shaping.rule]] and the provider file
// (docs/shaping.md). Read by conf/config_shaping.cpp.
struct Shaping {
  // defaults: [shaping]'s connections (default
  // delivery.max_connections_per_destination), messages_per_connection,
  // rate, adaptive. sites and rules: sluice.toml's first, then the
  // provider file's.
  shaping::Settings settings;
  // "builtin" (the shipped conf/shaping-providers.toml compiled in), an
  // absolute path of a file with [[shaping.site]] and [[shaping.rule]]
  // tables, or "" for none.
  std::string providers = "builtin";
};

// [cluster]: limits shared by every node naming the same Redis
// (docs/shaping.md, "Several nodes").
struct Cluster {
  std::string redis;                // "redis://HOST:PORT" or "unix:/path"; "" = this node only
  std::string redis_password_file;  // absolute path; its first line is the password
};

// One [[dkim]] table: one signature for mail whose From is at `domain` or a
// subdomain of it. Two tables for one domain sign twice (RSA and Ed25519).
// The key itself is loaded by the daemon (mta/signing.hpp), not here.
struct Dkim {
  std::string domain;       // lower case, no trailing dot
  std::string selector;     // lower case
  std::string private_key;  // absolute path of a PEM file
  std::vector<std::string> headers;  // h= names; empty: dkim::default_headers()
  int line = 0;             // where the table starts, for messages
  size_t index = 0;         // 1-based position among the [[dkim]] tables
  // "[[dkim]] 2 (example.com, selector s2026a)", for messages.
  std::string describe() const;
  // Whether this table signs mail from `domain` (lower case): the table's
  // domain itself or a subdomain of it.
  bool covers(std::string_view domain) const;
};

// [http]: the daemon's HTTP server (docs/http-api.md): metrics, health,
// the injection API. Read by conf/config_http.cpp.
struct Http {
  std::string address;                    // as written; "" = off
  std::optional<net::Endpoint> endpoint;  // set when address is
  std::string api_keys_file;              // absolute path; "" = no API keys (the API answers 401)
  std::string certificate;                // TLS on the listener; required unless it is on loopback
  std::string private_key;
};

// [log] (docs/observability.md).
enum class LogFormat { text, json };
struct Log {
  LogFormat format = LogFormat::text;
};

// One [[webhook]] table (docs/http-api.md, "Webhooks"): the events it
// receives, POSTed in JSON batches to url.
struct Webhook {
  std::string url;  // https://host[:port]/path, or http:// to a loopback address
  // "delivered", "deferred", "bounced", "expired", "accepted"; default the
  // first four.
  std::vector<std::string> events;
  std::string secret_file;  // absolute path; its first line signs each POST; "" = unsigned
  int line = 0;             // where the table starts
  size_t index = 0;         // 1-based position among the [[webhook]] tables
};

struct Config {
  std::string hostname;  // default: the machine's FQDN (gethostname)
  std::string spool_dir = "/var/spool/sluice";
  std::string control_socket = "/run/sluice/control.sock";
  std::string user = "sluice";
  int user_line = 0;  // where `user` was written (0: the default)
  std::vector<Listener> listeners;  // at least one
  Tls tls;
  Auth auth;
  Relay relay;
  Limits limits;
  Delivery delivery;
  Dns dns;
  std::vector<Dkim> dkim;  // [[dkim]], in file order
  TlsReports tls_reports;
  Shaping shaping;
  Cluster cluster;
  Http http;
  Log log;
  std::vector<Webhook> webhooks;  // [[webhook]], in file order
  // [aliases]: local name (lower case) or "*" -> addresses (docs/aliases.md).
  aliases::Table aliases;
  std::string source;  // file the config came from ("" when parsed from text)
};

struct Problem {
  std::string key;  // dotted key path, "" for file-level problems
  int line = 0;     // 1-based; 0 when unknown
  std::string message;
  // "FILE:LINE: KEY: MESSAGE" (parts left out when empty)
  std::string str(std::string_view source = {}) const;
};

using Result = std::expected<Config, std::vector<Problem>>;

Result load_file(const std::string& path);
Result parse(std::string_view toml_text, std::string_view source_name = {});

// "30s", "5m", "4h", "5d" (also "500ms", "1w"); a bare integer is seconds.
std::expected<Duration, std::string> parse_duration(std::string_view text);
// "35M", "512K", "1G", "2048" (bytes); K/M/G are powers of 1024.
std::expected<uint64_t, std::string> parse_size(std::string_view text);

// The account `user` names, looked up in the system's password database.
// sluiced (its start and --check) calls it; a missing account is a Problem
// naming `user` (SPEC: never a silent run as root). "root" is root on purpose.
struct Account {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;
};
std::expected<Account, Problem> lookup_user(const Config& cfg);

// For an unknown key: where a key of that name belongs, e.g. for
// "dns.relayhost" "it belongs in [delivery]"; nullopt when no table has it.
std::optional<std::string> table_hint(std::string_view key);

// Where the binaries look for the file: explicit flag, else $SLUICE_CONFIG,
// else /etc/sluice/sluice.toml.
std::string config_path(std::string_view flag_value);

// Why `name` is not a domain name as the configuration takes one (letters,
// digits, hyphens; labels of 1..63, 253 in all), or nullopt when it is one.
std::optional<std::string> check_domain_name(std::string_view name);

// The default for hostname: gethostname(), made fully qualified through
// getaddrinfo(AI_CANONNAME) when that yields a dotted name. May consult DNS.
std::string machine_hostname();

}  // namespace sluice::conf
