// net_test.cpp — unit tests for conf/net.{hpp,cpp}: addresses, CIDR
// networks (v4, v6, IPv4-mapped) and endpoint parsing.
#include "conf/net.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cstring>

using namespace sluice::net;

namespace {

IpAddress ip(const char* text) {
  auto a = IpAddress::parse(text);
  REQUIRE(a.has_value());
  return *a;
}

}  // namespace

TEST_CASE("IpAddress::parse and str") {
  CHECK(ip("192.0.2.1").family == IpAddress::Family::v4);
  CHECK(ip("192.0.2.1").str() == "192.0.2.1");
  CHECK(ip("2001:DB8:0:0::1").family == IpAddress::Family::v6);
  CHECK(ip("2001:DB8:0:0::1").str() == "2001:db8::1");
  CHECK(ip("::").str() == "::");
  CHECK(ip("::ffff:10.1.2.3").family == IpAddress::Family::v6);

  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.0.0.1", "01.2.3.4", " 1.2.3.4", "1.2.3.4 ",
                          "localhost", "::g", "fe80::1%eth0", "[::1]", "1.2.3.4/8"}) {
    INFO(bad);
    CHECK_FALSE(IpAddress::parse(bad).has_value());
  }
  CHECK_FALSE(IpAddress::parse(std::string_view("1.2.3.4\0", 8)).has_value());
}

TEST_CASE("IpAddress::from_sockaddr maps IPv4-mapped addresses to IPv4") {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  inet_pton(AF_INET, "198.51.100.7", &sin.sin_addr);
  auto a = IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&sin));
  REQUIRE(a.has_value());
  CHECK(*a == ip("198.51.100.7"));

  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:198.51.100.7", &sin6.sin6_addr);
  a = IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&sin6));
  REQUIRE(a.has_value());
  CHECK(a->family == IpAddress::Family::v4);
  CHECK(a->str() == "198.51.100.7");

  inet_pton(AF_INET6, "2001:db8::5", &sin6.sin6_addr);
  a = IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&sin6));
  REQUIRE(a.has_value());
  CHECK(a->str() == "2001:db8::5");

  sockaddr other{};
  other.sa_family = AF_UNIX;
  CHECK_FALSE(IpAddress::from_sockaddr(&other).has_value());
  CHECK_FALSE(IpAddress::from_sockaddr(nullptr).has_value());
}

TEST_CASE("Cidr::parse") {
  struct Case {
    const char* text;
    const char* str;
  };
  const Case good[] = {
      {"10.0.0.0/8", "10.0.0.0/8"},
      {"192.0.2.7", "192.0.2.7/32"},
      {"0.0.0.0/0", "0.0.0.0/0"},
      {"::1/128", "::1/128"},
      {"::1", "::1/128"},
      {"2001:db8::/32", "2001:db8::/32"},
      {"::/0", "::/0"},
      {"172.16.0.0/12", "172.16.0.0/12"},
      {"10.1.2.128/25", "10.1.2.128/25"},
  };
  for (const Case& c : good) {
    INFO(c.text);
    auto cidr = Cidr::parse(c.text);
    REQUIRE(cidr.has_value());
    CHECK(cidr->str() == c.str);
  }

  const std::pair<const char*, const char*> bad[] = {
      {"10.0.0.1/8", "host bits are set below the /8 prefix (did you mean 10.0.0.0/8?)"},
      {"10.1.2.129/25", "did you mean 10.1.2.128/25?"},
      {"2001:db8::1/32", "did you mean 2001:db8::/32?"},
      {"10.0.0.0/33", "prefix length must be 0..32 for IPv4"},
      {"::/129", "prefix length must be 0..128 for IPv6"},
      {"10.0.0.0/", "prefix length"},
      {"10.0.0.0/-1", "prefix length"},
      {"10.0.0.0/8x", "prefix length"},
      {"10.0.0.0/0008", "prefix length"},
      {"", "not an IP address"},
      {"localhost/8", "not an IP address"},
      {"10.0.0/8", "not an IP address"},
  };
  for (auto [text, message] : bad) {
    INFO(text);
    auto cidr = Cidr::parse(text);
    REQUIRE_FALSE(cidr.has_value());
    CHECK_THAT(cidr.error(), Catch::Contains(message));
  }
}

TEST_CASE("Cidr::contains for v4, v6 and mapped addresses") {
  struct Case {
    const char* cidr;
    const char* address;
    bool inside;
  };
  const Case cases[] = {
      {"127.0.0.0/8", "127.0.0.1", true},
      {"127.0.0.0/8", "127.255.255.255", true},
      {"127.0.0.0/8", "128.0.0.1", false},
      {"10.1.2.128/25", "10.1.2.200", true},
      {"10.1.2.128/25", "10.1.2.127", false},
      {"192.0.2.7", "192.0.2.7", true},
      {"192.0.2.7", "192.0.2.8", false},
      {"0.0.0.0/0", "203.0.113.9", true},
      {"0.0.0.0/0", "2001:db8::1", false},
      {"::1/128", "::1", true},
      {"::1/128", "::2", false},
      {"2001:db8::/32", "2001:db8:ffff::1", true},
      {"2001:db8::/32", "2001:db9::1", false},
      {"2001:db8::/33", "2001:db8:7fff::1", true},
      {"2001:db8::/33", "2001:db8:8000::1", false},
      {"::/0", "2001:db8::1", true},
      // IPv4-mapped IPv6 addresses are the IPv4 host, and the other way round.
      {"127.0.0.0/8", "::ffff:127.0.0.1", true},
      {"127.0.0.0/8", "::ffff:10.0.0.1", false},
      {"::ffff:0:0/96", "10.0.0.1", true},
      {"::ffff:10.0.0.0/104", "10.9.9.9", true},
      {"::ffff:10.0.0.0/104", "11.0.0.1", false},
      {"::1/128", "127.0.0.1", false},
      {"127.0.0.1", "::1", false},
  };
  for (const Case& c : cases) {
    INFO(c.cidr << " contains " << c.address);
    auto cidr = Cidr::parse(c.cidr);
    REQUIRE(cidr.has_value());
    CHECK(cidr->contains(ip(c.address)) == c.inside);
  }
}

TEST_CASE("Endpoint::parse") {
  struct Case {
    const char* text;
    std::optional<uint16_t> default_port;
    const char* str;      // expected str(), or nullptr for an error
    const char* message;  // substring of the error
  };
  const Case cases[] = {
      {"127.0.0.1:25", {}, "127.0.0.1:25", nullptr},
      {"0.0.0.0:465", {}, "0.0.0.0:465", nullptr},
      {"[::1]:587", {}, "[::1]:587", nullptr},
      {"[::]:25", {}, "[::]:25", nullptr},
      {"[2001:db8::1]:65535", {}, "[2001:db8::1]:65535", nullptr},
      {"10.0.0.1:1", {}, "10.0.0.1:1", nullptr},
      {"127.0.0.1", 53, "127.0.0.1:53", nullptr},
      {"[::1]", 53, "[::1]:53", nullptr},
      {"127.0.0.1:5353", 53, "127.0.0.1:5353", nullptr},
      {"[::1]:5353", 53, "[::1]:5353", nullptr},
      {"", {}, nullptr, "empty"},
      {"127.0.0.1", {}, nullptr, "missing port"},
      {"[::1]", {}, nullptr, "missing port"},
      {"::1", {}, nullptr, "use [addr]:port"},
      {"::1", 53, nullptr, "use [addr]:port or [addr]"},
      {"2001:db8::1:25", {}, nullptr, "use [addr]:port"},
      {"127.0.0.1:0", {}, nullptr, "must be 1..65535"},
      {"127.0.0.1:65536", {}, nullptr, "must be 1..65535"},
      {"127.0.0.1:", {}, nullptr, "must be 1..65535"},
      {"127.0.0.1:+25", {}, nullptr, "must be 1..65535"},
      {"127.0.0.1:25x", {}, nullptr, "must be 1..65535"},
      {"127.0.0.1: 25", {}, nullptr, "must be 1..65535"},
      {"localhost:25", {}, nullptr, "not an IP address"},
      {"localhost", 53, nullptr, "not an IP address"},
      {"[::1:25", {}, nullptr, "missing ']'"},
      {"[::1]25", {}, nullptr, "expected ':'"},
      {"[zz]:25", {}, nullptr, "not an IP address"},
  };
  for (const Case& c : cases) {
    INFO(c.text << " default " << (c.default_port ? *c.default_port : 0));
    auto ep = Endpoint::parse(c.text, c.default_port);
    if (c.str != nullptr) {
      REQUIRE(ep.has_value());
      CHECK(ep->str() == c.str);
    } else {
      REQUIRE_FALSE(ep.has_value());
      CHECK_THAT(ep.error(), Catch::Contains(c.message));
    }
  }
}

TEST_CASE("Endpoint::to_sockaddr") {
  sockaddr_storage ss;
  auto v4 = Endpoint::parse("192.0.2.1:2525");
  REQUIRE(v4.has_value());
  CHECK(v4->to_sockaddr(&ss) == sizeof(sockaddr_in));
  sockaddr_in sin;
  std::memcpy(&sin, &ss, sizeof sin);
  CHECK(sin.sin_family == AF_INET);
  CHECK(ntohs(sin.sin_port) == 2525);
  CHECK(IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))->str() == "192.0.2.1");

  auto v6 = Endpoint::parse("[2001:db8::2]:587");
  REQUIRE(v6.has_value());
  CHECK(v6->to_sockaddr(&ss) == sizeof(sockaddr_in6));
  sockaddr_in6 sin6;
  std::memcpy(&sin6, &ss, sizeof sin6);
  CHECK(sin6.sin6_family == AF_INET6);
  CHECK(ntohs(sin6.sin6_port) == 587);
  CHECK(IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))->str() == "2001:db8::2");
}

TEST_CASE("reverse_name: the PTR owner of an address") {
  CHECK(reverse_name(*IpAddress::parse("192.0.2.10")) == "10.2.0.192.in-addr.arpa");
  CHECK(reverse_name(*IpAddress::parse("2001:db8::567:89ab")) ==
        "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");  // RFC 3596 §2.5's form
}
