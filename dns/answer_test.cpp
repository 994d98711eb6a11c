// answer_test.cpp — the pure parts of dns/: reply interpretation, TTLs, MX
// order, the answer cache. Replies are built byte by byte here.
#include <ares.h>
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "dns/answer.hpp"
#include "dns/cache.hpp"

using namespace sluice::dns;
using namespace std::chrono_literals;

namespace {

// A DNS message writer: header, one question, then whole records.
struct Packet {
  std::vector<unsigned char> b;

  void u16(unsigned v) {
    b.push_back(static_cast<unsigned char>(v >> 8));
    b.push_back(static_cast<unsigned char>(v));
  }
  void u32(uint32_t v) {
    u16(v >> 16);
    u16(v & 0xffff);
  }
  void name(const std::string& n) {
    size_t start = 0;
    while (start < n.size()) {
      size_t dot = n.find('.', start);
      if (dot == std::string::npos) dot = n.size();
      b.push_back(static_cast<unsigned char>(dot - start));
      b.insert(b.end(), n.begin() + static_cast<long>(start), n.begin() + static_cast<long>(dot));
      start = dot + 1;
    }
    b.push_back(0);
  }
  // rdata as written by fill(), its length patched in afterwards.
  template <class F>
  void rr(const std::string& owner, unsigned type, uint32_t ttl, F fill) {
    name(owner);
    u16(type);
    u16(1);
    u32(ttl);
    size_t len_at = b.size();
    u16(0);
    fill();
    size_t len = b.size() - len_at - 2;
    b[len_at] = static_cast<unsigned char>(len >> 8);
    b[len_at + 1] = static_cast<unsigned char>(len);
  }
};

Packet reply(const std::string& qname, unsigned qtype, unsigned rcode, unsigned an, unsigned ns) {
  Packet p;
  p.u16(0x1234);
  p.u16(0x8180 | rcode);
  p.u16(1);
  p.u16(an);
  p.u16(ns);
  p.u16(0);
  p.name(qname);
  p.u16(qtype);
  p.u16(1);
  return p;
}

void soa(Packet& p, uint32_t ttl, uint32_t minimum) {
  p.rr("test", 6, ttl, [&] {
    p.name("ns.test");
    p.name("hostmaster.test");
    for (uint32_t v : {1u, 3600u, 600u, 86400u}) p.u32(v);
    p.u32(minimum);
  });
}

Packet mx_reply() {
  Packet p = reply("example.test", 15, 0, 3, 0);
  p.rr("example.test", 15, 300, [&] {
    p.u16(20);
    p.name("MX2.Example.Test");
  });
  p.rr("example.test", 15, 120, [&] {
    p.u16(10);
    p.name("mx1.example.test");
  });
  p.rr("example.test", 15, 0x80000001u, [&] {  // top bit set: TTL 0
    p.u16(30);
    p.name("mx3.example.test");
  });
  return p;
}

Packet a_reply() {
  Packet p = reply("host.test", 1, 0, 2, 0);
  p.rr("host.test", 1, 200, [&] { p.u32(0xc0000201); });
  p.rr("host.test", 1, 100, [&] { p.u32(0xc0000202); });
  return p;
}

// Two TXT records: one of two strings (split as RFC 1035 allows), one plain.
Packet txt_reply() {
  Packet p = reply("s1._domainkey.example.test", 16, 0, 2, 0);
  auto str = [&](std::string_view s) {
    p.b.push_back(static_cast<unsigned char>(s.size()));
    p.b.insert(p.b.end(), s.begin(), s.end());
  };
  p.rr("s1._domainkey.example.test", 16, 300, [&] {
    str("v=DKIM1; k=rsa; p=MIIB");
    str("AQAB");
  });
  p.rr("s1._domainkey.example.test", 16, 60, [&] { str("other"); });
  return p;
}

Packet ptr_reply() {
  Packet p = reply("10.2.0.192.in-addr.arpa", 12, 0, 2, 0);
  p.rr("10.2.0.192.in-addr.arpa", 12, 300, [&] { p.name("Mail.Example.Test"); });
  p.rr("10.2.0.192.in-addr.arpa", 12, 200, [&] { p.name("other.example.test"); });
  return p;
}

std::vector<std::string> strs(const std::vector<sluice::net::IpAddress>& v) {
  std::vector<std::string> out;
  for (auto& a : v) out.push_back(a.str());
  return out;
}

}  // namespace

TEST_CASE("reply_ttls reads the answer minimum and the SOA's negative TTL", "[dns]") {
  Packet p = reply("x.test", 15, 3, 0, 1);
  soa(p, 3600, 600);
  auto t = reply_ttls(p.b);
  REQUIRE(t);
  CHECK_FALSE(t->answer);
  CHECK(t->negative == 600u);

  Packet q = reply("x.test", 15, 3, 0, 1);
  soa(q, 100, 600);
  CHECK(reply_ttls(q.b)->negative == 100u);

  Packet m = mx_reply();
  CHECK(reply_ttls(m.b)->answer == 0u);
  CHECK(reply_ttls(a_reply().b)->answer == 100u);
}

TEST_CASE("interpret_reply", "[dns]") {
  SECTION("MX records, lower-cased, in answer order") {
    Packet p = mx_reply();
    Answer a = interpret_reply(QueryType::mx, ARES_SUCCESS, p.b);
    REQUIRE(a.kind == Answer::Kind::records);
    CHECK(a.mx == std::vector<MxRecord>{{"mx2.example.test", 20}, {"mx1.example.test", 10}, {"mx3.example.test", 30}});
    CHECK(a.ttl == 0);
  }
  SECTION("a null MX is the empty host") {
    Packet p = reply("n.test", 15, 0, 1, 0);
    p.rr("n.test", 15, 300, [&] {
      p.u16(0);
      p.b.push_back(0);
    });
    Answer a = interpret_reply(QueryType::mx, ARES_SUCCESS, p.b);
    REQUIRE(a.kind == Answer::Kind::records);
    CHECK(a.mx == std::vector<MxRecord>{{"", 0}});
    CHECK(a.ttl == 300);
  }
  SECTION("A records with their smallest TTL") {
    Packet p = a_reply();
    Answer a = interpret_reply(QueryType::a, ARES_SUCCESS, p.b);
    REQUIRE(a.kind == Answer::Kind::records);
    CHECK(strs(a.addresses) == std::vector<std::string>{"192.0.2.1", "192.0.2.2"});
    CHECK(a.ttl == 100);
  }
  SECTION("AAAA records") {
    Packet p = reply("host.test", 28, 0, 1, 0);
    p.rr("host.test", 28, 50, [&] {
      p.u32(0x20010db8);
      p.u32(0);
      p.u32(0);
      p.u32(1);
    });
    Answer a = interpret_reply(QueryType::aaaa, ARES_SUCCESS, p.b);
    REQUIRE(a.kind == Answer::Kind::records);
    CHECK(strs(a.addresses) == std::vector<std::string>{"2001:db8::1"});
    CHECK(a.ttl == 50);
  }
  SECTION("TXT records: each record's strings joined, in answer order") {
    Packet p = txt_reply();
    Answer a = interpret_reply(QueryType::txt, ARES_SUCCESS, p.b);
    REQUIRE(a.kind == Answer::Kind::records);
    CHECK(a.txt == std::vector<std::string>{"v=DKIM1; k=rsa; p=MIIBAQAB", "other"});
    CHECK(a.ttl == 60);
  }
  SECTION("an empty TXT string is a record") {
    Packet p = reply("e.test", 16, 0, 1, 0);
    p.rr("e.test", 16, 30, [&] { p.b.push_back(0); });
    Answer a = interpret_reply(QueryType::txt, ARES_SUCCESS, p.b);
    REQUIRE(a.kind == Answer::Kind::records);
    CHECK(a.txt == std::vector<std::string>{""});
  }
  SECTION("PTR records: every name, lower-cased") {
    Packet p = ptr_reply();
    Answer a = interpret_reply(QueryType::ptr, ARES_SUCCESS, p.b);
    REQUIRE(a.kind == Answer::Kind::records);
    CHECK(a.ptr == std::vector<std::string>{"mail.example.test", "other.example.test"});
    CHECK(a.ttl == 200);
  }
  SECTION("PTR through a CNAME (RFC 2317 classless delegation)") {
    Packet p = reply("10.2.0.192.in-addr.arpa", 12, 0, 2, 0);
    p.rr("10.2.0.192.in-addr.arpa", 5, 300, [&] { p.name("10.0/26.2.0.192.in-addr.arpa"); });
    p.rr("10.0/26.2.0.192.in-addr.arpa", 12, 300, [&] { p.name("mail.example.test"); });
    Answer a = interpret_reply(QueryType::ptr, ARES_SUCCESS, p.b);
    REQUIRE(a.kind == Answer::Kind::records);
    CHECK(a.ptr == std::vector<std::string>{"mail.example.test"});
  }
  SECTION("records of another type in the answer: NODATA") {
    Packet p = a_reply();
    CHECK(interpret_reply(QueryType::txt, ARES_SUCCESS, p.b).kind == Answer::Kind::nodata);
    CHECK(interpret_reply(QueryType::ptr, ARES_SUCCESS, p.b).kind == Answer::Kind::nodata);
  }
  SECTION("NXDOMAIN and NODATA take the SOA's TTL, or none") {
    Packet p = reply("x.test", 15, 3, 0, 1);
    soa(p, 3600, 600);
    Answer nx = interpret_reply(QueryType::mx, ARES_ENOTFOUND, p.b);
    CHECK(nx.kind == Answer::Kind::nxdomain);
    CHECK(nx.ttl == 600);
    Answer nodata = interpret_reply(QueryType::a, ARES_ENODATA, reply("x.test", 1, 0, 0, 0).b);
    CHECK(nodata.kind == Answer::Kind::nodata);
    CHECK(nodata.ttl == 0);
  }
  SECTION("errors") {
    std::vector<unsigned char> none;
    CHECK(interpret_reply(QueryType::mx, ARES_ESERVFAIL, none).kind == Answer::Kind::temporary);
    CHECK(interpret_reply(QueryType::mx, ARES_ETIMEOUT, none).error == "timed out");
    CHECK(interpret_reply(QueryType::mx, ARES_ECONNREFUSED, none).kind == Answer::Kind::temporary);
    CHECK(interpret_reply(QueryType::mx, ARES_ECANCELLED, none).error == "cancelled");
    CHECK(interpret_reply(QueryType::mx, ARES_EBADNAME, none).kind == Answer::Kind::permanent);
    CHECK_FALSE(interpret_reply(QueryType::mx, ARES_ESERVFAIL, none).cacheable());
  }
  SECTION("every truncation of a reply is handled, never a crash") {
    for (const Packet& p : {mx_reply(), a_reply(), txt_reply(), ptr_reply()}) {
      for (size_t len = 0; len < p.b.size(); ++len) {
        std::span<const unsigned char> cut(p.b.data(), len);
        for (auto type : {QueryType::mx, QueryType::a, QueryType::aaaa, QueryType::txt, QueryType::ptr}) {
          Answer a = interpret_reply(type, ARES_SUCCESS, cut);
          CHECK(a.kind == Answer::Kind::temporary);
        }
      }
    }
  }
  SECTION("random bytes are handled, never a crash") {
    std::mt19937 rng(7);
    for (int i = 0; i < 3000; ++i) {
      std::vector<unsigned char> junk(rng() % 200);
      for (auto& c : junk) c = static_cast<unsigned char>(rng());
      if (junk.size() >= 6 && i % 2) junk[5] = 1;  // claim one answer
      for (auto type : {QueryType::mx, QueryType::a, QueryType::aaaa, QueryType::txt, QueryType::ptr})
        (void)interpret_reply(type, ARES_SUCCESS, junk);
      (void)reply_ttls(junk);
    }
  }
}

TEST_CASE("order_mx", "[dns]") {
  auto zero = [](uint32_t) { return 0u; };
  std::vector<MxRecord> in = {{"c", 10}, {"b", 5}, {"a", 10}, {"", 0}, {"b", 20}, {"d", 10}};
  auto out = order_mx(in, 10, zero);
  // b at 5 (its 20 dropped), then a, c, d shuffled: j = 0 swaps (d, a), (c, d).
  CHECK(out == std::vector<MxRecord>{{"b", 5}, {"c", 10}, {"d", 10}, {"a", 10}});
  CHECK(order_mx(in, 2, zero).size() == 2);
  auto last = [](uint32_t bound) { return bound - 1; };
  CHECK(order_mx(in, 10, last) == std::vector<MxRecord>{{"b", 5}, {"a", 10}, {"c", 10}, {"d", 10}});
  CHECK(order_mx({{"", 0}}, 10, zero).empty());
}

TEST_CASE("AnswerCache", "[dns]") {
  auto answer = [](std::string host) {
    Answer a;
    a.kind = Answer::Kind::records;
    a.mx = {{std::move(host), 10}};
    return a;
  };
  using T = AnswerCache::Time;
  SECTION("entries live until their TTL") {
    AnswerCache c(10);
    c.put("MX a", answer("x"), T(0), 60s);
    REQUIRE(c.find("MX a", T(59'999)));
    CHECK(c.find("MX a", T(59'999))->mx[0].host == "x");
    CHECK_FALSE(c.find("MX a", T(60'000)));
    CHECK(c.size() == 0);
  }
  SECTION("a new answer replaces the old") {
    AnswerCache c(10);
    c.put("MX a", answer("x"), T(0), 60s);
    c.put("MX a", answer("y"), T(0), 10s);
    CHECK(c.size() == 1);
    CHECK(c.find("MX a", T(1))->mx[0].host == "y");
    CHECK_FALSE(c.find("MX a", T(10'000)));
  }
  SECTION("full: expired entries go first, then the one closest to expiry") {
    AnswerCache c(3);
    c.put("1", answer("1"), T(0), 100s);
    c.put("2", answer("2"), T(0), 5s);
    c.put("3", answer("3"), T(0), 50s);
    c.put("4", answer("4"), T(0), 70s);  // evicts 2
    CHECK(c.size() == 3);
    CHECK_FALSE(c.find("2", T(0)));
    c.put("5", answer("5"), T(60'000), 70s);  // 3 expired at 50 s
    CHECK(c.size() == 3);
    CHECK_FALSE(c.find("3", T(60'000)));
    CHECK(c.find("1", T(60'000)));
    CHECK(c.find("4", T(60'000)));
    CHECK(c.find("5", T(60'000)));
  }
  SECTION("zero TTL or size stores nothing") {
    AnswerCache c(3);
    c.put("a", answer("a"), T(0), 0s);
    CHECK(c.size() == 0);
    AnswerCache off(0);
    off.put("a", answer("a"), T(0), 60s);
    CHECK(off.size() == 0);
  }
}

TEST_CASE("TLSA RDATA and replies", "[dns][tlsa]") {
  SECTION("parse_tlsa_rdata") {
    const unsigned char ok[] = {3, 1, 1, 0xab, 0xcd};
    auto t = parse_tlsa_rdata(ok);
    REQUIRE(t);
    CHECK((t->usage == 3 && t->selector == 1 && t->matching_type == 1));
    CHECK(t->data == std::vector<uint8_t>{0xab, 0xcd});
    // Numbers are not judged here: 255 parses (DANE finds it unusable).
    const unsigned char odd[] = {255, 255, 255, 0};
    CHECK(parse_tlsa_rdata(odd));
    // Fewer than four octets: no association data.
    const unsigned char short3[] = {3, 1, 1};
    CHECK(!parse_tlsa_rdata(short3));
    CHECK(!parse_tlsa_rdata(std::span<const unsigned char>(ok, 2)));
    CHECK(!parse_tlsa_rdata({}));
  }
  const std::string q = "_25._tcp.mx.test";
  auto tlsa_rr = [&](Packet& p, std::vector<unsigned char> rdata, unsigned klass = 1) {
    p.name(q);
    p.u16(52);
    p.u16(klass);
    p.u32(300);
    p.u16(static_cast<unsigned>(rdata.size()));
    p.b.insert(p.b.end(), rdata.begin(), rdata.end());
  };
  SECTION("records, malformed ones counted, other classes and types skipped") {
    Packet p = reply(q, 52, 0, 5, 0);
    tlsa_rr(p, {3, 1, 1, 1, 2, 3});
    tlsa_rr(p, {2, 0, 0});  // no data
    tlsa_rr(p, {3, 0, 1, 9}, 3);  // class CH
    p.rr(q, 1, 300, [&] { p.u32(0xc0000201); });
    tlsa_rr(p, {2, 1, 2, 7});
    Answer a = interpret_reply(QueryType::tlsa, ARES_SUCCESS, p.b);
    REQUIRE(a.kind == Answer::Kind::records);
    CHECK(a.tlsa == std::vector<TlsaRecord>{{3, 1, 1, {1, 2, 3}}, {2, 1, 2, {7}}});
    CHECK(a.tlsa_malformed == 1);
    CHECK(a.ttl == 300);
    CHECK(!a.authenticated);
  }
  SECTION("only malformed records: still records (an RRset exists)") {
    Packet p = reply(q, 52, 0, 1, 0);
    tlsa_rr(p, {3, 1});
    Answer a = interpret_reply(QueryType::tlsa, ARES_SUCCESS, p.b);
    CHECK(a.kind == Answer::Kind::records);
    CHECK(a.tlsa.empty());
    CHECK(a.tlsa_malformed == 1);
  }
  SECTION("the AD bit") {
    Packet p = reply(q, 52, 0, 1, 0);
    p.b[3] |= 0x20;
    tlsa_rr(p, {3, 1, 1, 1});
    CHECK(interpret_reply(QueryType::tlsa, ARES_SUCCESS, p.b).authenticated);
    Packet nx = reply(q, 52, 3, 0, 1);
    nx.b[3] |= 0x20;
    soa(nx, 3600, 600);
    Answer a = interpret_reply(QueryType::tlsa, ARES_ENOTFOUND, nx.b);
    CHECK(a.kind == Answer::Kind::nxdomain);
    CHECK(a.authenticated);
    // A failure is never authenticated, whatever its header says.
    Packet sf = reply(q, 52, 2, 0, 0);
    sf.b[3] |= 0x20;
    CHECK(!interpret_reply(QueryType::tlsa, ARES_SUCCESS, sf.b).authenticated);
  }
  SECTION("ares_send reports every RCODE as success: the header decides") {
    Packet nx = reply(q, 52, 3, 0, 1);
    soa(nx, 3600, 600);
    Answer a = interpret_reply(QueryType::tlsa, ARES_SUCCESS, nx.b);
    CHECK(a.kind == Answer::Kind::nxdomain);
    CHECK(a.ttl == 600);
    CHECK(interpret_reply(QueryType::tlsa, ARES_SUCCESS, reply(q, 52, 0, 0, 0).b).kind == Answer::Kind::nodata);
    CHECK(interpret_reply(QueryType::tlsa, ARES_SUCCESS, reply(q, 52, 2, 0, 0).b).error ==
          "server failure (SERVFAIL)");
    CHECK(interpret_reply(QueryType::tlsa, ARES_SUCCESS, reply(q, 52, 5, 0, 0).b).error ==
          "query refused (REFUSED)");
    CHECK(interpret_reply(QueryType::tlsa, ARES_SUCCESS, reply(q, 52, 9, 0, 0).b).kind ==
          Answer::Kind::temporary);
  }
  SECTION("only a CNAME: NODATA; a record cut short: malformed") {
    Packet p = reply(q, 52, 0, 1, 0);
    p.rr(q, 5, 300, [&] { p.name("other.test"); });
    CHECK(interpret_reply(QueryType::tlsa, ARES_SUCCESS, p.b).kind == Answer::Kind::nodata);
    Packet cut = reply(q, 52, 0, 1, 0);
    tlsa_rr(cut, {3, 1, 1, 1, 2});
    cut.b.pop_back();
    Answer a = interpret_reply(QueryType::tlsa, ARES_SUCCESS, cut.b);
    CHECK(a.kind == Answer::Kind::temporary);
    CHECK_THAT(a.error, Catch::Contains("malformed"));
  }
}
