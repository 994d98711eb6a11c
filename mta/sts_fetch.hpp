// sts_fetch.hpp — the MTA-STS policy fetch on the libuv loop (RFC 8461
// §3.3): A/AAAA of mta-DOMAIN's policy host through the dns::Resolver, a TCP
// connection to its port (443 in production; a parameter so tests can use
// any), TLS with SNI and PKIX verification of the host name against the
// client context's CA file (BoringSSL, mta/tls), the GET of
// /.well-known/mta-sts.txt (sts::policy_request), the response through
// sts::ResponseParser (64 KB body cap; a redirect is never followed), then
// sts::judge and sts::parse_policy: a Policy or a one-line reason.
//
// The addresses are tried in order (IPv4 first, then IPv6) while connecting
// fails; once one connection is up, its outcome is final. The whole fetch,
// DNS included, has one deadline (`timeout`, 30 s in production); DNS is
// bounded by the resolver's own timeouts, and the connections get what is
// left of the deadline.
//
// Lifetime: StsFetcher lives on one loop thread. fetch() never calls back
// before it returns; each callback runs exactly once unless cancel(id) or
// cancel_all() is called first (or the fetcher is destroyed), then never.
// A connection is a uv::StreamConnection: it frees itself once its handles'
// close callbacks ran (docs/architecture.md, "Ownership rules"), so the
// fetcher may be destroyed while connections are still closing. The
// resolver passed to fetch() must outlive the lookup or be closed (its
// close cancels the lookup: the fetch then fails with "cancelled").
// Nothing here logs: the reasons go to the caller (mta/sts_policies.*).
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "conf/net.hpp"
#include "dns/resolver.hpp"
#include "mta/tls/tls.hpp"
#include "sts/policy.hpp"

namespace sluice::mta {

using StsFetchResult = std::expected<sts::Policy, std::string>;

class StsFetcher {
 public:
  struct Options {
    uint16_t port = 443;
    std::chrono::milliseconds timeout{30000};
  };
  using Done = std::function<void(StsFetchResult)>;

  // `tls` must be a verifying client context (TlsContext::client(true, ca_file)).
  StsFetcher(uv_loop_t* loop, std::shared_ptr<const tls::TlsContext> tls, Options options);
  ~StsFetcher();
  StsFetcher(const StsFetcher&) = delete;
  StsFetcher& operator=(const StsFetcher&) = delete;

  // Fetches the policy of `domain` (the policy domain). Returns an id for cancel().
  uint64_t fetch(dns::Resolver& resolver, std::string_view domain, Done done);
  void cancel(uint64_t id);
  void cancel_all();
  size_t in_flight() const { return fetches_.size(); }

 private:
  struct Fetch;
  void on_addresses(uint64_t id, dns::AddrResult r);
  void try_next(uint64_t id);
  void finish(uint64_t id, StsFetchResult r);

  uv_loop_t* loop_;
  std::shared_ptr<const tls::TlsContext> tls_;
  Options options_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Fetch>> fetches_;
  std::shared_ptr<bool> alive_;  // false once destroyed: resolver callbacks check it
};

}  // namespace sluice::mta
