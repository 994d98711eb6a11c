// The webhook service on a real loop against a plain-HTTP receiver on
// 127.0.0.1 (a blocking server on a thread): events stored then POSTed in a
// signed batch, acked and not sent again; a failed POST retried with the same
// batch; a restart sending what was stored and not acked. The HTTPS path is
// covered end to end by test/e2e/test_webhooks.py.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mta/uv/test_loop.hpp"
#include "mta/webhooks.hpp"
#include "webhook/webhook.hpp"

using namespace sluice;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/webhooks_test.XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

// Answers each request with the next status of `statuses` (then 200).
class Receiver {
 public:
  struct Request {
    std::string head, body;
  };
  explicit Receiver(std::vector<int> statuses) : statuses_(std::move(statuses)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    REQUIRE(::listen(fd_, 8) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~Receiver() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::vector<Request> requests() {
    std::lock_guard lk(mu_);
    return requests_;
  }
  uint16_t port = 0;

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      std::string in;
      char buf[4096];
      size_t need = std::string::npos;
      size_t head_end = std::string::npos;
      while (need == std::string::npos || in.size() < need) {
        const ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        in.append(buf, size_t(n));
        if (head_end == std::string::npos && (head_end = in.find("\r\n\r\n")) != std::string::npos) {
          const size_t cl = in.find("Content-Length: ");
          need = head_end + 4 + std::stoul(in.substr(cl + 16));
        }
      }
      int status = 200;
      {
        std::lock_guard lk(mu_);
        requests_.push_back({in.substr(0, head_end), in.substr(head_end + 4)});
        if (next_ < statuses_.size()) status = statuses_[next_++];
      }
      const std::string reply = fmt::format("HTTP/1.1 {} X\r\nContent-Length: 2\r\n\r\nok", status);
      (void)!::write(c, reply.data(), reply.size());
      ::close(c);
    }
  }
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<Request> requests_;
  std::vector<int> statuses_;
  size_t next_ = 0;
};

template <class Pred>
bool run_until(uv::testing::TestLoop& loop, Pred pred, int ms = 5000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!pred() && std::chrono::steady_clock::now() < deadline) {
    uv_run(loop.get(), UV_RUN_NOWAIT);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

obs::Event event(obs::EventType type, std::string rcpt) {
  obs::Event e;
  e.type = type;
  e.time_us = 1764979200000000;
  e.id = "Q1";
  e.sender = "a@example.com";
  e.recipient = std::move(rcpt);
  e.response = {250, "2.0.0", "ok"};
  e.attempts = 1;
  return e;
}

struct Fixture {
  TempDir dir;
  conf::Config config;
  mta::WebhookService::Settings settings;
  explicit Fixture(uint16_t port) {
    config.spool_dir = dir.path.string();
    conf::Webhook w;
    w.url = fmt::format("http://127.0.0.1:{}/hook?k=1", port);
    w.events = {"delivered", "bounced"};
    w.index = 1;
    config.webhooks.push_back(w);
    settings.hooks.push_back({w.url, w.events, "s3cret"});
  }
  std::unique_ptr<mta::WebhookService> start(uv_loop_t* loop) {
    mta::WebhookService::Options o;
    o.retry_scale = 0.001;  // 10 ms, 30 ms, ...
    auto s = mta::WebhookService::create(loop, config, settings, nullptr, o);
    REQUIRE(s);
    return std::move(*s);
  }
};

void close(uv::testing::TestLoop& loop, std::unique_ptr<mta::WebhookService>& s) {
  bool done = false;
  s->close([&] { done = true; });
  REQUIRE(run_until(loop, [&] { return done; }));
  s.reset();
}

void check_signature(const Receiver::Request& r, std::string_view secret) {
  const size_t at = r.head.find("X-Sluice-Signature: t=");
  REQUIRE(at != std::string::npos);
  const std::string value = r.head.substr(at + 20, r.head.find("\r\n", at) - at - 20);
  const int64_t t = std::stoll(value.substr(2));
  CHECK(value == webhook::signature(secret, t, r.body));
}

}  // namespace

TEST_CASE("events are stored, POSTed in a signed batch, acked and not sent again") {
  Receiver rx({});
  Fixture f(rx.port);
  {
    uv::testing::TestLoop loop;
    auto s = f.start(loop.get());
    s->add(event(obs::EventType::delivery, "b@example.net"));
    s->add(event(obs::EventType::reception, "ignored@example.net"));  // "accepted" not asked for
    s->add(event(obs::EventType::bounce, "c@example.net"));
    s->add(event(obs::EventType::admin, "ignored@example.net"));
    REQUIRE(run_until(loop, [&] { return !rx.requests().empty() && s->waiting() == 0; }));
    auto reqs = rx.requests();
    // The first POST may hold the first event alone (sent while the rest was syncing).
    std::vector<nlohmann::json> events;
    for (const auto& r : reqs) {
      CHECK(r.head.starts_with("POST /hook?k=1 HTTP/1.1\r\n"));
      CHECK(r.head.find("Content-Type: application/json\r\n") != std::string::npos);
      CHECK(r.head.find("User-Agent: Sluice\r\n") != std::string::npos);
      check_signature(r, "s3cret");
      auto j = nlohmann::json::parse(r.body);
      REQUIRE(j.is_array());
      for (auto& e : j) events.push_back(e);
    }
    REQUIRE(run_until(loop, [&] {
      size_t n = 0;
      for (const auto& r : rx.requests()) n += nlohmann::json::parse(r.body).size();
      return n == 2;
    }));
    events.clear();
    for (const auto& r : rx.requests())
      for (auto& e : nlohmann::json::parse(r.body)) events.push_back(e);
    REQUIRE(events.size() == 2);
    CHECK(events[0]["event"] == "delivered");
    CHECK(events[0]["recipient"] == "b@example.net");
    CHECK(events[1]["event"] == "bounced");
    CHECK(events[0]["event_id"] != events[1]["event_id"]);
    close(loop, s);
  }
  const size_t sent = rx.requests().size();
  {
    // Started again: everything was acked, nothing is sent.
    uv::testing::TestLoop loop;
    auto s = f.start(loop.get());
    run_until(loop, [] { return false; }, 300);
    CHECK(rx.requests().size() == sent);
    close(loop, s);
  }
}

TEST_CASE("a failed POST sends the same batch again; what was not acked is sent after a restart") {
  Receiver rx({500, 503});
  Fixture f(rx.port);
  {
    uv::testing::TestLoop loop;
    auto s = f.start(loop.get());
    s->add(event(obs::EventType::delivery, "b@example.net"));
    REQUIRE(run_until(loop, [&] { return rx.requests().size() >= 3; }));
    auto reqs = rx.requests();
    CHECK(reqs[0].body == reqs[1].body);
    CHECK(reqs[1].body == reqs[2].body);
    run_until(loop, [] { return false; }, 100);
    CHECK(rx.requests().size() == 3);  // the third (200) acked it
    close(loop, s);
  }
  Receiver down({500, 500, 500, 500, 500, 500, 500, 500, 500, 500});
  Fixture g(down.port);
  std::string first_body;
  {
    uv::testing::TestLoop loop;
    auto s = g.start(loop.get());
    s->add(event(obs::EventType::bounce, "x@example.net"));
    REQUIRE(run_until(loop, [&] { return !down.requests().empty(); }));
    first_body = down.requests()[0].body;
    close(loop, s);  // stored, never taken
  }
  {
    uv::testing::TestLoop loop;
    auto s = g.start(loop.get());
    REQUIRE(run_until(loop, [&] { return down.requests().size() >= 2; }));
    CHECK(down.requests().back().body == first_body);  // the same event_id again
    close(loop, s);
  }
}
