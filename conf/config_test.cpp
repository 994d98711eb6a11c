// config_test.cpp — unit tests for conf/config.{hpp,cpp}: defaults, every key,
// every class of error with its key and line, and the shipped example file.
#include "conf/config.hpp"
#include "conf/config_test_util.hpp"

#include <fmt/format.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <unistd.h>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

using namespace sluice::conf;
using namespace std::chrono_literals;

using sluice::conf::test::kMinimal;

namespace {

std::vector<Problem> problems_of(std::string_view text) {
  auto r = parse(text, "test.toml");
  if (r) return {};
  return r.error();
}

std::string dump(const std::vector<Problem>& ps) {
  std::string out;
  for (auto& p : ps) out += p.str("test.toml") + "\n";
  return out;
}

// The problem for `key`, if any.
const Problem* find(const std::vector<Problem>& ps, std::string_view key) {
  auto it = std::find_if(ps.begin(), ps.end(), [&](const Problem& p) { return p.key == key; });
  return it == ps.end() ? nullptr : &*it;
}

// Every problem of kMinimal + `body`, one per line; the file must be refused.
std::string problems(std::string_view body) {
  auto r = parse(std::string(kMinimal) + std::string(body));
  REQUIRE_FALSE(r);
  std::string all;
  for (const auto& p : r.error()) all += p.str() + "\n";
  return all;
}

}  // namespace

TEST_CASE("minimal file gets every default") {
  auto r = parse(kMinimal);
  REQUIRE(r.has_value());
  const Config& c = *r;
  CHECK(c.hostname == "mail.example.com");
  CHECK(c.spool_dir == "/var/spool/sluice");
  CHECK(c.control_socket == "/run/sluice/control.sock");
  CHECK(c.user == "sluice");
  REQUIRE(c.listeners.size() == 1);
  CHECK(c.listeners[0].address == "127.0.0.1:25");
  CHECK(c.listeners[0].endpoint.str() == "127.0.0.1:25");
  CHECK(c.listeners[0].mode == ListenerMode::relay);
  CHECK(c.tls.certificate.empty());
  CHECK(c.tls.private_key.empty());
  CHECK(c.auth.users_file.empty());
  REQUIRE(c.relay.trusted_networks.size() == 2);
  CHECK(c.relay.trusted_networks[0].str() == "127.0.0.0/8");
  CHECK(c.relay.trusted_networks[1].str() == "::1/128");
  CHECK(c.relay.add_missing_headers);
  CHECK(c.limits.max_hops == 100);
  CHECK(c.limits.max_message_size == 35u * 1024 * 1024);
  CHECK(c.limits.max_recipients == 1000);
  CHECK(c.limits.max_connections == 10000);
  CHECK(c.limits.max_connections_per_client == 50);
  CHECK(c.limits.command_timeout == 5min);
  CHECK(c.limits.data_timeout == 10min);
  CHECK(c.delivery.max_connections == 500);
  CHECK(c.delivery.max_connections_per_destination == 20);
  CHECK(c.delivery.port == 25);
  CHECK(c.delivery.retry_schedule == std::vector<Duration>{5min, 10min, 30min, 1h, 2h, 4h});
  CHECK(c.delivery.max_queue_lifetime == 120h);
  CHECK(c.delivery.tls == DeliveryTls::opportunistic);
  CHECK(c.delivery.relayhost.empty());
  CHECK(c.delivery.relayhost_username.empty());
  CHECK(c.delivery.relayhost_password_file.empty());
  CHECK(c.delivery.relayhost_tls == DeliveryTls::opportunistic);  // = delivery.tls
  CHECK(c.delivery.relayhost_tls_name.empty());
  CHECK(c.delivery.ca_file == "/etc/ssl/certs/ca-certificates.crt");
  CHECK(c.delivery.mta_sts);
  CHECK(c.delivery.dane);
  CHECK(c.dns.servers.empty());
  CHECK(c.source.empty());
}

TEST_CASE("every key set to a non-default value") {
  auto r = parse(R"(
hostname = "mx1.example.org"
spool_dir = "/srv/spool"
control_socket = "/srv/run/ctl.sock"
user = "mailer"

[[listener]]
address = "0.0.0.0:587"
mode = "submission"

[[listener]]
address = "[::]:465"
mode = "submissions"

[[listener]]
address = "127.0.0.1:2525"
mode = "relay"

[tls]
certificate = "/etc/x/cert.pem"
private_key = "/etc/x/key.pem"

[auth]
users_file = "/etc/x/users"

[relay]
trusted_networks = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
add_missing_headers = false

[limits]
max_message_size = "10M"
max_recipients = 7
max_connections = 99
max_connections_per_client = 3
max_hops = 30
command_timeout = "30s"
data_timeout = "2m"

[delivery]
max_connections = 40
max_connections_per_destination = 4
port = 2526
retry_schedule = ["1m", "15m", "1d"]
max_queue_lifetime = "1w"
tls = "verify"
relayhost = "[smtp.example.net]:587"
relayhost_username = "bob"
relayhost_password_file = "/etc/x/relay-pass"
relayhost_tls = "required"
relayhost_tls_name = "relay.example.net"
ca_file = "/dev/null"
mta_sts = false
dane = false

[dns]
servers = ["127.0.0.1:5353", "192.0.2.53", "[2001:db8::53]:54", "[2001:db8::35]"]
)",
                 "all.toml");
  INFO(dump(r ? std::vector<Problem>{} : r.error()));
  REQUIRE(r.has_value());
  const Config& c = *r;
  CHECK(c.source == "all.toml");
  CHECK(c.hostname == "mx1.example.org");
  CHECK(c.spool_dir == "/srv/spool");
  CHECK(c.control_socket == "/srv/run/ctl.sock");
  CHECK(c.user == "mailer");
  REQUIRE(c.listeners.size() == 3);
  CHECK(c.listeners[0].mode == ListenerMode::submission);
  CHECK(c.listeners[0].endpoint.port == 587);
  CHECK(c.listeners[1].mode == ListenerMode::submissions);
  CHECK(c.listeners[1].address == "[::]:465");
  CHECK(c.listeners[1].endpoint.str() == "[::]:465");
  CHECK(c.listeners[2].endpoint.str() == "127.0.0.1:2525");
  CHECK(c.tls.certificate == "/etc/x/cert.pem");
  CHECK(c.tls.private_key == "/etc/x/key.pem");
  CHECK(c.auth.users_file == "/etc/x/users");
  REQUIRE(c.relay.trusted_networks.size() == 3);
  CHECK(c.relay.trusted_networks[0].str() == "10.0.0.0/8");
  CHECK(c.relay.trusted_networks[1].str() == "2001:db8::/32");
  CHECK(c.relay.trusted_networks[2].str() == "192.0.2.7/32");
  CHECK_FALSE(c.relay.add_missing_headers);
  CHECK(c.limits.max_hops == 30);
  CHECK(c.limits.max_message_size == 10u * 1024 * 1024);
  CHECK(c.limits.max_recipients == 7);
  CHECK(c.limits.max_connections == 99);
  CHECK(c.limits.max_connections_per_client == 3);
  CHECK(c.limits.command_timeout == 30s);
  CHECK(c.limits.data_timeout == 2min);
  CHECK(c.delivery.max_connections == 40);
  CHECK(c.delivery.max_connections_per_destination == 4);
  CHECK(c.delivery.port == 2526);
  CHECK(c.delivery.retry_schedule == std::vector<Duration>{1min, 15min, 24h});
  CHECK(c.delivery.max_queue_lifetime == 168h);
  CHECK(c.delivery.tls == DeliveryTls::verify);
  CHECK(c.delivery.relayhost == "[smtp.example.net]:587");
  CHECK(c.delivery.relayhost_name == "smtp.example.net");
  CHECK(c.delivery.relayhost_port == 587);
  CHECK(c.delivery.relayhost_username == "bob");
  CHECK(c.delivery.relayhost_password_file == "/etc/x/relay-pass");
  CHECK(c.delivery.relayhost_tls == DeliveryTls::required);
  CHECK(c.delivery.relayhost_tls_name == "relay.example.net");
  CHECK(c.delivery.relayhost_verify_name() == "relay.example.net");
  CHECK(c.delivery.ca_file == "/dev/null");
  CHECK(!c.delivery.mta_sts);
  CHECK(!c.delivery.dane);
  REQUIRE(c.dns.servers.size() == 4);
  CHECK(c.dns.servers[0].str() == "127.0.0.1:5353");
  CHECK(c.dns.servers[1].str() == "192.0.2.53:53");
  CHECK(c.dns.servers[2].str() == "[2001:db8::53]:54");
  CHECK(c.dns.servers[3].str() == "[2001:db8::35]:53");
}

TEST_CASE("durations and sizes also accept TOML integers") {
  std::string text(kMinimal);
  text += "[limits]\nmax_message_size = 2048\ncommand_timeout = 90\n";
  auto r = parse(text);
  REQUIRE(r.has_value());
  CHECK(r->limits.max_message_size == 2048);
  CHECK(r->limits.command_timeout == 90s);
}

TEST_CASE("min_free_space: 1.5 x max_message_size unless written; 0 turns it off") {
  std::string text(kMinimal);
  auto d = parse(text + "[limits]\nmax_message_size = \"10M\"\n");
  REQUIRE(d.has_value());
  CHECK(d->limits.min_free_space == 15ull * 1024 * 1024);
  for (const char* off : {"0", "\"0\""}) {
    auto r = parse(text + "[limits]\nmin_free_space = " + off + "\n");
    REQUIRE(r.has_value());
    CHECK(r->limits.min_free_space == 0);
  }
  auto set = parse(text + "[limits]\nmin_free_space = \"2G\"\n");
  REQUIRE(set.has_value());
  CHECK(set->limits.min_free_space == 2ull << 30);
  CHECK(find(problems_of(text + "[limits]\nmin_free_space = -1\n"), "limits.min_free_space"));
  // Zero stays an error for the sizes where it means nothing.
  CHECK(find(problems_of(text + "[limits]\nmax_message_size = 0\n"), "limits.max_message_size"));
}

TEST_CASE("submission limits: messages_per_login off, auth_failures_per_client 30/h by default") {
  std::string text(kMinimal);
  auto d = parse(text);
  REQUIRE(d.has_value());
  CHECK(d->limits.messages_per_login.unlimited());
  CHECK(d->limits.auth_failures_per_client == sluice::shaping::Rate{30, 3600'000'000});
  auto set = parse(text +
                   "[limits]\nmessages_per_login = \"1000/h\"\nauth_failures_per_client = \"5/m\"\n");
  REQUIRE(set.has_value());
  CHECK(set->limits.messages_per_login == sluice::shaping::Rate{1000, 3600'000'000});
  CHECK(set->limits.auth_failures_per_client == sluice::shaping::Rate{5, 60'000'000});
  auto off = parse(text + "[limits]\nmessages_per_login = \"\"\nauth_failures_per_client = \"\"\n");
  REQUIRE(off.has_value());
  CHECK(off->limits.messages_per_login.unlimited());
  CHECK(off->limits.auth_failures_per_client.unlimited());
  // Errors name the key.
  CHECK(find(problems_of(text + "[limits]\nmessages_per_login = \"1000/week\"\n"),
             "limits.messages_per_login"));
  CHECK(find(problems_of(text + "[limits]\nmessages_per_login = 1000\n"),
             "limits.messages_per_login"));
  CHECK(find(problems_of(text + "[limits]\nauth_failures_per_client = \"0/h\"\n"),
             "limits.auth_failures_per_client"));
}

TEST_CASE("an empty trusted_networks trusts nobody") {
  std::string text(kMinimal);
  text += "[relay]\ntrusted_networks = []\n";
  auto r = parse(text);
  REQUIRE(r.has_value());
  CHECK(r->relay.trusted_networks.empty());
}

TEST_CASE("each class of error names its key and line") {
  struct Case {
    const char* name;
    const char* extra;  // appended after kMinimal (which has 4 lines)
    const char* key;
    int line;
    const char* message;  // substring of the problem's message
  };
  const Case cases[] = {
      {"unknown table", "[limit]\n", "limit", 5, "unknown key"},
      {"unknown nested key", "[limits]\nmax_recipents = 5\n", "limits.max_recipents", 6,
       "unknown key"},
      {"unknown dotted key", "[delivery]\nretry.x = 1\n", "delivery.retry", 6, "unknown key"},
      {"unknown key in listener", "adress = \"1.2.3.4:25\"\n", "listener[1].adress", 5,
       "unknown key"},
      {"unknown key in second listener",
       "[[listener]]\nadress = \"127.0.0.1:26\"\nmode = \"relay\"\n", "listener[2].adress", 6,
       "did you mean \"address\""},
      {"wrong type string", "[limits]\nmax_recipients = \"5\"\n", "limits.max_recipients", 6,
       "expected an integer, got a string"},
      {"wrong type for table", "[relay]\ntrusted_networks = \"10.0.0.0/8\"\n",
       "relay.trusted_networks", 6, "expected an array, got a string"},
      {"wrong type array element", "[relay]\ntrusted_networks = [\"10.0.0.0/8\", 5]\n",
       "relay.trusted_networks[2]", 6, "expected a string"},
      {"wrong type boolean", "[relay]\nadd_missing_headers = \"yes\"\n", "relay.add_missing_headers", 6,
       "expected a boolean (true or false), got a string"},
      {"float count", "[limits]\nmax_connections = 1.5\n", "limits.max_connections", 6,
       "expected an integer, got a float"},
      {"zero count", "[limits]\nmax_connections = 0\n", "limits.max_connections", 6,
       "out of range"},
      {"negative count", "[delivery]\nmax_connections = -3\n", "delivery.max_connections", 6,
       "out of range"},
      {"count too large", "[limits]\nmax_recipients = 4294967296\n", "limits.max_recipients", 6,
       "out of range"},
      {"port zero", "[delivery]\nport = 0\n", "delivery.port", 6, "out of range"},
      {"port too big", "[delivery]\nport = 65536\n", "delivery.port", 6, "out of range"},
      {"bad duration unit", "[limits]\ncommand_timeout = \"5x\"\n", "limits.command_timeout", 6,
       "unknown unit"},
      {"zero duration", "[limits]\ndata_timeout = \"0s\"\n", "limits.data_timeout", 6,
       "greater than zero"},
      {"negative duration", "[limits]\ndata_timeout = \"-5m\"\n", "limits.data_timeout", 6,
       "negative"},
      {"negative integer duration", "[limits]\ndata_timeout = -5\n", "limits.data_timeout", 6,
       "negative"},
      {"duration of wrong type", "[limits]\ndata_timeout = true\n", "limits.data_timeout", 6,
       "expected a duration string"},
      {"bad duration in schedule", "[delivery]\nretry_schedule = [\"5m\", \"soon\"]\n",
       "delivery.retry_schedule[2]", 6, "starts with a number"},
      {"empty schedule", "[delivery]\nretry_schedule = []\n", "delivery.retry_schedule", 6,
       "at least one"},
      {"bad size", "[limits]\nmax_message_size = \"35Q\"\n", "limits.max_message_size", 6,
       "unknown unit"},
      {"zero size", "[limits]\nmax_message_size = \"0M\"\n", "limits.max_message_size", 6,
       "greater than zero"},
      {"size overflow", "[limits]\nmax_message_size = \"99999999999999G\"\n",
       "limits.max_message_size", 6, "too large"},
      {"bad CIDR", "[relay]\ntrusted_networks = [\"10.0.0.0/33\"]\n", "relay.trusted_networks[1]",
       6, "prefix length"},
      {"CIDR garbage", "[relay]\ntrusted_networks = [\"localhost\"]\n", "relay.trusted_networks[1]",
       6, "not an IP address"},
      {"CIDR host bits", "[relay]\ntrusted_networks = [\"127.0.0.0/8\",\n  \"10.0.0.1/8\"]\n",
       "relay.trusted_networks[2]", 7, "did you mean 10.0.0.0/8"},
      {"bad mode", "[[listener]]\naddress = \"127.0.0.1:26\"\nmode = \"smtp\"\n",
       "listener[2].mode", 7, "not one of submission, submissions, relay"},
      {"bad listener address", "[[listener]]\naddress = \"localhost:25\"\nmode = \"relay\"\n",
       "listener[2].address", 6, "not an IP address"},
      {"listener without port", "[[listener]]\naddress = \"127.0.0.2\"\nmode = \"relay\"\n",
       "listener[2].address", 6, "missing port"},
      {"bare IPv6 listener", "[[listener]]\naddress = \"::1:25\"\nmode = \"relay\"\n",
       "listener[2].address", 6, "use [addr]:port"},
      {"listener port zero", "[[listener]]\naddress = \"127.0.0.2:0\"\nmode = \"relay\"\n",
       "listener[2].address", 6, "1..65535"},
      {"listener missing mode", "[[listener]]\naddress = \"127.0.0.2:25\"\n", "listener[2].mode", 5,
       "missing"},
      {"listener missing address", "\n[[listener]]\nmode = \"relay\"\n", "listener[2].address", 6,
       "missing"},
      {"duplicate listener", "[[listener]]\naddress = \"127.0.0.1:025\"\nmode = \"submission\"\n",
       "listener[2].address", 6, "already used by listener[1]"},
      {"certificate without key", "[tls]\ncertificate = \"/a/cert.pem\"\n", "tls.private_key", 6,
       "required when tls.certificate is set"},
      {"key without certificate", "[tls]\nprivate_key = \"/a/key.pem\"\n", "tls.certificate", 6,
       "required when tls.private_key is set"},
      {"relative path", "[auth]\nusers_file = \"users\"\n", "auth.users_file", 6, "absolute path"},
      {"bad delivery tls", "[delivery]\ntls = \"always\"\n", "delivery.tls", 6,
       "not one of none, opportunistic, required, verify"},
      {"username without password file",
       "[delivery]\nrelayhost = \"smtp.example.net\"\nrelayhost_username = \"bob\"\n",
       "delivery.relayhost_password_file", 7, "required when delivery.relayhost_username is set"},
      {"password file without username",
       "[delivery]\nrelayhost = \"smtp.example.net\"\nrelayhost_password_file = \"/etc/p\"\n",
       "delivery.relayhost_username", 7, "required when delivery.relayhost_password_file is set"},
      {"credentials without relayhost",
       "[delivery]\nrelayhost_username = \"bob\"\nrelayhost_password_file = \"/etc/p\"\n",
       "delivery.relayhost", 6, "credentials are set"},
      {"credentials with relayhost_tls none",
       "[delivery]\nrelayhost = \"a.example\"\nrelayhost_username = \"bob\"\n"
       "relayhost_password_file = \"/etc/p\"\nrelayhost_tls = \"none\"\n",
       "delivery.relayhost_tls", 9, "\"none\" cannot be used with relayhost credentials"},
      {"credentials with relayhost_tls opportunistic",
       "[delivery]\nrelayhost = \"a.example\"\nrelayhost_username = \"bob\"\n"
       "relayhost_password_file = \"/etc/p\"\nrelayhost_tls = \"opportunistic\"\n",
       "delivery.relayhost_tls", 9, "write \"required\" to skip verification"},
      {"bad relayhost_tls", "[delivery]\nrelayhost = \"a.example\"\nrelayhost_tls = \"yes\"\n",
       "delivery.relayhost_tls", 7, "not one of none, opportunistic, required, verify"},
      {"relayhost_tls_name without relayhost", "[delivery]\nrelayhost_tls_name = \"a.example\"\n",
       "delivery.relayhost_tls_name", 6, "delivery.relayhost is empty"},
      {"relayhost_tls_name not a name",
       "[delivery]\nrelayhost = \"[192.0.2.1]:587\"\nrelayhost_tls_name = \"a b\"\n",
       "delivery.relayhost_tls_name", 7, "not a host name"},
      {"relative ca_file", "[delivery]\nca_file = \"ca.pem\"\n", "delivery.ca_file", 6,
       "absolute path"},
      {"unreadable ca_file with credentials",
       "[delivery]\nrelayhost = \"a.example\"\nrelayhost_username = \"bob\"\n"
       "relayhost_password_file = \"/etc/p\"\nca_file = \"/nonexistent/ca.pem\"\n",
       "delivery.ca_file", 9, "relayhost credentials make delivery.relayhost_tls \"verify\""},
      {"unreadable ca_file with tls verify",
       "[delivery]\ntls = \"verify\"\nca_file = \"/nonexistent/ca.pem\"\n", "delivery.ca_file", 7,
       "certificates are verified against it"},
      {"relayhost bare IPv6", "[delivery]\nrelayhost = \"2001:db8::1\"\n", "delivery.relayhost", 6,
       "needs brackets"},
      {"relayhost bad port", "[delivery]\nrelayhost = \"[smtp.example.net]:0\"\n",
       "delivery.relayhost", 6, "1..65535"},
      {"relayhost missing port", "[delivery]\nrelayhost = \"smtp.example.net:\"\n",
       "delivery.relayhost", 6, "empty port"},
      {"relayhost bad name", "[delivery]\nrelayhost = \"smtp_relay.example.net\"\n",
       "delivery.relayhost", 6, "not a host name or address"},
      {"relayhost bad bracket", "[delivery]\nrelayhost = \"[smtp.example.net\"\n",
       "delivery.relayhost", 6, "missing ']'"},
      {"relayhost junk after bracket", "[delivery]\nrelayhost = \"[a.example]587\"\n",
       "delivery.relayhost", 6, "expected ':'"},
      {"relayhost bad v6 literal", "[delivery]\nrelayhost = \"[2001:db8::zz]\"\n",
       "delivery.relayhost", 6, "not an IPv6 address"},
      {"dns bare IPv6", "[dns]\nservers = [\"2001:db8::53\"]\n", "dns.servers[1]", 6, "brackets"},
      {"dns host name", "[dns]\nservers = [\"dns.example\"]\n", "dns.servers[1]", 6,
       "not an IP address"},
      {"dns bad port", "[dns]\nservers = [\"127.0.0.1:99999\"]\n", "dns.servers[1]", 6, "1..65535"},
  };
  // Keys that must come before the first table header; kMinimal follows them.
  const Case top_cases[] = {
      {"unknown top-level key", "hostnme = \"x\"\n", "hostnme", 1, "unknown key"},
      {"suggestion", "hostnme = \"x\"\n", "hostnme", 1, "did you mean \"hostname\""},
      {"wrong type for a section", "tls = 1\n", "tls", 1, "expected a table, got an integer"},
      {"empty spool_dir", "spool_dir = \"\"\n", "spool_dir", 1, "must not be empty"},
      {"relative spool_dir", "spool_dir = \"spool\"\n", "spool_dir", 1, "absolute path"},
      {"long control socket",
       "control_socket = "
       "\"/run/"
       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
       "aaaaaaaaaaaaaaaaaa\"\n",
       "control_socket", 1, "too long"},
      {"empty user", "user = \"\"\n", "user", 1, "must not be empty"},
  };
  for (const Case& c : cases) {
    std::string text(kMinimal);
    text += c.extra;
    INFO(c.name << "\n" << text);
    auto ps = problems_of(text);
    INFO(dump(ps));
    const Problem* p = find(ps, c.key);
    REQUIRE(p != nullptr);
    CHECK(p->line == c.line);
    CHECK_THAT(p->message, Catch::Contains(c.message));
  }
  for (const Case& c : top_cases) {
    std::string text = c.extra + std::string(kMinimal);
    INFO(c.name << "\n" << text);
    auto ps = problems_of(text);
    INFO(dump(ps));
    const Problem* p = find(ps, c.key);
    REQUIRE(p != nullptr);
    CHECK(p->line == c.line);
    CHECK_THAT(p->message, Catch::Contains(c.message));
  }
}

TEST_CASE("hostname must be a valid domain name") {
  const std::pair<const char*, const char*> bad[] = {
      {"", "empty"},
      {"mail_1.example.com", "character '_'"},
      {"mail..example.com", "empty label"},
      {".example.com", "empty label"},
      {"example.com.", "empty label"},
      {"-mail.example.com", "hyphen"},
      {"mail-.example.com", "hyphen"},
      {"a b", "character ' '"},
  };
  for (auto [name, message] : bad) {
    std::string text =
        fmt::format("hostname = \"{}\"\n{}", name, kMinimal.substr(kMinimal.find('\n') + 1));
    INFO(text);
    auto ps = problems_of(text);
    const Problem* p = find(ps, "hostname");
    REQUIRE(p != nullptr);
    CHECK(p->line == 1);
    CHECK_THAT(p->message, Catch::Contains(message));
  }
  std::string long_label(64, 'a');
  auto ps = problems_of(fmt::format("hostname = \"{}.com\"\n{}", long_label,
                                    kMinimal.substr(kMinimal.find('\n') + 1)));
  REQUIRE(find(ps, "hostname") != nullptr);
  CHECK_THAT(find(ps, "hostname")->message, Catch::Contains("longer than 63"));

  std::string long_name;
  for (int i = 0; i < 26; ++i) long_name += "abcdefghi.";
  long_name += "com";  // 263 characters
  ps = problems_of(
      fmt::format("hostname = \"{}\"\n{}", long_name, kMinimal.substr(kMinimal.find('\n') + 1)));
  REQUIRE(find(ps, "hostname") != nullptr);
  CHECK_THAT(find(ps, "hostname")->message, Catch::Contains("at most 253"));

  auto ok = parse(fmt::format("hostname = \"{}\"\n{}", std::string(63, 'b') + ".x-y.example",
                              kMinimal.substr(kMinimal.find('\n') + 1)));
  CHECK(ok.has_value());
}

TEST_CASE("hostname defaults to the machine's name") {
  auto r = parse("[[listener]]\naddress = \"127.0.0.1:25\"\nmode = \"relay\"\n");
  std::string expected = machine_hostname();
  REQUIRE(!expected.empty());
  if (r) {
    CHECK(r->hostname == expected);
  } else {
    // Only when this machine's name is not a valid domain name.
    REQUIRE(find(r.error(), "hostname") != nullptr);
    CHECK_THAT(find(r.error(), "hostname")->message, Catch::Contains("set hostname"));
  }
}

TEST_CASE("a [listener] table instead of [[listener]] is explained") {
  auto ps = problems_of(
      "hostname = \"a.example\"\n[listener]\naddress = \"127.0.0.1:25\"\nmode = \"relay\"\n");
  const Problem* p = find(ps, "listener");
  REQUIRE(p != nullptr);
  CHECK(p->line == 2);
  CHECK_THAT(p->message, Catch::Contains("[[listener]]"));
}

TEST_CASE("at least one listener is required") {
  for (const char* text :
       {"hostname = \"a.example\"\n", "hostname = \"a.example\"\nlistener = []\n"}) {
    auto ps = problems_of(text);
    const Problem* p = find(ps, "listener");
    REQUIRE(p != nullptr);
    CHECK(p->line == 0);
    CHECK_THAT(p->message, Catch::Contains("at least one [[listener]]"));
  }
  // A listener that is present but broken is not also reported as missing.
  auto ps =
      problems_of("hostname = \"a.example\"\n[[listener]]\naddress = \"x\"\nmode = \"relay\"\n");
  CHECK(find(ps, "listener") == nullptr);
  CHECK(find(ps, "listener[1].address") != nullptr);
}

TEST_CASE("relayhost_tls: verify with credentials unless written out") {
  struct Case {
    const char* name;
    const char* delivery;  // the [delivery] table's lines
    DeliveryTls expected;
  };
  const Case cases[] = {
      {"no relayhost: follows tls", "tls = \"required\"\n", DeliveryTls::required},
      {"relayhost without credentials: follows tls", "relayhost = \"a.example\"\ntls = \"none\"\n",
       DeliveryTls::none},
      {"credentials: verify, whatever tls says",
       "relayhost = \"a.example\"\ntls = \"none\"\nrelayhost_username = \"bob\"\n"
       "relayhost_password_file = \"/etc/p\"\n",
       DeliveryTls::verify},
      {"credentials, required written out",
       "relayhost = \"a.example\"\nrelayhost_username = \"bob\"\n"
       "relayhost_password_file = \"/etc/p\"\nrelayhost_tls = \"required\"\n",
       DeliveryTls::required},
      {"no credentials, written out", "relayhost = \"a.example\"\nrelayhost_tls = \"none\"\n",
       DeliveryTls::none},
  };
  for (const Case& c : cases) {
    // ca_file is checked for reading when something verifies: a file that
    // exists everywhere stands in for the system bundle.
    std::string text = fmt::format("{}[delivery]\nca_file = \"/dev/null\"\n{}", kMinimal, c.delivery);
    INFO(c.name << "\n" << text);
    auto r = parse(text);
    INFO(dump(r ? std::vector<Problem>{} : r.error()));
    REQUIRE(r.has_value());
    CHECK(r->delivery.relayhost_tls == c.expected);
  }
}

TEST_CASE("relayhost_tls: the name verified") {
  auto name_of = [](std::string_view delivery) {
    std::string text = fmt::format("{}[delivery]\n{}", kMinimal, delivery);
    auto r = parse(text);
    INFO(text << dump(r ? std::vector<Problem>{} : r.error()));
    REQUIRE(r.has_value());
    return r->delivery.relayhost_verify_name();
  };
  CHECK(name_of("relayhost = \"smtp.example.net:587\"\n") == "smtp.example.net");
  CHECK(name_of("relayhost = \"[smtp.example.net]:587\"\n") == "smtp.example.net");
  // An address alone: checked against the certificate's IP entries.
  CHECK(name_of("relayhost = \"[192.0.2.1]:587\"\n") == "192.0.2.1");
  CHECK(name_of("relayhost = \"[2001:db8::1]:587\"\n") == "2001:db8::1");
  CHECK(name_of("relayhost = \"[192.0.2.1]:587\"\nrelayhost_tls_name = \"smtp.example.net\"\n") ==
        "smtp.example.net");
  CHECK(name_of("relayhost = \"[192.0.2.1]:587\"\nrelayhost_tls_name = \"\"\n") == "192.0.2.1");
}

TEST_CASE("ca_file is only required to be readable when something verifies") {
  // opportunistic and required delivery only report verification in the log
  CHECK(problems_of(std::string(kMinimal) + "[delivery]\nca_file = \"/nonexistent/ca.pem\"\n").empty());
  CHECK(problems_of(std::string(kMinimal) +
                    "[delivery]\nrelayhost = \"a.example\"\nrelayhost_username = \"bob\"\n"
                    "relayhost_password_file = \"/etc/p\"\nrelayhost_tls = \"required\"\n"
                    "ca_file = \"/nonexistent/ca.pem\"\n")
            .empty());
  // tls = "verify" is for MX delivery, but everything goes to the relayhost
  CHECK(problems_of(std::string(kMinimal) +
                    "[delivery]\ntls = \"verify\"\nrelayhost = \"a.example\"\nrelayhost_tls = "
                    "\"required\"\nca_file = \"/nonexistent/ca.pem\"\n")
            .empty());
}

TEST_CASE("relayhost forms") {
  struct Case {
    const char* relayhost;
    const char* name;
    uint16_t port;
  };
  const Case cases[] = {
      {"[smtp.example.net]:587", "smtp.example.net", 587},
      {"smtp.example.net:465", "smtp.example.net", 465},
      {"smtp.example.net", "smtp.example.net", 25},
      {"[smtp.example.net]", "smtp.example.net", 25},
      {"[192.0.2.1]:587", "192.0.2.1", 587},
      {"192.0.2.1:2525", "192.0.2.1", 2525},
      {"[2001:db8::1]:587", "2001:db8::1", 587},
      {"[2001:db8::1]", "2001:db8::1", 25},
  };
  for (const Case& c : cases) {
    std::string text(kMinimal);
    text += fmt::format("[delivery]\nrelayhost = \"{}\"\n", c.relayhost);
    auto r = parse(text);
    INFO(c.relayhost);
    REQUIRE(r.has_value());
    CHECK(r->delivery.relayhost == c.relayhost);
    CHECK(r->delivery.relayhost_name == c.name);
    CHECK(r->delivery.relayhost_port == c.port);
  }
}

TEST_CASE("all problems are collected, in file order") {
  auto ps = problems_of(R"(hostname = "bad_name"
bogus = 1
[[listener]]
address = "127.0.0.1"
mode = "relay"
[limits]
max_recipients = "many"
data_timeout = "1y"
[tls]
certificate = "/c.pem"
)");
  INFO(dump(ps));
  REQUIRE(ps.size() == 6);
  CHECK(ps[0].key == "hostname");
  CHECK(ps[0].line == 1);
  CHECK(ps[1].key == "bogus");
  CHECK(ps[1].line == 2);
  CHECK(ps[2].key == "listener[1].address");
  CHECK(ps[2].line == 4);
  CHECK(ps[3].key == "limits.max_recipients");
  CHECK(ps[3].line == 7);
  CHECK(ps[4].key == "limits.data_timeout");
  CHECK(ps[4].line == 8);
  CHECK(ps[5].key == "tls.private_key");
  CHECK(ps[5].line == 10);
}

TEST_CASE("a TOML syntax error has a line") {
  auto r = parse("hostname = \"a.example\"\n\n[limits\nmax_recipients = 5\n", "bad.toml");
  REQUIRE(!r.has_value());
  REQUIRE(r.error().size() == 1);
  CHECK(r.error()[0].line == 3);
  CHECK(r.error()[0].key.empty());
  CHECK_THAT(r.error()[0].str("bad.toml"), Catch::StartsWith("bad.toml:3: "));

  auto dup = parse("hostname = \"a.example\"\nhostname = \"b.example\"\n");
  REQUIRE(!dup.has_value());
  CHECK(dup.error()[0].line == 2);
}

TEST_CASE("Problem::str leaves out empty parts") {
  Problem p{"limits.max_recipients", 7, "expected an integer, got a string"};
  CHECK(p.str("/etc/sluice/sluice.toml") ==
        "/etc/sluice/sluice.toml:7: limits.max_recipients: expected an integer, got a string");
  CHECK(p.str() == "line 7: limits.max_recipients: expected an integer, got a string");
  Problem q{"listener", 0, "at least one"};
  CHECK(q.str("f.toml") == "f.toml: listener: at least one");
  Problem r{"", 0, "cannot open: No such file or directory"};
  CHECK(r.str("f.toml") == "f.toml: cannot open: No such file or directory");
  CHECK(r.str() == "cannot open: No such file or directory");
}

TEST_CASE("load_file reports an unreadable file with the OS error") {
  auto r = load_file("/nonexistent/sluice.toml");
  REQUIRE(!r.has_value());
  REQUIRE(r.error().size() == 1);
  CHECK(r.error()[0].str("/nonexistent/sluice.toml") ==
        "/nonexistent/sluice.toml: cannot open: No such file or directory");

  auto dir = load_file("/");
  REQUIRE(!dir.has_value());
  CHECK_THAT(dir.error()[0].message, Catch::Contains("Is a directory"));
}

TEST_CASE("the example sluice.toml is valid and shows the defaults") {
  std::string path = SLUICE_SOURCE_DIR "/conf/sluice.toml";
  auto r = load_file(path);
  INFO(dump(r ? std::vector<Problem>{} : r.error()));
  REQUIRE(r.has_value());
  CHECK(r->source == path);
  REQUIRE(r->listeners.size() == 3);
  CHECK(r->listeners[0].mode == ListenerMode::submission);
  CHECK(r->listeners[1].mode == ListenerMode::submissions);
  CHECK(r->listeners[2].mode == ListenerMode::relay);
  CHECK(r->listeners[2].endpoint.str() == "127.0.0.1:25");
  CHECK(r->tls.certificate == "/etc/sluice/tls/fullchain.pem");

  // Every value other than the ones an example must show equals the default.
  auto d = parse(kMinimal);
  REQUIRE(d.has_value());
  CHECK(r->spool_dir == d->spool_dir);
  CHECK(r->control_socket == d->control_socket);
  CHECK(r->user == d->user);
  CHECK(r->limits.max_message_size == d->limits.max_message_size);
  CHECK(r->limits.max_recipients == d->limits.max_recipients);
  CHECK(r->limits.max_connections == d->limits.max_connections);
  CHECK(r->limits.max_connections_per_client == d->limits.max_connections_per_client);
  CHECK(r->limits.command_timeout == d->limits.command_timeout);
  CHECK(r->limits.data_timeout == d->limits.data_timeout);
  CHECK(r->delivery.max_connections == d->delivery.max_connections);
  CHECK(r->delivery.max_connections_per_destination == d->delivery.max_connections_per_destination);
  CHECK(r->delivery.port == d->delivery.port);
  CHECK(r->delivery.retry_schedule == d->delivery.retry_schedule);
  CHECK(r->delivery.max_queue_lifetime == d->delivery.max_queue_lifetime);
  CHECK(r->delivery.tls == d->delivery.tls);
  CHECK(r->delivery.relayhost == d->delivery.relayhost);
  CHECK(r->dns.servers.empty());
  REQUIRE(r->relay.trusted_networks.size() == 2);
  CHECK(r->relay.trusted_networks[0].str() == "127.0.0.0/8");
  CHECK(r->relay.trusted_networks[1].str() == "::1/128");
}

TEST_CASE("parse_duration") {
  const std::pair<const char*, Duration> good[] = {
      {"30s", 30s}, {"5m", 5min},     {"4h", 4h},  {"5d", 120h},
      {"1w", 168h}, {"500ms", 500ms}, {"90", 90s}, {"0", 0s},
  };
  for (auto [text, want] : good) {
    INFO(text);
    auto d = parse_duration(text);
    REQUIRE(d.has_value());
    CHECK(*d == want);
  }
  const std::pair<const char*, const char*> bad[] = {
      {"", "empty"},
      {"-5m", "negative"},
      {"5x", "unknown unit"},
      {"5M", "unknown unit"},
      {"1.5h", "unknown unit"},
      {"5 m", "unknown unit"},
      {"m", "starts with a number"},
      {" 5m", "starts with a number"},
      {"99999999999999999999999s", "too large"},
      {"36501d", "at most 100 years"},
      {"9223372036854775807ms", "at most 100 years"},
  };
  for (auto [text, message] : bad) {
    INFO(text);
    auto d = parse_duration(text);
    REQUIRE(!d.has_value());
    CHECK_THAT(d.error(), Catch::Contains(message));
  }
}

TEST_CASE("parse_size") {
  const std::pair<const char*, uint64_t> good[] = {
      {"2048", 2048},
      {"512K", 512 * 1024},
      {"35M", 35u << 20},
      {"1G", 1ull << 30},
      {"10MB", 10u << 20},
      {"3kb", 3 * 1024},
      {"7m", 7u << 20},
      {"100B", 100},
      {"0", 0},
      {"16777215G", 16777215ull << 30},
  };
  for (auto [text, want] : good) {
    INFO(text);
    auto s = parse_size(text);
    REQUIRE(s.has_value());
    CHECK(*s == want);
  }
  const std::pair<const char*, const char*> bad[] = {
      {"", "empty"},
      {"-1M", "negative"},
      {"35Q", "unknown unit"},
      {"1T", "unknown unit"},
      {"1.5M", "unknown unit"},
      {"M", "starts with a number"},
      {"18446744073709551616", "too large"},
      {"17179869184G", "too large"},
  };
  for (auto [text, message] : bad) {
    INFO(text);
    auto s = parse_size(text);
    REQUIRE(!s.has_value());
    CHECK_THAT(s.error(), Catch::Contains(message));
  }
}

TEST_CASE("config_path: flag, then SLUICE_CONFIG, then /etc") {
  ::unsetenv("SLUICE_CONFIG");
  CHECK(config_path("") == "/etc/sluice/sluice.toml");
  CHECK(config_path("/x.toml") == "/x.toml");
  ::setenv("SLUICE_CONFIG", "", 1);
  CHECK(config_path("") == "/etc/sluice/sluice.toml");
  ::setenv("SLUICE_CONFIG", "/env.toml", 1);
  CHECK(config_path("") == "/env.toml");
  CHECK(config_path("/x.toml") == "/x.toml");
  ::unsetenv("SLUICE_CONFIG");
}

TEST_CASE("enum names") {
  CHECK(to_string(ListenerMode::submissions) == "submissions");
  CHECK(to_string(DeliveryTls::verify) == "verify");
}

TEST_CASE("a submissions listener needs a certificate") {
  auto r = sluice::conf::parse(
      "hostname = \"mx.example.com\"\n[[listener]]\naddress = \"127.0.0.1:465\"\nmode = \"submissions\"\n");
  REQUIRE_FALSE(r);
  REQUIRE(r.error().size() == 1);
  CHECK(r.error()[0].key == "listener[1].mode");
  CHECK(r.error()[0].line == 4);
  auto ok = sluice::conf::parse(
      "hostname = \"mx.example.com\"\n[[listener]]\naddress = \"127.0.0.1:465\"\nmode = \"submissions\"\n"
      "[tls]\ncertificate = \"/etc/c.pem\"\nprivate_key = \"/etc/k.pem\"\n");
  CHECK(ok);
}

TEST_CASE("[[dkim]] tables: domain, selector, key and headers") {
  std::string text(kMinimal);
  text += R"([[dkim]]
domain = "Example.COM."
selector = "S2026a"
private_key = "/etc/sluice/dkim/a.key"
[[dkim]]
domain = "example.com"
selector = "s2026e"
private_key = "/etc/sluice/dkim/e.key"
headers = ["From", "Subject"]
)";
  auto c = parse(text);
  REQUIRE(c);
  REQUIRE(c->dkim.size() == 2);
  CHECK(c->dkim[0].domain == "example.com");
  CHECK(c->dkim[0].selector == "s2026a");
  CHECK(c->dkim[0].private_key == "/etc/sluice/dkim/a.key");
  CHECK(c->dkim[0].headers.empty());
  CHECK(c->dkim[0].describe() == "[[dkim]] 1 (example.com, selector s2026a)");
  CHECK(c->dkim[1].headers == std::vector<std::string>{"From", "Subject"});
  CHECK(c->dkim[1].index == 2);
}

TEST_CASE("[[dkim]] problems name the table and the key") {
  CHECK_THAT(problems("[[dkim]]\ndomain = \"example.com\"\n"),
             Catch::Contains("dkim[1].selector: missing") && Catch::Contains("dkim[1].private_key: missing"));
  CHECK_THAT(problems("[[dkim]]\ndomain = \"exa mple.com\"\nselector = \"s\"\nprivate_key = \"/k\"\n"),
             Catch::Contains("dkim[1].domain:"));
  CHECK_THAT(problems("[[dkim]]\ndomain = \"example.com\"\nselector = \"s\"\nprivate_key = \"k\"\n"),
             Catch::Contains("dkim[1].private_key:"));
  CHECK_THAT(problems("[[dkim]]\ndomain = \"example.com\"\nselector = \"s\"\nprivate_key = \"/k\"\n"
                      "headers = [\"Subject\"]\n"),
             Catch::Contains("dkim[1].headers: must include From"));
  CHECK_THAT(problems("[[dkim]]\ndomain = \"example.com\"\nselector = \"s\"\nprivate_key = \"/k\"\n"
                      "[[dkim]]\ndomain = \"example.com\"\nselector = \"S\"\nprivate_key = \"/j\"\n"),
             Catch::Contains("s._domainkey.example.com is already used by [[dkim]] 1"));
  CHECK_THAT(problems("[dkim]\ndomain = \"example.com\"\n"), Catch::Contains("[[dkim]]"));
  CHECK_THAT(problems("[[dkim]]\ndomain = \"example.com\"\nselector = \"s\"\nprivate_key = \"/k\"\nkey = 1\n"),
             Catch::Contains("dkim[1].key: unknown key"));
}

TEST_CASE("[tls_reports]: off by default; when enabled, contact and its [[dkim]] table") {
  auto c = parse(std::string(kMinimal));
  REQUIRE(c);
  CHECK(!c->tls_reports.enabled);
  CHECK(c->tls_reports.contact.empty());
  CHECK(c->tls_reports.organization == c->hostname);

  const std::string dkim =
      "[[dkim]]\ndomain = \"example.com\"\nselector = \"s\"\nprivate_key = \"/k\"\n";
  auto ok = parse(std::string(kMinimal) + dkim +
                  "[tls_reports]\nenabled = true\norganization = \"Example Ltd\"\n"
                  "contact = \"tlsrpt@Mail.Example.com\"\n");
  INFO(dump(ok ? std::vector<Problem>{} : ok.error()));
  REQUIRE(ok);
  CHECK(ok->tls_reports.enabled);
  CHECK(ok->tls_reports.organization == "Example Ltd");
  CHECK(ok->tls_reports.contact == "tlsrpt@Mail.Example.com");

  CHECK_THAT(problems("[tls_reports]\nenabled = true\n"),
             Catch::Contains("tls_reports.contact: required when tls_reports.enabled is true"));
  CHECK_THAT(problems("[tls_reports]\nenabled = true\ncontact = \"r@example.org\"\n"),
             Catch::Contains("add a [[dkim]] table for example.org"));
  CHECK_THAT(problems(dkim + "[tls_reports]\ncontact = \"no address\"\n"),
             Catch::Contains("tls_reports.contact:"));
  CHECK_THAT(problems("[tls_reports]\nenable = true\n"), Catch::Contains("tls_reports.enable: unknown key"));
  // A disabled table needs no [[dkim]].
  CHECK(parse(std::string(kMinimal) + "[tls_reports]\ncontact = \"r@example.org\"\n"));
}

TEST_CASE("[shaping]: defaults, the built-in provider file, sites and rules") {
  auto d = parse(kMinimal);
  REQUIRE(d.has_value());
  const auto& s = d->shaping.settings;
  CHECK(d->shaping.providers == "builtin");
  CHECK(s.defaults.connections == d->delivery.max_connections_per_destination);
  CHECK(s.defaults.messages_per_connection == 100);
  CHECK(s.defaults.rate.unlimited());
  CHECK(s.defaults.adaptive);
  // The shipped file: Google, Microsoft, Yahoo, each with rules.
  REQUIRE(s.sites.size() == 3);
  CHECK(s.sites[0].name == "google");
  CHECK(s.sites[1].name == "microsoft");
  CHECK(s.sites[2].name == "yahoo");
  CHECK(s.sites[0].source.starts_with("builtin shaping-providers.toml:"));
  bool tss04 = false, ts03 = false;
  for (const auto& rule : s.rules) {
    if (rule.reply == "[TSS04]") tss04 = rule.site == "yahoo" && rule.rate == sluice::shaping::Rate{30, 60'000'000};
    if (rule.site == "yahoo" && rule.suspend_us == 2LL * 3600 * 1'000'000) ts03 = true;
  }
  CHECK(tss04);
  CHECK(ts03);

  auto c = parse(std::string(kMinimal) + R"(
[delivery]
max_connections_per_destination = 7
[shaping]
rate = "100/m"
messages_per_connection = 0
providers = ""
[[shaping.site]]
mx = ["*.Mail.Example.NET.", "mx.example.org"]
connections = 2
rate = "5/s"
[[shaping.site]]
name = "slow"
mx = ["*.slow.example"]
adaptive = false
[[shaping.rule]]
site = "*"
reply = "4.7.28"
rate = "10/m"
connections = 1
duration = "30m"
[[shaping.rule]]
site = "slow"
reply = "/^421 .*too many/"
suspend = "2h"
)");
  INFO(dump(c ? std::vector<Problem>{} : c.error()));
  REQUIRE(c.has_value());
  const auto& t = c->shaping.settings;
  CHECK(t.defaults.connections == 7);
  CHECK(t.defaults.messages_per_connection == 0);
  REQUIRE(t.sites.size() == 2);
  CHECK(t.sites[0].name == "*.mail.example.net");
  CHECK(t.sites[0].mx == std::vector<std::string>{"*.mail.example.net", "mx.example.org"});
  CHECK(t.sites[0].connections == 2);
  CHECK(t.sites[0].rate == sluice::shaping::Rate{5, 1'000'000});
  CHECK(t.sites[0].messages_per_connection == 0);  // from [shaping]
  CHECK(t.sites[1].connections == 7);
  CHECK(t.sites[1].rate == sluice::shaping::Rate{100, 60'000'000});  // [shaping]'s rate
  CHECK_FALSE(t.sites[1].adaptive);
  REQUIRE(t.rules.size() == 2);
  CHECK(t.rules[0].connections == 1);
  CHECK(t.rules[0].duration_us == 30LL * 60 * 1'000'000);
  CHECK(t.rules[1].suspend_us == 2LL * 3600 * 1'000'000);
  CHECK(t.rules[1].source == "sluice.toml:26");  // parsed from text: no file name
}

TEST_CASE("[shaping]: mistakes are reported with their key") {
  const std::pair<const char*, const char*> bad[] = {
      {"[shaping]\nrate = \"5/x\"\n", "shaping.rate"},
      {"[shaping]\nproviders = \"relative.toml\"\n", "shaping.providers"},
      {"[shaping]\nproviders = \"/nonexistent/p.toml\"\n", "shaping.providers"},
      {"[[shaping.site]]\nconnections = 2\n", "shaping.site[1].mx"},
      {"[[shaping.site]]\nmx = [\"bad_name!\"]\n", "shaping.site[1].mx[1]"},
      {"[[shaping.rule]]\nreply = \"/([a-/\"\nconnections = 1\nduration = \"1m\"\n", "shaping.rule[1].reply"},
      {"[[shaping.rule]]\nreply = \"x\"\nduration = \"1m\"\n", "shaping.rule[1]"},
      {"[[shaping.rule]]\nreply = \"x\"\nconnections = 1\n", "shaping.rule[1].duration"},
      {"[[shaping.rule]]\nreply = \"x\"\nsuspend = \"1h\"\nrate = \"1/s\"\n", "shaping.rule[1].suspend"},
      {"[[shaping.rule]]\nsite = \"nowhere\"\nreply = \"x\"\nsuspend = \"1h\"\n", "shaping.rule"},
      {"[shaping]\nsite = 3\n", "shaping.site"},
      {"[cluster]\nredis = \"redis://:secret@127.0.0.1:6379\"\n", "cluster.redis"},
      {"[cluster]\nredis = \"127.0.0.1:6379\"\n", "cluster.redis"},
      {"[cluster]\nredis_password_file = \"/etc/sluice/redis.password\"\n", "cluster.redis_password_file"},
  };
  for (auto [text, key] : bad) {
    INFO(text);
    auto r = parse(std::string(kMinimal) + text);
    REQUIRE_FALSE(r.has_value());
    bool found = false;
    for (const auto& p : r.error()) found = found || p.key == key;
    INFO(dump(r.error()));
    CHECK(found);
  }
}

TEST_CASE("[shaping] providers: a file of one's own, its problems named by its line") {
  char dir[] = "/tmp/sluice-conf-XXXXXX";
  REQUIRE(mkdtemp(dir));
  const std::string path = std::string(dir) + "/p.toml";
  {
    std::ofstream f(path);
    f << "[[shaping.site]]\nname = \"own\"\nmx = [\"*.own.example\"]\n"
         "[[shaping.rule]]\nsite = \"own\"\nreply = \"busy\"\nconnections = 1\nduration = \"5m\"\n";
  }
  auto r = parse(std::string(kMinimal) + "[shaping]\nproviders = \"" + path + "\"\n");
  INFO(dump(r ? std::vector<Problem>{} : r.error()));
  REQUIRE(r.has_value());
  REQUIRE(r->shaping.settings.sites.size() == 1);
  CHECK(r->shaping.settings.sites[0].source == path + ":1");
  REQUIRE(r->shaping.settings.rules.size() == 1);
  {
    std::ofstream f(path);
    f << "[[shaping.site]]\nname = \"own\"\nmx = [\"*.own.example\"]\nrate = \"fast\"\n";
  }
  auto bad = parse(std::string(kMinimal) + "[shaping]\nproviders = \"" + path + "\"\n");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error()[0].key == "shaping.providers");
  CHECK(bad.error()[0].message.find(path + ":4: shaping.site[1].rate") != std::string::npos);
  std::remove(path.c_str());
  rmdir(dir);
}

TEST_CASE("[http], [log] and [[webhook]]") {
  auto c = parse(std::string(kMinimal));
  REQUIRE(c);
  CHECK(c->http.address.empty());
  CHECK(!c->http.endpoint);
  CHECK(c->log.format == LogFormat::text);
  CHECK(c->webhooks.empty());

  auto ok = parse(std::string(kMinimal) +
                  "[http]\naddress = \"127.0.0.1:8025\"\napi_keys_file = \"/etc/sluice/api-keys\"\n"
                  "[log]\nformat = \"json\"\n"
                  "[[webhook]]\nurl = \"https://hooks.example.com/mail\"\nsecret_file = \"/etc/sluice/hook\"\n"
                  "[[webhook]]\nurl = \"http://127.0.0.1:9000/\"\nevents = [\"bounced\", \"accepted\"]\n");
  INFO(dump(ok ? std::vector<Problem>{} : ok.error()));
  REQUIRE(ok);
  REQUIRE(ok->http.endpoint);
  CHECK(ok->http.endpoint->port == 8025);
  CHECK(ok->http.api_keys_file == "/etc/sluice/api-keys");
  CHECK(ok->log.format == LogFormat::json);
  REQUIRE(ok->webhooks.size() == 2);
  CHECK(ok->webhooks[0].events == std::vector<std::string>{"delivered", "deferred", "bounced", "expired"});
  CHECK(ok->webhooks[0].secret_file == "/etc/sluice/hook");
  CHECK(ok->webhooks[1].events == std::vector<std::string>{"bounced", "accepted"});
  CHECK(ok->webhooks[1].index == 2);
  // TLS makes any address fine.
  CHECK(parse(std::string(kMinimal) +
              "[http]\naddress = \"0.0.0.0:8443\"\ncertificate = \"/c.pem\"\nprivate_key = \"/k.pem\"\n"));

  CHECK_THAT(problems("[http]\naddress = \"0.0.0.0:8025\"\n"), Catch::Contains("http.address:") &&
                                                                    Catch::Contains("not a loopback address"));
  CHECK_THAT(problems("[http]\naddress = \"127.0.0.1:8025\"\ncertificate = \"/c.pem\"\n"),
             Catch::Contains("go together"));
  CHECK_THAT(problems("[http]\naddress = \"127.0.0.1:25\"\n"), Catch::Contains("also the address of a [[listener]]"));
  CHECK_THAT(problems("[log]\nformat = \"xml\"\n"), Catch::Contains("log.format:"));
  CHECK_THAT(problems("[[webhook]]\nurl = \"http://hooks.example.com/\"\n"), Catch::Contains("must be https://"));
  CHECK_THAT(problems("[[webhook]]\nevents = [\"delivered\"]\n"), Catch::Contains("webhook[1].url: required"));
  CHECK_THAT(problems("[[webhook]]\nurl = \"https://h/\"\nevents = [\"sent\"]\n"),
             Catch::Contains("\"sent\" is not one of"));
  CHECK_THAT(problems("[webhook]\nurl = \"https://h/\"\n"), Catch::Contains("[[webhook]]"));
  CHECK_THAT(problems("[[webhook]]\nurl = \"https://h/\"\n[[webhook]]\nurl = \"https://h/\"\n"),
             Catch::Contains("webhook[2].url:") && Catch::Contains("also the url of webhook[1]"));
  CHECK_THAT(problems("[http]\nformat = \"json\"\n"), Catch::Contains("it belongs in [log]"));
}
