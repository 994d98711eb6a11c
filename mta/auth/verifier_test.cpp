// verifier_test.cpp — Verifier on a real libuv loop: the loop keeps ticking
// while hashes run on the thread pool, results come back on the loop thread,
// cancellation and the in-flight bound.
#include <catch2/catch.hpp>

#include <crypt.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mta/auth/verifier.hpp"

using namespace sluice::auth;

namespace {

std::string make_hash(const char* prefix, unsigned long count, const std::string& password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  REQUIRE(crypt_gensalt_rn(prefix, count, nullptr, 0, setting, sizeof setting) != nullptr);
  auto data = std::make_unique<crypt_data>();
  const char* h = crypt_rn(password.c_str(), setting, data.get(), sizeof *data);
  REQUIRE(h != nullptr);
  return h;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Loop {
  uv_loop_t loop{};
  Loop() { REQUIRE(uv_loop_init(&loop) == 0); }
  ~Loop() {
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }
};

std::shared_ptr<const UserDb> db_of(const std::string& text) {
  auto db = UserDb::parse(text, "users");
  REQUIRE(db.has_value());
  return *db;
}

// A bcrypt hash that takes at least min_seconds here, and its time.
std::pair<std::string, double> slow_hash(const std::string& password, double min_seconds) {
  for (unsigned long cost = 8;; ++cost) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string h = make_hash("$2b$", cost, password);
    const double t = seconds_since(t0);
    if (t >= min_seconds || cost >= 16) return {h, t};
  }
}

}  // namespace

TEST_CASE("Verifier: 20 checks in flight; the loop keeps ticking every 5 ms") {
  const auto [hash, hash_seconds] = slow_hash("right", 0.15);
  auto db = db_of("Alice:" + hash + "\nbob:" + hash + "\n");

  Loop l;
  Verifier verifier(&l.loop);
  const auto loop_thread = std::this_thread::get_id();

  struct Ticks {
    uint64_t last_ns = 0;
    uint64_t max_gap_ns = 0;
    int count = 0;
  } ticks;
  uv_timer_t timer;
  uv_timer_init(&l.loop, &timer);
  timer.data = &ticks;
  ticks.last_ns = uv_hrtime();
  uv_timer_start(
      &timer,
      [](uv_timer_t* t) {
        auto* k = static_cast<Ticks*>(t->data);
        const uint64_t now = uv_hrtime();
        k->max_gap_ns = std::max(k->max_gap_ns, now - k->last_ns);
        k->last_ns = now;
        ++k->count;
      },
      5, 5);

  struct Outcome {
    int done = 0, ok = 0;
    bool on_loop_thread = true;
    std::vector<std::string> logins;
  } out;
  std::vector<Verifier::Pending> pending;
  for (int i = 0; i < 20; ++i) {
    // 8 right passwords (half with the login in another case), 6 wrong, 6 unknown logins.
    std::string login = i < 8 ? (i % 2 ? "alice" : "bob") : i < 14 ? "bob" : "mallory";
    std::string password = i < 8 ? "right" : "wrong";
    auto p = verifier.verify(db, login, password, [&, loop_thread](Verifier::Result r) {
      out.on_loop_thread = out.on_loop_thread && std::this_thread::get_id() == loop_thread;
      ++out.done;
      if (r.ok) {
        ++out.ok;
        REQUIRE(r.user != nullptr);
        CHECK(r.user->login == r.login);
        out.logins.push_back(r.login);
      } else {
        CHECK(r.user == nullptr);
      }
      if (out.done == 20) {
        uv_timer_stop(&timer);
        uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
      }
    });
    REQUIRE(p.has_value());
    pending.push_back(std::move(*p));
  }
  CHECK(verifier.in_flight() == 20);
  CHECK(out.done == 0);  // never from inside verify()

  const auto t0 = std::chrono::steady_clock::now();
  uv_run(&l.loop, UV_RUN_DEFAULT);
  const double total = seconds_since(t0);

  CHECK(out.done == 20);
  CHECK(out.ok == 8);
  CHECK(out.on_loop_thread);
  CHECK(std::count(out.logins.begin(), out.logins.end(), "Alice") == 4);  // the file's spelling
  CHECK(verifier.in_flight() == 0);
  for (const auto& p : pending) CHECK_FALSE(p.active());

  const double max_gap = static_cast<double>(ticks.max_gap_ns) / 1e9;
  INFO("one hash " << hash_seconds * 1e3 << " ms; 20 checks took " << total * 1e3
                   << " ms; " << ticks.count << " ticks, max gap " << max_gap * 1e3 << " ms");
  // On the loop thread the 20 hashes would have taken 20 hash times with
  // gaps of at least one; off the loop the ticks go on.
  CHECK(total >= hash_seconds);  // the work really was slow
  CHECK(max_gap < hash_seconds / 2);
  CHECK(ticks.count >= static_cast<int>(total / 0.005 / 3));
}

TEST_CASE("Verifier: results carry the account, which keeps its database alive") {
  const std::string hash = make_hash("$6$", 1000, "pw");
  auto db = db_of("Carol@Example.com:" + hash + ":@example.com\n");
  Loop l;
  Verifier verifier(&l.loop);
  std::vector<Verifier::Result> results;
  auto p1 = verifier.verify(db, "carol@example.com", "pw", [&](Verifier::Result r) { results.push_back(std::move(r)); });
  auto p2 = verifier.verify(db, "carol@example.com", "nope", [&](Verifier::Result r) { results.push_back(std::move(r)); });
  auto p3 = verifier.verify(nullptr, "carol@example.com", "pw", [&](Verifier::Result r) { results.push_back(std::move(r)); });
  REQUIRE(p1);
  REQUIRE(p2);
  REQUIRE(p3);
  std::weak_ptr<const UserDb> weak = db;
  db.reset();  // as if a reload replaced it
  uv_run(&l.loop, UV_RUN_DEFAULT);
  REQUIRE(results.size() == 3);
  std::sort(results.begin(), results.end(), [](const auto& a, const auto& b) { return a.ok > b.ok; });
  CHECK(results[0].ok);
  CHECK(results[0].login == "Carol@Example.com");
  REQUIRE(results[0].user);
  CHECK(may_send_as(*results[0].user, "anyone@example.com"));
  CHECK_FALSE(results[1].ok);
  CHECK(results[1].login == "carol@example.com");  // as sent
  CHECK_FALSE(results[2].ok);                      // no database: nobody
  CHECK_FALSE(weak.expired());                     // the account holds it
  results.clear();
  CHECK(weak.expired());
}

TEST_CASE("Verifier: a cancelled or dropped check never calls back, and releases its callback") {
  const auto [hash, hash_seconds] = slow_hash("right", 0.02);
  auto db = db_of("alice:" + hash + "\n");
  Loop l;
  Verifier verifier(&l.loop);

  int called = 0;
  auto captured = std::make_shared<int>(0);
  std::weak_ptr<int> watch = captured;
  {
    std::vector<Verifier::Pending> keep;
    for (int i = 0; i < 12; ++i) {
      auto p = verifier.verify(db, "alice", "right", [&called, captured](Verifier::Result) { ++called; });
      REQUIRE(p);
      keep.push_back(std::move(*p));
    }
    captured.reset();
    CHECK_FALSE(watch.expired());  // the callbacks hold it
    keep[0].cancel();
    keep[0].cancel();  // idempotent
    CHECK_FALSE(keep[0].active());
    CHECK(keep[1].active());
    // Moving onto a live handle cancels the old one.
    keep[1] = std::move(keep[2]);
    CHECK(keep[1].active());
    CHECK_FALSE(keep[2].active());
  }  // the rest are destroyed: cancelled
  CHECK(watch.expired());  // every callback was released at cancel time
  CHECK(verifier.in_flight() == 12);  // jobs already running still finish
  uv_run(&l.loop, UV_RUN_DEFAULT);
  CHECK(called == 0);
  CHECK(verifier.in_flight() == 0);
}

TEST_CASE("Verifier: cancelling inside another check's callback, and after delivery") {
  const std::string hash = make_hash("$6$", 1000, "pw");
  auto db = db_of("alice:" + hash + "\n");
  Loop l;
  Verifier verifier(&l.loop);
  int called = 0;
  std::optional<Verifier::Pending> second;
  auto first = verifier.verify(db, "alice", "pw", [&](Verifier::Result) {
    ++called;
    if (second) second->cancel();  // may or may not have been delivered yet
  });
  second = verifier.verify(db, "alice", "pw", [&](Verifier::Result) { ++called; });
  REQUIRE(first);
  uv_run(&l.loop, UV_RUN_DEFAULT);
  CHECK(called >= 1);
  CHECK(called <= 2);
  first->cancel();  // after delivery: harmless
  CHECK_FALSE(first->active());
}

TEST_CASE("Verifier: past max_in_flight, verify refuses at once") {
  const std::string hash = make_hash("$6$", 1000, "pw");
  auto db = db_of("alice:" + hash + "\n");
  Loop l;
  Verifier verifier(&l.loop, 2);
  int called = 0;
  auto a = verifier.verify(db, "alice", "pw", [&](Verifier::Result) { ++called; });
  auto b = verifier.verify(db, "alice", "pw", [&](Verifier::Result) { ++called; });
  auto c = verifier.verify(db, "alice", "pw", [&](Verifier::Result) { ++called; });
  CHECK(a.has_value());
  CHECK(b.has_value());
  CHECK_FALSE(c.has_value());
  uv_run(&l.loop, UV_RUN_DEFAULT);
  CHECK(called == 2);
  // Room again.
  auto d = verifier.verify(db, "alice", "pw", [&](Verifier::Result r) { called += r.ok ? 10 : 100; });
  CHECK(d.has_value());
  uv_run(&l.loop, UV_RUN_DEFAULT);
  CHECK(called == 12);
}

TEST_CASE("Verifier: results still arrive after the Verifier is gone") {
  const std::string hash = make_hash("$6$", 1000, "pw");
  auto db = db_of("alice:" + hash + "\n");
  Loop l;
  bool ok = false;
  std::optional<Verifier::Pending> p;
  {
    Verifier verifier(&l.loop);
    p = verifier.verify(db, "alice", "pw", [&](Verifier::Result r) { ok = r.ok; });
  }
  uv_run(&l.loop, UV_RUN_DEFAULT);
  CHECK(ok);
}
