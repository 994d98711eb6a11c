// resolver_test.cpp — the Resolver against a real DNS server on loopback.
//
// testdata/fake_dns.py (python3-dnslib, run by /usr/bin/python3) serves
// testdata/zone.txt on a free UDP port of 127.0.0.1 and logs every query it
// receives, which lets tests count what reached the wire (cache, sharing of
// queries in flight). One server serves the whole test binary; it exits when
// the binary does (its stdin pipe closes). Each test runs its own uv loop and
// Resolver, and checks at the end that every handle was closed (the server
// and that Harness: fake_dns_test.hpp; TLSA and the AD bit: tlsa_test.cpp).
#include <catch2/catch.hpp>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dns/fake_dns_test.hpp"
#include "dns/resolver.hpp"

using namespace dns_test;

TEST_CASE("MX hosts come in preference order, equal preferences shuffled by the injected RNG", "[dns]") {
  SECTION("an RNG that always says 0") {
    Harness h([](dns::Options& o) { o.random = [](uint32_t) { return 0u; }; });
    MxResult r = h.mx("multi.test");
    REQUIRE(r.status == Status::ok);
    CHECK_FALSE(r.implicit_mx);
    // Equal preference 10 in name order is a, b, c; Fisher-Yates with j = 0
    // swaps (c, a) then (c, b): b, c, a.
    CHECK(names(r) == std::vector<std::string>{"b.multi.test", "c.multi.test", "a.multi.test",
                                               "mx20.multi.test", "mx30.multi.test"});
    CHECK(r.hosts[0].preference == 10);
    CHECK(r.hosts[3].preference == 20);
    CHECK(r.hosts[4].preference == 30);
    const dns::MxHost& a = r.hosts[2];
    CHECK(ips(a.ipv4) == std::vector<std::string>{"192.0.2.10"});
    CHECK(ips(a.ipv6) == std::vector<std::string>{"2001:db8::10"});
    CHECK(ips(r.hosts[0].ipv4) == std::vector<std::string>{"192.0.2.11"});
    CHECK(r.hosts[0].ipv6.empty());
  }
  SECTION("an RNG that always says bound - 1 leaves name order") {
    Harness h([](dns::Options& o) { o.random = [](uint32_t bound) { return bound - 1; }; });
    CHECK(names(h.mx("multi.test")) == std::vector<std::string>{"a.multi.test", "b.multi.test", "c.multi.test",
                                                                "mx20.multi.test", "mx30.multi.test"});
  }
  SECTION("the default RNG shuffles on every lookup, also from the cache") {
    Harness h;
    std::set<std::string> firsts;
    for (int i = 0; i < 40; ++i) {
      auto n = names(h.mx("multi.test"));
      REQUIRE(n.size() == 5);
      CHECK(std::set<std::string>(n.begin(), n.begin() + 3) ==
            std::set<std::string>{"a.multi.test", "b.multi.test", "c.multi.test"});
      CHECK(n[3] == "mx20.multi.test");
      CHECK(n[4] == "mx30.multi.test");
      firsts.insert(n[0]);
    }
    CHECK(firsts.size() > 1);
  }
}

TEST_CASE("implicit MX, null MX and permanent failures", "[dns]") {
  Harness h;
  SECTION("no MX: the domain's own A and AAAA at preference 0") {
    MxResult r = h.mx("implicit.test");
    REQUIRE(r.status == Status::ok);
    CHECK(r.implicit_mx);
    REQUIRE(r.hosts.size() == 1);
    CHECK(r.hosts[0].name == "implicit.test");
    CHECK(r.hosts[0].preference == 0);
    CHECK(ips(r.hosts[0].ipv4) == std::vector<std::string>{"192.0.2.40"});
    CHECK(ips(r.hosts[0].ipv6) == std::vector<std::string>{"2001:db8::40"});
  }
  SECTION("null MX") {
    MxResult r = h.mx("nullmx.test");
    CHECK(r.status == Status::null_mx);
    CHECK(r.hosts.empty());
  }
  SECTION("a null MX among real ones is skipped") {
    MxResult r = h.mx("mixednull.test");
    REQUIRE(r.status == Status::ok);
    CHECK(names(r) == std::vector<std::string>{"mx.mixednull.test"});
  }
  SECTION("NXDOMAIN") {
    MxResult r = h.mx("nx.test");
    CHECK(r.status == Status::nxdomain);
    CHECK_THAT(r.reason, Catch::Contains("NXDOMAIN") && Catch::Contains("nx.test"));
  }
  SECTION("the name exists with neither MX nor addresses") {
    MxResult r = h.mx("empty.test");
    CHECK(r.status == Status::no_route);
    CHECK_THAT(r.reason, Catch::Contains("no MX, A or AAAA"));
  }
  SECTION("MX records exist: their hosts only, never the domain's own A") {
    MxResult r = h.mx("noaddr.test");
    CHECK(r.status == Status::no_route);
    CHECK(r.hosts.empty());
    CHECK_THAT(r.reason, Catch::Contains("missing.noaddr.test"));
  }
}

TEST_CASE("temporary failures", "[dns]") {
  Harness h;
  SECTION("SERVFAIL") {
    MxResult r = h.mx("servfail.test");
    CHECK(r.status == Status::temporary);
    CHECK_THAT(r.reason, Catch::Contains("SERVFAIL"));
  }
  SECTION("REFUSED") {
    MxResult r = h.mx("refused.test");
    CHECK(r.status == Status::temporary);
    CHECK_THAT(r.reason, Catch::Contains("REFUSED"));
  }
  SECTION("a server that never answers") {
    // Count loop iterations while waiting: the timer wakes the loop, nothing polls.
    uv_check_t check;
    static int iterations;
    iterations = 0;
    uv_check_init(&h.loop, &check);
    uv_check_start(&check, [](uv_check_t*) { ++iterations; });
    uv_unref(reinterpret_cast<uv_handle_t*>(&check));
    auto start = std::chrono::steady_clock::now();
    MxResult r = h.mx("timeout.test");
    CHECK(r.status == Status::temporary);
    CHECK_THAT(r.reason, Catch::Contains("timed out"));
    CHECK(std::chrono::steady_clock::now() - start >= 250ms);
    CHECK(std::chrono::steady_clock::now() - start < 3s);
    CHECK(iterations < 10);
    uv_close(reinterpret_cast<uv_handle_t*>(&check), nullptr);
  }
  SECTION("a reply cut in the middle of its answer") {
    MxResult r = h.mx("malformed.test");
    CHECK(r.status == Status::temporary);
    CHECK_THAT(r.reason, Catch::Contains("malformed"));
  }
  SECTION("garbage after the query id") {
    CHECK(h.mx("garbage.test").status == Status::temporary);
  }
  SECTION("the only MX host's answers are malformed") {
    MxResult r = h.mx("malhost.test");
    CHECK(r.status == Status::temporary);
    CHECK_THAT(r.reason, Catch::Contains("bad.malhost.test"));
  }
  SECTION("every MX host fails, one temporarily") {
    MxResult r = h.mx("tempfail.test");
    CHECK(r.status == Status::temporary);
    CHECK_THAT(r.reason, Catch::Contains("broken.tempfail.test") && Catch::Contains("missing.tempfail.test"));
  }
  SECTION("one MX host fails temporarily, the next one is used") {
    MxResult r = h.mx("partial.test");
    REQUIRE(r.status == Status::ok);
    CHECK(names(r) == std::vector<std::string>{"ok.partial.test"});
    CHECK(r.hosts[0].preference == 20);
  }
}

TEST_CASE("CNAMEs, IPv6-only hosts, the cap, names", "[dns]") {
  Harness h;
  SECTION("an MX host that is a CNAME") {
    MxResult r = h.mx("cnamehost.test");
    REQUIRE(r.status == Status::ok);
    CHECK(names(r) == std::vector<std::string>{"alias.cnamehost.test"});
    CHECK(ips(r.hosts[0].ipv4) == std::vector<std::string>{"192.0.2.50"});
  }
  SECTION("a CNAME at the domain is followed for MX") {
    MxResult r = h.mx("alias.test");
    REQUIRE(r.status == Status::ok);
    CHECK_FALSE(r.implicit_mx);
    CHECK(names(r) == std::vector<std::string>{"mx.target.test"});
    CHECK(ips(r.hosts[0].ipv4) == std::vector<std::string>{"192.0.2.60"});
  }
  SECTION("a CNAME at the domain whose target has only addresses") {
    MxResult r = h.mx("alias-implicit.test");
    REQUIRE(r.status == Status::ok);
    CHECK(r.implicit_mx);
    CHECK(names(r) == std::vector<std::string>{"alias-implicit.test"});
    CHECK(ips(r.hosts[0].ipv4) == std::vector<std::string>{"192.0.2.40"});
  }
  SECTION("an IPv6-only MX host") {
    MxResult r = h.mx("v6only.test");
    REQUIRE(r.status == Status::ok);
    CHECK(r.hosts[0].ipv4.empty());
    CHECK(ips(r.hosts[0].ipv6) == std::vector<std::string>{"2001:db8::70"});
  }
  SECTION("at most 10 MX hosts, the best ones") {
    MxResult r = h.mx("many.test");
    REQUIRE(r.status == Status::ok);
    REQUIRE(r.hosts.size() == 10);
    CHECK(r.hosts.front().name == "mx01.many.test");
    CHECK(r.hosts.back().name == "mx10.many.test");
    CHECK(ips(r.hosts.back().ipv4) == std::vector<std::string>{"192.0.3.10"});
  }
  SECTION("an answer too big for UDP comes over TCP") {
    int n0 = FakeDns::get().count("mx.big.test", "A");
    MxResult r = h.mx("big.test");
    REQUIRE(r.status == Status::ok);
    REQUIRE(r.hosts.size() == 1);
    CHECK(r.hosts[0].ipv4.size() == 40);
    CHECK(FakeDns::get().count("mx.big.test", "A") == n0 + 2);  // truncated over UDP, then TCP
  }
  SECTION("case and a trailing dot do not matter") {
    MxResult r = h.mx("Alias.TEST.");
    REQUIRE(r.status == Status::ok);
    CHECK(names(r) == std::vector<std::string>{"mx.target.test"});
  }
  SECTION("names DNS cannot carry fail permanently without a query") {
    for (const char* bad : {"", ".", "a..test", "bad\\name.test", "sp ace.test", "\xc3\xbc.test"}) {
      INFO(bad);
      MxResult r = h.mx(bad);
      CHECK(r.status == Status::no_route);
      CHECK(h.addrs(bad).status == Status::no_route);
    }
    CHECK(h.mx(std::string(64, 'a') + ".test").status == Status::no_route);
    CHECK(h.resolver->stats().queries_sent == 0);
  }
}

TEST_CASE("domain literals skip DNS", "[dns]") {
  Harness h;
  MxResult v4 = h.mx("[192.0.2.9]");
  REQUIRE(v4.status == Status::ok);
  REQUIRE(v4.hosts.size() == 1);
  CHECK(v4.hosts[0].name == "[192.0.2.9]");
  CHECK(ips(v4.hosts[0].ipv4) == std::vector<std::string>{"192.0.2.9"});
  MxResult v6 = h.mx("[IPv6:2001:db8::9]");
  REQUIRE(v6.status == Status::ok);
  CHECK(ips(v6.hosts[0].ipv6) == std::vector<std::string>{"2001:db8::9"});
  CHECK(h.mx("[2001:db8::9]").status == Status::no_route);  // RFC 5321 wants the IPv6: tag
  CHECK(h.mx("[999.0.0.1]").status == Status::no_route);
  CHECK(h.mx("[IPv6:192.0.2.1]").status == Status::no_route);
  AddrResult bare = h.addrs("192.0.2.7");
  REQUIRE(bare.status == Status::ok);
  CHECK(ips(bare.ipv4) == std::vector<std::string>{"192.0.2.7"});
  CHECK(ips(h.addrs("[IPv6:::1]").ipv6) == std::vector<std::string>{"::1"});
  CHECK(h.resolver->stats().queries_sent == 0);
}

TEST_CASE("resolve_addresses", "[dns]") {
  Harness h;
  AddrResult a = h.addrs("a.multi.test");
  REQUIRE(a.status == Status::ok);
  CHECK(ips(a.ipv4) == std::vector<std::string>{"192.0.2.10"});
  CHECK(ips(a.ipv6) == std::vector<std::string>{"2001:db8::10"});
  AddrResult c = h.addrs("alias.cnamehost.test");
  REQUIRE(c.status == Status::ok);
  CHECK(ips(c.ipv4) == std::vector<std::string>{"192.0.2.50"});
  AddrResult nx = h.addrs("nx.test");
  CHECK(nx.status == Status::nxdomain);
  CHECK_THAT(nx.reason, Catch::Contains("NXDOMAIN"));
  AddrResult none = h.addrs("multi.test");
  CHECK(none.status == Status::no_route);
  CHECK_THAT(none.reason, Catch::Contains("no A or AAAA"));
  CHECK(h.addrs("servfail.test").status == Status::temporary);
}

TEST_CASE("resolve_txt and resolve_ptr", "[dns]") {
  Harness h;
  auto t = h.txt("TXT.test.");
  REQUIRE(t.status == Status::ok);
  CHECK(t.records == std::vector<std::string>{"v=spf1 ip4:192.0.2.1 ~all", "other"});
  CHECK(h.txt("notxt.test").status == Status::no_route);
  CHECK(h.txt("notxt.test").reason == "notxt.test TXT: no such record");
  CHECK(h.txt("nothere.test").status == Status::nxdomain);
  auto fail = h.txt("txtfail.test");
  CHECK(fail.status == Status::temporary);
  CHECK(fail.reason == "txtfail.test TXT: server failure (SERVFAIL)");
  CHECK(h.txt("a..b").status == Status::no_route);

  auto p = h.ptr("192.0.2.10");
  REQUIRE(p.status == Status::ok);
  CHECK(p.names == std::vector<std::string>{"mail.example.test"});
  auto two = h.ptr("192.0.2.11");
  REQUIRE(two.status == Status::ok);
  CHECK(std::set<std::string>(two.names.begin(), two.names.end()) == std::set<std::string>{"a.test", "b.test"});
  CHECK(h.ptr("2001:db8::1").names == std::vector<std::string>{"v6.test"});
  auto none = h.ptr("192.0.2.12");
  CHECK(none.status == Status::nxdomain);
  CHECK(none.reason == "12.2.0.192.in-addr.arpa: domain does not exist (NXDOMAIN)");
  // The second lookup of a name comes from the cache.
  const int before = FakeDns::get().count("txt.test", "TXT");
  CHECK(h.txt("txt.test").status == Status::ok);
  CHECK(FakeDns::get().count("txt.test", "TXT") == before);
}

TEST_CASE("answers are cached by TTL, temporary failures never", "[dns]") {
  FakeDns& server = FakeDns::get();
  SECTION("positive answers until their TTL runs out") {
    Harness h;
    int mx0 = server.count("cache.test", "MX"), a0 = server.count("mx.cache.test", "A");
    REQUIRE(h.mx("cache.test").status == Status::ok);
    CHECK(server.count("cache.test", "MX") == mx0 + 1);
    CHECK(server.count("mx.cache.test", "A") == a0 + 1);
    h.clock += 59s;
    MxResult again = h.mx("cache.test");
    REQUIRE(again.status == Status::ok);
    CHECK(ips(again.hosts[0].ipv4) == std::vector<std::string>{"192.0.2.100"});
    CHECK(server.count("cache.test", "MX") == mx0 + 1);  // answered without the server
    CHECK(server.count("mx.cache.test", "A") == a0 + 1);
    CHECK(h.resolver->stats().cache_hits == 3);  // MX, A, AAAA
    h.clock += 2s;                                // 61 s > TTL 60
    REQUIRE(h.mx("cache.test").status == Status::ok);
    CHECK(server.count("cache.test", "MX") == mx0 + 2);
    CHECK(server.count("mx.cache.test", "A") == a0 + 2);
  }
  SECTION("a TTL of 0 is not cached") {
    Harness h;
    int n0 = server.count("zerottl.test", "MX");
    REQUIRE(h.mx("zerottl.test").status == Status::ok);
    REQUIRE(h.mx("zerottl.test").status == Status::ok);
    CHECK(server.count("zerottl.test", "MX") == n0 + 2);
  }
  SECTION("NXDOMAIN for min(SOA negative TTL, 5 min)") {
    Harness h;
    int n0 = server.count("nxcache.test", "MX");
    CHECK(h.mx("nxcache.test").status == Status::nxdomain);
    h.clock += 299s;  // the zone says 600 s; the cap is 300 s
    MxResult again = h.mx("nxcache.test");
    CHECK(again.status == Status::nxdomain);
    CHECK_THAT(again.reason, Catch::Contains("NXDOMAIN"));
    CHECK(server.count("nxcache.test", "MX") == n0 + 1);
    h.clock += 2s;
    CHECK(h.mx("nxcache.test").status == Status::nxdomain);
    CHECK(server.count("nxcache.test", "MX") == n0 + 2);
  }
  SECTION("NODATA of the implicit MX is cached too") {
    Harness h;
    int n0 = server.count("implicit.test", "MX");
    REQUIRE(h.mx("implicit.test").status == Status::ok);
    REQUIRE(h.mx("implicit.test").status == Status::ok);
    CHECK(server.count("implicit.test", "MX") == n0 + 1);
  }
  SECTION("SERVFAIL and timeouts are asked again") {
    Harness h;
    int s0 = server.count("servfail.test", "MX"), t0 = server.count("timeout.test", "MX");
    CHECK(h.mx("servfail.test").status == Status::temporary);
    CHECK(h.mx("servfail.test").status == Status::temporary);
    CHECK(h.mx("timeout.test").status == Status::temporary);
    CHECK(h.mx("timeout.test").status == Status::temporary);
    CHECK(server.count("servfail.test", "MX") == s0 + 2);
    CHECK(server.count("timeout.test", "MX") == t0 + 2);
  }
  SECTION("the cache is bounded") {
    Harness h([](dns::Options& o) { o.cache_max = 3; });
    REQUIRE(h.mx("multi.test").status == Status::ok);  // 11 answers
    CHECK(h.resolver->stats().cache_entries == 3);
  }
  SECTION("cache_max 0 turns it off") {
    Harness h([](dns::Options& o) { o.cache_max = 0; });
    int n0 = server.count("implicit.test", "A");
    REQUIRE(h.mx("implicit.test").status == Status::ok);
    REQUIRE(h.mx("implicit.test").status == Status::ok);
    CHECK(server.count("implicit.test", "A") == n0 + 2);
    CHECK(h.resolver->stats().cache_entries == 0);
  }
}

TEST_CASE("lookups of the same name in flight share one query", "[dns]") {
  FakeDns& server = FakeDns::get();
  Harness h([](dns::Options& o) { o.cache_max = 0; });
  int n0 = server.count("multi.test", "MX");
  int done = 0;
  for (int i = 0; i < 3; ++i)
    h.resolver->resolve_mx("multi.test", [&](MxResult r) {
      CHECK(r.status == Status::ok);
      CHECK(r.hosts.size() == 5);
      ++done;
    });
  REQUIRE(run_until(&h.loop, [&] { return done == 3; }));
  CHECK(server.count("multi.test", "MX") == n0 + 1);
}

TEST_CASE("servers from the options", "[dns]") {
  SECTION("an unreachable server is a temporary failure") {
    Harness h([](dns::Options& o) { o.servers = {loopback(dead_port())}; });
    MxResult r = h.mx("multi.test");
    CHECK(r.status == Status::temporary);
    AddrResult a = h.addrs("a.multi.test");
    CHECK(a.status == Status::temporary);
  }
  SECTION("the next server is tried") {
    Harness h([](dns::Options& o) { o.servers.insert(o.servers.begin(), loopback(dead_port())); });
    CHECK(h.mx("multi.test").status == Status::ok);
  }
  SECTION("with several servers, SERVFAIL from all of them is still temporary") {
    FakeDns& server = FakeDns::get();
    int n0 = server.count("servfail.test", "MX");
    Harness h([](dns::Options& o) { o.servers.push_back(o.servers.front()); });
    CHECK(h.mx("servfail.test").status == Status::temporary);
    CHECK(server.count("servfail.test", "MX") == n0 + 2);  // each server asked once
  }
  SECTION("without servers, those of /etc/resolv.conf; created and destroyed unused") {
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    auto r = Resolver::create(&loop, {});
    INFO((r ? "" : r.error()));
    REQUIRE(r);
    bool done = false;
    (*r)->close([&] { done = true; });
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(done);
    r->reset();
    auto unused = Resolver::create(&loop, {});
    REQUIRE(unused);
    unused->reset();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }
  SECTION("invalid options") {
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    dns::Options o;
    o.tries = 0;
    CHECK_FALSE(Resolver::create(&loop, o));
    o.tries = 1;
    o.timeout = 0ms;
    CHECK_FALSE(Resolver::create(&loop, o));
    o.timeout = 1s;
    o.max_mx_hosts = 0;
    CHECK_FALSE(Resolver::create(&loop, o));
    CHECK(uv_loop_close(&loop) == 0);
  }
}

TEST_CASE("close() with lookups in flight", "[dns]") {
  Harness h([](dns::Options& o) { o.timeout = 5000ms; });
  std::vector<std::string> events;
  h.resolver->resolve_mx("timeout.test", [&](MxResult r) {
    CHECK(r.status == Status::temporary);
    CHECK(r.reason == "cancelled");
    events.push_back("mx");
  });
  h.resolver->resolve_addresses("timeout.test", [&](AddrResult r) {
    CHECK(r.status == Status::temporary);
    CHECK(r.reason == "cancelled");
    events.push_back("addrs");
  });
  h.resolver->resolve_txt("timeout.test", [&](dns::TxtResult r) {
    CHECK(r.status == Status::temporary);
    CHECK(r.reason == "cancelled");
    events.push_back("txt");
  });
  auto start = std::chrono::steady_clock::now();
  uv_run(&h.loop, UV_RUN_NOWAIT);  // the queries are on the wire
  CHECK(events.empty());
  bool done = false;
  h.resolver->close([&] {
    events.push_back("done");
    done = true;
  });
  CHECK(events.empty());  // never called from inside close()
  // A lookup asked for after close() is cancelled too.
  h.resolver->resolve_mx("multi.test", [&](MxResult r) {
    CHECK(r.reason == "cancelled");
    events.push_back("late");
  });
  REQUIRE(run_until(&h.loop, [&] { return done; }));
  CHECK(events == std::vector<std::string>{"mx", "addrs", "txt", "late", "done"});
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  h.resolver.reset();
}

TEST_CASE("callbacks may start lookups, close or destroy the resolver", "[dns]") {
  SECTION("a lookup from a callback, then close from the next") {
    Harness h;
    std::vector<std::string> events;
    bool done = false;
    h.resolver->resolve_mx("implicit.test", [&](MxResult r) {
      CHECK(r.status == Status::ok);
      events.push_back("first");
      h.resolver->resolve_mx("alias.test", [&](MxResult r2) {
        CHECK(r2.status == Status::ok);
        events.push_back("second");
        h.resolver->close([&] {
          events.push_back("done");
          done = true;
        });
      });
    });
    REQUIRE(run_until(&h.loop, [&] { return done; }));
    CHECK(events == std::vector<std::string>{"first", "second", "done"});
    h.resolver.reset();
  }
  SECTION("destroying from inside done") {
    Harness h;
    bool done = false;
    h.resolver->close([&] {
      h.resolver.reset();
      done = true;
    });
    REQUIRE(run_until(&h.loop, [&] { return done; }));
  }
  SECTION("destroying from a callback drops the other callbacks") {
    Harness h;
    int called = 0;
    // Both results come from the same batch: literals need no DNS.
    h.resolver->resolve_mx("[192.0.2.1]", [&](MxResult) {
      ++called;
      h.resolver.reset();
    });
    h.resolver->resolve_mx("[192.0.2.2]", [&](MxResult) { ++called; });
    uv_run(&h.loop, UV_RUN_DEFAULT);
    CHECK(called == 1);
  }
  SECTION("destroying with queries in flight: no callback, handles still closed") {
    Harness h([](dns::Options& o) { o.timeout = 5000ms; });
    bool called = false;
    h.resolver->resolve_mx("timeout.test", [&](MxResult) { called = true; });
    h.resolver->resolve_mx("multi.test", [&](MxResult) { called = true; });
    uv_run(&h.loop, UV_RUN_NOWAIT);
    auto start = std::chrono::steady_clock::now();
    h.resolver.reset();
    uv_run(&h.loop, UV_RUN_DEFAULT);
    CHECK_FALSE(called);
    CHECK(std::chrono::steady_clock::now() - start < 2s);
  }
  SECTION("cancel(id)") {
    Harness h;
    bool first = false, second = false;
    auto id = h.resolver->resolve_mx("multi.test", [&](MxResult) { first = true; });
    h.resolver->resolve_mx("implicit.test", [&](MxResult) { second = true; });
    h.resolver->cancel(id);
    REQUIRE(run_until(&h.loop, [&] { return second; }));
    uv_run(&h.loop, UV_RUN_NOWAIT);
    CHECK_FALSE(first);
  }
}

TEST_CASE("an idle resolver keeps no handle active", "[dns]") {
  Harness h;
  REQUIRE(h.mx("multi.test").status == Status::ok);
  // Nothing in flight: the loop has nothing to wait for and returns.
  auto start = std::chrono::steady_clock::now();
  CHECK(uv_run(&h.loop, UV_RUN_DEFAULT) == 0);
  CHECK(std::chrono::steady_clock::now() - start < 1s);
}
