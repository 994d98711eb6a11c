// myself_test.cpp — which next hop is this Sluice (queue/myself), and the
// MX pruning rule of RFC 5321 §5.1, as tables.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "queue/myself.hpp"

using namespace sluice;
using namespace sluice::queue;

namespace {

net::IpAddress ip(const char* s) { return *net::IpAddress::parse(s); }
net::Endpoint ep(const char* s) { return *net::Endpoint::parse(s); }

Myself make(std::vector<const char*> listeners, std::vector<const char*> interfaces = {}) {
  std::vector<net::Endpoint> l;
  for (auto* s : listeners) l.push_back(ep(s));
  std::vector<net::IpAddress> i;
  for (auto* s : interfaces) i.push_back(ip(s));
  return Myself(l, i);
}

dns::MxHost host(const char* name, uint16_t pref, std::vector<const char*> v4,
                 std::vector<const char*> v6 = {}) {
  dns::MxHost h{name, pref, {}, {}};
  for (auto* s : v4) h.ipv4.push_back(ip(s));
  for (auto* s : v6) h.ipv6.push_back(ip(s));
  return h;
}

std::vector<std::string> names(const std::vector<dns::MxHost>& hosts) {
  std::vector<std::string> out;
  for (const auto& h : hosts) out.push_back(h.name);
  return out;
}

}  // namespace

TEST_CASE("myself: a next hop is myself when it matches a socket Sluice listens on") {
  const std::vector<const char*> ifs = {"192.0.2.7", "2001:db8::7", "fe80::1"};
  struct Row {
    std::vector<const char*> listeners;
    const char* target;
    uint16_t port;
    bool myself;
  };
  const std::vector<Row> rows = {
      // One address: that address and port only.
      {{"127.0.0.1:25"}, "127.0.0.1", 25, true},
      {{"127.0.0.1:25"}, "127.0.0.1", 2525, false},  // another port is not myself
      {{"127.0.0.1:25"}, "127.0.0.2", 25, false},    // a 127.x listener is only that address
      {{"127.0.0.1:25"}, "192.0.2.7", 25, false},
      {{"192.0.2.7:25"}, "192.0.2.7", 25, true},
      {{"192.0.2.7:25"}, "127.0.0.1", 25, false},
      {{"192.0.2.7:587", "127.0.0.1:25"}, "127.0.0.1", 25, true},
      {{"192.0.2.7:587", "127.0.0.1:25"}, "192.0.2.7", 25, false},
      // A wildcard: every local address of its family.
      {{"0.0.0.0:25"}, "127.0.0.1", 25, true},
      {{"0.0.0.0:25"}, "127.45.6.7", 25, true},  // all of 127.0.0.0/8
      {{"0.0.0.0:25"}, "192.0.2.7", 25, true},   // an interface's address
      {{"0.0.0.0:25"}, "192.0.2.8", 25, false},  // a neighbour
      {{"0.0.0.0:25"}, "198.51.100.1", 25, false},
      {{"0.0.0.0:25"}, "192.0.2.7", 26, false},
      {{"0.0.0.0:25"}, "::1", 25, false},  // IPv4 only
      // IPv6: exact and wildcard; an IPv6 listener is IPv6-only.
      {{"[::1]:25"}, "::1", 25, true},
      {{"[::1]:25"}, "127.0.0.1", 25, false},
      {{"[2001:db8::7]:25"}, "2001:db8::7", 25, true},
      {{"[2001:db8::7]:25"}, "2001:db8::8", 25, false},
      {{"[::]:25"}, "::1", 25, true},
      {{"[::]:25"}, "2001:db8::7", 25, true},
      {{"[::]:25"}, "fe80::1", 25, true},
      {{"[::]:25"}, "2001:db8::8", 25, false},
      {{"[::]:25"}, "127.0.0.1", 25, false},
      {{"[::]:25"}, "192.0.2.7", 25, false},
      {{"[::]:25"}, "::1", 587, false},
      // Where a connection really goes: a mapped address is its IPv4, and
      // the unspecified address is the loopback.
      {{"127.0.0.1:25"}, "::ffff:127.0.0.1", 25, true},
      {{"0.0.0.0:25"}, "::ffff:192.0.2.7", 25, true},
      {{"127.0.0.1:25"}, "0.0.0.0", 25, true},
      {{"0.0.0.0:25"}, "0.0.0.0", 25, true},
      {{"[::1]:25"}, "::", 25, true},
      {{"192.0.2.7:25"}, "0.0.0.0", 25, false},
      // Listening nowhere at that port: nothing is myself.
      {{}, "127.0.0.1", 25, false},
  };
  for (const Row& r : rows) {
    std::string ls;
    for (auto* l : r.listeners) ls += std::string(l) + " ";
    INFO("listeners " << ls << "target " << r.target << ":" << r.port);
    CHECK(make(r.listeners, ifs).is(ip(r.target), r.port) == r.myself);
  }
  CHECK_FALSE(Myself().is(ip("127.0.0.1"), 25));
}

TEST_CASE("myself: interface addresses given as mapped IPv6 count as their IPv4") {
  CHECK(make({"0.0.0.0:25"}, {"::ffff:192.0.2.9"}).is(ip("192.0.2.9"), 25));
}

TEST_CASE("myself: a host is myself when any of its addresses is") {
  Myself m = make({"127.0.0.1:25", "[::1]:25"});
  CHECK(m.host_is(host("mx", 10, {"192.0.2.1", "127.0.0.1"}), 25));
  CHECK(m.host_is(host("mx", 10, {"192.0.2.1"}, {"::1"}), 25));
  CHECK_FALSE(m.host_is(host("mx", 10, {"192.0.2.1"}, {"2001:db8::1"}), 25));
  CHECK_FALSE(m.host_is(host("mx", 10, {"127.0.0.1"}), 26));
}

TEST_CASE("myself: MX hosts that are myself, and those of equal or lower preference, are dropped") {
  Myself m = make({"127.0.0.1:25"});
  const auto other = [](const char* name, uint16_t pref) { return host(name, pref, {"192.0.2.1"}); };
  const auto self = [](const char* name, uint16_t pref) { return host(name, pref, {"127.0.0.1"}); };
  struct Row {
    const char* what;
    std::vector<dns::MxHost> hosts;
    std::vector<std::string> left;
  };
  const std::vector<Row> rows = {
      {"none is myself", {other("a", 10), other("b", 20)}, {"a", "b"}},
      {"the best is myself", {self("me", 10), other("b", 20)}, {}},
      {"only myself", {self("me", 10)}, {}},
      {"a backup is myself: it and the lower ones go", {other("a", 10), self("me", 20), other("c", 30)},
       {"a"}},
      {"an equal preference goes with it", {other("a", 10), other("b", 20), self("me", 20), other("c", 30)},
       {"a"}},
      {"equal preferences, shuffled: the better ones stay in order",
       {other("b", 5), other("a", 5), self("me", 10), other("c", 10)}, {"b", "a"}},
      {"the best self preference counts, wherever it comes",
       {other("a", 10), self("me2", 40), self("me", 20), other("c", 30)}, {"a"}},
      {"the implicit MX (preference 0) that is myself", {self("example.com", 0)}, {}},
      {"another port is not myself", {host("x", 10, {"127.0.0.1"}), other("b", 20)}, {}},
  };
  for (const Row& r : rows) {
    INFO(r.what);
    CHECK(names(m.prune_mx(r.hosts, 25)) == r.left);
  }
  // At port 2525 the 127.0.0.1 host is someone else.
  CHECK(names(m.prune_mx(std::vector{self("me", 10), other("b", 20)}, 2525)) ==
        std::vector<std::string>{"me", "b"});
  CHECK(names(Myself().prune_mx(std::vector{self("me", 10)}, 25)) == std::vector<std::string>{"me"});
}
