// tls_reports.hpp — SMTP TLS Reporting (RFC 8460) in the daemon: counts the
// outcome of each outgoing TLS session (record(), called by delivery) for
// recipient domains that publish `_smtp._tls` with a `rua=mailto:`, keeps
// the counts in <spool_dir>/tlsrpt/ (one JSON file per UTC day) and, after
// each UTC day, mails every domain its report through the intake (so it is
// DKIM-signed by `contact`'s domain like any message From it). The pure
// parts (record, counts, JSON, gzip, message) are tlsrpt/.
//
//  - record() is cheap: counts go to memory. The `_smtp._tls.DOMAIN` TXT is
//    looked up by this class through delivery's current resolver (the
//    getter: delivery swaps resolvers on reload), at most once per domain per
//    hour; sessions that arrive while it is asked are held (at most
//    kMaxPending per domain) and counted when the answer says the domain
//    publishes a record, dropped otherwise.
//  - Disk: a one-second timer writes the days that changed (temporary file,
//    fsync, rename, fsync of the directory); stop() writes what is left, so
//    a clean restart loses nothing; start() loads every day file. These
//    small writes run on the loop thread.
//  - Reports: the same timer, once the UTC day of a stored day has ended,
//    sends that day (send_now() does it on demand, `sluicectl tls-reports
//    send`, and with include_today the current day too, which then starts
//    again from zero). One message per policy domain, to its rua addresses,
//    From `contact`, with the null envelope sender (RFC 8460 §5.3 allows it;
//    a report that cannot be delivered then never bounces back). A day's
//    file is deleted once all its reports are committed to the spool; a
//    failed commit puts the counts back.
//  - Report messages' ids are remembered (is_tls_report()) for delivery:
//    RFC 8460 §5.3.1 says a report must not be held back by MTA-STS or DANE.
//    TODO(lead): delivery should skip STS/DANE enforcement for those ids,
//    and retry them for at most 24 hours (the queue's lifetime applies now).
// Single-threaded: everything runs on the loop.
#pragma once

#include <uv.h>

#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "dns/resolver.hpp"
#include "mta/intake.hpp"
#include "tlsrpt/counts.hpp"

namespace sluice::mta {

// One TLS session attempt's outcome, to count.
struct TlsSession {
  std::string policy_domain;                 // the recipient domain
  tlsrpt::PolicyType type = tlsrpt::PolicyType::no_policy_found;
  std::vector<std::string> policy_strings;   // STS policy lines / TLSA records
  std::vector<std::string> mx_patterns;      // STS mx: patterns
  std::string sending_ip, receiving_mx, receiving_ip;
  std::optional<tlsrpt::ResultType> failure; // nullopt = success
  std::string failure_reason;
};

class TlsReports {
 public:
  using ResolverFn = std::function<dns::Resolver*()>;
  using Clock = std::function<int64_t()>;  // unix seconds; default: the wall clock

  static constexpr std::size_t kMaxPending = 1000;

  TlsReports(uv_loop_t* loop, Intake& intake, ResolverFn resolver, Clock clock = nullptr);
  ~TlsReports();
  TlsReports(const TlsReports&) = delete;
  TlsReports& operator=(const TlsReports&) = delete;

  // Loads the stored days and starts the timer. The directory is made when
  // missing; a file that cannot be read is logged and left alone.
  std::expected<void, std::string> start(const conf::Config& config);
  // [tls_reports] and hostname after a reload (counts are kept).
  void reload(const conf::Config& config);
  // Writes what changed and stops the timer (closes its handle) and the
  // lookups: call it before delivery's resolver closes. Sessions recorded
  // afterwards still count for domains already known to publish a record;
  // calling stop() again writes them.
  void stop();

  void record(TlsSession s);

  // Every stored day, oldest first (for sluicectl tls-reports).
  std::vector<tlsrpt::Day> days() const;
  // Sends the days that have ended (and today's with include_today): the
  // number of report messages handed to the intake, or why none could be.
  std::expected<std::size_t, std::string> send_now(bool include_today);
  bool is_tls_report(const std::string& queue_id) const { return report_ids_.contains(queue_id); }
  bool enabled() const { return cfg_.enabled; }

 private:
  struct Domain {
    enum class State { unknown, publishes, none } state = State::unknown;
    bool asking = false;
    std::vector<std::string> rua;
    int64_t expires_s = 0;
    std::vector<TlsSession> pending;
  };
  int64_t now_s() const;
  void ask(const std::string& domain);
  void answer(const std::string& domain, dns::TxtResult r);
  void count(const TlsSession& s, const std::vector<std::string>& rua);
  void tick();
  void flush();
  std::size_t send_day(int64_t day);
  std::string path_of(int64_t day) const;

  uv_loop_t* loop_;
  Intake& intake_;
  ResolverFn resolver_;
  Clock clock_;
  conf::TlsReports cfg_;
  std::string hostname_;
  std::string dir_;
  uv_timer_t* timer_ = nullptr;  // freed in its close callback
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::map<std::string, Domain> domains_;
  std::map<int64_t, tlsrpt::Day> days_;
  std::set<int64_t> dirty_;                 // days to write
  std::map<int64_t, std::size_t> sending_;  // day -> commits outstanding
  std::set<std::string> report_ids_;        // queue ids of reports sent since start
  uint64_t serial_ = 0;
  bool stopped_ = false;
};

}  // namespace sluice::mta
