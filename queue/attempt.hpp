// attempt.hpp — one job's delivery attempt as a pure state machine: which
// host to connect to next, which recipients to offer, and what each
// recipient's verdict is once the attempt is over.
//
// Events in: the lookup's answer (on_mx / on_addresses), a connection taking
// the job (on_connection), the transaction starting (start_transaction), and
// what the host did with it (on_host_done: per-recipient results and/or the
// host's failure). Decisions out: Connect (open a connection to this
// address), Resolve (look the destination up again and start over), Done
// (every recipient has its verdict: finish()). What a reply or a failure
// means is never decided here: every defer / bounce / next-host rule is in
// queue/policy (like Postfix's smtp_trouble.c); this file only keeps the
// state of the attempt (the targets in order, the hosts' failures met, the
// recipients offered in the transaction in flight, one verdict per
// recipient) and applies policy's answers to it.
//
// Rules it owns:
//   - a recipient answered for by one host (a RCPT refusal, the reply to the
//     data) keeps that verdict and is not offered to the next host;
//   - the reuse rule: on a connection an earlier job opened, a failure the
//     next host would be tried for (so, not after the end of the data went
//     out) says nothing about the host — the server may have dropped an idle
//     connection — and the job starts over with a fresh lookup (Resolve)
//     instead of counting it as a host's failure;
//   - loops: a next hop that is this Sluice (queue::Myself) is never
//     connected to. MX hosts that are myself, and those of equal or lower
//     preference, are left out of the targets; a relayhost or implicit MX
//     with an address that is myself, or an MX list with nothing left, ends
//     the attempt with policy::loops_back();
//   - after stop() (delivery shuts down) nothing new is started: the next
//     decision is Done, and interrupted() tells whether anything final was
//     learnt at all.
//
// Pure: no I/O, clock, logs or randomness; single-threaded. The calling
// protocol is in docs/delivery.md ("One attempt"); misuse aborts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "conf/net.hpp"
#include "dns/result.hpp"
#include "queue/myself.hpp"
#include "queue/policy.hpp"
#include "queue/tls_level.hpp"

namespace sluice::queue {

// One address to connect to: an MX host's (or the relayhost's) address.
struct Target {
  std::string host;  // the MX (or relayhost) name
  net::IpAddress ip;
  // The host's address records were DNSSEC-validated (dns::MxHost::secure):
  // DANE's TLSA lookup applies to it (RFC 7672 §2.2).
  bool secure = false;
  // "mx.example.com[192.0.2.1]": how logs, verdicts and bounces name it.
  std::string str() const;
  bool operator==(const Target&) const = default;
};

// What one host did with the job.
struct HostReport {
  // One per recipient offered (start_transaction()), in that order, once a
  // transaction ended; fewer or none when it did not get that far.
  std::vector<policy::RecipientResult> results;
  // The host's failure: the connection's (refused, timeout, greeting, TLS,
  // lost...) or the message's (too_big). Unset when the transaction ran to
  // its end on a healthy connection.
  std::optional<policy::SessionEvent> failure;
  // How the session was protected (for the log and `queue show`).
  TlsLevel tls = TlsLevel::none;
};

class DeliveryAttempt {
 public:
  struct Connect {  // open a connection to `target`, then on_connection()
    Target target;
    bool operator==(const Connect&) const = default;
  };
  struct Resolve {  // look the destination up again, then on_mx() / on_addresses()
    bool operator==(const Resolve&) const = default;
  };
  struct Done {  // every recipient has a verdict: finish()
    bool operator==(const Done&) const = default;
  };
  using Decision = std::variant<Connect, Resolve, Done>;

  // The attempt's outcome: one verdict per job recipient, and per recipient
  // the relay that decided it ("mx[192.0.2.1]:25", "none"), for the log.
  struct Result {
    std::vector<Verdict> verdicts;
    std::vector<std::string> relays;
    std::vector<TlsLevel> tls;  // per recipient: the deciding session's protection
  };

  // `myself` (null: nothing is) says which next hops are this Sluice, at
  // `port`, the port connections go to (delivery.port or the relayhost's).
  DeliveryAttempt(std::size_t recipients, policy::Context ctx,
                  std::shared_ptr<const Myself> myself = nullptr, uint16_t port = 25);

  // The destination's MX answer (`domain` as asked), or the relayhost's
  // addresses (`name` as asked). A failure decides every undecided recipient
  // (policy::dns_failure), and so does a loop (policy::loops_back); else the
  // targets are the addresses of the hosts that are not pruned as myself, in
  // order, IPv4 before IPv6 for each host, and the first is returned.
  Decision on_mx(const dns::MxResult& r, std::string_view domain);
  Decision on_addresses(const dns::AddrResult& r, std::string_view name);

  // A connection carries the job from now on: `host` ("mx.example[192.0.2.1]")
  // names it in verdicts, `relay` ("mx.example[192.0.2.1]:25") in the log.
  // `reused`: an earlier job opened it.
  void on_connection(std::string host, std::string relay, bool reused);
  // The connection is ready: the job recipients to offer in one transaction
  // (indexes into the job's recipients, ascending) — those without a verdict.
  const std::vector<std::size_t>& start_transaction();
  // The job is over at the host of on_connection().
  Decision on_host_done(HostReport report);

  // The job cannot be run at all (its message is gone): every undecided
  // recipient gets `v`; finish() next.
  void give_up(const Verdict& v) { decide_all(v); }

  // Delivery stops: no new connection or lookup is asked for any more.
  void stop() { stopped_ = true; }
  // Stopped before anything final (sent, bounced) was learnt: nothing should
  // be written, so the message keeps its state on disk.
  bool interrupted() const;

  // Once Done (or interrupted by stop()): the recipients still undecided get
  // the verdict of the hosts' failures (policy::session_verdict).
  Result finish() const;

  // For tests and logs.
  const std::vector<std::optional<Verdict>>& decided() const { return verdicts_; }
  const std::vector<policy::SessionEvent>& failures() const { return events_; }
  const std::vector<Target>& targets() const { return targets_; }

 private:
  Decision next_host();
  Decision decide_all(const Verdict& v);

  policy::Context ctx_;
  std::shared_ptr<const Myself> myself_;
  uint16_t port_;
  std::vector<std::optional<Verdict>> verdicts_;  // per job recipient
  std::vector<std::string> relays_;               // per job recipient, once decided
  std::vector<TlsLevel> tls_;                     // per job recipient, once decided
  std::vector<Target> targets_;
  std::size_t next_ = 0;                          // targets_[next_] is the next to try
  std::vector<policy::SessionEvent> events_;      // each host's failure, in order
  std::vector<std::size_t> sent_;                 // offered in the transaction in flight
  std::string host_;                              // the connection's, for verdicts
  std::string relay_ = "none";                    // the connection's, for the log
  TlsLevel last_tls_ = TlsLevel::none;            // the last host's session
  bool reused_ = false;
  bool stopped_ = false;
};

}  // namespace sluice::queue
