// attempt_test.cpp — one job's delivery attempt, as tables and scripts:
// events in (a lookup's answer, what a host did), decisions and verdicts out.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "queue/attempt.hpp"

using namespace sluice;
using namespace sluice::queue;
using policy::RecipientResult;
using policy::SessionEvent;
using policy::SessionFailure;
using policy::Stage;

namespace {

const policy::Context kMx{};
const policy::Context kRelay{.via_relayhost = true};

net::IpAddress ip(const char* s) { return *net::IpAddress::parse(s); }

Outcome reply(int code, std::string enhanced, std::string text) {
  return Outcome{code, std::move(enhanced), std::move(text)};
}

// example.com: mx1 (192.0.2.1 and 2001:db8::1), mx2 (192.0.2.2).
dns::MxResult two_mx() {
  dns::MxResult r;
  r.status = dns::Status::ok;
  r.hosts.push_back({"mx1.example.com", 10, {ip("192.0.2.1")}, {ip("2001:db8::1")}});
  r.hosts.push_back({"mx2.example.com", 20, {ip("192.0.2.2")}, {}});
  return r;
}

dns::MxResult failed_mx(dns::Status s, std::string reason) {
  dns::MxResult r;
  r.status = s;
  r.reason = std::move(reason);
  return r;
}

RecipientResult res(Stage st, Outcome r, bool remote = true) { return RecipientResult{st, std::move(r), remote}; }
RecipientResult sent() { return res(Stage::end_of_data, reply(250, "2.0.0", "queued")); }

SessionEvent failure(SessionFailure what, std::string host, Outcome r = {}, std::string detail = {},
                     bool data_sent = false) {
  return SessionEvent{what, std::move(host), std::move(r), std::move(detail), data_sent};
}

std::string target_of(const DeliveryAttempt::Decision& d) {
  auto* c = std::get_if<DeliveryAttempt::Connect>(&d);
  return c ? c->target.host + "[" + c->target.ip.str() + "]" : std::string();
}

// A connection to the Connect decision's target: its host names are what
// Delivery would pass.
void connect(DeliveryAttempt& a, const DeliveryAttempt::Decision& d, bool reused = false) {
  std::string h = target_of(d);
  REQUIRE(!h.empty());
  a.on_connection(h, h + ":25", reused);
}

}  // namespace

TEST_CASE("attempt: DNS answers") {
  struct Row {
    dns::Status status;
    policy::Context ctx;
    Action action;
    const char* status_code;
    const char* reply;
  };
  const std::vector<Row> rows = {
      {dns::Status::nxdomain, kMx, Action::bounce, "5.1.2", "550 5.1.2 nx.example: domain does not exist (NXDOMAIN)"},
      {dns::Status::no_route, kMx, Action::bounce, "5.4.4", "550 5.4.4 nx.example: domain does not exist (NXDOMAIN)"},
      {dns::Status::null_mx, kMx, Action::bounce, "5.1.10", "556 5.1.10 nx.example does not accept mail (null MX)"},
      {dns::Status::temporary, kMx, Action::defer, "4.4.3", "451 4.4.3 nx.example: domain does not exist (NXDOMAIN)"},
      // The reason is prose: only the status decides (a temporary failure
      // whose text happens to read like NXDOMAIN defers).
      {dns::Status::nxdomain, kRelay, Action::defer, "4.4.3",
       "451 4.4.3 relayhost lookup failed: nx.example: domain does not exist (NXDOMAIN)"},
  };
  for (const Row& r : rows) {
    INFO(dns::to_string(r.status) << " relayhost=" << r.ctx.via_relayhost);
    DeliveryAttempt a(2, r.ctx);
    CHECK(a.on_mx(failed_mx(r.status, "nx.example: domain does not exist (NXDOMAIN)"), "nx.example") ==
          DeliveryAttempt::Decision{DeliveryAttempt::Done{}});
    auto out = a.finish();
    REQUIRE(out.verdicts.size() == 2);
    for (const Verdict& v : out.verdicts) {
      CHECK(v.action == r.action);
      CHECK(v.status == r.status_code);
      CHECK(v.reply == r.reply);
      CHECK(v.remote_host.empty());
    }
    CHECK(out.relays == std::vector<std::string>{"none", "none"});
  }
  SECTION("the relayhost's addresses") {
    DeliveryAttempt a(1, kRelay);
    dns::AddrResult r;
    r.status = dns::Status::ok;
    r.ipv4 = {ip("192.0.2.9")};
    r.ipv6 = {ip("2001:db8::9")};
    auto d = a.on_addresses(r, "relay.example");
    CHECK(target_of(d) == "relay.example[192.0.2.9]");
    CHECK(a.targets().size() == 2);
    CHECK(a.targets()[1].ip.str() == "2001:db8::9");
  }
  SECTION("a failed relayhost lookup defers") {
    DeliveryAttempt a(1, kRelay);
    dns::AddrResult r;
    r.status = dns::Status::no_route;
    r.reason = "relay.example: no A or AAAA records";
    CHECK(std::holds_alternative<DeliveryAttempt::Done>(a.on_addresses(r, "relay.example")));
    CHECK(a.finish().verdicts[0].action == Action::defer);
    CHECK(a.finish().verdicts[0].status == "4.4.3");
  }
}

TEST_CASE("attempt: targets in MX order, each host's IPv4 before its IPv6") {
  DeliveryAttempt a(1, kMx);
  auto d = a.on_mx(two_mx(), "example.com");
  std::vector<std::string> order;
  while (std::holds_alternative<DeliveryAttempt::Connect>(d)) {
    order.push_back(target_of(d));
    connect(a, d);
    d = a.on_host_done({{}, failure(SessionFailure::connect_failed, order.back(), {}, "Connection refused")});
  }
  CHECK(order == std::vector<std::string>{"mx1.example.com[192.0.2.1]", "mx1.example.com[2001:db8::1]",
                                          "mx2.example.com[192.0.2.2]"});
  auto out = a.finish();
  CHECK(out.verdicts[0].action == Action::defer);
  CHECK(out.verdicts[0].reply == "451 4.4.1 connect to mx2.example.com[192.0.2.2]: Connection refused");
  CHECK(out.relays[0] == "mx2.example.com[192.0.2.2]:25");
  CHECK(a.failures().size() == 3);
}

TEST_CASE("attempt: what the first host's failure leads to") {
  const std::string h = "mx1.example.com[192.0.2.1]";
  struct Row {
    const char* name;
    HostReport report;
    bool next_host;      // Connect to the next address, else Done
    Action action;       // the verdict if the second host cannot be reached either / or at once
    const char* status;
  };
  const std::vector<Row> rows = {
      {"4xx greeting: next MX", {{}, failure(SessionFailure::greeting, h, reply(421, "4.3.2", "busy"))}, true,
       Action::defer, "4.4.1"},
      {"EHLO 4xx: next MX", {{}, failure(SessionFailure::helo, h, reply(451, "", "later"))}, true, Action::defer,
       "4.4.1"},
      {"connection refused: next MX", {{}, failure(SessionFailure::connect_failed, h, {}, "Connection refused")},
       true, Action::defer, "4.4.1"},
      {"TLS failed: next MX", {{}, failure(SessionFailure::tls_failed, h, {}, "handshake failed")}, true,
       Action::defer, "4.4.1"},
      {"4xx to MAIL: next MX",
       {{res(Stage::mail, reply(451, "4.3.0", "later")), res(Stage::mail, reply(451, "4.3.0", "later"))}, {}},
       true, Action::defer, "4.4.1"},
      {"5xx to MAIL: no next MX, bounce",
       {{res(Stage::mail, reply(553, "5.1.8", "bad sender")), res(Stage::mail, reply(553, "5.1.8", "bad sender"))},
        {}},
       false, Action::bounce, "5.1.8"},
      {"lost before the end of the data: next MX",
       {{res(Stage::message, reply(451, "4.4.2", "Lost connection"), false),
         res(Stage::message, reply(451, "4.4.2", "Lost connection"), false)},
        failure(SessionFailure::connection_lost, h, {}, "while sending the message content")},
       true, Action::defer, "4.4.1"},
      {"data sent, then the connection lost: defer, no next MX",
       {{res(Stage::end_of_data, reply(451, "4.4.2", "Lost connection"), false),
         res(Stage::end_of_data, reply(451, "4.4.2", "Lost connection"), false)},
        failure(SessionFailure::connection_lost, h, {}, "after end of data", true)},
       false, Action::defer, "4.4.2"},
      {"data sent, then a timeout: defer, no next MX",
       {{}, failure(SessionFailure::timeout, h, {}, "while sending end of data", true)}, false, Action::defer,
       "4.4.2"},
      {"too big for the server's SIZE: bounce 5.3.4, no next MX",
       {{}, failure(SessionFailure::too_big, h, {}, "size 2000 over its limit 1000")}, false, Action::bounce,
       "5.3.4"},
      {"relayhost credentials refused: defer, no next host",
       {{}, failure(SessionFailure::auth_failed, h, reply(535, "5.7.8", "bad credentials"))}, false,
       Action::defer, "4.7.8"},
  };
  for (const Row& r : rows) {
    INFO(r.name);
    DeliveryAttempt a(2, kMx);
    auto d = a.on_mx(two_mx(), "example.com");
    connect(a, d);
    REQUIRE(a.start_transaction() == std::vector<size_t>{0, 1});
    d = a.on_host_done(r.report);
    CHECK(std::holds_alternative<DeliveryAttempt::Connect>(d) == r.next_host);
    if (r.next_host) {
      CHECK(target_of(d) == "mx1.example.com[2001:db8::1]");
      connect(a, d);
      d = a.on_host_done({{}, failure(SessionFailure::connect_failed, "mx1.example.com[2001:db8::1]")});
      CHECK(target_of(d) == "mx2.example.com[192.0.2.2]");
      connect(a, d);
      d = a.on_host_done({{}, failure(SessionFailure::connect_failed, "mx2.example.com[192.0.2.2]")});
    }
    REQUIRE(std::holds_alternative<DeliveryAttempt::Done>(d));
    auto out = a.finish();
    for (const Verdict& v : out.verdicts) {
      CHECK(v.action == r.action);
      CHECK(v.status == r.status);
    }
  }
}

TEST_CASE("attempt: a RCPT refusal is kept, the next host gets only the others") {
  DeliveryAttempt a(3, kMx);
  auto d = a.on_mx(two_mx(), "example.com");
  connect(a, d);
  REQUIRE(a.start_transaction() == std::vector<size_t>{0, 1, 2});
  // b@ is refused for good; the connection then times out before the data.
  d = a.on_host_done({{res(Stage::data, reply(451, "4.4.2", "timed out"), false),
                       res(Stage::rcpt, reply(550, "5.1.1", "no such user")),
                       res(Stage::data, reply(451, "4.4.2", "timed out"), false)},
                      failure(SessionFailure::timeout, "mx1.example.com[192.0.2.1]", {}, "while sending DATA")});
  REQUIRE(target_of(d) == "mx1.example.com[2001:db8::1]");
  REQUIRE(a.decided()[1].has_value());
  CHECK(a.decided()[1]->action == Action::bounce);
  connect(a, d);
  CHECK(a.start_transaction() == std::vector<size_t>{0, 2});
  d = a.on_host_done({{sent(), sent()}, {}});
  CHECK(std::holds_alternative<DeliveryAttempt::Done>(d));
  auto out = a.finish();
  CHECK(out.verdicts[0].action == Action::sent);
  CHECK(out.verdicts[0].remote_host == "mx1.example.com[2001:db8::1]");
  CHECK(out.verdicts[1].action == Action::bounce);
  CHECK(out.verdicts[1].status == "5.1.1");
  CHECK(out.verdicts[1].remote_host == "mx1.example.com[192.0.2.1]");
  CHECK(out.verdicts[2].action == Action::sent);
  CHECK(out.relays == std::vector<std::string>{"mx1.example.com[2001:db8::1]:25", "mx1.example.com[192.0.2.1]:25",
                                               "mx1.example.com[2001:db8::1]:25"});
}

TEST_CASE("attempt: a reused connection that fails starts the job over") {
  SECTION("before the data: a fresh lookup, the failure is not counted") {
    DeliveryAttempt a(1, kMx);
    a.on_connection("mx2.example.com[192.0.2.2]", "mx2.example.com[192.0.2.2]:25", true);
    CHECK(a.start_transaction() == std::vector<size_t>{0});
    auto d = a.on_host_done({{res(Stage::mail, reply(451, "4.4.2", "lost"), false)},
                             failure(SessionFailure::connection_lost, "mx2.example.com[192.0.2.2]", {},
                                     "while sending MAIL FROM")});
    CHECK(d == DeliveryAttempt::Decision{DeliveryAttempt::Resolve{}});
    CHECK(a.failures().empty());
    d = a.on_mx(two_mx(), "example.com");
    CHECK(target_of(d) == "mx1.example.com[192.0.2.1]");
    connect(a, d);  // a new connection: its failures count
    a.start_transaction();
    d = a.on_host_done({{}, failure(SessionFailure::greeting, "mx1.example.com[192.0.2.1]", reply(421, "", "busy"))});
    CHECK(target_of(d) == "mx1.example.com[2001:db8::1]");
    CHECK(a.failures().size() == 1);
  }
  SECTION("after the end of the data: the server may have it, no restart") {
    DeliveryAttempt a(1, kMx);
    a.on_connection("mx2.example.com[192.0.2.2]", "mx2.example.com[192.0.2.2]:25", true);
    a.start_transaction();
    auto d = a.on_host_done({{}, failure(SessionFailure::timeout, "mx2.example.com[192.0.2.2]", {},
                                         "while sending end of data", true)});
    CHECK(d == DeliveryAttempt::Decision{DeliveryAttempt::Done{}});
    CHECK(a.finish().verdicts[0].status == "4.4.2");
  }
  SECTION("a 5xx to MAIL on a reused connection bounces, no restart") {
    DeliveryAttempt a(1, kMx);
    a.on_connection("mx2.example.com[192.0.2.2]", "mx2.example.com[192.0.2.2]:25", true);
    a.start_transaction();
    auto d = a.on_host_done({{res(Stage::mail, reply(550, "5.7.1", "sender denied"))}, {}});
    CHECK(d == DeliveryAttempt::Decision{DeliveryAttempt::Done{}});
    CHECK(a.finish().verdicts[0].action == Action::bounce);
  }
  SECTION("a transaction that ends well: done, nothing restarts") {
    DeliveryAttempt a(2, kMx);
    a.on_connection("mx2.example.com[192.0.2.2]", "mx2.example.com[192.0.2.2]:25", true);
    a.start_transaction();
    CHECK(a.on_host_done({{sent(), res(Stage::rcpt, reply(550, "5.1.1", "unknown"))}, {}}) ==
          DeliveryAttempt::Decision{DeliveryAttempt::Done{}});
    auto out = a.finish();
    CHECK(out.verdicts[0].action == Action::sent);
    CHECK(out.verdicts[1].action == Action::bounce);
    CHECK(out.relays[0] == "mx2.example.com[192.0.2.2]:25");
  }
}

TEST_CASE("attempt: every host refusing at the greeting for good bounces; one that could not be reached defers") {
  DeliveryAttempt all(1, kMx);
  auto d = all.on_mx(two_mx(), "example.com");
  while (std::holds_alternative<DeliveryAttempt::Connect>(d)) {
    connect(all, d);
    d = all.on_host_done({{}, failure(SessionFailure::greeting, target_of(d), reply(554, "5.7.1", "go away"))});
  }
  CHECK(all.finish().verdicts[0].action == Action::bounce);

  DeliveryAttempt one(1, kMx);
  d = one.on_mx(two_mx(), "example.com");
  connect(one, d);
  d = one.on_host_done({{}, failure(SessionFailure::greeting, target_of(d), reply(554, "5.7.1", "go away"))});
  connect(one, d);
  d = one.on_host_done({{}, failure(SessionFailure::connect_failed, target_of(d), {}, "Connection refused")});
  connect(one, d);
  d = one.on_host_done({{}, failure(SessionFailure::greeting, target_of(d), reply(554, "5.7.1", "go away"))});
  REQUIRE(std::holds_alternative<DeliveryAttempt::Done>(d));
  CHECK(one.finish().verdicts[0].action == Action::defer);
}

TEST_CASE("attempt: a relayhost defers whatever it answers at the session level") {
  DeliveryAttempt a(1, kRelay);
  dns::AddrResult r;
  r.status = dns::Status::ok;
  r.ipv4 = {ip("192.0.2.9")};
  auto d = a.on_addresses(r, "relay.example");
  connect(a, d);
  d = a.on_host_done({{}, failure(SessionFailure::greeting, "relay.example[192.0.2.9]", reply(554, "5.7.1", "no"))});
  REQUIRE(std::holds_alternative<DeliveryAttempt::Done>(d));  // no address left
  auto v = a.finish().verdicts[0];
  CHECK(v.action == Action::defer);
  CHECK(v.status == "4.7.1");
}

TEST_CASE("attempt: stop() ends the attempt at the next event") {
  SECTION("nothing final learnt: interrupted") {
    DeliveryAttempt a(2, kMx);
    auto d = a.on_mx(two_mx(), "example.com");
    connect(a, d);
    a.start_transaction();
    a.stop();
    d = a.on_host_done({{res(Stage::rcpt, reply(451, "4.3.2", "Delivery aborted"), false),
                         res(Stage::rcpt, reply(451, "4.3.2", "Delivery aborted"), false)},
                        {}});
    CHECK(d == DeliveryAttempt::Decision{DeliveryAttempt::Done{}});
    CHECK(a.interrupted());
  }
  SECTION("a bounce was learnt: not interrupted, it is written") {
    DeliveryAttempt a(2, kMx);
    auto d = a.on_mx(two_mx(), "example.com");
    connect(a, d);
    a.start_transaction();
    a.stop();
    d = a.on_host_done({{res(Stage::rcpt, reply(550, "5.1.1", "unknown")),
                         res(Stage::data, reply(451, "4.4.2", "lost"), false)},
                        failure(SessionFailure::connection_lost, "mx1.example.com[192.0.2.1]")});
    CHECK(d == DeliveryAttempt::Decision{DeliveryAttempt::Done{}});
    CHECK_FALSE(a.interrupted());
    auto out = a.finish();
    CHECK(out.verdicts[0].action == Action::bounce);
    CHECK(out.verdicts[1].action == Action::defer);
  }
  SECTION("a reused connection is not restarted while stopping") {
    DeliveryAttempt a(1, kMx);
    a.on_connection("mx[192.0.2.1]", "mx[192.0.2.1]:25", true);
    a.start_transaction();
    a.stop();
    CHECK(a.on_host_done({{}, failure(SessionFailure::connection_lost, "mx[192.0.2.1]")}) ==
          DeliveryAttempt::Decision{DeliveryAttempt::Done{}});
    CHECK(a.interrupted());
  }
}

TEST_CASE("attempt: no reason given for undecided recipients reads as a lost connection") {
  DeliveryAttempt a(1, kMx);
  auto d = a.on_mx(two_mx(), "example.com");
  connect(a, d);
  a.start_transaction();
  d = a.on_host_done({{}, {}});
  CHECK(target_of(d) == "mx1.example.com[2001:db8::1]");
  REQUIRE(a.failures().size() == 1);
  CHECK(a.failures()[0].what == SessionFailure::connection_lost);
  CHECK(a.failures()[0].detail == "(delivery aborted)");
}

// --- loops (docs/delivery.md, "Mail loops") ----------------------------------

namespace {

// This Sluice listens on 192.0.2.2:25 (mx2 of two_mx()) and on every local
// address at port 2525.
std::shared_ptr<const Myself> listening(std::vector<const char*> listeners) {
  std::vector<net::Endpoint> l;
  for (auto* s : listeners) l.push_back(*net::Endpoint::parse(s));
  std::vector<net::IpAddress> ifs = {ip("192.0.2.50")};
  return std::make_shared<const Myself>(l, ifs);
}

void check_loop_bounce(const DeliveryAttempt& a, const char* reply) {
  auto out = a.finish();
  for (const Verdict& v : out.verdicts) {
    CHECK(v.action == Action::bounce);
    CHECK(v.status == "5.4.6");
    CHECK(v.reply == reply);
  }
  CHECK(a.failures().empty());  // nothing was connected to
}

}  // namespace

TEST_CASE("attempt: a backup MX that is myself is never tried") {
  DeliveryAttempt a(1, kMx, listening({"192.0.2.2:25"}), 25);
  auto d = a.on_mx(two_mx(), "example.com");
  CHECK(target_of(d) == "mx1.example.com[192.0.2.1]");
  CHECK(a.targets().size() == 2);  // mx1's two addresses; mx2 is gone
  connect(a, d);
  d = a.on_host_done({{}, failure(SessionFailure::connect_failed, "mx1.example.com[192.0.2.1]", {}, "refused")});
  connect(a, d);
  d = a.on_host_done({{}, failure(SessionFailure::connect_failed, "mx1.example.com[2001:db8::1]", {}, "refused")});
  CHECK(std::holds_alternative<DeliveryAttempt::Done>(d));
  CHECK(a.finish().verdicts[0].action == Action::defer);  // the real MX was down: try later
}

TEST_CASE("attempt: the best MX is myself: nothing is left, the recipients bounce with 5.4.6") {
  dns::MxResult r = two_mx();
  r.hosts[0].ipv4 = {ip("192.0.2.50")};  // mx1 is this host (an interface address)
  SECTION("a wildcard listener at the delivery port") {
    DeliveryAttempt a(2, kMx, listening({"0.0.0.0:25"}), 25);
    CHECK(a.on_mx(r, "example.com") == DeliveryAttempt::Decision{DeliveryAttempt::Done{}});
    check_loop_bounce(a, "554 5.4.6 mail for example.com loops back to myself");
  }
  SECTION("the same wildcard listener at another port is not myself") {
    DeliveryAttempt a(2, kMx, listening({"0.0.0.0:2525"}), 25);
    CHECK(target_of(a.on_mx(r, "example.com")) == "mx1.example.com[192.0.2.50]");
  }
  SECTION("the implicit MX that is myself") {
    dns::MxResult implicit;
    implicit.status = dns::Status::ok;
    implicit.implicit_mx = true;
    implicit.hosts.push_back({"example.com", 0, {ip("127.0.0.1")}, {}});
    DeliveryAttempt a(1, kMx, listening({"127.0.0.1:25"}), 25);
    CHECK(a.on_mx(implicit, "example.com") == DeliveryAttempt::Decision{DeliveryAttempt::Done{}});
    check_loop_bounce(a, "554 5.4.6 mail for example.com loops back to myself");
  }
  SECTION("without a Myself nothing is pruned") {
    DeliveryAttempt a(1, kMx);
    CHECK(target_of(a.on_mx(r, "example.com")) == "mx1.example.com[192.0.2.50]");
  }
}

TEST_CASE("attempt: a relayhost that is myself bounces with 5.4.6") {
  dns::AddrResult r;
  r.status = dns::Status::ok;
  r.ipv4 = {ip("192.0.2.9"), ip("127.0.0.1")};
  SECTION("myself at the relayhost's port") {
    DeliveryAttempt a(2, kRelay, listening({"127.0.0.1:587"}), 587);
    CHECK(a.on_addresses(r, "relay.example") == DeliveryAttempt::Decision{DeliveryAttempt::Done{}});
    check_loop_bounce(a, "554 5.4.6 mail for relay.example loops back to myself");
  }
  SECTION("another port") {
    DeliveryAttempt a(1, kRelay, listening({"127.0.0.1:25"}), 587);
    CHECK(target_of(a.on_addresses(r, "relay.example")) == "relay.example[192.0.2.9]");
  }
}

TEST_CASE("attempt: an EHLO reply naming our hostname defers with 4.4.6 and the next MX is tried") {
  DeliveryAttempt a(1, kMx, listening({"127.0.0.1:25"}), 25);
  auto d = a.on_mx(two_mx(), "example.com");
  connect(a, d);
  d = a.on_host_done({{}, failure(SessionFailure::loop, "mx1.example.com[192.0.2.1]", {},
                                  "Server replied to EHLO with my own hostname mx.sluice.test")});
  CHECK(target_of(d) == "mx1.example.com[2001:db8::1]");
  connect(a, d);
  d = a.on_host_done({{}, failure(SessionFailure::loop, "mx1.example.com[2001:db8::1]", {}, "named")});
  REQUIRE(target_of(d) == "mx2.example.com[192.0.2.2]");
  SECTION("the next MX takes it") {
    connect(a, d);
    (void)a.start_transaction();
    CHECK(std::holds_alternative<DeliveryAttempt::Done>(a.on_host_done({{sent()}, std::nullopt})));
    CHECK(a.finish().verdicts[0].action == Action::sent);
  }
  SECTION("every MX names us: deferred with 4.4.6") {
    connect(a, d);
    d = a.on_host_done({{}, failure(SessionFailure::loop, "mx2.example.com[192.0.2.2]", {}, "named")});
    CHECK(std::holds_alternative<DeliveryAttempt::Done>(d));
    auto v = a.finish().verdicts[0];
    CHECK(v.action == Action::defer);
    CHECK(v.status == "4.4.6");
    CHECK(v.reply == "451 4.4.6 mail loops back to myself at mx2.example.com[192.0.2.2]: named");
  }
}

TEST_CASE("attempt: each recipient keeps the protection of the session that decided it") {
  dns::MxResult r = two_mx();
  r.hosts[1].secure = true;  // mx2's addresses are DNSSEC-validated
  DeliveryAttempt a(2, kMx);
  auto d = a.on_mx(r, "example.com");
  REQUIRE(target_of(d) == "mx1.example.com[192.0.2.1]");
  CHECK_FALSE(std::get<DeliveryAttempt::Connect>(d).target.secure);
  connect(a, d);
  a.start_transaction();
  // a@ refused for good over opportunistic TLS; the connection is lost before b@'s data.
  HostReport first{{res(Stage::rcpt, reply(550, "5.1.1", "no such user")),
                    res(Stage::data, reply(451, "4.4.2", "lost"), false)},
                   failure(SessionFailure::connection_lost, "mx1.example.com[192.0.2.1]", {}, "after RCPT TO")};
  first.tls = TlsLevel::opportunistic;
  d = a.on_host_done(first);
  REQUIRE(target_of(d) == "mx1.example.com[2001:db8::1]");
  connect(a, d);
  a.start_transaction();
  HostReport second{{}, failure(SessionFailure::tls_failed, "mx1.example.com[2001:db8::1]", {}, "no")};
  second.tls = TlsLevel::none;
  d = a.on_host_done(second);
  REQUIRE(target_of(d) == "mx2.example.com[192.0.2.2]");
  CHECK(std::get<DeliveryAttempt::Connect>(d).target.secure);
  connect(a, d);
  a.start_transaction();
  HostReport third{{sent()}, {}};
  third.tls = TlsLevel::dane;
  CHECK(std::holds_alternative<DeliveryAttempt::Done>(a.on_host_done(third)));
  auto out = a.finish();
  CHECK(out.tls == std::vector<TlsLevel>{TlsLevel::opportunistic, TlsLevel::dane});
  CHECK(out.verdicts[0].tls == TlsLevel::opportunistic);  // what the scheduler stores per recipient
  CHECK(out.verdicts[1].tls == TlsLevel::dane);
  CHECK(to_string(out.tls[1]) == "dane");
}

TEST_CASE("attempt: undecided recipients get the last session's protection") {
  DeliveryAttempt a(1, kMx);
  auto d = a.on_mx(two_mx(), "example.com");
  for (int i = 0; i < 3; ++i) {
    connect(a, d);
    a.start_transaction();
    HostReport rep{{}, failure(SessionFailure::tls_failed, target_of(d), {}, "certificate")};
    rep.tls = i == 2 ? TlsLevel::mta_sts : TlsLevel::none;
    d = a.on_host_done(rep);
  }
  CHECK(a.finish().tls == std::vector<TlsLevel>{TlsLevel::mta_sts});
}
