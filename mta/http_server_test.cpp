// http_server_test.cpp — HttpServer on a real libuv loop with real TCP
// sockets, for what the e2e test cannot reach through /healthz: handlers
// that answer later (pipelined requests still answered in order), a Reply
// called after its connection closed, called twice, or after the server is
// gone, and shutdown with a request still at its handler.
//
// The loop runs on the test's thread; the client runs on a second thread
// and only records what it saw; the test checks it after the loop ended.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <thread>

#include <fmt/format.h>

#include "mta/http_server.hpp"
#include "mta/uv/handle.hpp"
#include "mta/uv/test_loop.hpp"

using namespace sluice;
using namespace sluice::mta;

namespace {

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

struct Client {
  int fd = -1;
  std::string buf;
  explicit Client(uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~Client() { close(); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  void send(std::string_view s) { (void)::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }
  // "STATUS BODY" of the next response; "<eof>" or "<timeout>".
  std::string response() {
    for (;;) {
      if (auto end = buf.find("\r\n\r\n"); end != std::string::npos) {
        size_t len = 0;
        if (auto cl = buf.find("Content-Length: "); cl != std::string::npos && cl < end)
          len = std::stoul(buf.substr(cl + 16));
        if (buf.size() >= end + 4 + len) {
          std::string out = buf.substr(9, 3) + " " + buf.substr(end + 4, len);
          buf.erase(0, end + 4 + len);
          return out;
        }
      }
      char tmp[4096];
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n == 0) return "<eof>";
      if (n < 0) return "<timeout>";
      buf.append(tmp, size_t(n));
    }
  }
};

std::string get(std::string_view target) { return fmt::format("GET {} HTTP/1.1\r\nHost: t\r\n\r\n", target); }

}  // namespace

TEST_CASE("HttpServer: late answers, pipelining, stale replies, shutdown") {
  uv::testing::TestLoop loop;
  auto cfg = std::make_shared<conf::Config>();
  const uint16_t port = free_port();
  cfg->http.address = fmt::format("127.0.0.1:{}", port);
  cfg->http.endpoint = *net::Endpoint::parse(cfg->http.address);
  auto server = std::make_unique<HttpServer>(loop.get(), cfg);

  // /later answers on the next tick of a timer; /now at once; /twice twice.
  std::deque<std::pair<std::string, http::Reply>> pending;
  http::Reply kept;  // called after the server is gone
  server->route("GET", "/later", [&](const http::Request& r, const http::Peer&, http::Reply reply) {
    pending.emplace_back(r.target, std::move(reply));
  });
  server->route("GET", "/now", [](const http::Request&, const http::Peer& p, http::Reply reply) {
    CHECK(p.address == "127.0.0.1");
    reply(http::Response::text(200, "now"));
  });
  server->route("GET", "/twice", [&](const http::Request&, const http::Peer&, http::Reply reply) {
    kept = reply;
    reply(http::Response::text(200, "first"));
    reply(http::Response::text(200, "second"));
  });
  server->route("POST", "/now", [](const http::Request& r, const http::Peer&, http::Reply reply) {
    reply(http::Response::text(201, r.body));
  });
  REQUIRE(server->listen());
  REQUIRE(server->listening());

  std::atomic<bool> client_done{false};
  std::atomic<bool> shut{false};
  std::vector<std::string> seen;
  std::string after_shutdown;
  std::thread client([&] {
    {
      Client c(port);
      c.send(get("/later?1") + get("/now") + get("/later?2") + get("/twice") + get("/now"));
      for (int i = 0; i < 5; ++i) seen.push_back(c.response());
      c.send(get("/now?x"));
      seen.push_back(c.response());
      c.send("POST /now HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" + get("/nope") + get("/later?3"));
      for (int i = 0; i < 3; ++i) seen.push_back(c.response());
    }
    {
      Client c(port);  // asks, then goes away before the answer
      c.send(get("/later?gone"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    {
      // At shutdown a request at its handler is still answered, then closed.
      Client c(port);
      c.send(get("/later?slow"));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      client_done = true;  // the loop shuts down now
      after_shutdown = c.response();
      after_shutdown += " " + c.response();
    }
  });

  uv::Handle<uv_timer_t> tick;
  tick.init(loop.get(), uv_timer_init);
  struct Ctx {
    std::deque<std::pair<std::string, http::Reply>>* pending;
    std::atomic<bool>* client_done;
    std::atomic<bool>* shut;
    HttpServer* server;
    bool drained = false;
    int idle_ticks = 0;
  } ctx{&pending, &client_done, &shut, server.get()};
  tick->data = &ctx;
  uv_timer_start(tick.get(), [](uv_timer_t* t) {
    auto* c = static_cast<Ctx*>(t->data);
    if (*c->client_done && !*c->shut) {
      *c->shut = true;
      c->server->shutdown([c] { c->drained = true; });
      return;  // the waiting request is answered on a later tick
    }
    while (!c->pending->empty()) {
      auto [target, reply] = std::move(c->pending->front());
      c->pending->pop_front();
      if (target == "/later?gone") c->server->abort_all();  // its connection is gone first
      reply(http::Response::text(200, "later " + target));
    }
    if (c->drained && ++c->idle_ticks > 2) uv_timer_stop(t);
  }, 20, 20);
  // Runs until the server drained and the timer stopped; the listener's and
  // the timer's handles are still open, so run in steps.
  for (int i = 0; i < 1000 && !(ctx.drained && !uv_is_active(tick.handle())); ++i) {
    uv_run(loop.get(), UV_RUN_ONCE);
  }
  client.join();
  CHECK(ctx.drained);
  CHECK(server->connections() == 0);
  CHECK_FALSE(server->listening());
  server->close_handles();
  tick.close();
  uv_run(loop.get(), UV_RUN_DEFAULT);
  server.reset();
  kept(http::Response::text(200, "after the server"));  // nothing happens

  REQUIRE(seen.size() == 9);
  CHECK(seen[0] == "200 later /later?1");
  CHECK(seen[1] == "200 now");
  CHECK(seen[2] == "200 later /later?2");
  CHECK(seen[3] == "200 first");
  CHECK(seen[4] == "200 now");  // not "second"
  CHECK(seen[5] == "200 now");
  CHECK(seen[6] == "201 abc");
  CHECK(seen[7].starts_with("404 "));
  CHECK(seen[8] == "200 later /later?3");
  CHECK(after_shutdown == "200 later /later?slow <eof>");
}
