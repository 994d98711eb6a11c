// scheduler.hpp — which message goes where, when: per-destination queues,
// connection limits, retries, expiry, hold/release/flush/bounce/delete.
//
// The Scheduler holds every live message (new ones and those recovered from
// the spool) and hands out Jobs: one message, one destination (a recipient
// domain, or the relayhost), all of that message's recipients for that
// destination that are still to be done, for one SMTP transaction. The glue
// runs each job (DNS, connection, SMTP), asks queue/policy for a Verdict per
// recipient and hands them back to complete(), which applies them and says
// what the glue must do: write the new envelope (Spool::update), remove the
// message (Spool::remove), send a bounce. Strategy for administrators
// (ordering, fairness, retries, jitter, expiry): docs/delivery.md.
//
// Pure and single-threaded: no I/O, no clock (every call that needs the
// time takes `now` in microseconds since the epoch), no threads, no logs;
// the random numbers for jitter come from SchedulerOptions::random. It never
// polls: next_wakeup() tells the glue when to arm its one timer.
//
// Calling protocol for the glue (docs/delivery.md has it in full):
//   - add() every recovered envelope at start, every new message once its
//     commit is durable; then take_jobs(now).
//   - take_jobs(now) after add(), after complete(), after the admin calls,
//     and when the timer fires; then arm the timer for next_wakeup().
//   - complete(job, verdicts, now) exactly once per job handed out.
// Misuse (an unknown job, a verdict count that does not match, adding an id
// twice) is a bug in the caller and aborts.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "queue/dsn.hpp"
#include "queue/envelope.hpp"
#include "queue/policy.hpp"

namespace sluice::queue {

inline constexpr int64_t kSecondUs = 1'000'000;
inline constexpr int64_t kMinuteUs = 60 * kSecondUs;
inline constexpr int64_t kHourUs = 60 * kMinuteUs;
inline constexpr int64_t kDayUs = 24 * kHourUs;

struct SchedulerOptions {
  uint32_t max_connections = 500;                // jobs in flight, all destinations (at least 1)
  uint32_t max_connections_per_destination = 20; // jobs in flight per destination (at least 1)
  // delivery.retry_schedule: after the n-th attempt, wait entry min(n-1, last).
  std::vector<int64_t> retry_schedule_us = {5 * kMinuteUs, 10 * kMinuteUs, 30 * kMinuteUs,
                                            kHourUs, 2 * kHourUs, 4 * kHourUs};
  int64_t max_queue_lifetime_us = 5 * kDayUs;
  // delivery.relayhost as written: when set, every recipient has this one
  // destination.
  std::string relayhost;
  // Each retry delay is multiplied by a factor drawn uniformly from
  // [1 - jitter, 1 + jitter] (0 <= jitter < 1).
  double jitter = 0.1;
  // Uniform 64-bit random numbers. Default: std::mt19937_64 seeded from
  // std::random_device. Tests inject a fixed sequence.
  std::function<uint64_t()> random;
};

// One SMTP transaction to make.
struct Job {
  uint64_t serial = 0;             // names the job in complete()
  std::string message_id;
  std::string destination;         // lower-case domain, or the relayhost
  std::vector<uint32_t> recipients;  // indexes into the envelope's recipients, ascending
};

// What the caller must do after complete() or an admin call.
struct Completion {
  enum class Persist : uint8_t {
    nothing,  // no change to write (e.g. the message was deleted meanwhile)
    update,   // Spool::update(envelope)
    remove,   // every recipient is done: Spool::remove(id)
  };
  std::string id;
  Persist persist = Persist::nothing;
  Envelope envelope;  // the message as it stands now (also for remove: for logs and the bounce)
  // Recipients that failed just now and want a failure DSN: send one bounce
  // to envelope.sender listing them. Always empty when the sender is <>, and
  // recipients whose NOTIFY excludes FAILURE are left out.
  std::vector<FailedRecipient> bounce;
};

enum class MessageState : uint8_t { queued, deferred, held };
std::string_view to_string(MessageState s);
// held if held; deferred if a recipient is deferred; else queued.
MessageState state_of(const Envelope& env);

struct SchedulerCounts {
  size_t messages = 0;
  size_t queued = 0;
  size_t deferred = 0;
  size_t held = 0;
  size_t jobs = 0;          // in flight
  size_t destinations = 0;  // with work waiting or in flight
  size_t gated = 0;         // destinations the gate keeps waiting (shaping)
};

// The retry delay after `attempts` attempts (>= 1): schedule[min(attempts-1,
// last)] scaled by 1 + jitter * (2u - 1), u = random / 2^64. At least 1 s.
int64_t retry_delay_us(std::span<const int64_t> schedule, uint32_t attempts, double jitter,
                       uint64_t random);

class Scheduler {
 public:
  explicit Scheduler(SchedulerOptions options);

  // A reload's new options (random keeps its source): limits, retry
  // schedule and lifetime count from the next decision; a changed relayhost
  // regroups the recipients waiting in a started attempt (jobs in flight
  // keep their destination); waiting messages get it when they start.
  void set_options(SchedulerOptions options);

  // The destination of a recipient address: the relayhost if set, else the
  // domain (after the last '@') in lower case; "" when there is no '@'.
  std::string destination_of(std::string_view address) const;

  // Takes a message in: a new one (next_attempt_us 0: due at once) or one
  // recovered from the spool (keeps its next_attempt_us, attempts, held
  // flag). A message that has no recipient left to do (a crash came between
  // its last update and its removal) is not kept: the Completion says remove.
  // Otherwise Persist::nothing.
  Completion add(Envelope env);

  // Starts every message that is due at `now` and hands out as many jobs as
  // the limits allow: destinations with fewer jobs in flight first (fair),
  // then the one whose oldest waiting message is due earliest.
  std::vector<Job> take_jobs(int64_t now);
  // For reusing an open connection: the next job for `destination` if one is
  // waiting and the limits allow it (call it after complete() of the job the
  // connection just finished).
  std::optional<Job> take_job_for(std::string_view destination, int64_t now);

  // Applies one verdict per job recipient (same order as job.recipients).
  // Deferrals of a message older than max_queue_lifetime become bounces
  // (policy::expire). When the message's last job of this attempt is done,
  // its next attempt is set along the retry schedule. Verdicts for
  // recipients that are already sent or bounced are ignored.
  Completion complete(const Job& job, std::span<const Verdict> verdicts, int64_t now);

  // When take_jobs() will have something new to start without any other
  // call: the earliest next attempt of a waiting message; nullopt when none
  // is waiting. Jobs blocked only by the connection limits are started by the
  // take_jobs() after a complete(), never by a timer.
  std::optional<int64_t> next_wakeup() const;

  // --- shaping ---------------------------------------------------------------
  // The glue's gate (Delivery asks shaping::Shaper about the destination's
  // site, docs/shaping.md), asked before a job for `destination` is handed
  // out; `reuse` says the job goes on a connection that is already open
  // (take_job_for), so it needs no new one. False keeps the destination's
  // work waiting, out of the running, until reopen(): a gated destination
  // neither takes a job slot nor is asked again on every take_jobs();
  // take_job_for() still asks (reuse = true) for it, so an open connection
  // keeps carrying its work while new connections wait. The scheduler stays pure: the gate is the glue's, like `random`.
  using Gate = std::function<bool(std::string_view destination, bool reuse, int64_t now)>;
  void set_gate(Gate gate) { gate_ = std::move(gate); }
  // The gate may say yes again: the destination's work competes again from
  // the next take_jobs().
  void reopen(std::string_view destination);
  void reopen_all();

  // --- sluicectl -----------------------------------------------------------
  // All return nullopt / false for an unknown id. Jobs already in flight for
  // the message run to their end; their complete() then sees the new state.

  // No new jobs until released; the held flag is persisted.
  std::optional<Completion> hold(std::string_view id, int64_t now);
  // Back to its schedule (due at once if its next attempt has passed).
  std::optional<Completion> release(std::string_view id);
  // Due now, ignoring the retry schedule (held messages stay held). Not
  // persisted: a restart before the attempt returns to the old schedule.
  bool flush(std::string_view id, int64_t now);
  size_t flush_all(int64_t now);
  // Gives up now: every recipient not yet done bounces (status 5.0.0); the
  // message is removed.
  std::optional<Completion> bounce_now(std::string_view id, int64_t now);
  // Removes the message without notice to the sender.
  std::optional<Completion> remove(std::string_view id);

  // --- inspection ----------------------------------------------------------
  // The live envelope; valid until the next non-const call.
  const Envelope* find(std::string_view id) const;
  std::vector<std::string> ids() const;  // ordered by queue id (arrival)
  SchedulerCounts counts() const;

 private:
  struct Msg {
    Envelope env;
    int64_t due = 0;            // key in timers_ while waiting, in the ready queues during an attempt
    bool waiting = false;       // in timers_
    bool in_round = false;      // an attempt is under way
    bool round_tried = false;   // a job of this attempt completed
    bool round_deferred = false;  // ... and deferred a recipient
    std::map<std::string, std::vector<uint32_t>, std::less<>> ready;  // destination -> recipients
    uint32_t jobs = 0;          // in flight
  };
  using Key = std::tuple<uint32_t, int64_t, std::string>;  // (jobs in flight, oldest due, name)
  struct Dest {
    std::set<std::pair<int64_t, std::string>> ready;  // (due, message id)
    uint32_t inflight = 0;
    bool gated = false;      // the gate said no: out of eligible_ until reopen()
    std::optional<Key> key;  // its entry in eligible_
  };
  struct InFlight {
    std::string destination;
    std::string message_id;
  };

  using MsgMap = std::map<std::string, Msg, std::less<>>;
  void activate(int64_t now);
  void start_round(MsgMap::iterator it);
  void end_round(Msg& m, int64_t now);
  void wait_until(MsgMap::iterator it, int64_t due);
  void detach(MsgMap::iterator it);  // out of timers_ and the ready queues
  void touch(const std::string& dest);
  Job take_one(const std::string& dest);
  bool gate_allows(const std::string& dest, bool reuse, int64_t now);
  Completion finish(MsgMap::iterator it, Completion c);
  std::string expiry_reason() const;

  SchedulerOptions opt_;
  MsgMap msgs_;
  std::set<std::pair<int64_t, std::string>> timers_;  // waiting messages: (due, id)
  std::map<std::string, Dest, std::less<>> dests_;
  std::set<Key> eligible_;  // destinations with work waiting and room for a job
  std::unordered_map<uint64_t, InFlight> jobs_;
  uint64_t next_serial_ = 0;
  Gate gate_;
};

}  // namespace sluice::queue
