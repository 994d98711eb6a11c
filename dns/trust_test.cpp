// trust_test.cpp — the AD-bit trust rule (dns/trust.hpp).
#include <catch2/catch.hpp>

#include <vector>

#include "dns/trust.hpp"

using namespace sluice;

namespace {

net::IpAddress ip(std::string_view s) {
  auto a = net::IpAddress::parse(s);
  REQUIRE(a);
  return *a;
}

std::vector<net::Endpoint> eps(std::initializer_list<const char*> list) {
  std::vector<net::Endpoint> out;
  for (const char* s : list) {
    auto e = net::Endpoint::parse(s, 53);
    REQUIRE(e);
    out.push_back(*e);
  }
  return out;
}

}  // namespace

TEST_CASE("is_loopback", "[dns][trust]") {
  for (const char* s : {"127.0.0.1", "127.0.0.53", "127.255.255.254", "::1", "::ffff:127.0.0.1"})
    CHECK(dns::is_loopback(ip(s)));
  for (const char* s : {"128.0.0.1", "126.255.255.255", "10.0.0.1", "0.0.0.0", "::", "::2", "fe80::1",
                        "::ffff:10.0.0.1", "::127.0.0.1", "2001:db8::1"})
    CHECK(!dns::is_loopback(ip(s)));
}

TEST_CASE("ad_bit_trusted", "[dns][trust]") {
  const std::string_view remote_conf = "nameserver 192.0.2.53\n";
  SECTION("configured servers: all of them loopback; resolv.conf not read") {
    CHECK(dns::ad_bit_trusted(eps({"127.0.0.1"}), remote_conf));
    CHECK(dns::ad_bit_trusted(eps({"127.0.0.53:5353", "[::1]"}), remote_conf));
    CHECK(!dns::ad_bit_trusted(eps({"127.0.0.1", "192.0.2.53"}), "nameserver 127.0.0.1\n"));
    CHECK(!dns::ad_bit_trusted(eps({"[2001:db8::53]"}), "nameserver 127.0.0.1\n"));
  }
  SECTION("resolv.conf: every nameserver loopback") {
    CHECK(dns::ad_bit_trusted({}, "nameserver 127.0.0.1\n"));
    CHECK(dns::ad_bit_trusted({}, "# local unbound\nsearch example.net\n\tnameserver\t::1  \r\nnameserver 127.0.0.53 # stub\noptions edns0 trust-ad"));
    CHECK(!dns::ad_bit_trusted({}, remote_conf));
    CHECK(!dns::ad_bit_trusted({}, "nameserver 127.0.0.1\nnameserver 192.0.2.53\n"));
    CHECK(!dns::ad_bit_trusted({}, "nameserver 192.0.2.53\nnameserver 127.0.0.1"));
    // An address that does not parse (a zone index) is not trusted.
    CHECK(!dns::ad_bit_trusted({}, "nameserver fe80::1%eth0\n"));
    CHECK(!dns::ad_bit_trusted({}, "nameserver localhost\n"));
    // Comments and other keywords are not nameservers.
    CHECK(dns::ad_bit_trusted({}, "nameserver 127.0.0.1\n#nameserver 192.0.2.53\n; nameserver 192.0.2.9\n"));
    CHECK(dns::ad_bit_trusted({}, "nameserver 127.0.0.1\nnameservers 192.0.2.53\n"));
  }
  SECTION("no nameserver at all: the resolver on this host") {
    CHECK(dns::ad_bit_trusted({}, ""));
    CHECK(dns::ad_bit_trusted({}, "search example.net\n"));
  }
}
