// redis_store_test.cpp — RedisStore against Debian's redis-server, started
// here on a Unix socket in a temporary directory and killed at the end even
// when a check fails. Two stores with two node ids stand for two nodes.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "shaping/redis_store.hpp"

using namespace sluice::shaping;
namespace fs = std::filesystem;

namespace {

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "sluice-redis.XXXXXX").string();
    REQUIRE(mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// One redis-server process; stop() (or the destructor) kills it.
class RedisServer {
 public:
  RedisServer(fs::path dir, std::vector<std::string> extra = {}) : dir_(std::move(dir)), extra_(std::move(extra)) {}
  ~RedisServer() { stop(); }
  std::string socket() const { return (dir_ / "redis.sock").string(); }
  void start() {
    REQUIRE(pid_ == -1);
    std::vector<std::string> args = {"redis-server", "--port", "0", "--unixsocket", socket(),
                                     "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                                     "--dir", dir_.string(), "--logfile", (dir_ / "redis.log").string()};
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp("redis-server", argv.data());
      _exit(127);
    }
    // Ready once the socket accepts a connection.
    for (int i = 0; i < 250; ++i) {
      int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", socket().c_str());
      const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
      ::close(fd);
      if (ok) return;
      int status = 0;
      REQUIRE(waitpid(pid_, &status, WNOHANG) == 0);  // redis-server exited: is it installed?
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("redis-server did not open its socket");
  }
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    std::error_code ec;
    fs::remove(socket(), ec);
  }
  void pause() { kill(pid_, SIGSTOP); }

 private:
  fs::path dir_;
  std::vector<std::string> extra_;
  pid_t pid_ = -1;
};

// Standard error into a file while it lives, to read the log lines.
class StderrCapture {
 public:
  explicit StderrCapture(fs::path file) : file_(std::move(file)) {
    saved_ = dup(2);
    int fd = open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    ::close(fd);
  }
  ~StderrCapture() { restore(); }
  std::string text() {
    restore();
    std::ifstream in(file_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  fs::path file_;
  int saved_ = -1;
};

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The fallback: a real in-process store (GCRA per key, lease counts) that
// also records the limits it was given.
class FallbackStore final : public Store {
 public:
  void take(const std::string& key, Rate rate, uint32_t burst, std::function<void(Admission)> done) override {
    ++takes;
    last_rate = rate;
    last_burst = burst;
    done(rates_[key].take(rate, burst, now_us()));
  }
  void peek(const std::string& key, Rate rate, uint32_t burst, std::function<void(Admission)> done) override {
    ++peeks;
    last_rate = rate;
    done(rates_[key].peek(rate, burst, now_us()));
  }
  void acquire(const std::string& key, uint32_t limit, std::function<void(std::optional<uint64_t>)> done) override {
    ++acquires;
    last_limit = limit;
    if (held_[key] >= limit) return done(std::nullopt);
    ++held_[key];
    done(next_++);
  }
  void release(const std::string& key, uint64_t) override {
    ++releases;
    --held_[key];
  }
  void put_override(const std::string& site, const Override& o) override { overrides_[site] = o; }
  void overrides(std::function<void(std::map<std::string, Override>)> done) override {
    ++override_reads;
    done(overrides_);
  }
  std::string describe() const override { return "fallback"; }

  int takes = 0, peeks = 0, acquires = 0, releases = 0, override_reads = 0;
  Rate last_rate;
  uint32_t last_burst = 0, last_limit = 0;

 private:
  std::map<std::string, Gcra> rates_;
  std::map<std::string, uint32_t> held_;
  std::map<std::string, Override> overrides_;
  uint64_t next_ = 1;
};

class Loop {
 public:
  Loop() {
    ::signal(SIGPIPE, SIG_IGN);  // as the daemon: a dead Redis is EPIPE, not death
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &wake_);
  }
  ~Loop() {
    uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
  uv_loop_t* get() { return &loop_; }
  // Runs the loop until `done()` or `ms` have passed; returns done().
  bool run_until(const std::function<bool()>& done, int ms = 3000) {
    uv_timer_start(&wake_, [](uv_timer_t*) {}, 5, 5);
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!done() && std::chrono::steady_clock::now() < end) uv_run(&loop_, UV_RUN_ONCE);
    uv_timer_stop(&wake_);
    return done();
  }
  void run_for(int ms) {
    run_until([] { return false; }, ms);
  }

 private:
  uv_loop_t loop_;
  uv_timer_t wake_;
};

struct Node {
  std::unique_ptr<RedisStore> store;
  FallbackStore fallback;
};

std::unique_ptr<Node> make_node(Loop& loop, const std::string& url, const std::string& id,
                                std::string password = "") {
  auto n = std::make_unique<Node>();
  RedisOptions o;
  o.url = url;
  o.node_id = id;
  o.password = std::move(password);
  o.lease_ttl_us = 600'000;
  o.heartbeat_us = 200'000;
  auto s = RedisStore::create(loop.get(), o, n->fallback, now_us);
  REQUIRE(s);
  n->store = std::move(*s);
  return n;
}

void close_node(Loop& loop, Node& n) {
  bool closed = false;
  n.store->close([&] { closed = true; });
  REQUIRE(loop.run_until([&] { return closed; }));
}

Admission take(Loop& loop, Store& s, const std::string& key, Rate rate, uint32_t burst, bool peek = false) {
  int answers = 0;
  Admission a;
  auto done = [&](Admission got) {
    ++answers;
    a = got;
  };
  if (peek) s.peek(key, rate, burst, done);
  else s.take(key, rate, burst, done);
  REQUIRE(loop.run_until([&] { return answers > 0; }));
  loop.run_for(0);
  REQUIRE(answers == 1);
  return a;
}

std::optional<uint64_t> acquire(Loop& loop, Store& s, const std::string& key, uint32_t limit) {
  int answers = 0;
  std::optional<uint64_t> lease;
  s.acquire(key, limit, [&](std::optional<uint64_t> got) {
    ++answers;
    lease = got;
  });
  REQUIRE(loop.run_until([&] { return answers > 0; }));
  REQUIRE(answers == 1);
  return lease;
}

std::map<std::string, Override> overrides(Loop& loop, Store& s) {
  int answers = 0;
  std::map<std::string, Override> out;
  s.overrides([&](std::map<std::string, Override> got) {
    ++answers;
    out = std::move(got);
  });
  REQUIRE(loop.run_until([&] { return answers > 0; }));
  REQUIRE(answers == 1);
  return out;
}

void wait_until_us(Loop& loop, int64_t at) {
  const int64_t ms = (at - now_us()) / 1000 + 2;
  if (ms > 0) loop.run_for(static_cast<int>(ms));
}

void both_up(Loop& loop, Node& a, Node& b) {
  REQUIRE(loop.run_until([&] {
    return a.store->reachable() && b.store->reachable() && a.store->nodes_seen() == 2 &&
           b.store->nodes_seen() == 2;
  }));
}

}  // namespace

TEST_CASE("two nodes share one rate, one lease limit and the overrides") {
  TempDir dir;
  RedisServer redis(dir.path);
  redis.start();
  Loop loop;
  const std::string url = "unix:" + redis.socket();
  auto a = make_node(loop, url, "node-a");
  auto b = make_node(loop, url, "node-b");
  both_up(loop, *a, *b);
  CHECK(a->store->describe() == "redis " + url + " (2 nodes)");

  // 10/s with burst 1: one event per 100 ms across both nodes.
  const Rate rate{10, 1'000'000};
  const Admission a1 = take(loop, *a->store, "site:x", rate, 1);
  CHECK(a1.allowed);
  const Admission b1 = take(loop, *b->store, "site:x", rate, 1);
  CHECK(!b1.allowed);
  CHECK(b1.retry_at_us > now_us());
  CHECK(b1.retry_at_us <= now_us() + 100'000);
  // peek says the same and counts nothing.
  CHECK(!take(loop, *a->store, "site:x", rate, 1, /*peek=*/true).allowed);
  wait_until_us(loop, b1.retry_at_us);
  CHECK(take(loop, *b->store, "site:x", rate, 1, true).allowed);
  CHECK(take(loop, *b->store, "site:x", rate, 1).allowed);
  const Admission a2 = take(loop, *a->store, "site:x", rate, 1);
  CHECK(!a2.allowed);
  wait_until_us(loop, a2.retry_at_us);
  CHECK(take(loop, *a->store, "site:x", rate, 1).allowed);

  // Burst 3 (a whole period's worth at once), then denied, as Gcra says.
  const Rate slow{3, 3'600'000'000};
  const Admission c1 = take(loop, *a->store, "login:alice", slow, 3);
  const Admission c2 = take(loop, *b->store, "login:alice", slow, 3);
  const Admission c3 = take(loop, *a->store, "login:alice", slow, 3);
  const Admission c4 = take(loop, *b->store, "login:alice", slow, 3);
  CHECK((c1.allowed && c2.allowed && c3.allowed && !c4.allowed));
  CHECK(c1.remaining == 2);
  CHECK(c2.remaining == 1);
  CHECK(c3.remaining == 0);
  CHECK(c4.retry_at_us > now_us() + 1'100'000'000);
  // An unlimited rate never asks Redis.
  CHECK(take(loop, *a->store, "site:y", Rate{}, 1).allowed);

  // Two connections for the site across both nodes.
  const auto l1 = acquire(loop, *a->store, "site:x", 2);
  const auto l2 = acquire(loop, *b->store, "site:x", 2);
  REQUIRE(l1);
  REQUIRE(l2);
  CHECK(!acquire(loop, *a->store, "site:x", 2));
  CHECK(!acquire(loop, *b->store, "site:x", 2));
  CHECK(!acquire(loop, *a->store, "site:z", 0));
  b->store->release("site:x", *l2);
  overrides(loop, *b->store);
  const auto l3 = acquire(loop, *a->store, "site:x", 2);
  REQUIRE(l3);
  // Held for longer than the lease lifetime: renewed, still counted.
  loop.run_for(1000);
  CHECK(!acquire(loop, *b->store, "site:x", 2));
  a->store->release("site:x", *l1);
  overrides(loop, *a->store);  // a round trip on a's connection: the ZREM is done
  CHECK(acquire(loop, *b->store, "site:x", 2));

  // The automation one node sets, the other reads; expired ones are dropped.
  const Override slowed{Rate{5, 60'000'000}, 1, false, now_us() + 60'000'000, "rule slow: 421 4.7.0 later"};
  a->store->put_override("gmail", slowed);
  a->store->put_override("yahoo", Override{Rate{}, 0, true, now_us() - 1, "old"});
  CHECK(overrides(loop, *a->store).size() == 1);  // and a's HSETs are done
  const auto seen = overrides(loop, *b->store);
  REQUIRE(seen.size() == 1);
  CHECK(seen.at("gmail") == slowed);

  // Nothing went to the fallbacks.
  CHECK(a->fallback.takes + b->fallback.takes + a->fallback.acquires + b->fallback.acquires +
            a->fallback.override_reads + b->fallback.override_reads == 0);
  close_node(loop, *a);
  close_node(loop, *b);
}

TEST_CASE("a lease its node stops renewing ends after the lease lifetime") {
  TempDir dir;
  RedisServer redis(dir.path);
  redis.start();
  Loop loop;
  const std::string url = "unix:" + redis.socket();
  auto a = make_node(loop, url, "node-a");
  auto c = make_node(loop, url, "node-c");
  both_up(loop, *a, *c);
  REQUIRE(acquire(loop, *c->store, "site:x", 1));
  // node-c goes away without releasing (a crash, as far as Redis knows).
  close_node(loop, *c);
  CHECK(!acquire(loop, *a->store, "site:x", 1));
  loop.run_for(300);
  CHECK(!acquire(loop, *a->store, "site:x", 1));
  loop.run_for(400);  // 700 ms > the 600 ms lifetime
  CHECK(acquire(loop, *a->store, "site:x", 1));
  close_node(loop, *a);
}

TEST_CASE("with Redis away every call is answered from the fallback with this node's share") {
  TempDir dir;
  RedisServer redis(dir.path);
  redis.start();
  Loop loop;
  StderrCapture log(dir.path / "stderr");
  const std::string url = "unix:" + redis.socket();
  auto a = make_node(loop, url, "node-a");
  auto b = make_node(loop, url, "node-b");
  both_up(loop, *a, *b);
  const auto redis_lease = acquire(loop, *a->store, "site:x", 4);
  REQUIRE(redis_lease);

  // Redis hangs: the call is answered once the 500 ms are up.
  redis.pause();
  const auto before = std::chrono::steady_clock::now();
  const Admission t = take(loop, *a->store, "site:x", Rate{10, 1'000'000}, 1);
  const auto waited = std::chrono::steady_clock::now() - before;
  CHECK(t.allowed);
  CHECK(waited >= std::chrono::milliseconds(400));
  CHECK(waited < std::chrono::milliseconds(1500));
  CHECK(a->fallback.takes == 1);
  CHECK(a->fallback.last_rate == Rate{5, 1'000'000});  // half of 10/s: two nodes were seen
  CHECK(a->store->describe().find("unreachable") != std::string::npos);
  CHECK(a->store->describe().find("1/2 share") != std::string::npos);

  // Redis dies with a call in flight on the other node.
  int answers = 0;
  b->store->take("site:x", Rate{10, 1'000'000}, 4, [&](Admission) { ++answers; });
  redis.stop();
  REQUIRE(loop.run_until([&] { return answers > 0; }));
  loop.run_for(50);
  CHECK(answers == 1);
  CHECK(b->fallback.takes == 1);
  CHECK(b->fallback.last_burst == 2);

  // Later calls go straight to the fallback, limits shared out.
  CHECK(take(loop, *a->store, "site:y", Rate{3, 60'000'000}, 1, true).allowed);
  CHECK(a->fallback.peeks == 1);
  CHECK(a->fallback.last_rate == Rate{1, 60'000'000});
  const auto l1 = acquire(loop, *a->store, "site:x", 4);
  REQUIRE(l1);
  CHECK(a->fallback.last_limit == 2);
  CHECK(acquire(loop, *a->store, "site:x", 4));
  CHECK(!acquire(loop, *a->store, "site:x", 4));
  CHECK(acquire(loop, *a->store, "site:q", 1));  // never below one
  CHECK(a->fallback.last_limit == 1);
  a->store->release("site:x", *l1);
  CHECK(a->fallback.releases == 1);
  a->store->release("site:x", *redis_lease);  // Redis's lease: not the fallback's business
  CHECK(a->fallback.releases == 1);
  const Override o{Rate{}, 0, true, now_us() + 60'000'000, "rule stop"};
  a->store->put_override("gmail", o);
  CHECK(overrides(loop, *a->store).at("gmail") == o);
  CHECK(a->fallback.override_reads == 1);

  // Redis is back on the same socket: both stores reconnect on their own.
  redis.start();
  REQUIRE(loop.run_until([&] { return a->store->reachable() && b->store->reachable(); }, 4000));
  CHECK(a->store->describe().find("unreachable") == std::string::npos);
  const int takes = a->fallback.takes;
  CHECK(take(loop, *a->store, "site:x", Rate{10, 1'000'000}, 1).allowed);
  CHECK(!take(loop, *b->store, "site:x", Rate{10, 1'000'000}, 1).allowed);  // shared again
  CHECK(a->fallback.takes == takes);
  CHECK(b->fallback.takes == 1);
  close_node(loop, *a);
  close_node(loop, *b);

  const std::string text = log.text();
  INFO(text);
  CHECK(count(text, "cluster: redis unreachable (") == 2);  // once per node
  CHECK(count(text, "this node falls back to its share (1/2)") == 2);
  CHECK(count(text, "reachable again") == 2);
}

TEST_CASE("Redis with a password: the right one works, a wrong one falls back and says so") {
  TempDir dir;
  RedisServer redis(dir.path, {"--requirepass", "s3cret-pw"});
  redis.start();
  Loop loop;
  StderrCapture log(dir.path / "stderr");
  const std::string url = "unix:" + redis.socket();
  auto good = make_node(loop, url, "node-good", "s3cret-pw");
  auto wrong = make_node(loop, url, "node-wrong", "wrong-pw");
  auto none = make_node(loop, url, "node-none");
  REQUIRE(loop.run_until([&] { return good->store->reachable(); }));
  REQUIRE(loop.run_until([&] {
    return wrong->store->describe().find("unreachable") != std::string::npos &&
           none->store->describe().find("unreachable") != std::string::npos;
  }));
  const Override o{Rate{1, 1'000'000}, 2, false, now_us() + 60'000'000, "rule x"};
  good->store->put_override("site", o);
  CHECK(overrides(loop, *good->store).at("site") == o);
  CHECK(good->fallback.override_reads == 0);

  CHECK(take(loop, *wrong->store, "site:x", Rate{10, 1'000'000}, 1).allowed);
  CHECK(wrong->fallback.takes == 1);
  CHECK(wrong->store->describe().find("AUTH refused") != std::string::npos);
  loop.run_for(1200);  // a retry or two, refused again: still one line
  CHECK(!wrong->store->reachable());
  close_node(loop, *good);
  close_node(loop, *wrong);
  close_node(loop, *none);

  const std::string text = log.text();
  INFO(text);
  CHECK(count(text, "cluster: redis unreachable (") == 2);
  CHECK(count(text, "error: cluster: redis unreachable (" + url + ": AUTH refused") == 1);
  CHECK(count(text, "NOAUTH") == 1);
  CHECK(text.find("wrong-pw") == std::string::npos);
  CHECK(text.find("s3cret-pw") == std::string::npos);
}
