// shaper.hpp — per-site shaping decisions for delivery (SPEC "Shaping and
// limits", docs/shaping.md).
//
// Delivery names a site for each destination from its MX host names
// (site_of), then asks the Shaper before it opens a connection to the site
// (connect → a lease, shared through the Store) and before each message
// (message → one of the site's rate tokens), and reports what came of each
// session (feedback). From those reports the Shaper runs:
//   - adaptive concurrency (Postfix's feedback, AIMD): a site starts at
//     min(kInitialConcurrency, connections), grows by one after `current`
//     successes in a row, halves (never below 1) on a 421, a connection
//     timeout or a TLS failure; bounded by the site's `connections`;
//   - the rules on replies: the first [[shaping.rule]] whose site and reply
//     match sets an Override (rate, connections, or suspension) for its
//     duration, put into the Store so every node sees it.
// may_start() is the scheduler's synchronous gate (queue::Scheduler's
// SchedulerGate): false while the site is suspended, while its last rate
// answer said "not before T", or while its open connections and pending
// connects fill its current concurrency.
//
// State: one entry per site seen, forgotten when idle for an hour (nothing
// in force, nothing open). Single-threaded, on the loop; every call that
// needs the time takes `now` (epoch µs). Store callbacks may come later
// (Redis): a Shaper outlives nothing it hands callbacks to — the caller
// keeps it alive until the store is closed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shaping/aimd.hpp"  // kInitialConcurrency
#include "shaping/rate.hpp"
#include "shaping/settings.hpp"
#include "shaping/store.hpp"

namespace sluice::shaping {

// What a session towards the site came to, for adaptive concurrency and
// the rules.
struct Feedback {
  enum class Kind : uint8_t {
    success,      // a transaction ended with a reply (any: 2xx, 4xx other than 421, 5xx)
    throttled,    // a 421 (the server closes: "too many connections", "try later")
    timeout,      // connect or reply timeout
    tls_failure,  // the TLS handshake failed
    refused,      // connection refused / unreachable: no concurrency signal
  };
  Kind kind = Kind::success;
  std::string reply;  // the reply's text as the log shows it ("421 4.7.28 ..."), "" when none
};

// sluicectl shaping: one active site.
struct SiteState {
  std::string name;
  std::string source;                // where its settings come from; "" for an MX set's default
  std::vector<std::string> domains;  // destinations seen using it (at most 20 kept)
  uint32_t connections = 0;          // open now (this node)
  uint32_t concurrency = 0;          // current limit (adaptive, override)
  uint32_t max_concurrency = 0;      // the site's ceiling
  Rate rate;                         // in force (override, else configured)
  uint32_t tokens = 0;               // messages that could go now (from the last answer)
  std::optional<Override> automation;  // in force, with its expiry
};

struct Grant {
  bool ok = false;
  uint64_t lease = 0;         // give it back with disconnect()
  int64_t retry_at_us = 0;    // when not ok: when asking again makes sense (0: when a lease is released)
};

class Shaper {
 public:
  Shaper(Store& store, Settings settings);
  ~Shaper();
  Shaper(const Shaper&) = delete;
  Shaper& operator=(const Shaper&) = delete;

  // A reload: sites and rules for every decision from now; sites keep their
  // open connections and adaptive state.
  void set_settings(Settings settings);

  // The site a destination belongs to, from its MX host names (lower case,
  // no trailing dot; the host itself for an address fallback or the
  // relayhost): the first configured site with a pattern matching any host,
  // else "mx:" + the sorted, de-duplicated hosts joined by ",". Records the
  // destination among the site's domains.
  std::string site_of(std::string_view destination, std::span<const std::string> mx_hosts);

  // The scheduler's gate (see above). An unknown site may start.
  bool may_start(std::string_view site, int64_t now) const;

  // A new connection to the site: a lease when the site has room (local
  // current concurrency, then the Store's shared count against the site's
  // connections or the override's), else when to ask again.
  void connect(const std::string& site, int64_t now, std::function<void(Grant)> done);
  // The connection is closed.
  void disconnect(const std::string& site, uint64_t lease);
  // How many messages one connection to the site may carry (0 = no limit).
  uint32_t messages_per_connection(std::string_view site) const;
  // One message to the site (the site's rate, or the override's).
  void message(const std::string& site, int64_t now, std::function<void(Admission)> done);
  // What a session came to. Returns the rule that fired, if one did (for the log).
  std::optional<Rule> feedback(const std::string& site, const Feedback& f, int64_t now);

  // Pulls the automation in force from the Store (other nodes' rules); the
  // daemon calls it every second when the store is shared.
  void sync(int64_t now);

  std::vector<SiteState> snapshot(int64_t now) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::shaping
