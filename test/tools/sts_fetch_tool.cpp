// sts_fetch_tool — drives the MTA-STS fetch and policy store (mta/sts_fetch.*,
// mta/sts_policies.*) on a loop of its own, for test/e2e/test_sts_fetch.py.
//
//   sts_fetch_tool fetch --dns IP:PORT --ca-file CA [--port P] [--timeout-ms N] DOMAIN
//       prints "ok mode=M max_age=N mx=A,B" (exit 0) or "error: REASON" (exit 1)
//   sts_fetch_tool store --dns IP:PORT --ca-file CA --dir DIR [--port P] [--now UNIX] DOMAIN
//       opens the store on DIR (loading the cache), prints what is cached
//       ("cached id=I mode=M" or "cached none"), then recheck(DOMAIN) and
//       prints "policy mode=M max_age=N" or "policy none"; exit 0. With
//       --times K, recheck K times in a row (the rate limits show).
// The store's log lines go to stderr as in the daemon.
#include <uv.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "conf/log.hpp"
#include "conf/net.hpp"
#include "dns/resolver.hpp"
#include "mta/sts_fetch.hpp"
#include "mta/sts_policies.hpp"
#include "mta/tls/tls.hpp"

using namespace sluice;

namespace {

std::string mx_list(const sts::Policy& p) {
  std::string out;
  for (const auto& m : p.mx) out += (out.empty() ? "" : ",") + m;
  return out;
}

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: sts_fetch_tool fetch|store --dns IP:PORT --ca-file CA [--port P] "
                       "[--timeout-ms N] [--dir DIR] [--now UNIX] DOMAIN\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  const std::string_view mode = argv[1];
  std::string dns_server, ca_file, dir, domain;
  uint16_t port = 443;
  long timeout_ms = 30000;
  int times = 1;
  std::optional<int64_t> now;
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--dns") dns_server = value();
    else if (a == "--ca-file") ca_file = value();
    else if (a == "--dir") dir = value();
    else if (a == "--port") port = static_cast<uint16_t>(std::stoi(value()));
    else if (a == "--timeout-ms") timeout_ms = std::stol(value());
    else if (a == "--now") now = std::stoll(value());
    else if (a == "--times") times = std::stoi(value());
    else if (!a.starts_with("--") && domain.empty()) domain = a;
    else usage();
  }
  if (domain.empty() || dns_server.empty() || (mode != "fetch" && mode != "store")) usage();
  log::set_program("sts_fetch_tool");

  auto ep = net::Endpoint::parse(dns_server, 53);
  if (!ep) {
    std::fprintf(stderr, "--dns: %s\n", ep.error().c_str());
    return 2;
  }
  auto ctx = tls::TlsContext::client(true, ca_file);
  if (!ctx) {
    std::fprintf(stderr, "tls: %s\n", ctx.error().c_str());
    return 2;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  dns::Options dopt;
  dopt.servers = {*ep};
  dopt.timeout = std::chrono::milliseconds(1000);
  dopt.tries = 1;
  auto resolver = dns::Resolver::create(&loop, dopt);
  if (!resolver) {
    std::fprintf(stderr, "dns: %s\n", resolver.error().c_str());
    return 2;
  }
  int rc = 0;
  bool finished = false;
  std::unique_ptr<mta::StsFetcher> fetcher;
  std::unique_ptr<mta::StsPolicies> store;
  if (mode == "fetch") {
    fetcher = std::make_unique<mta::StsFetcher>(
        &loop, *ctx, mta::StsFetcher::Options{port, std::chrono::milliseconds(timeout_ms)});
    const uint64_t id = fetcher->fetch(**resolver, domain, [&](mta::StsFetchResult r) {
      if (r)
        fmt::print("ok mode={} max_age={} mx={}\n", sts::mode_name(r->mode), r->max_age, mx_list(*r));
      else
        fmt::print("error: {}\n", r.error());
      rc = r ? 0 : 1;
      finished = true;
    });
    if (id == 0) {
      fmt::print("error: not a domain\n");
      return 1;
    }
  } else {
    mta::StsPolicies::Options o;
    o.dir = dir;
    o.tls = *ctx;
    dns::Resolver* r = resolver->get();
    o.resolver = [r] { return r; };
    o.port = port;
    o.fetch_timeout = std::chrono::milliseconds(timeout_ms);
    if (now) o.clock = [t = *now] { return t; };
    auto s = mta::StsPolicies::open(&loop, std::move(o));
    if (!s) {
      std::fprintf(stderr, "store: %s\n", s.error().c_str());
      return 2;
    }
    store = std::move(*s);
    if (const auto* c = store->cached(domain))
      fmt::print("cached id={} mode={}\n", c->id, sts::mode_name(c->policy.mode));
    else
      fmt::print("cached none\n");
    std::fflush(stdout);
    for (int k = 0; k < times; ++k) {
      finished = false;
      store->recheck(domain, [&](std::optional<sts::Policy> p) {
        if (p)
          fmt::print("policy mode={} max_age={} mx={}\n", sts::mode_name(p->mode), p->max_age, mx_list(*p));
        else
          fmt::print("policy none\n");
        finished = true;
      });
      if (k + 1 < times)
        while (!finished && uv_run(&loop, UV_RUN_ONCE) != 0) {
        }
    }
  }
  while (!finished && uv_run(&loop, UV_RUN_ONCE) != 0) {
  }
  std::fflush(stdout);
  bool closed = false;
  auto close_resolver = [&] { (*resolver)->close([&] { closed = true; }); };
  if (store)
    store->close([&] {
      store.reset();
      close_resolver();
    });
  else
    close_resolver();
  fetcher.reset();
  while (!closed && uv_run(&loop, UV_RUN_ONCE) != 0) {
  }
  resolver->reset();
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0) {
    std::fprintf(stderr, "sts_fetch_tool: handles left open\n");
    return 3;
  }
  return finished ? rc : 1;
}
