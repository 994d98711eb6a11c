// sts_policies.hpp — the MTA-STS policy store on the delivery loop (RFC
// 8461 §3.3, §5, §10.2): which policy applies to a policy domain now, kept
// fresh in the background, cached in <spool_dir>/sts/ across restarts.
//
// current() never waits. It answers from memory (a valid cached policy, any
// mode, or none) and, when the domain has not been checked for
// kTxtCheckInterval (5 minutes) — so when nothing is cached, when the cache
// went stale, or when the TXT id may have changed — starts a background
// check: the TXT record of _mta-sts.DOMAIN; if it has a usable id that
// differs from the cached one, or the cached policy nears max_age
// (sts::needs_refresh), a fetch (mta/sts_fetch.hpp), at most one per domain
// and TXT id per 5 minutes (sts::fetch_allowed). A successful fetch
// replaces the cached policy; a failed one keeps a valid cached policy, and
// a domain with no valid cached policy then has none (§3.3). No TXT record
// (or a broken one, or a DNS failure) keeps the cached policy until it
// expires (§5.1, §10.2). recheck() (§5.1: before bouncing under enforce)
// checks the TXT id now, whatever the interval, fetching when it changed.
//
// Files: one per domain, named by the domain, in sts::encode's format;
// written atomically (DOMAIN.tmp, fsync, rename, fsync of the directory).
// At start every file is read: a corrupt one (or one named for another
// domain) is ignored with a warning, an expired one removed, leftover .tmp
// files removed. The writes are synchronous on the loop thread: at most one
// per domain per 5 minutes.
//
// Log lines (info), one per fetch:
//   mta-sts: domain=example.com id=20240101 mode=enforce max_age=604800
//   mta-sts: domain=example.com fetch failed: <reason>
//
// Threading: the loop thread only. Lifetime: close(done) cancels the
// fetches and the pending recheck callbacks (they are called with the
// policy in memory), and runs done (later, from the loop); destroying the
// store without close() is allowed too (nothing is called back then).
// Resolver callbacks after that find the store gone and do nothing.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/safe_file.hpp"
#include "dns/resolver.hpp"
#include "mta/sts_fetch.hpp"
#include "mta/tls/tls.hpp"
#include "mta/uv/handle.hpp"
#include "sts/cache.hpp"

namespace sluice::mta {

class StsPolicies {
 public:
  static constexpr int64_t kTxtCheckInterval = 300;  // seconds between background TXT checks
  static constexpr size_t kMaxDomains = 10000;       // domains remembered without a policy

  struct Options {
    std::string dir;  // <spool_dir>/sts, made if missing (0700)
    // A verifying client context: tls::TlsContext::client(true, delivery.ca_file).
    std::shared_ptr<const tls::TlsContext> tls;
    // The resolver in use now (delivery swaps it on reload); null: none, checks fail.
    std::function<dns::Resolver*()> resolver;
    uint16_t port = 443;
    std::chrono::milliseconds fetch_timeout{30000};
    // Unix seconds; default: the system clock.
    std::function<int64_t()> clock;
  };

  // Makes the directory and loads the cache. Fails when the directory
  // cannot be made or opened.
  static std::expected<std::unique_ptr<StsPolicies>, std::string> open(uv_loop_t* loop, Options options);
  ~StsPolicies();
  StsPolicies(const StsPolicies&) = delete;
  StsPolicies& operator=(const StsPolicies&) = delete;

  // The policy to apply now for `domain` (a valid cached one, any mode;
  // nullopt: none). Never waits; may start a background check (see above).
  std::optional<sts::Policy> current(std::string_view domain);
  // §5.1: calls back (always later, from the loop) with the policy in force
  // after checking the TXT id again (fetching when it changed).
  void recheck(std::string_view domain, std::function<void(std::optional<sts::Policy>)> cb);
  void close(std::function<void()> done);

  // For tests and status: the cached entry (valid or not), and whether a
  // check is running.
  const sts::CachedPolicy* cached(std::string_view domain) const;
  bool checking(std::string_view domain) const;

 private:
  struct Domain {
    std::optional<sts::CachedPolicy> entry;
    std::optional<int64_t> last_check;  // when the last TXT check started
    std::optional<sts::FetchAttempt> last_fetch;
    bool busy = false;
    std::vector<std::function<void(std::optional<sts::Policy>)>> waiters;
  };

  StsPolicies(uv_loop_t* loop, Options options, safe::Dir dir);
  int64_t now() const;
  void load();
  void check(const std::string& domain);
  void on_txt(const std::string& domain, dns::TxtResult r);
  void on_fetched(const std::string& domain, const std::string& id, StsFetchResult r);
  void done_checking(const std::string& domain);
  std::optional<sts::Policy> in_force(Domain& d);
  void store(const sts::CachedPolicy& c);
  void remove_file(const std::string& domain);
  void prune();
  void post(std::function<void()> f);
  static void on_post(uv_timer_t* t);

  uv_loop_t* loop_;
  Options options_;
  safe::Dir dir_;
  StsFetcher fetcher_;
  std::map<std::string, Domain, std::less<>> domains_;
  uv::Handle<uv_timer_t> post_timer_;
  std::vector<std::function<void()>> posted_;
  std::shared_ptr<bool> alive_;
  bool closed_ = false;
};

// "Example.COM." -> "example.com"; nullopt unless a host name.
std::optional<std::string> sts_policy_domain(std::string_view domain);

}  // namespace sluice::mta
