// tlsa_test.cpp — resolve_tlsa and the AD bit (Options::request_ad) against
// testdata/fake_dns.py, which sets AD on the answers for names marked
// "!secure" in testdata/zone.txt only when the query asked for it, as a
// validating resolver does (RFC 6840 §5.7).
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dns/fake_dns_test.hpp"
#include "dns/resolver.hpp"

using namespace dns_test;

TEST_CASE("resolve_tlsa asks with the AD bit and reports it", "[dns][tlsa]") {
  Harness h;
  auto tlsa = [&](std::string_view name) {
    std::optional<dns::TlsaResult> out;
    h.resolver->resolve_tlsa(name, [&](dns::TlsaResult r) { out = std::move(r); });
    REQUIRE(run_until(&h.loop, [&] { return out.has_value(); }));
    return *out;
  };
  // The fake server sets AD only when the query asked for it (RFC 6840).
  auto r = tlsa("_25._tcp.MX.tlsa.test.");
  REQUIRE(r.status == Status::ok);
  CHECK(r.secure);
  REQUIRE(r.records.size() == 2);
  CHECK(r.records[0].usage == 3);
  CHECK(r.records[0].selector == 1);
  CHECK(r.records[0].matching_type == 1);
  CHECK(r.records[0].data.size() == 32);
  CHECK(r.records[0].data[1] == 0x23);
  CHECK((r.records[1].usage == 2 && r.records[1].selector == 0 && r.records[1].matching_type == 2));
  CHECK(r.records[1].data.size() == 64);
  CHECK(r.malformed == 0);
  auto plain = tlsa("_25._tcp.plain.tlsa.test");
  CHECK(plain.status == Status::ok);
  CHECK(!plain.secure);
  // No records: NODATA (securely denied here) and NXDOMAIN.
  auto none = tlsa("_25._tcp.none.tlsa.test");
  CHECK(none.status == Status::no_route);
  CHECK(none.secure);
  CHECK(none.reason == "_25._tcp.none.tlsa.test TLSA: no such record");
  auto nx = tlsa("_25._tcp.nx.tlsa.test");
  CHECK(nx.status == Status::nxdomain);
  CHECK(!nx.secure);
  // A failure is not "no records" (RFC 7672 §2.2).
  auto fail = tlsa("_25._tcp.fail.tlsa.test");
  CHECK(fail.status == Status::temporary);
  CHECK(fail.reason == "_25._tcp.fail.tlsa.test TLSA: server failure (SERVFAIL)");
  CHECK(tlsa("a..b").status == Status::no_route);
  // Cached with its AD bit.
  const int before = FakeDns::get().count("_25._tcp.mx.tlsa.test", "TLSA");
  CHECK(before >= 1);
  auto again = tlsa("_25._tcp.mx.tlsa.test");
  CHECK(again.secure);
  CHECK(again.records == r.records);
  CHECK(FakeDns::get().count("_25._tcp.mx.tlsa.test", "TLSA") == before);
}

TEST_CASE("Options::request_ad: MX and address answers say whether they were authenticated", "[dns][tlsa]") {
  SECTION("asked with AD") {
    Harness h([](dns::Options& o) { o.request_ad = true; });
    MxResult r = h.mx("secure.test");
    REQUIRE(r.status == Status::ok);
    CHECK(r.mx_secure);
    REQUIRE(r.hosts.size() == 2);
    CHECK(r.hosts[0].name == "mx1.secure.test");
    CHECK(r.hosts[0].secure);  // A records and NODATA for AAAA, both authenticated
    CHECK(r.hosts[1].name == "mx2.secure.test");
    CHECK(!r.hosts[1].secure);  // an unsigned host in a signed domain
    CHECK(h.addrs("mx1.secure.test").secure);
    CHECK(!h.addrs("mx2.secure.test").secure);
    CHECK(!h.addrs("[192.0.2.1]").secure);  // literals never
    // Implicit MX: the NODATA for MX and the domain's own addresses.
    MxResult implicit = h.mx("mx1.secure.test");
    REQUIRE(implicit.status == Status::ok);
    CHECK(implicit.implicit_mx);
    CHECK(implicit.mx_secure);
    CHECK(implicit.hosts[0].secure);
    CHECK(!h.mx("multi.test").mx_secure);
  }
  SECTION("by default MX and addresses are asked without AD: never secure") {
    Harness h;
    MxResult r = h.mx("secure.test");
    REQUIRE(r.status == Status::ok);
    CHECK(!r.mx_secure);
    CHECK(!r.hosts[0].secure);
    CHECK(!h.addrs("mx1.secure.test").secure);
  }
}
