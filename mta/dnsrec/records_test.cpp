// records_test.cpp — the records dns-records prints (the contract's example
// line by line), TXT splitting, and judging published answers, in tables.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "mta/dnsrec/records.hpp"

using namespace sluice;
using namespace sluice::dnsrec;

namespace {

net::IpAddress ip(std::string_view s) { return *net::IpAddress::parse(s); }

const std::string kEd = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const std::string kRsa = std::string("MIIBIjANBgkq") + std::string(380, 'A');  // 392 characters, as RSA-2048

Inputs example() {
  Inputs in;
  in.domains = {"example.com"};
  in.keys = {{"example.com", "s2026a", "rsa", kRsa}, {"example.com", "s2026e", "ed25519", kEd}};
  in.addresses = {ip("192.0.2.10")};
  in.hostname = "mail.example.com";
  return in;
}

Lookup found(std::vector<std::string> v) { return {Lookup::Kind::found, std::move(v), {}}; }
Lookup missing() { return {Lookup::Kind::missing, {}, "example.com: domain does not exist (NXDOMAIN)"}; }
Lookup failed() { return {Lookup::Kind::failed, {}, "_dmarc.example.com TXT: timed out"}; }

const Record& record(const std::vector<Block>& blocks, Kind kind, size_t nth = 0) {
  for (const Block& b : blocks)
    for (const Record& r : b.records)
      if (r.kind == kind && nth-- == 0) return r;
  FAIL("no such record");
  throw;
}

}  // namespace

TEST_CASE("the records of the contract's example, line by line", "[dnsrec]") {
  const std::string zone = render_zone(build(example()));
  const std::string want =
      "; example.com: records to publish (sluicectl dns-records)\n"
      "example.com.                    IN TXT \"v=spf1 ip4:192.0.2.10 ~all\"\n"
      "s2026a._domainkey.example.com.  IN TXT ( \"v=DKIM1; k=rsa; p=" + kRsa.substr(0, 255 - 18) + "\" \"" +
      kRsa.substr(255 - 18) + "\" )\n"
      "s2026e._domainkey.example.com.  IN TXT \"v=DKIM1; k=ed25519; p=" + kEd + "\"\n"
      "_dmarc.example.com.             IN TXT \"v=DMARC1; p=none; rua=mailto:postmaster@example.com\"\n"
      "_smtp._tls.example.com.         IN TXT \"v=TLSRPTv1; rua=mailto:postmaster@example.com\"\n"
      "; mail.example.com sends from 192.0.2.10: its forward and reverse records\n"
      "mail.example.com.               IN A   192.0.2.10\n"
      "10.2.0.192.in-addr.arpa.        IN PTR mail.example.com.\n";
  CHECK(zone == want);
}

TEST_CASE("addresses, subdomains, domains without a key, no address at all", "[dnsrec]") {
  Inputs in = example();
  in.domains = {"news.example.com", "other.org"};
  in.addresses = {ip("192.0.2.10"), ip("2001:db8::25")};
  auto blocks = build(in);
  REQUIRE(blocks.size() == 3);
  CHECK(blocks[0].records[0].value == "v=spf1 ip4:192.0.2.10 ip6:2001:db8::25 ~all");
  // A subdomain is signed by its parent's tables: the records live at the parent.
  CHECK(blocks[0].records[1].name == "s2026a._domainkey.example.com.");
  CHECK(blocks[0].records[3].name == "_dmarc.news.example.com.");
  CHECK(blocks[1].records.size() == 3);  // SPF, DMARC, TLS-RPT
  // A blank line between the domains' blocks, none before the host's.
  const std::string zone = render_zone(blocks);
  CHECK_THAT(zone, Catch::Contains("postmaster@news.example.com\"\n\n; other.org: records"));
  CHECK_THAT(zone, Catch::Contains("postmaster@other.org\"\n; mail.example.com sends from 192.0.2.10 and "
                                   "2001:db8::25: its forward and reverse records\n"));
  REQUIRE(blocks[1].comments.size() == 1);
  CHECK_THAT(blocks[1].comments[0], Catch::Contains("sluicectl dkim keygen --domain other.org"));
  CHECK(zone_line(blocks[2].records[1]) == "mail.example.com.               IN AAAA 2001:db8::25");
  CHECK(blocks[2].records[3].name ==
        "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.");
  // "badexample.com" is not under example.com.
  in.domains = {"badexample.com"};
  CHECK(build(in)[0].records.size() == 3);

  in.domains = {"example.com"};
  in.addresses.clear();
  blocks = build(in);
  CHECK(blocks[0].records[0].value == "v=spf1 a:mail.example.com ~all");
  CHECK(blocks[1].records.empty());
  CHECK_THAT(render_zone(blocks), Catch::Contains("; no global address found on this machine: SPF names "
                                                  "a:mail.example.com; give each sending address with --ip"));
}

TEST_CASE("TXT strings: 255 octets each, quotes and backslashes escaped", "[dnsrec]") {
  CHECK(txt_strings("") == std::vector<std::string>{""});
  CHECK(txt_strings(std::string(255, 'x')).size() == 1);
  auto two = txt_strings(std::string(256, 'x'));
  REQUIRE(two.size() == 2);
  CHECK(two[1] == "x");
  CHECK(txt_strings(std::string(600, 'x')).size() == 3);
  Record r;
  r.name = "x.test.";
  r.type = "TXT";
  r.value = "a \"b\" \\c";
  CHECK(zone_line(r) == R"(x.test.                         IN TXT "a \"b\" \\c")");
}

TEST_CASE("global addresses", "[dnsrec]") {
  for (const char* a : {"192.0.2.10", "8.8.8.8", "2001:db8::1", "2a00:1450::1", "172.32.0.1"})
    CHECK(is_global(ip(a)));
  for (const char* a : {"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.1.1", "100.64.0.1",
                        "0.0.0.0", "224.0.0.1", "::1", "::", "fe80::1", "fd00::1", "ff02::1"})
    CHECK_FALSE(is_global(ip(a)));
}

TEST_CASE("judging SPF", "[dnsrec]") {
  Inputs in = example();
  in.addresses = {ip("192.0.2.10"), ip("2001:db8::25")};
  const Record spf = build(in)[0].records[0];
  struct Case {
    std::vector<std::string> published;
    Status status;
    const char* detail;
  } cases[] = {
      {{"v=spf1 ip4:192.0.2.10 ip6:2001:db8::25 ~all"}, Status::ok, ""},
      {{"V=SPF1 +ip4:192.0.2.0/24 ip6:2001:db8::/32 -all", "google-site-verification=x"}, Status::ok, ""},
      {{"v=spf1 a:MAIL.example.com. -all"}, Status::ok, ""},
      {{"v=spf1 ip4:192.0.2.10 ~all"}, Status::different, "it does not authorise 2001:db8::25"},
      {{"v=spf1 ip4:192.0.2.11 include:_spf.example.net ~all"}, Status::different,
       "it does not authorise 192.0.2.10 and 2001:db8::25"},
      {{"v=spf1 -ip4:192.0.2.10 ip6:2001:db8::25 ~all"}, Status::different, "192.0.2.10"},
      {{"v=spf1 ip4:192.0.2.10/33 ip6:2001:db8::25 ~all"}, Status::different, "192.0.2.10"},
      {{"v=spf1 ip4:192.0.2.10 ip6:2001:db8::25 ~all", "v=spf1 -all"}, Status::different,
       "2 SPF records"},
      {{"v=spf10 ip4:192.0.2.10", "other"}, Status::missing, "no v=spf1 record"},
  };
  for (const Case& c : cases) {
    INFO(c.published.front());
    Verdict v = judge(spf, in.hostname, found(c.published));
    CHECK(v.status == c.status);
    CHECK_THAT(v.detail, Catch::Contains(c.detail));
  }
  in.addresses.clear();
  const Record by_name = build(in)[0].records[0];
  CHECK(judge(by_name, in.hostname, found({"v=spf1 a:mail.example.com ~all"})).status == Status::ok);
  auto v = judge(by_name, in.hostname, found({"v=spf1 ip4:192.0.2.10 ~all"}));
  CHECK(v.status == Status::different);
  CHECK_THAT(v.detail, Catch::Contains("it does not name a:mail.example.com"));
  CHECK(judge(spf, in.hostname, missing()).status == Status::missing);
  CHECK(judge(spf, in.hostname, failed()).status == Status::lookup_failed);
}

TEST_CASE("judging DKIM, DMARC and TLS-RPT", "[dnsrec]") {
  const auto blocks = build(example());
  const Record& rsa = record(blocks, Kind::dkim, 0);
  const Record& ed = record(blocks, Kind::dkim, 1);
  const Record& dmarc = record(blocks, Kind::dmarc);
  const Record& tlsrpt = record(blocks, Kind::tlsrpt);
  struct Case {
    const Record* want;
    std::vector<std::string> published;
    Status status;
    const char* detail;
  } cases[] = {
      {&rsa, {"v=DKIM1; k=rsa; p=" + kRsa}, Status::ok, ""},
      {&rsa, {"v=DKIM1; p=" + kRsa.substr(0, 100) + " " + kRsa.substr(100) + ";"}, Status::ok, ""},  // k= defaults to rsa
      {&rsa, {"k=rsa; t=s; p=" + kRsa}, Status::ok, ""},  // v= is optional
      {&rsa, {"v=DKIM1; k=rsa; p=" + kRsa + "B"}, Status::different, "another key"},
      {&rsa, {"v=DKIM1; k=rsa; p="}, Status::different, "revoked"},
      {&ed, {"v=DKIM1; k=rsa; p=" + kEd}, Status::different, "k=rsa where the key is ed25519"},
      {&ed, {"v=DKIM1; k=ed25519; p=" + kEd, "v=DKIM1; k=ed25519; p=" + kEd}, Status::different, "2 DKIM records"},
      {&ed, {"v=DKIM2; k=ed25519; p=" + kEd, "some text"}, Status::missing, "no DKIM record"},
      {&dmarc, {"v=DMARC1; p=reject; rua=mailto:d@example.net"}, Status::ok, ""},
      {&dmarc, {"v=DMARC1;p=none"}, Status::ok, ""},
      {&dmarc, {"v=DMARC1; rua=mailto:x@example.com; p=none"}, Status::ok, ""},
      {&dmarc, {"v=DMARC1; rua=mailto:x@example.com"}, Status::different, "no p="},
      {&dmarc, {"v=DMARC1; p=block"}, Status::different, "p=block is not"},
      {&dmarc, {"v=spf1 -all"}, Status::missing, "no DMARC record"},
      {&tlsrpt, {"v=TLSRPTv1; rua=mailto:tls@example.com"}, Status::ok, ""},
      {&tlsrpt, {"v=TLSRPTv1;"}, Status::different, "no rua="},
  };
  for (const Case& c : cases) {
    INFO(c.published.front());
    Verdict v = judge(*c.want, "mail.example.com", found(c.published));
    CHECK(v.status == c.status);
    CHECK_THAT(v.detail, Catch::Contains(c.detail));
    if (c.status == Status::different) CHECK_FALSE(v.published.empty());
  }
  auto v = judge(dmarc, "mail.example.com", failed());
  CHECK(v.status == Status::lookup_failed);
  CHECK(v.detail == "_dmarc.example.com TXT: timed out");
}

TEST_CASE("judging the forward record and forward-confirmed reverse DNS", "[dnsrec]") {
  Inputs in = example();
  in.addresses = {ip("192.0.2.10"), ip("2001:db8::25")};
  const auto blocks = build(in);
  const Record& a = record(blocks, Kind::address, 0);
  const Record& aaaa = record(blocks, Kind::address, 1);
  const Record& ptr = record(blocks, Kind::ptr, 0);
  const std::string host = in.hostname;
  CHECK(judge(a, host, found({"192.0.2.10", "2001:db8::25"})).status == Status::ok);
  CHECK(judge(aaaa, host, found({"192.0.2.10"})).status == Status::missing);
  auto v = judge(a, host, found({"192.0.2.99"}));
  CHECK(v.status == Status::different);
  CHECK(v.published == std::vector<std::string>{"192.0.2.99"});

  const Lookup confirms = found({"192.0.2.10"}), elsewhere = found({"192.0.2.99"});
  struct Case {
    std::vector<std::string> names;
    std::vector<Lookup> forward;
    Status status;
    const char* detail;
  } cases[] = {
      {{"mail.example.com"}, {confirms}, Status::ok, ""},
      {{"other.example.net", "MAIL.example.com"}, {elsewhere, confirms}, Status::ok, ""},
      {{"mail.example.com"}, {elsewhere}, Status::different,
       "not forward-confirmed: the PTR names mail.example.com, which does not resolve to 192.0.2.10"},
      {{"mail.example.com"}, {missing()}, Status::different, "not forward-confirmed"},
      {{"mail.example.com"}, {failed()}, Status::lookup_failed, "timed out"},
      {{"10-2-0-192.isp.example"}, {confirms}, Status::different,
       "the PTR names 10-2-0-192.isp.example, not mail.example.com (the EHLO name"},
      {{"x.example"}, {missing()}, Status::different, "nor is it forward-confirmed"},
  };
  for (const Case& c : cases) {
    INFO(c.names.front());
    Verdict got = judge(ptr, host, found(c.names), c.forward);
    CHECK(got.status == c.status);
    CHECK_THAT(got.detail, Catch::Contains(c.detail));
  }
  CHECK(judge(ptr, host, missing()).status == Status::missing);
  CHECK(judge(ptr, host, found({"mail.example.com"}), {}).status == Status::different);
}

TEST_CASE("--check output and --json", "[dnsrec]") {
  auto blocks = build(example());
  CHECK_FALSE(all_ok(blocks));  // nothing judged yet
  for (Block& b : blocks)
    for (Record& r : b.records) r.verdict = Verdict{Status::ok, "", {r.value}};
  CHECK(all_ok(blocks));
  CHECK_THAT(render_check(blocks), Catch::EndsWith("all 7 records are published as they should be\n"));
  blocks[0].records[3].verdict = Verdict{Status::missing, "nothing published", {}};
  blocks[0].records[1].verdict = Verdict{Status::different, "its p= is another key", {"v=DKIM1; p=X"}};
  CHECK_FALSE(all_ok(blocks));
  blocks[1].records[0].verdict = Verdict{Status::lookup_failed, "mail.example.com A: timed out", {}};
  const std::string text = render_check(blocks);
  CHECK_THAT(text, Catch::Contains("\nok            example.com. IN TXT (SPF)\n"));
  CHECK_THAT(text, Catch::Contains("\ndifferent     s2026a._domainkey.example.com. IN TXT (DKIM): published "
                                   "\"v=DKIM1; p=X\": its p= is another key\n"));
  CHECK_THAT(text, Catch::Contains("\nmissing       _dmarc.example.com. IN TXT (DMARC): nothing published\n"));
  CHECK_THAT(text, Catch::Contains("\nok            10.2.0.192.in-addr.arpa. IN PTR (PTR)\n"));
  CHECK_THAT(text, Catch::Contains("\nlookup failed mail.example.com. IN A (forward): mail.example.com A: timed out\n"));
  CHECK_THAT(text, Catch::EndsWith("\n2 of 7 records are not right; publish them as `sluicectl dns-records` "
                                   "prints them (DNS changes take up to the old record's TTL to be seen)\n"
                                   "1 of 7 records could not be looked up; are the [dns] servers reachable?\n"));

  auto j = nlohmann::json::parse(render_json(blocks));
  REQUIRE(j["domains"].size() == 2);
  CHECK(j["domains"][0]["domain"] == "example.com");
  const auto& r0 = j["domains"][0]["records"][0];
  CHECK(r0["name"] == "example.com.");
  CHECK(r0["type"] == "TXT");
  CHECK(r0["value"] == "v=spf1 ip4:192.0.2.10 ~all");
  CHECK(r0["status"] == "ok");
  CHECK(j["domains"][0]["records"][3]["status"] == "missing");
  CHECK(j["domains"][1]["domain"] == "mail.example.com");
  CHECK(j["domains"][1]["records"][1]["value"] == "mail.example.com.");
  // Without --check: no status, no published.
  auto plain = nlohmann::json::parse(render_json(build(example())));
  CHECK_FALSE(plain["domains"][0]["records"][0].contains("status"));
  CHECK_FALSE(plain["domains"][0]["records"][0].contains("published"));
  // Bytes that are not UTF-8 in a published record do not break the JSON.
  blocks[0].records[0].verdict = Verdict{Status::different, "", {"v=spf1 \xff\xfe"}};
  CHECK_NOTHROW(nlohmann::json::parse(render_json(blocks)));
}
