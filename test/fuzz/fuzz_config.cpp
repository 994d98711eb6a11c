// fuzz_config — libFuzzer target for the configuration file (conf/config.hpp):
// the whole input is handed to conf::parse() as a sluice.toml, and short
// inputs also to parse_duration() and parse_size(). An administrator's file is
// trusted, but a typo, a truncated copy or a file in the wrong encoding must
// still give a list of problems, never a crash, a hang or a Config that
// breaks the rules the daemon relies on.
//
// Invariants checked (std::abort() on violation):
//   - parse() returns; exceptions never escape it.
//   - A failure lists at least one problem, each with a message, in file
//     order (problems with a line first, lines not decreasing).
//   - A success has: a valid-looking hostname, at least one listener and no
//     two on the same address and port, absolute spool_dir and
//     control_socket (<= 107 bytes), absolute optional paths, TLS certificate
//     and key both set or both empty, no implicit-TLS listener without them,
//     relayhost credentials only in pairs, with a relayhost and not with
//     tls = "none", a relayhost port >= 1, positive limits, timeouts and
//     retry steps.
//   - parse_duration() never yields a negative duration; parse_size() and
//     parse_duration() agree with themselves on a second call.
//
// Hermetic: parse() asks the system for the machine's name when the file
// sets no hostname. gethostname() is local, but getaddrinfo() could ask a DNS
// server on every run, so this binary provides its own getaddrinfo() that
// knows no names (the machine name is then used as it is). The sanitizer
// runtimes define their interceptor as a weak symbol; this definition wins.
#include <netdb.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "conf/config.hpp"

extern "C" int getaddrinfo(const char*, const char*, const struct addrinfo*,
                           struct addrinfo** res) {
  if (res != nullptr) *res = nullptr;
  return EAI_NONAME;
}

namespace {

using namespace sluice::conf;

void require(bool ok) {
  if (!ok) std::abort();
}

bool absolute_or_empty(const std::string& p) { return p.empty() || p.front() == '/'; }

void check_config(const Config& c) {
  require(!c.hostname.empty() && c.hostname.size() <= 255);
  for (char ch : c.hostname)
    require((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.');

  require(!c.spool_dir.empty() && c.spool_dir.front() == '/');
  require(!c.control_socket.empty() && c.control_socket.front() == '/' &&
          c.control_socket.size() <= 107);
  require(!c.user.empty());

  require(!c.listeners.empty());
  std::set<std::pair<std::string, uint16_t>> seen;
  bool implicit_tls = false;
  for (const Listener& l : c.listeners) {
    require(!l.address.empty());
    require(seen.insert({l.endpoint.ip.str(), l.endpoint.port}).second);
    implicit_tls = implicit_tls || l.mode == ListenerMode::submissions;
  }

  require(absolute_or_empty(c.tls.certificate) && absolute_or_empty(c.tls.private_key));
  require(c.tls.certificate.empty() == c.tls.private_key.empty());
  require(!implicit_tls || !c.tls.certificate.empty());
  require(absolute_or_empty(c.auth.users_file));

  const Limits& l = c.limits;
  require(l.max_message_size > 0 && l.max_recipients > 0 && l.max_connections > 0 &&
          l.max_connections_per_client > 0);
  require(l.command_timeout.count() > 0 && l.data_timeout.count() > 0);

  const Delivery& d = c.delivery;
  require(d.max_connections > 0 && d.max_connections_per_destination > 0 && d.port > 0);
  require(!d.retry_schedule.empty());
  for (const Duration& step : d.retry_schedule) require(step.count() > 0);
  require(d.max_queue_lifetime.count() > 0);
  if (!d.relayhost.empty()) require(!d.relayhost_name.empty() && d.relayhost_port > 0);
  const bool user = !d.relayhost_username.empty();
  const bool password = !d.relayhost_password_file.empty();
  require(user == password);
  require(absolute_or_empty(d.relayhost_password_file));
  if (user) require(!d.relayhost.empty() && d.tls != DeliveryTls::none);
}

void check_problems(const std::vector<Problem>& problems) {
  require(!problems.empty());
  int last = 0;
  bool unnumbered = false;
  for (const Problem& p : problems) {
    require(!p.message.empty());
    require(p.line >= 0);
    if (p.line == 0) {
      unnumbered = true;
    } else {
      require(!unnumbered && p.line >= last);  // file order, line-less ones last
      last = p.line;
    }
    require(!p.str("fuzz.toml").empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);

  auto result = parse(in, "fuzz.toml");
  if (result)
    check_config(*result);
  else
    check_problems(result.error());

  // The value parsers on their own, for inputs the size of a value.
  if (size <= 64) {
    auto d = parse_duration(in);
    if (d) require(d->count() >= 0);
    require(d.has_value() == parse_duration(in).has_value());
    auto s = parse_size(in);
    auto again = parse_size(in);
    require(s.has_value() == again.has_value() && (!s || *s == *again));
  }
  return 0;
}
