// scheduler_test.cpp — per-destination queues, limits, fairness, retries,
// jitter, expiry, bounces, admin hooks, restart; all with an injected clock
// and random numbers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "queue/scheduler.hpp"

using namespace sluice::queue;

namespace {

constexpr int64_t T0 = 1'700'000'000'000'000;  // "now" at the start of every test
constexpr uint64_t kHalf = 1ull << 63;          // random number giving a jitter factor of exactly 1

SchedulerOptions options(uint32_t max_conn = 100, uint32_t per_dest = 10) {
  SchedulerOptions o;
  o.max_connections = max_conn;
  o.max_connections_per_destination = per_dest;
  o.retry_schedule_us = {5 * kMinuteUs, 10 * kMinuteUs, 30 * kMinuteUs};
  o.max_queue_lifetime_us = 2 * kDayUs;
  o.random = [] { return kHalf; };
  return o;
}

int counter = 0;

// Queue ids sort by arrival like the real ones.
std::string make_id(int64_t arrival) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llX",
                static_cast<unsigned long long>((uint64_t(arrival) << 12) | uint64_t(++counter & 0xFFF)));
  return b;
}

Envelope message(std::vector<std::string> rcpts, std::string sender = "sender@origin.example",
                 int64_t arrival = T0) {
  Envelope e;
  e.id = make_id(arrival);
  e.arrival_us = arrival;
  e.sender = std::move(sender);
  for (auto& r : rcpts) {
    Recipient x;
    x.address = r;
    e.recipients.push_back(std::move(x));
  }
  return e;
}

Verdict sent() { return Verdict{Action::sent, "2.0.0", "250 2.0.0 ok", "mx.example"}; }
Verdict deferred() { return Verdict{Action::defer, "4.7.1", "451 4.7.1 greylisted", "mx.example"}; }
Verdict bounced() { return Verdict{Action::bounce, "5.1.1", "550 5.1.1 no such user", "mx.example"}; }

std::vector<Verdict> all(const Job& j, const Verdict& v) { return std::vector<Verdict>(j.recipients.size(), v); }

std::map<std::string, int> per_destination(const std::vector<Job>& jobs) {
  std::map<std::string, int> n;
  for (const Job& j : jobs) ++n[j.destination];
  return n;
}

}  // namespace

TEST_CASE("destinations: lower-case domain, relayhost mode") {
  Scheduler s(options());
  CHECK(s.destination_of("User@Example.COM") == "example.com");
  CHECK(s.destination_of("\"a@b\"@x.example") == "x.example");
  CHECK(s.destination_of("u@[IPv6:2001:DB8::1]") == "[ipv6:2001:db8::1]");
  CHECK(s.destination_of("postmaster") == "");
  SchedulerOptions o = options();
  o.relayhost = "[smtp.example.net]:587";
  Scheduler r(o);
  CHECK(r.destination_of("a@example.com") == "[smtp.example.net]:587");
}

TEST_CASE("a message's recipients are grouped by domain, one job per domain") {
  Scheduler s(options());
  Envelope e = message({"a@one.example", "b@TWO.example", "c@One.Example", "d@two.example", "e@three.example"});
  e.recipients[3].status = RcptStatus::sent;  // already done: not sent again
  REQUIRE(s.add(e).persist == Completion::Persist::nothing);
  auto jobs = s.take_jobs(T0);
  REQUIRE(jobs.size() == 3);
  std::map<std::string, std::vector<uint32_t>> got;
  for (const Job& j : jobs) {
    CHECK(j.message_id == e.id);
    got[j.destination] = j.recipients;
  }
  CHECK(got["one.example"] == std::vector<uint32_t>{0, 2});
  CHECK(got["two.example"] == std::vector<uint32_t>{1});
  CHECK(got["three.example"] == std::vector<uint32_t>{4});
  CHECK(s.take_jobs(T0).empty());  // nothing twice

  SECTION("relayhost: one job for everything") {
    SchedulerOptions o = options();
    o.relayhost = "[relay.example]:25";
    Scheduler r(o);
    r.add(message({"a@one.example", "b@two.example", "c@three.example"}));
    auto rj = r.take_jobs(T0);
    REQUIRE(rj.size() == 1);
    CHECK(rj[0].destination == "[relay.example]:25");
    CHECK(rj[0].recipients == std::vector<uint32_t>{0, 1, 2});
  }
}

TEST_CASE("limits: max_connections and max_connections_per_destination") {
  Scheduler s(options(5, 2));
  for (int i = 0; i < 4; ++i) s.add(message({"a@big.example"}));
  for (int i = 0; i < 4; ++i) s.add(message({"a@other.example"}));
  for (int i = 0; i < 4; ++i) s.add(message({"a@third.example"}));
  auto jobs = s.take_jobs(T0);
  REQUIRE(jobs.size() == 5);
  for (auto [d, n] : per_destination(jobs)) CHECK(n <= 2);
  CHECK(s.counts().jobs == 5);
  CHECK(s.take_jobs(T0).empty());  // full
  // One finishes: exactly one new job, for a destination below its limit.
  Completion c = s.complete(jobs[0], all(jobs[0], sent()), T0 + 1);
  CHECK(c.persist == Completion::Persist::remove);
  auto more = s.take_jobs(T0 + 1);
  REQUIRE(more.size() == 1);
  jobs.erase(jobs.begin());
  jobs.push_back(more[0]);
  for (auto [d, n] : per_destination(jobs)) CHECK(n <= 2);
  // Drain everything; the limits hold throughout.
  size_t done = 1;
  while (!jobs.empty()) {
    Job j = jobs.back();
    jobs.pop_back();
    s.complete(j, all(j, sent()), T0 + 2);
    ++done;
    for (Job& n : s.take_jobs(T0 + 2)) jobs.push_back(n);
    CHECK(jobs.size() <= 5);
    for (auto [d, n] : per_destination(jobs)) CHECK(n <= 2);
  }
  CHECK(done == 12);
  CHECK(s.counts().messages == 0);
  CHECK(s.counts().destinations == 0);
  CHECK_FALSE(s.next_wakeup());
}

TEST_CASE("fairness: a big destination does not starve a small one") {
  Scheduler s(options(4, 4));
  for (int i = 0; i < 100; ++i) s.add(message({"u@big.example"}, "s@x.example", T0 - 1000 + i));
  s.add(message({"u@small.example"}, "s@x.example", T0));  // arrived after all the big ones
  auto jobs = s.take_jobs(T0);
  REQUIRE(jobs.size() == 4);
  auto n = per_destination(jobs);
  CHECK(n["small.example"] == 1);
  CHECK(n["big.example"] == 3);

  SECTION("a freed slot goes to the destination with fewer jobs in flight") {
    Scheduler t(options(2, 2));
    for (int i = 0; i < 10; ++i) t.add(message({"u@big.example"}, "s@x.example", T0 - 1000 + i));
    auto j = t.take_jobs(T0);
    REQUIRE(j.size() == 2);
    CHECK(per_destination(j)["big.example"] == 2);
    t.add(message({"u@small.example"}, "s@x.example", T0));
    t.complete(j[0], all(j[0], sent()), T0 + 1);
    auto next = t.take_jobs(T0 + 1);
    REQUIRE(next.size() == 1);
    CHECK(next[0].destination == "small.example");
  }
}

TEST_CASE("oldest due first within a destination") {
  Scheduler s(options(1, 1));
  Envelope late = message({"a@d.example"}, "s@x", T0 - 10);
  Envelope early = message({"b@d.example"}, "s@x", T0 - 500);
  Envelope middle = message({"c@d.example"}, "s@x", T0 - 100);
  s.add(late);
  s.add(early);
  s.add(middle);
  std::vector<std::string> order;
  for (int i = 0; i < 3; ++i) {
    auto j = s.take_jobs(T0);
    REQUIRE(j.size() == 1);
    order.push_back(j[0].message_id);
    s.complete(j[0], all(j[0], sent()), T0);
  }
  CHECK(order == std::vector<std::string>{early.id, middle.id, late.id});
}

TEST_CASE("retry schedule: the n-th attempt waits schedule[min(n-1, last)]") {
  Scheduler s(options());
  Envelope e = message({"a@d.example"});
  s.add(e);
  CHECK(s.next_wakeup() == T0);
  const std::vector<int64_t> waits = {5 * kMinuteUs, 10 * kMinuteUs, 30 * kMinuteUs, 30 * kMinuteUs,
                                      30 * kMinuteUs};
  int64_t now = T0;
  for (size_t n = 0; n < waits.size(); ++n) {
    auto jobs = s.take_jobs(now);
    REQUIRE(jobs.size() == 1);
    CHECK_FALSE(s.next_wakeup());  // in flight: nothing waits
    Completion c = s.complete(jobs[0], all(jobs[0], deferred()), now);
    REQUIRE(c.persist == Completion::Persist::update);
    CHECK(c.bounce.empty());
    CHECK(c.envelope.attempts == n + 1);
    CHECK(c.envelope.next_attempt_us == now + waits[n]);
    CHECK(c.envelope.recipients[0].status == RcptStatus::deferred);
    CHECK(c.envelope.recipients[0].attempts == n + 1);
    CHECK(c.envelope.recipients[0].last_attempt_us == now);
    CHECK(c.envelope.recipients[0].last_reply == "451 4.7.1 greylisted");
    CHECK(c.envelope.recipients[0].dsn_status == "4.7.1");
    CHECK(c.envelope.recipients[0].remote_host == "mx.example");
    CHECK(state_of(c.envelope) == MessageState::deferred);
    CHECK(s.next_wakeup() == now + waits[n]);
    CHECK(s.take_jobs(now + waits[n] - 1).empty());  // not a microsecond early
    now += waits[n];
  }
}

TEST_CASE("retry_delay_us: jitter stays within +-jitter") {
  const std::vector<int64_t> sched = {10 * kMinuteUs};
  CHECK(retry_delay_us(sched, 1, 0.1, kHalf) == 10 * kMinuteUs);
  CHECK(retry_delay_us(sched, 1, 0.1, 0) == 9 * kMinuteUs);
  CHECK(retry_delay_us(sched, 1, 0.1, ~0ull) <= 11 * kMinuteUs);
  CHECK(retry_delay_us(sched, 1, 0.1, ~0ull) > 11 * kMinuteUs - kSecondUs);
  CHECK(retry_delay_us(sched, 1, 0.0, 12345) == 10 * kMinuteUs);
  CHECK(retry_delay_us({}, 3, 0.0, 0) == 5 * kMinuteUs);  // empty schedule: 5 minutes
  CHECK(retry_delay_us(std::vector<int64_t>{1}, 1, 0.0, 0) == kSecondUs);  // at least a second
  // Through the scheduler, with real randomness: every delay within bounds,
  // and not all the same.
  SchedulerOptions o = options(1000, 10);
  o.random = {};  // the default generator
  o.jitter = 0.1;
  Scheduler s(o);
  std::set<int64_t> seen;
  for (int i = 0; i < 200; ++i) s.add(message({"a@d" + std::to_string(i) + ".example"}));
  for (const Job& j : s.take_jobs(T0)) {
    Completion c = s.complete(j, all(j, deferred()), T0);
    int64_t d = c.envelope.next_attempt_us - T0;
    CHECK(d >= 4 * kMinuteUs + 30 * kSecondUs);
    CHECK(d <= 5 * kMinuteUs + 30 * kSecondUs);
    seen.insert(d);
  }
  CHECK(seen.size() > 150);
}

TEST_CASE("an attempt ends when all its destinations are done; mixed outcomes") {
  Scheduler s(options(10, 1));
  Envelope e = message({"a@one.example", "b@two.example", "c@three.example"});
  s.add(e);
  auto jobs = s.take_jobs(T0);
  REQUIRE(jobs.size() == 3);
  std::map<std::string, Job> by;
  for (auto& j : jobs) by[j.destination] = j;

  Completion c1 = s.complete(by["one.example"], all(by["one.example"], sent()), T0 + 1);
  CHECK(c1.persist == Completion::Persist::update);  // sent is persisted at once
  CHECK(c1.envelope.recipients[0].status == RcptStatus::sent);
  CHECK(c1.envelope.attempts == 0);  // the attempt is not over
  CHECK_FALSE(s.next_wakeup());

  Completion c2 = s.complete(by["two.example"], all(by["two.example"], bounced()), T0 + 2);
  CHECK(c2.persist == Completion::Persist::update);
  REQUIRE(c2.bounce.size() == 1);
  CHECK(c2.bounce[0].address == "b@two.example");
  CHECK(c2.bounce[0].status == "5.1.1");
  CHECK(c2.bounce[0].diagnostic == "550 5.1.1 no such user");
  CHECK(c2.bounce[0].remote_mta == "mx.example");
  CHECK(c2.bounce[0].last_attempt_us == T0 + 2);

  Completion c3 = s.complete(by["three.example"], all(by["three.example"], deferred()), T0 + 3);
  CHECK(c3.persist == Completion::Persist::update);
  CHECK(c3.bounce.empty());
  CHECK(c3.envelope.attempts == 1);
  CHECK(c3.envelope.next_attempt_us == T0 + 3 + 5 * kMinuteUs);
  // The next attempt only carries what is left.
  auto again = s.take_jobs(T0 + 3 + 5 * kMinuteUs);
  REQUIRE(again.size() == 1);
  CHECK(again[0].destination == "three.example");
  CHECK(again[0].recipients == std::vector<uint32_t>{2});
  Completion last = s.complete(again[0], all(again[0], sent()), T0 + 4 + 5 * kMinuteUs);
  CHECK(last.persist == Completion::Persist::remove);
  CHECK(last.bounce.empty());
  CHECK(s.counts().messages == 0);
}

TEST_CASE("lifetime: deferrals after max_queue_lifetime bounce with 4.4.7") {
  SchedulerOptions o = options();
  o.retry_schedule_us = {kDayUs};  // long waits, to see the clamp
  o.max_queue_lifetime_us = 2 * kDayUs + kHourUs;
  Scheduler s(o);
  Envelope e = message({"a@d.example", "b@d.example"});
  s.add(e);
  int64_t now = T0;
  auto j = s.take_jobs(now);
  s.complete(j[0], all(j[0], deferred()), now);
  now = *s.next_wakeup();
  CHECK(now == T0 + kDayUs);
  j = s.take_jobs(now);
  Completion c = s.complete(j[0], all(j[0], deferred()), now);
  // The next attempt would be at 2 days, before the end: not clamped yet.
  CHECK(c.envelope.next_attempt_us == T0 + 2 * kDayUs);
  now = *s.next_wakeup();
  j = s.take_jobs(now);
  c = s.complete(j[0], all(j[0], deferred()), now);
  // 3 days would be past the lifetime: one last attempt right at its end.
  CHECK(c.envelope.next_attempt_us == T0 + 2 * kDayUs + kHourUs);
  now = *s.next_wakeup();
  j = s.take_jobs(now);
  REQUIRE(j.size() == 1);
  c = s.complete(j[0], std::vector<Verdict>{deferred(), sent()}, now);
  CHECK(c.persist == Completion::Persist::remove);
  REQUIRE(c.bounce.size() == 1);
  CHECK(c.bounce[0].address == "a@d.example");
  CHECK(c.bounce[0].status == "4.4.7");
  CHECK(c.bounce[0].diagnostic == "451 4.7.1 greylisted");
  CHECK(c.bounce[0].remote_mta == "mx.example");
  CHECK(c.bounce[0].reason.find("2 days") == std::string::npos);  // 49 hours
  CHECK(c.bounce[0].reason.find("49 hours") != std::string::npos);
  CHECK(c.envelope.recipients[0].status == RcptStatus::bounced);
  CHECK(c.envelope.recipients[0].dsn_status == "4.4.7");
  CHECK(c.envelope.recipients[1].status == RcptStatus::sent);
}

TEST_CASE("the null sender never bounces; NOTIFY decides who is reported") {
  Scheduler s(options());
  Envelope e = message({"a@d.example", "b@d.example"}, "");
  s.add(e);
  auto j = s.take_jobs(T0);
  Completion c = s.complete(j[0], all(j[0], bounced()), T0);
  CHECK(c.persist == Completion::Persist::remove);
  CHECK(c.bounce.empty());
  CHECK(c.envelope.recipients[0].status == RcptStatus::bounced);

  // Expired, with the null sender: still nothing.
  SchedulerOptions o = options();
  Scheduler t(o);
  Envelope old = message({"a@d.example"}, "", T0 - 3 * kDayUs);
  t.add(old);
  j = t.take_jobs(T0);
  c = t.complete(j[0], all(j[0], deferred()), T0);
  CHECK(c.persist == Completion::Persist::remove);
  CHECK(c.bounce.empty());

  // NOTIFY: 0 (not given) and FAILURE report; NEVER, SUCCESS, DELAY do not.
  Scheduler u(options());
  Envelope n = message({"a@d.example", "b@d.example", "c@d.example", "d@d.example", "e@d.example"});
  n.recipients[0].notify = 0;
  n.recipients[1].notify = 0b0010;  // FAILURE
  n.recipients[2].notify = 0b1000;  // NEVER
  n.recipients[3].notify = 0b0001;  // SUCCESS
  n.recipients[4].notify = 0b0110;  // FAILURE,DELAY
  u.add(n);
  j = u.take_jobs(T0);
  c = u.complete(j[0], all(j[0], bounced()), T0);
  std::vector<std::string> reported;
  for (auto& f : c.bounce) reported.push_back(f.address);
  CHECK(reported == std::vector<std::string>{"a@d.example", "b@d.example", "e@d.example"});
}

TEST_CASE("history: one entry per job when all agree, per recipient otherwise; bounded") {
  Scheduler s(options());
  Envelope e = message({"a@d.example", "b@d.example"});
  s.add(e);
  auto j = s.take_jobs(T0);
  Completion c = s.complete(j[0], all(j[0], deferred()), T0);
  REQUIRE(c.envelope.history.size() == 1);
  CHECK(c.envelope.history[0] == Attempt{T0, -1, "mx.example", "451 4.7.1 greylisted"});
  int64_t now = *s.next_wakeup();
  j = s.take_jobs(now);
  c = s.complete(j[0], std::vector<Verdict>{deferred(), bounced()}, now);
  REQUIRE(c.envelope.history.size() == 3);
  CHECK(c.envelope.history[1].recipient == 0);
  CHECK(c.envelope.history[2].recipient == 1);
  CHECK(c.envelope.history[2].reply == "550 5.1.1 no such user");
  for (int i = 0; i < 30; ++i) {
    now = *s.next_wakeup();
    j = s.take_jobs(now);
    REQUIRE(j.size() == 1);
    c = s.complete(j[0], all(j[0], deferred()), now);
  }
  CHECK(c.envelope.history.size() == kMaxHistory);
  CHECK(c.envelope.history.back().time_us == now);
}

TEST_CASE("hold, release, flush") {
  Scheduler s(options());
  Envelope e = message({"a@d.example"});
  s.add(e);
  auto j = s.take_jobs(T0);
  s.complete(j[0], all(j[0], deferred()), T0);
  const int64_t due = T0 + 5 * kMinuteUs;
  CHECK(s.next_wakeup() == due);

  auto h = s.hold(e.id, T0 + 1);
  REQUIRE(h);
  CHECK(h->persist == Completion::Persist::update);
  CHECK(h->envelope.held);
  CHECK(state_of(h->envelope) == MessageState::held);
  CHECK(s.counts().held == 1);
  CHECK_FALSE(s.next_wakeup());
  CHECK(s.take_jobs(due + kHourUs).empty());
  CHECK(s.flush(e.id, due + kHourUs));  // found, but held stays held
  CHECK(s.take_jobs(due + kHourUs).empty());

  auto r = s.release(e.id);
  REQUIRE(r);
  CHECK_FALSE(r->envelope.held);
  CHECK(r->envelope.next_attempt_us == due);
  CHECK(s.next_wakeup() == due);  // back on its schedule (already passed: due at once)
  CHECK(s.take_jobs(due + kHourUs).size() == 1);

  SECTION("flush ignores the schedule") {
    Scheduler t(options());
    Envelope m = message({"a@d.example"});
    t.add(m);
    auto jj = t.take_jobs(T0);
    t.complete(jj[0], all(jj[0], deferred()), T0);
    CHECK(t.take_jobs(T0 + 10).empty());
    CHECK(t.flush(m.id, T0 + 10));
    CHECK(t.next_wakeup() == T0 + 10);
    CHECK(t.find(m.id)->next_attempt_us == T0 + 10);
    jj = t.take_jobs(T0 + 10);
    REQUIRE(jj.size() == 1);
    // The schedule goes on from the attempt count, not from the flush.
    Completion c = t.complete(jj[0], all(jj[0], deferred()), T0 + 10);
    CHECK(c.envelope.next_attempt_us == T0 + 10 + 10 * kMinuteUs);
    CHECK_FALSE(t.flush("0000000000000000", T0));
  }
  SECTION("flush_all") {
    Scheduler t(options());
    for (int i = 0; i < 3; ++i) t.add(message({"a@d" + std::to_string(i) + ".example"}));
    for (const Job& jj : t.take_jobs(T0)) t.complete(jj, all(jj, deferred()), T0);
    t.add(message({"x@new.example"}));  // due now already: not counted
    CHECK(t.flush_all(T0 + 1) == 3);
    CHECK(t.take_jobs(T0 + 1).size() == 4);
  }
  SECTION("hold while jobs are in flight: they finish, nothing new starts") {
    Scheduler t(options(10, 1));
    Envelope m = message({"a@one.example", "b@two.example"});
    Envelope other = message({"c@one.example"});
    t.add(m);
    t.add(other);
    auto jj = t.take_jobs(T0);
    REQUIRE(jj.size() == 2);  // one.example: m only (limit 1); two.example: m
    REQUIRE(t.hold(m.id, T0 + 1));
    Completion c = t.complete(jj[0], all(jj[0], deferred()), T0 + 2);
    CHECK(c.envelope.held);
    c = t.complete(jj[1], all(jj[1], deferred()), T0 + 3);
    CHECK(c.envelope.attempts == 1);
    auto rest = t.take_jobs(T0 + kDayUs);
    REQUIRE(rest.size() == 1);
    CHECK(rest[0].message_id == other.id);
    CHECK(t.find(m.id)->held);
  }
  SECTION("hold before a waiting job starts: released, it is due at once") {
    Scheduler t(options(1, 1));
    Envelope a = message({"a@d.example"});
    Envelope b = message({"b@d.example"});
    t.add(a);
    t.add(b);
    auto jj = t.take_jobs(T0);
    REQUIRE(jj.size() == 1);
    REQUIRE(jj[0].message_id == a.id);
    REQUIRE(t.hold(b.id, T0 + 1));  // b was waiting for the slot
    t.complete(jj[0], all(jj[0], sent()), T0 + 2);
    CHECK(t.take_jobs(T0 + 2).empty());
    auto r2 = t.release(b.id);
    REQUIRE(r2);
    CHECK(r2->envelope.attempts == 0);
    CHECK(t.take_jobs(T0 + 3).size() == 1);
  }
  SECTION("unknown ids") {
    CHECK_FALSE(s.hold("0000000000000000", T0));
    CHECK_FALSE(s.release("0000000000000000"));
    CHECK_FALSE(s.bounce_now("0000000000000000", T0));
    CHECK_FALSE(s.remove("0000000000000000"));
    CHECK(s.find("0000000000000000") == nullptr);
  }
}

TEST_CASE("bounce now and delete") {
  Scheduler s(options());
  Envelope e = message({"a@d.example", "b@d.example", "c@e.example"});
  s.add(e);
  auto j = s.take_jobs(T0);
  REQUIRE(j.size() == 2);
  const Job& d = j[0].destination == "d.example" ? j[0] : j[1];
  const Job& other = j[0].destination == "d.example" ? j[1] : j[0];
  s.complete(d, std::vector<Verdict>{sent(), deferred()}, T0);
  auto c = s.bounce_now(e.id, T0 + 5);
  REQUIRE(c);
  CHECK(c->persist == Completion::Persist::remove);
  REQUIRE(c->bounce.size() == 2);  // b (deferred) and c (in flight); a was sent
  CHECK(c->bounce[0].address == "b@d.example");
  CHECK(c->bounce[0].status == "5.0.0");
  CHECK(c->bounce[0].remote_mta.empty());
  CHECK(c->bounce[0].reason.find("451 4.7.1 greylisted") != std::string::npos);
  CHECK(c->envelope.recipients[0].status == RcptStatus::sent);
  CHECK(s.find(e.id) == nullptr);
  // The job in flight finishes later: nothing to do, its slot is free again.
  Completion late = s.complete(other, all(other, sent()), T0 + 6);
  CHECK(late.persist == Completion::Persist::nothing);
  CHECK(s.counts().jobs == 0);
  CHECK(s.counts().destinations == 0);

  Envelope m = message({"a@d.example"});
  s.add(m);
  auto r = s.remove(m.id);
  REQUIRE(r);
  CHECK(r->persist == Completion::Persist::remove);
  CHECK(r->bounce.empty());
  CHECK(s.take_jobs(T0 + 7).empty());
  CHECK_FALSE(s.next_wakeup());

  Envelope n = message({"a@d.example"}, "");
  s.add(n);
  auto nb = s.bounce_now(n.id, T0);
  REQUIRE(nb);
  CHECK(nb->bounce.empty());  // <> never bounces
}

TEST_CASE("restart: recovered envelopes resume with the same schedule") {
  std::vector<Envelope> disk;  // what the spool would hold
  Envelope a = message({"a@one.example", "b@two.example"});
  Envelope b = message({"c@three.example"});
  Envelope h = message({"d@four.example"});
  std::string held_id = h.id;
  {
    Scheduler s(options());
    for (const Envelope& e : {a, b, h}) {
      s.add(e);
      disk.push_back(e);
    }
    auto put = [&](const Completion& c) {
      for (auto& e : disk)
        if (e.id == c.id) e = c.envelope;
      if (c.persist == Completion::Persist::remove)
        std::erase_if(disk, [&](const Envelope& e) { return e.id == c.id; });
    };
    put(*s.hold(held_id, T0));
    for (const Job& j : s.take_jobs(T0)) {
      if (j.destination == "one.example") put(s.complete(j, all(j, sent()), T0 + 1));
      else put(s.complete(j, all(j, deferred()), T0 + 2));
    }
  }
  // A new scheduler, as after a restart, fed with what the spool recovered.
  Scheduler s(options());
  for (const Envelope& e : disk) CHECK(s.add(e).persist == Completion::Persist::nothing);
  const Envelope* ra = s.find(a.id);
  REQUIRE(ra);
  CHECK(ra->next_attempt_us == T0 + 2 + 5 * kMinuteUs);
  CHECK(ra->attempts == 1);
  CHECK(ra->recipients[0].status == RcptStatus::sent);
  CHECK(s.find(held_id)->held);
  CHECK(s.next_wakeup() == T0 + 2 + 5 * kMinuteUs);
  CHECK(s.take_jobs(T0 + 2 + 5 * kMinuteUs - 1).empty());
  auto jobs = s.take_jobs(T0 + 2 + 5 * kMinuteUs);
  REQUIRE(jobs.size() == 2);  // a's two.example and b; the held one stays
  for (const Job& j : jobs) {
    CHECK(j.message_id != held_id);
    if (j.message_id == a.id) CHECK(j.recipients == std::vector<uint32_t>{1});
    Completion c = s.complete(j, all(j, deferred()), T0 + 3 + 5 * kMinuteUs);
    CHECK(c.envelope.attempts == 2);
    CHECK(c.envelope.next_attempt_us == T0 + 3 + 15 * kMinuteUs);  // second wait: 10 minutes
  }

  SECTION("an envelope that is already finished is removed at once") {
    Envelope done = message({"a@x.example", "b@x.example"});
    done.recipients[0].status = RcptStatus::sent;
    done.recipients[1].status = RcptStatus::bounced;
    Completion c = s.add(done);
    CHECK(c.persist == Completion::Persist::remove);
    CHECK(c.bounce.empty());
    CHECK(s.find(done.id) == nullptr);
  }
  SECTION("a message recovered mid-attempt is due at once") {
    Envelope mid = message({"a@x.example", "b@y.example"}, "s@x", T0 - kHourUs);
    mid.recipients[0].status = RcptStatus::sent;
    Scheduler t(options());
    t.add(mid);
    CHECK(t.next_wakeup() == T0 - kHourUs);
    auto jj = t.take_jobs(T0);
    REQUIRE(jj.size() == 1);
    CHECK(jj[0].recipients == std::vector<uint32_t>{1});
  }
}

TEST_CASE("take_job_for: the next message for an open connection") {
  Scheduler s(options(2, 1));
  Envelope a = message({"a@d.example"});
  Envelope b = message({"b@d.example"});
  Envelope c = message({"c@e.example"});
  s.add(a);
  s.add(b);
  s.add(c);
  auto jobs = s.take_jobs(T0);
  REQUIRE(jobs.size() == 2);  // one per destination (limit 1 each)
  const Job& dj = jobs[0].destination == "d.example" ? jobs[0] : jobs[1];
  CHECK_FALSE(s.take_job_for("d.example", T0));  // at its limit
  s.complete(dj, all(dj, sent()), T0 + 1);
  auto next = s.take_job_for("d.example", T0 + 1);
  REQUIRE(next);
  CHECK(next->message_id == b.id);
  CHECK_FALSE(s.take_job_for("d.example", T0 + 1));
  CHECK_FALSE(s.take_job_for("nowhere.example", T0 + 1));
}

TEST_CASE("counts and states") {
  Scheduler s(options());
  Envelope a = message({"a@d.example"});
  Envelope b = message({"b@d.example"});
  Envelope c = message({"c@e.example"});
  s.add(a);
  s.add(b);
  s.add(c);
  s.hold(c.id, T0);
  auto jobs = s.take_jobs(T0);
  REQUIRE(jobs.size() == 2);
  s.complete(jobs[0], all(jobs[0], deferred()), T0);
  SchedulerCounts n = s.counts();
  CHECK(n.messages == 3);
  CHECK(n.queued == 1);
  CHECK(n.deferred == 1);
  CHECK(n.held == 1);
  CHECK(n.jobs == 1);
  CHECK(to_string(MessageState::queued) == "queued");
  CHECK(to_string(MessageState::deferred) == "deferred");
  CHECK(to_string(MessageState::held) == "held");
  CHECK(s.ids() == std::vector<std::string>{a.id, b.id, c.id});
}

TEST_CASE("verdicts for recipients already done are ignored") {
  Scheduler s(options());
  Envelope e = message({"a@d.example", "b@d.example"});
  s.add(e);
  auto j = s.take_jobs(T0);
  // A bounce_now in between would finish them; here: a recovered "sent" stays sent
  // even if a stale job reports otherwise.
  Completion c = s.complete(j[0], std::vector<Verdict>{sent(), deferred()}, T0);
  CHECK(c.envelope.recipients[0].status == RcptStatus::sent);
  int64_t now = *s.next_wakeup();
  j = s.take_jobs(now);
  REQUIRE(j[0].recipients == std::vector<uint32_t>{1});
  c = s.complete(j[0], std::vector<Verdict>{sent()}, now);
  CHECK(c.persist == Completion::Persist::remove);
  CHECK(c.envelope.recipients[0].attempts == 1);
}

TEST_CASE("set_options: a reload's limits, schedule and relayhost apply to what comes next") {
  Scheduler s(options(100, 1));
  auto a = message({"x@a.example", "y@b.example"});
  auto b = message({"z@a.example"});
  s.add(a);
  s.add(b);
  auto first = s.take_jobs(T0);
  REQUIRE(per_destination(first) == std::map<std::string, int>{{"a.example", 1}, {"b.example", 1}});

  SECTION("a wider per-destination limit starts the waiting job at once") {
    SchedulerOptions o = options(100, 5);
    s.set_options(o);
    auto more = s.take_jobs(T0);
    REQUIRE(more.size() == 1);
    CHECK(more[0].destination == "a.example");
  }
  SECTION("a new relayhost regroups waiting recipients; jobs in flight keep theirs") {
    SchedulerOptions o = options(100, 5);
    o.relayhost = "[smtp.example.net]:587";
    s.set_options(o);
    auto more = s.take_jobs(T0);
    REQUIRE(more.size() == 1);
    CHECK(more[0].destination == "[smtp.example.net]:587");
    CHECK(more[0].message_id == b.id);
    for (const Job& j : first) s.complete(j, all(j, sent()), T0);
    s.complete(more[0], all(more[0], sent()), T0);
    CHECK(s.counts().messages == 0);
  }
  SECTION("a new retry schedule times the next retry") {
    SchedulerOptions o = options(100, 5);
    o.retry_schedule_us = {42 * kSecondUs};
    s.set_options(o);
    for (const Job& j : first) s.complete(j, all(j, deferred()), T0);
    for (const Job& j : s.take_jobs(T0)) s.complete(j, all(j, deferred()), T0);
    REQUIRE(s.next_wakeup());
    CHECK(*s.next_wakeup() == T0 + 42 * kSecondUs);
  }
}

TEST_CASE("the shaping gate: a closed destination waits out of the running until reopened") {
  Scheduler s(options(100, 10));
  std::set<std::string> closed = {"slow.example"};
  std::vector<std::tuple<std::string, bool>> asked;
  s.set_gate([&](std::string_view dest, bool reuse, int64_t) {
    asked.emplace_back(std::string(dest), reuse);
    return !closed.contains(std::string(dest));
  });
  for (int i = 0; i < 3; ++i) s.add(message({"a@slow.example", "b@fast.example"}));
  auto jobs = s.take_jobs(T0);
  // fast.example gets its three jobs; slow.example was asked once and waits.
  CHECK(per_destination(jobs) == std::map<std::string, int>{{"fast.example", 3}});
  CHECK(std::count(asked.begin(), asked.end(), std::make_tuple(std::string("slow.example"), false)) == 1);
  CHECK(s.counts().gated == 1);
  // Not asked again while gated, whatever else happens.
  asked.clear();
  s.add(message({"c@fast.example"}));
  CHECK(per_destination(s.take_jobs(T0)) == std::map<std::string, int>{{"fast.example", 1}});
  CHECK(std::none_of(asked.begin(), asked.end(), [](auto& a) { return std::get<0>(a) == "slow.example"; }));
  CHECK_FALSE(s.next_wakeup().has_value());  // the glue reopens it, never a timer here
  // Reopened but still closed: gated again, nothing handed out.
  s.reopen("slow.example");
  CHECK(s.take_jobs(T0).empty());
  CHECK(s.counts().gated == 1);
  // Open: the waiting work starts.
  closed.clear();
  s.reopen_all();
  CHECK(s.counts().gated == 0);
  auto later = s.take_jobs(T0 + kSecondUs);
  CHECK(per_destination(later) == std::map<std::string, int>{{"slow.example", 3}});
}

TEST_CASE("the shaping gate: take_job_for asks with reuse = true and may be refused") {
  Scheduler s(options(100, 1));
  bool open_reuse = true;
  s.set_gate([&](std::string_view, bool reuse, int64_t) { return reuse ? open_reuse : true; });
  s.add(message({"a@x.example"}));
  s.add(message({"b@x.example"}));
  auto jobs = s.take_jobs(T0);
  REQUIRE(jobs.size() == 1);
  s.complete(jobs[0], all(jobs[0], sent()), T0);
  open_reuse = false;  // e.g. the site is suspended
  CHECK_FALSE(s.take_job_for("x.example", T0).has_value());
  CHECK(s.counts().gated == 1);
  open_reuse = true;
  s.reopen("x.example");
  auto next = s.take_job_for("x.example", T0);
  REQUIRE(next.has_value());
  CHECK(next->destination == "x.example");
}

TEST_CASE("the shaping gate: a destination closed to new connections still feeds its open one") {
  Scheduler s(options(100, 5));
  s.set_gate([](std::string_view, bool reuse, int64_t) { return reuse; });  // the site is full
  for (int i = 0; i < 3; ++i) s.add(message({"a@x.example"}));
  CHECK(s.take_jobs(T0).empty());
  CHECK(s.counts().gated == 1);
  // A connection of the site that is already open carries the work, one job at a time.
  for (int i = 0; i < 3; ++i) {
    auto job = s.take_job_for("x.example", T0);
    REQUIRE(job.has_value());
    CHECK(s.counts().gated == 1);  // still closed to new connections
    s.complete(*job, all(*job, sent()), T0);
  }
  CHECK_FALSE(s.take_job_for("x.example", T0).has_value());
}
