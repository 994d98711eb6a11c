// admin.hpp — what the control socket may see and do in the running daemon.
//
// The control dispatcher (mta/control/dispatcher.hpp) turns one request into
// calls on a QueueAdmin; the daemon implements it over its Delivery (the
// scheduler holds every live message) and its Server. Every call runs on the
// event loop thread and returns at once: the actions only change the
// scheduler and hand the new envelope to the spool's writer (group-committed
// like any other update), so an admin command never stalls mail flow.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "queue/envelope.hpp"
#include "shaping/shaper.hpp"
#include "tlsrpt/counts.hpp"
#include "queue/scheduler.hpp"
#include "queue/spool.hpp"

namespace sluice::control {

struct DaemonStatus {
  std::string version;
  int64_t started_us = 0;            // when sluiced started (microseconds since the epoch)
  size_t connections_in = 0;         // SMTP clients connected now
  uint64_t connections_in_total = 0; // accepted since start
  size_t connections_out = 0;        // delivery connections open now
  queue::SchedulerCounts counts;     // messages by state, jobs in flight
  queue::Spool::Stats spool;         // commits, updates, syncs, bytes since start
  // Warnings an administrator must act on, since start (conf/log.hpp Alert).
  struct Warnings {
    uint64_t relayhost_auth = 0;  // the relayhost refused the login
    uint64_t tls_verify = 0;      // a next hop's certificate did not verify
    uint64_t config = 0;          // configuration problems found at reload
    uint64_t total() const { return relayhost_auth + tls_verify + config; }
  } warnings;
};

class QueueAdmin {
 public:
  virtual ~QueueAdmin() = default;

  virtual int64_t now_us() const = 0;  // wall clock, microseconds since the epoch
  // Every live message, ordered by queue id (arrival).
  virtual std::vector<std::string> ids() const = 0;
  // The live envelope (state: queue::state_of(*env)); null for an unknown id.
  // Valid until the next action call.
  virtual const queue::Envelope* find(std::string_view id) const = 0;
  // The stored content (CRLF line ends), at most max_bytes of it.
  virtual std::expected<std::string, std::string> read_body(std::string_view id,
                                                            uint64_t max_bytes) const = 0;

  // Actions. Each returns false for an unknown id and then changes nothing.
  virtual bool hold(std::string_view id) = 0;     // no attempts until release
  virtual bool release(std::string_view id) = 0;  // back to its schedule
  virtual bool flush(std::string_view id) = 0;    // attempt now (held stays held)
  virtual size_t flush_all() = 0;                 // flush every waiting message
  virtual bool bounce(std::string_view id) = 0;   // give up: DSN to the sender, then removed
  virtual bool remove(std::string_view id) = 0;   // delete without notice

  virtual DaemonStatus status() const = 0;

  // TLS-RPT (mta/tls_reports.hpp). The defaults: not available.
  // Whether [tls_reports] is enabled, and every stored day of counts.
  virtual bool tls_reports_enabled() const { return false; }
  virtual std::vector<tlsrpt::Day> tls_report_days() const { return {}; }
  // Sends the days that have ended (and today's with include_today): the
  // number of report messages queued, or why none could be.
  virtual std::expected<size_t, std::string> send_tls_reports(bool include_today) {
    (void)include_today;
    return std::unexpected(std::string("TLS reports are not available"));
  }

  // Shaping (shaping/shaper.hpp), for `sluicectl shaping`. The defaults: no
  // active site, this node only.
  // Every active site: the Shaper's snapshot(now_us()).
  virtual std::vector<shaping::SiteState> shaping_sites() const { return {}; }
  // Where the shared limits live: the Store's describe() ("local",
  // "redis unix:/run/redis.sock", "redis ... (unreachable: ...)").
  virtual std::string shaping_store() const { return "local"; }
};

}  // namespace sluice::control
