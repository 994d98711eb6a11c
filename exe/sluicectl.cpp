// sluicectl — the admin CLI: talks to the running sluiced over its control
// socket (docs/control.md). Thin: parse flags, find the socket, hand over to
// mta/control (client.hpp run_request). Exit codes: 0 done, 1 the daemon
// refused or failed the request (unknown id, ...), 2 usage, 3 the daemon
// cannot be reached (not running, no socket, permission denied, busy, timeout,
// or the configuration naming the socket cannot be read).
// `dkim keygen` and `dns-records` need no daemon: mta/dnsrec/commands.hpp
// (their exit codes are there); nor does `api-key new` (api/key_command.hpp).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <iostream>

#include "conf/config.hpp"
#include "mta/control/client.hpp"
#include "mta/control/format.hpp"
#include "api/key_command.hpp"
#include "mta/dnsrec/commands.hpp"

namespace ctl = sluice::control;

int main(int argc, char** argv) {
  CLI::App app{"sluicectl: inspect and steer the queue of a running sluiced; DKIM keys and DNS records"};
  app.fallthrough();  // --json, --socket, ... also after the subcommand
  std::string config_flag, socket_flag, state;
  bool json = false, body = false, all = false;
  double timeout_s = 30;
  std::string id;
  std::vector<std::string> ids;
  app.add_option("-c,--config", config_flag,
                 "configuration file naming control_socket (else $SLUICE_CONFIG, else "
                 "/etc/sluice/sluice.toml)");
  app.add_option("-s,--socket", socket_flag, "the control socket (instead of the configuration's)");
  app.add_option("--timeout", timeout_s, "seconds to wait for the daemon (default 30)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", json, "print JSON: the daemon's response, or dns-records' records (docs/control.md)");
  app.set_version_flag("--version", SLUICE_VERSION);
  app.require_subcommand(1);

  ctl::Request req;
  auto* queue = app.add_subcommand("queue", "the mail queue");
  queue->require_subcommand(1);
  auto* list = queue->add_subcommand("list", "one row per message, with its recipients and last error");
  list->add_option("--state", state, "only messages in this state")
      ->check(CLI::IsMember({"queued", "deferred", "held"}));
  auto* show = queue->add_subcommand("show", "the envelope, recipients and attempt history");
  show->add_option("id", id, "queue id")->required();
  show->add_flag("--body", body, "add the message content");
  auto* del = queue->add_subcommand("delete", "remove messages without notice to the sender");
  del->add_option("ids", ids, "queue ids");
  del->add_flag("--all", all, "every message in the queue");
  auto* hold = queue->add_subcommand("hold", "stop delivery attempts");
  hold->add_option("ids", ids, "queue ids")->required();
  auto* release = queue->add_subcommand("release", "resume delivery attempts");
  release->add_option("ids", ids, "queue ids")->required();
  auto* flush = queue->add_subcommand("flush", "attempt delivery now, ignoring the retry schedule");
  flush->add_option("ids", ids, "queue ids (none: every message)");
  auto* bounce = queue->add_subcommand("bounce", "give up now and return the messages to their senders");
  bounce->add_option("ids", ids, "queue ids")->required();
  auto* status = app.add_subcommand("status", "version, uptime, connections, queue counts");
  bool include_today = false;
  auto* tls_reports = app.add_subcommand("tls-reports", "TLS-RPT counts per domain and UTC day (RFC 8460)");
  auto* tls_send = tls_reports->add_subcommand("send", "mail the reports of the days that have ended now");
  tls_send->add_flag("--include-today", include_today, "and the current day so far (its counts start again)");
  auto* shaping = app.add_subcommand(
      "shaping", "each active site: domains, connections, rate and tokens, automation in force");

  sluice::api::KeyNewArgs kn;
  auto* api_key = app.add_subcommand("api-key", "HTTP API keys (no daemon needed)");
  api_key->require_subcommand(1);
  auto* key_new = api_key->add_subcommand("new", "make a key, append its hash to [http] api_keys_file, print it once");
  key_new->add_option("NAME", kn.name, "the key's name (logs, Received fields)")->required();
  key_new->add_option("--senders", kn.senders, "the senders it may use: addresses and @domains, comma-separated");

  sluice::dnsrec::KeygenArgs kg;
  auto* dkim = app.add_subcommand("dkim", "DKIM keys (no daemon needed)");
  dkim->require_subcommand(1);
  auto* keygen = dkim->add_subcommand("keygen", "write a new key file and print its TXT record");
  keygen->add_option("--domain", kg.domain, "the signing domain (d=)")->required();
  keygen->add_option("--selector", kg.selector, "the selector (s=), e.g. s2026a")->required();
  keygen->add_option("--type", kg.type, "rsa (default) or ed25519")->check(CLI::IsMember({"rsa", "ed25519"}));
  keygen->add_option("--bits", kg.bits, "RSA key size, 1024..8192 (default 2048)");
  keygen->add_option("--out", kg.out, "the key file (default /etc/sluice/dkim/DOMAIN.SELECTOR.key)");
  sluice::dnsrec::DnsRecordsArgs dr;
  auto* records = app.add_subcommand("dns-records", "the DNS records to publish, and --check (no daemon needed)");
  records->add_option("--domain", dr.domains, "a sending domain (repeatable; default: the [[dkim]] domains)");
  records->add_option("--ip", dr.ips, "a sending address (repeatable; default: this machine's global ones)");
  records->add_flag("--check", dr.check, "look each record up and say whether it is right");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? ctl::kExitOk : ctl::kExitUsage;
  }

  if (key_new->parsed()) {
    kn.config_path = sluice::conf::config_path(config_flag);
    return sluice::api::key_new(kn, std::cout, std::cerr);
  }
  if (keygen->parsed()) {
    kg.config_path = sluice::conf::config_path(config_flag);
    return sluice::dnsrec::keygen(kg, std::cout, std::cerr);
  }
  if (records->parsed()) {
    dr.config_path = sluice::conf::config_path(config_flag);
    dr.json = json;
    int rc = sluice::dnsrec::dns_records(dr, std::cout, std::cerr);
    std::cout.flush();
    return rc;
  }

  if (list->parsed()) {
    req.command = ctl::Command::list;
    if (state == "queued") req.state = sluice::queue::MessageState::queued;
    if (state == "deferred") req.state = sluice::queue::MessageState::deferred;
    if (state == "held") req.state = sluice::queue::MessageState::held;
  } else if (show->parsed()) {
    req.command = ctl::Command::show;
    req.id = id;
    req.body = body;
  } else if (del->parsed()) {
    if (all == !ids.empty()) {
      fmt::print(stderr, "sluicectl: queue delete takes queue ids or --all\n");
      return ctl::kExitUsage;
    }
    req.command = ctl::Command::remove;
    req.all = all;
  } else if (hold->parsed()) {
    req.command = ctl::Command::hold;
  } else if (release->parsed()) {
    req.command = ctl::Command::release;
  } else if (flush->parsed()) {
    req.command = ctl::Command::flush;
  } else if (bounce->parsed()) {
    req.command = ctl::Command::bounce;
  } else if (status->parsed()) {
    req.command = ctl::Command::status;
  } else if (tls_send->parsed()) {
    req.command = ctl::Command::tls_reports_send;
    req.include_today = include_today;
  } else if (tls_reports->parsed()) {
    req.command = ctl::Command::tls_reports;
  } else if (shaping->parsed()) {
    req.command = ctl::Command::shaping;
  }
  req.ids = ids;
  if (req.ids.size() > ctl::kMaxIds) {
    fmt::print(stderr, "sluicectl: at most {} queue ids at once\n", ctl::kMaxIds);
    return ctl::kExitUsage;
  }

  std::string socket = socket_flag;
  if (socket.empty()) {
    std::string path = sluice::conf::config_path(config_flag);
    auto config = sluice::conf::load_file(path);
    if (!config) {
      for (const auto& p : config.error()) fmt::print(stderr, "{}\n", p.str(path));
      fmt::print(stderr, "sluicectl: cannot find the control socket in {}; give it with --socket\n",
                 path);
      return ctl::kExitUnreachable;
    }
    socket = config->control_socket;
  }
  auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  int rc = ctl::run_request(socket, req, json, std::cout, std::cerr, timeout);
  std::cout.flush();
  return rc;
}
