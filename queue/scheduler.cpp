// scheduler.cpp — per-destination queues, limits, retries (see scheduler.hpp
// and docs/delivery.md).
//
// Data: msgs_ holds every message. A message is either *waiting* (in
// timers_, keyed by its next attempt) or *in an attempt* (its recipients not
// yet done sit, grouped by destination, in those destinations' ready queues
// until a job takes them, or are in jobs in flight), or held (neither).
// eligible_ orders the destinations that have a ready message and room for
// one more job by (jobs in flight, due time of their oldest ready message,
// name); take_jobs() always serves its first element, which spreads jobs
// over destinations and, within that, serves the oldest mail first.
#include "queue/scheduler.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>

namespace sluice::queue {
namespace {

[[noreturn]] void misuse(const char* what) {
  std::fprintf(stderr, "sluice: scheduler misuse: %s\n", what);
  std::abort();
}

bool undone(const Recipient& r) {
  return r.status == RcptStatus::pending || r.status == RcptStatus::deferred;
}

bool all_done(const Envelope& env) {
  return std::none_of(env.recipients.begin(), env.recipients.end(), undone);
}

// RFC 3461 NOTIFY: 0 means not given (failures are reported); otherwise
// only when FAILURE (bit 1) was asked for.
bool wants_failure_dsn(const Recipient& r) { return r.notify == 0 || (r.notify & 0x2) != 0; }

FailedRecipient failed_from(const Recipient& r, std::string reason) {
  FailedRecipient f;
  f.address = r.address;
  f.orcpt = r.orcpt;
  f.status = r.dsn_status;
  f.diagnostic = r.last_reply;
  f.remote_mta = r.remote_host;
  f.last_attempt_us = r.last_attempt_us;
  f.reason = std::move(reason);
  return f;
}

std::string duration_text(int64_t us) {
  auto unit = [](int64_t n, const char* one) {
    return std::to_string(n) + " " + one + (n == 1 ? "" : "s");
  };
  if (us > 0 && us % kDayUs == 0) return unit(us / kDayUs, "day");
  if (us > 0 && us % kHourUs == 0) return unit(us / kHourUs, "hour");
  if (us > 0 && us % kMinuteUs == 0) return unit(us / kMinuteUs, "minute");
  return unit(us / kSecondUs, "second");
}

}  // namespace

std::string_view to_string(MessageState s) {
  switch (s) {
    case MessageState::queued: return "queued";
    case MessageState::deferred: return "deferred";
    case MessageState::held: return "held";
  }
  return "unknown";
}

MessageState state_of(const Envelope& env) {
  if (env.held) return MessageState::held;
  for (const Recipient& r : env.recipients)
    if (r.status == RcptStatus::deferred) return MessageState::deferred;
  return MessageState::queued;
}

int64_t retry_delay_us(std::span<const int64_t> schedule, uint32_t attempts, double jitter,
                       uint64_t random) {
  int64_t base = 5 * kMinuteUs;
  if (!schedule.empty()) {
    size_t n = attempts == 0 ? 0 : size_t(attempts - 1);
    base = schedule[std::min(n, schedule.size() - 1)];
  }
  double u = double(random >> 11) * 0x1.0p-53;  // [0, 1)
  double factor = 1.0 + jitter * (2.0 * u - 1.0);
  double d = std::round(double(base) * factor);
  return std::max<int64_t>(kSecondUs, int64_t(d));
}

Scheduler::Scheduler(SchedulerOptions options) : opt_(std::move(options)) {
  opt_.max_connections = std::max<uint32_t>(1, opt_.max_connections);
  opt_.max_connections_per_destination = std::max<uint32_t>(1, opt_.max_connections_per_destination);
  if (opt_.retry_schedule_us.empty()) opt_.retry_schedule_us = SchedulerOptions{}.retry_schedule_us;
  opt_.jitter = std::clamp(opt_.jitter, 0.0, 0.99);
  if (!opt_.random) {
    auto rng = std::make_shared<std::mt19937_64>(std::random_device{}());
    opt_.random = [rng] { return (*rng)(); };
  }
}

void Scheduler::set_options(SchedulerOptions options) {
  if (!options.random) options.random = opt_.random;
  options.max_connections = std::max<uint32_t>(1, options.max_connections);
  options.max_connections_per_destination = std::max<uint32_t>(1, options.max_connections_per_destination);
  if (options.retry_schedule_us.empty()) options.retry_schedule_us = SchedulerOptions{}.retry_schedule_us;
  options.jitter = std::clamp(options.jitter, 0.0, 0.99);
  const bool regroup = options.relayhost != opt_.relayhost;
  opt_ = std::move(options);
  if (regroup) {
    for (auto it = msgs_.begin(); it != msgs_.end(); ++it) {
      Msg& m = it->second;
      if (m.ready.empty()) continue;
      std::vector<uint32_t> waiting;
      for (auto& [dest, rcpts] : m.ready) {
        waiting.insert(waiting.end(), rcpts.begin(), rcpts.end());
        if (auto d = dests_.find(dest); d != dests_.end()) d->second.ready.erase({m.due, it->first});
        touch(dest);
      }
      m.ready.clear();
      std::sort(waiting.begin(), waiting.end());
      for (uint32_t i : waiting) m.ready[destination_of(m.env.recipients[i].address)].push_back(i);
      for (auto& [dest, rcpts] : m.ready) dests_[dest].ready.insert({m.due, it->first});
    }
  }
  // The per-destination limit decides which destinations are eligible.
  std::vector<std::string> names;
  for (const auto& [name, d] : dests_) names.push_back(name);
  for (const auto& name : names) touch(name);
}

std::string Scheduler::destination_of(std::string_view address) const {
  if (!opt_.relayhost.empty()) return opt_.relayhost;
  size_t at = address.rfind('@');
  if (at == std::string_view::npos) return {};
  std::string d(address.substr(at + 1));
  for (char& c : d)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return d;
}

std::string Scheduler::expiry_reason() const {
  return "delivery time expired: the message could not be delivered within " +
         duration_text(opt_.max_queue_lifetime_us);
}

// ---------------------------------------------------------------------------
// Queues.

void Scheduler::touch(const std::string& name) {
  auto it = dests_.find(name);
  if (it == dests_.end()) return;
  Dest& d = it->second;
  if (d.key) {
    eligible_.erase(*d.key);
    d.key.reset();
  }
  if (d.ready.empty() && d.inflight == 0) {
    dests_.erase(it);
    return;
  }
  if (!d.ready.empty() && !d.gated && d.inflight < opt_.max_connections_per_destination) {
    d.key = Key{d.inflight, d.ready.begin()->first, name};
    eligible_.insert(*d.key);
  }
}

void Scheduler::wait_until(MsgMap::iterator it, int64_t due) {
  Msg& m = it->second;
  if (m.waiting) timers_.erase({m.due, it->first});
  m.due = due;
  m.waiting = true;
  timers_.insert({due, it->first});
}

void Scheduler::detach(MsgMap::iterator it) {
  Msg& m = it->second;
  if (m.waiting) {
    timers_.erase({m.due, it->first});
    m.waiting = false;
  }
  for (auto& [dest, rcpts] : m.ready) {
    auto d = dests_.find(dest);
    if (d != dests_.end()) d->second.ready.erase({m.due, it->first});
    touch(dest);
  }
  m.ready.clear();
}

void Scheduler::start_round(MsgMap::iterator it) {
  Msg& m = it->second;
  m.in_round = true;
  m.round_tried = false;
  m.round_deferred = false;
  for (uint32_t i = 0; i < m.env.recipients.size(); ++i)
    if (undone(m.env.recipients[i])) m.ready[destination_of(m.env.recipients[i].address)].push_back(i);
  for (auto& [dest, rcpts] : m.ready) {
    dests_[dest].ready.insert({m.due, it->first});
    touch(dest);
  }
}

void Scheduler::activate(int64_t now) {
  while (!timers_.empty() && timers_.begin()->first <= now) {
    auto [due, id] = *timers_.begin();
    timers_.erase(timers_.begin());
    auto it = msgs_.find(id);
    if (it == msgs_.end()) continue;
    it->second.waiting = false;
    start_round(it);
  }
}

// The attempt of a message is over (no job in flight, nothing ready): count
// it and schedule the next one.
void Scheduler::end_round(Msg& m, int64_t now) {
  m.in_round = false;
  int64_t next = now;  // an attempt cut short (hold) resumes at once
  if (m.round_tried) ++m.env.attempts;
  if (m.round_deferred) {
    next = now + retry_delay_us(opt_.retry_schedule_us, m.env.attempts, opt_.jitter, opt_.random());
    // One last attempt right when the lifetime ends, rather than up to a
    // whole retry interval later.
    int64_t expiry = m.env.arrival_us + opt_.max_queue_lifetime_us;
    if (now < expiry) next = std::min(next, expiry);
  }
  m.env.next_attempt_us = next;
  m.due = next;
}

Job Scheduler::take_one(const std::string& name) {
  Dest& d = dests_.at(name);
  auto [due, id] = *d.ready.begin();
  d.ready.erase(d.ready.begin());
  Msg& m = msgs_.at(id);
  auto r = m.ready.find(name);
  Job job;
  job.serial = ++next_serial_;
  job.message_id = id;
  job.destination = name;
  job.recipients = std::move(r->second);
  m.ready.erase(r);
  ++m.jobs;
  ++d.inflight;
  jobs_.emplace(job.serial, InFlight{name, id});
  touch(name);
  return job;
}

// Asks the gate; a no takes the destination out of eligible_ until reopen().
bool Scheduler::gate_allows(const std::string& name, bool reuse, int64_t now) {
  if (!gate_ || gate_(name, reuse, now)) return true;
  Dest& d = dests_.at(name);
  d.gated = true;
  touch(name);
  return false;
}

std::vector<Job> Scheduler::take_jobs(int64_t now) {
  activate(now);
  std::vector<Job> out;
  while (jobs_.size() < opt_.max_connections && !eligible_.empty()) {
    std::string name = std::get<2>(*eligible_.begin());
    if (gate_allows(name, false, now)) out.push_back(take_one(name));
  }
  return out;
}

std::optional<Job> Scheduler::take_job_for(std::string_view destination, int64_t now) {
  activate(now);
  if (jobs_.size() >= opt_.max_connections) return std::nullopt;
  auto d = dests_.find(destination);
  // Work waiting and room for a job; a gated destination may still have its
  // open connection reused if the gate allows that.
  if (d == dests_.end() || d->second.ready.empty() ||
      d->second.inflight >= opt_.max_connections_per_destination)
    return std::nullopt;
  if (d->second.gated ? !gate_(d->first, true, now) : !gate_allows(d->first, true, now)) return std::nullopt;
  return take_one(d->first);
}

void Scheduler::reopen(std::string_view destination) {
  auto d = dests_.find(destination);
  if (d == dests_.end() || !d->second.gated) return;
  d->second.gated = false;
  touch(d->first);
}

void Scheduler::reopen_all() {
  std::vector<std::string> names;
  for (const auto& [name, d] : dests_)
    if (d.gated) names.push_back(name);
  for (const auto& n : names) reopen(n);
}

std::optional<int64_t> Scheduler::next_wakeup() const {
  if (timers_.empty()) return std::nullopt;
  return timers_.begin()->first;
}

// ---------------------------------------------------------------------------
// Messages in and out.

Completion Scheduler::finish(MsgMap::iterator it, Completion c) {
  c.id = it->first;
  if (all_done(it->second.env)) {
    detach(it);
    c.persist = Completion::Persist::remove;
    c.envelope = std::move(it->second.env);
    msgs_.erase(it);
  } else {
    c.persist = Completion::Persist::update;
    c.envelope = it->second.env;
  }
  return c;
}

Completion Scheduler::add(Envelope env) {
  Completion c;
  c.id = env.id;
  if (all_done(env)) {
    c.persist = Completion::Persist::remove;
    c.envelope = std::move(env);
    return c;
  }
  std::string id = env.id;
  auto [it, fresh] = msgs_.try_emplace(id);
  if (!fresh) misuse("add() of a message that is already there");
  Msg& m = it->second;
  m.env = std::move(env);
  if (!m.env.held)
    wait_until(it, m.env.next_attempt_us != 0 ? m.env.next_attempt_us : m.env.arrival_us);
  return c;
}

Completion Scheduler::complete(const Job& job, std::span<const Verdict> verdicts, int64_t now) {
  auto j = jobs_.find(job.serial);
  if (j == jobs_.end()) misuse("complete() of a job that is not in flight");
  if (verdicts.size() != job.recipients.size()) misuse("complete() with a verdict count that does not match");
  InFlight f = std::move(j->second);
  jobs_.erase(j);
  if (auto d = dests_.find(f.destination); d != dests_.end()) {
    --d->second.inflight;
    touch(f.destination);
  }

  Completion c;
  c.id = f.message_id;
  auto it = msgs_.find(f.message_id);
  if (it == msgs_.end()) return c;  // deleted or bounced by the administrator meanwhile
  Msg& m = it->second;
  Envelope& env = m.env;
  --m.jobs;
  m.round_tried = true;

  const bool expired = policy::expired(env.arrival_us, opt_.max_queue_lifetime_us, now);
  // One history entry for the job when every recipient got the same verdict
  // (a connection or DNS failure), else one per recipient.
  bool same = verdicts.size() > 1 &&
              std::all_of(verdicts.begin(), verdicts.end(), [&](const Verdict& v) {
                return v.action == verdicts[0].action && v.reply == verdicts[0].reply &&
                       v.remote_host == verdicts[0].remote_host;
              });
  if (same) add_history(env, Attempt{now, -1, verdicts[0].remote_host, verdicts[0].reply});

  for (size_t i = 0; i < verdicts.size(); ++i) {
    uint32_t idx = job.recipients[i];
    if (idx >= env.recipients.size()) misuse("complete() with a recipient index out of range");
    Recipient& r = env.recipients[idx];
    if (!undone(r)) continue;
    Verdict v = verdicts[i];
    bool expiring = v.action == Action::defer && expired;
    if (expiring) v = policy::expire(std::move(v));
    ++r.attempts;
    r.last_attempt_us = now;
    r.last_reply = v.reply;
    r.dsn_status = v.status;
    r.remote_host = v.remote_host;
    r.tls = v.tls;
    if (!same) add_history(env, Attempt{now, int32_t(idx), v.remote_host, v.reply});
    switch (v.action) {
      case Action::sent:
        r.status = RcptStatus::sent;
        break;
      case Action::defer:
        r.status = RcptStatus::deferred;
        m.round_deferred = true;
        break;
      case Action::bounce:
        r.status = RcptStatus::bounced;
        if (!env.sender.empty() && wants_failure_dsn(r))
          c.bounce.push_back(failed_from(r, expiring ? expiry_reason() : std::string()));
        break;
    }
  }

  if (m.jobs == 0 && m.ready.empty() && m.in_round) {
    end_round(m, now);
    if (!all_done(env) && !env.held) wait_until(it, m.due);
  }
  return finish(it, std::move(c));
}

// ---------------------------------------------------------------------------
// sluicectl.

std::optional<Completion> Scheduler::hold(std::string_view id, int64_t now) {
  auto it = msgs_.find(id);
  if (it == msgs_.end()) return std::nullopt;
  Msg& m = it->second;
  m.env.held = true;
  detach(it);  // recipients waiting for a job go back; jobs in flight finish
  if (m.in_round && m.jobs == 0) end_round(m, now);
  return finish(it, Completion{});
}

std::optional<Completion> Scheduler::release(std::string_view id) {
  auto it = msgs_.find(id);
  if (it == msgs_.end()) return std::nullopt;
  Msg& m = it->second;
  m.env.held = false;
  if (!m.in_round && !m.waiting)
    wait_until(it, m.env.next_attempt_us != 0 ? m.env.next_attempt_us : m.env.arrival_us);
  return finish(it, Completion{});
}

bool Scheduler::flush(std::string_view id, int64_t now) {
  auto it = msgs_.find(id);
  if (it == msgs_.end()) return false;
  Msg& m = it->second;
  if (m.waiting && m.due > now) {
    m.env.next_attempt_us = now;
    wait_until(it, now);
  }
  return true;
}

size_t Scheduler::flush_all(int64_t now) {
  size_t n = 0;
  std::vector<std::string> due_later;
  for (auto t = timers_.lower_bound({now + 1, std::string()}); t != timers_.end(); ++t)
    due_later.push_back(t->second);
  for (const std::string& id : due_later)
    if (flush(id, now)) ++n;
  return n;
}

std::optional<Completion> Scheduler::bounce_now(std::string_view id, int64_t now) {
  auto it = msgs_.find(id);
  if (it == msgs_.end()) return std::nullopt;
  Envelope& env = it->second.env;
  Completion c;
  const Verdict v = policy::cancelled_by_admin();
  add_history(env, Attempt{now, -1, "", v.reply});
  for (Recipient& r : env.recipients) {
    if (!undone(r)) continue;
    std::string reason = "the message was returned by the mail administrator";
    if (!r.last_reply.empty())
      reason += "; the last delivery attempt said: " +
                (r.remote_host.empty() ? r.last_reply : "host " + r.remote_host + ": " + r.last_reply);
    r.status = RcptStatus::bounced;
    r.last_reply = v.reply;
    r.dsn_status = v.status;
    r.remote_host.clear();
    if (!env.sender.empty() && wants_failure_dsn(r)) c.bounce.push_back(failed_from(r, reason));
  }
  return finish(it, std::move(c));
}

std::optional<Completion> Scheduler::remove(std::string_view id) {
  auto it = msgs_.find(id);
  if (it == msgs_.end()) return std::nullopt;
  detach(it);
  Completion c;
  c.id = it->first;
  c.persist = Completion::Persist::remove;
  c.envelope = std::move(it->second.env);
  msgs_.erase(it);
  return c;
}

// ---------------------------------------------------------------------------
// Inspection.

const Envelope* Scheduler::find(std::string_view id) const {
  auto it = msgs_.find(id);
  return it == msgs_.end() ? nullptr : &it->second.env;
}

std::vector<std::string> Scheduler::ids() const {
  std::vector<std::string> out;
  out.reserve(msgs_.size());
  for (const auto& [id, m] : msgs_) out.push_back(id);
  return out;
}

SchedulerCounts Scheduler::counts() const {
  SchedulerCounts c;
  c.messages = msgs_.size();
  for (const auto& [id, m] : msgs_) {
    switch (state_of(m.env)) {
      case MessageState::queued: ++c.queued; break;
      case MessageState::deferred: ++c.deferred; break;
      case MessageState::held: ++c.held; break;
    }
  }
  c.jobs = jobs_.size();
  c.destinations = dests_.size();
  for (const auto& [name, d] : dests_) c.gated += d.gated ? 1 : 0;
  return c;
}

}  // namespace sluice::queue
