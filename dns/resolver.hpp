// resolver.hpp — asynchronous MX / A / AAAA resolution for delivery, TXT
// and PTR lookups (sluicectl dns-records --check), and TLSA (for DANE).
//
// A Resolver runs c-ares on a libuv loop: one uv_poll_t per c-ares socket
// (driven by ARES_OPT_SOCK_STATE_CB), one uv_timer_t re-armed from
// ares_timeout() after every event, one uv_idle_t that hands results to
// callers. No threads, no busy polling; when nothing is asked the resolver
// keeps no handle active, so it never holds the loop open on its own.
//
// resolve_mx() answers "where do I deliver mail for this domain": the hosts
// in the order to try them (MX preference, equal preferences shuffled, at
// most max_mx_hosts), each with its IPv4 and IPv6 addresses; or the domain's
// own addresses when it has no MX (implicit MX); or null MX;
// or a failure whose Status says what it means, with a reason for logs and
// DSNs. Policy in short (docs/dns.md has it for administrators):
//   NXDOMAIN of the domain                                           -> nxdomain
//   no MX and no address, MX hosts that all do not exist, bad names  -> no_route
//   SERVFAIL, REFUSED, timeout, unreachable server, malformed reply  -> temporary
//   MX records exist -> their hosts only, never the domain's own A/AAAA
//   "[192.0.2.1]" / "[IPv6:2001:db8::1]" domain literals -> no DNS at all
// Answers are cached by TTL (negative ones at most negative_ttl_max, never
// temporary failures); concurrent queries for the same name share one packet.
//
// Threading: everything, callbacks included, on the loop's thread.
//
// Callbacks: each resolve_*() callback is called exactly once, always later
// from the loop (never from inside resolve_*()), unless cancel(id) is called
// for it or the Resolver is destroyed first — then it is never called. A
// callback may start new lookups, cancel others, close or destroy the
// resolver.
//
// Lifetime: close(done) cancels every lookup in flight: their callbacks get
// Status::temporary with reason "cancelled" (in request order, before done).
// Lookups asked for after close() get the same. done runs once every handle
// is closed; the Resolver may then be destroyed (also from inside done).
// Destroying a Resolver without close() (or before done) drops every pending
// callback and done; its handles still close as the loop runs on, and its
// memory is freed in the last close callback. Either way the loop must run
// until then for the memory to be released. Calling resolve_*() after done
// has run is a bug and aborts.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "conf/net.hpp"
#include "dns/result.hpp"

namespace sluice::dns {

// Status, MxHost, MxResult, AddrResult, TxtResult, PtrResult and TlsaResult:
// dns/result.hpp.

struct Options {
  // dns.servers: tried in order; a port of 0 means 53. Empty: /etc/resolv.conf.
  std::vector<net::Endpoint> servers;
  std::chrono::milliseconds timeout{5000};  // per try (c-ares doubles it on later rounds)
  int tries = 2;                            // rounds over all servers
  std::size_t cache_max = 10000;            // cached answers; 0 turns the cache off
  std::size_t max_mx_hosts = 10;            // MX hosts kept after ordering
  std::chrono::seconds max_ttl{86400};      // cap on any positive TTL
  std::chrono::seconds negative_ttl_max{300};  // cap on NXDOMAIN / NODATA caching
  // Random numbers in [0, bound) for shuffling equal MX preferences.
  // Default: a std::mt19937 seeded from std::random_device.
  std::function<uint32_t(uint32_t bound)> random;
  // Ask every query with the AD bit (TLSA always is), so that a validating
  // resolver tells whether MX and address answers are authenticated
  // (MxResult::mx_secure, MxHost::secure, AddrResult::secure; otherwise
  // they are false with most resolvers). Delivery sets it when DANE is in
  // force. The AD bit is believed only as dns/trust.hpp says.
  bool request_ad = false;
  // Current time for the cache (any fixed origin). Default: uv_now(loop).
  std::function<std::chrono::milliseconds()> clock;
};

namespace detail {
class Core;
}

class Resolver {
 public:
  using RequestId = uint64_t;
  struct Stats {
    uint64_t queries_sent = 0;  // packets handed to c-ares (not counting its retries)
    uint64_t cache_hits = 0;
    std::size_t cache_entries = 0;
  };

  // Fails (with a message naming the problem) on invalid options or when
  // c-ares cannot be set up, e.g. an unreadable resolv.conf.
  static std::expected<std::unique_ptr<Resolver>, std::string> create(uv_loop_t* loop, Options options);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // `domain` is a recipient domain in ASCII (IDNs as A-labels), optionally
  // with a trailing dot, or an address literal "[192.0.2.1]" /
  // "[IPv6:2001:db8::1]". Never NullMx for a literal.
  RequestId resolve_mx(std::string_view domain, std::function<void(MxResult)> cb);
  // A and AAAA of one host name (CNAMEs followed). A literal "[192.0.2.1]",
  // "[IPv6:...]" or a bare address is returned as is without DNS.
  RequestId resolve_addresses(std::string_view host, std::function<void(AddrResult)> cb);
  // The TXT records of `name` (any name DNS can carry, underscores too), each
  // record's strings joined. No CNAME is followed beyond what the server does.
  RequestId resolve_txt(std::string_view name, std::function<void(TxtResult)> cb);
  // The PTR names of `address` (its in-addr.arpa / ip6.arpa name).
  RequestId resolve_ptr(const net::IpAddress& address, std::function<void(PtrResult)> cb);
  // The TLSA records of `name` (e.g. "_25._tcp.mx.example.net"), asked with
  // the AD bit set; TlsaResult::secure is the reply's AD bit (believe it
  // only as dns/trust.hpp says). NXDOMAIN -> nxdomain, NODATA -> no_route
  // (no records: DANE does not apply), SERVFAIL or timeout -> temporary.
  // Delivery asks it for MX hosts whose addresses are DNSSEC-secure (DANE).
  RequestId resolve_tlsa(std::string_view name, std::function<void(TlsaResult)> cb);
  // The callback of `id` will not be called. Unknown or finished ids are ignored.
  void cancel(RequestId id);
  // See "Lifetime" above. A second close() adds its done to the first's; on a
  // resolver whose close has already finished, done runs at once.
  void close(std::function<void()> done);

  Stats stats() const;

 private:
  friend class detail::Core;
  explicit Resolver(detail::Core* core) : core_(core) {}
  detail::Core* core_;  // null once closed; the Core frees itself
};

}  // namespace sluice::dns
