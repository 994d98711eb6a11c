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
    for (const Packet& p : {mx_reply(), a_reply()}) {
      for (size_t len = 0; len < p.b.size(); ++len) {
        std::span<const unsigned char> cut(p.b.data(), len);
        for (auto type : {QueryType::mx, QueryType::a, QueryType::aaaa}) {
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
      for (auto type : {QueryType::mx, QueryType::a, QueryType::aaaa}) (void)interpret_reply(type, ARES_SUCCESS, junk);
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
