// control_server_test.cpp — the control socket on a real libuv loop with a
// real Unix socket: requests and responses, several per connection and
// pipelined, malformed and oversize requests, the client limit, the idle
// timeout, output back-pressure, who may connect (SO_PEERCRED, with a forked
// child that becomes another user), stale and live sockets at listen(), and
// close() removing the socket.
//
// The loop runs on the test's thread; clients run on a second thread and only
// record what they saw (Catch2 assertions are not thread-safe); the test
// checks it after the loop has ended.
#include <catch2/catch.hpp>

#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <thread>

#include "mta/control/client.hpp"
#include "mta/control/format.hpp"
#include "mta/control/memory_admin.hpp"
#include "mta/control_server.hpp"

using namespace sluice;
using namespace sluice::mta;
using namespace sluice::control::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sluice-ctlsrv-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// A plain blocking client socket, for what ControlClient does not do
// (pipelining, half-close, raw bytes).
struct RawConn {
  int fd = -1;
  std::string buf;
  explicit RawConn(const std::string& path) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~RawConn() {
    if (fd >= 0) ::close(fd);
  }
  bool send(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      s.remove_prefix(size_t(n));
    }
    return true;
  }
  // The next line; "<eof>" when the server closed, "<timeout>" after 5 s.
  std::string line() {
    for (;;) {
      if (auto nl = buf.find('\n'); nl != std::string::npos) {
        std::string l = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        return l;
      }
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return "<timeout>";
      char chunk[65536];
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return "<eof>";
      buf.append(chunk, size_t(n));
    }
  }
};

std::string error_of(const std::string& line) {
  auto j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.contains("error")) return "";
  return j["error"].get<std::string>();
}

struct Harness {
  TempDir dir;
  std::string path;
  uv_loop_t loop;
  MemoryAdmin admin;
  std::unique_ptr<ControlServer> server;
  bool closed = false;

  explicit Harness(ControlOptions o = {}) : path(dir.path + "/run/sluice/control.sock") {
    uv_loop_init(&loop);
    server = std::make_unique<ControlServer>(&loop, path, admin, o);
    admin.add(make_envelope(make_id(kT0, 1), kT0, "a@example.org", {"x@example.net"}, 100), "A\r\n");
    admin.add(make_envelope(make_id(kT0, 2), kT0, "b@example.org", {"y@example.net"}, 200), "B\r\n");
  }
  ~Harness() {
    server.reset();
    CHECK(uv_loop_close(&loop) == 0);
  }

  // Runs `clients` on a thread while the loop runs here; then closes the
  // server and lets the loop run dry.
  void run(std::function<void()> clients) {
    uv_async_t async;
    async.data = this;
    uv_async_init(&loop, &async, [](uv_async_t* a) {
      auto* h = static_cast<Harness*>(a->data);
      h->server->close([h] { h->closed = true; });
      uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
    });
    std::thread t([&] {
      clients();
      uv_async_send(&async);
    });
    uv_run(&loop, UV_RUN_DEFAULT);
    t.join();
    CHECK(closed);
  }
};

}  // namespace

TEST_CASE("control server: requests and responses on a real socket") {
  Harness h;
  REQUIRE(h.server->listen());
  struct stat st {};
  REQUIRE(::stat(h.path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0660);
  REQUIRE(::stat((h.dir.path + "/run/sluice").c_str(), &st) == 0);  // made by listen()
  CHECK((st.st_mode & 0777) == 0750);

  const std::string a = make_id(kT0, 1), b = make_id(kT0, 2);
  std::vector<std::string> got;
  h.run([&] {
    auto c = control::ControlClient::connect(h.path, 5s);
    if (!c) {
      got.push_back("connect: " + c.error().message);
      return;
    }
    for (std::string req : std::vector<std::string>{R"({"command":"status"})", R"({"command":"queue.list"})", "{oops",
                            R"({"command":"queue.hold","ids":[")" + a + R"("]})",
                            R"({"command":"queue.hold","ids":["00000000000000FF"]})",
                            R"({"command":"queue.list","state":"held"})"}) {
      auto r = c->request(req);
      got.push_back(r ? *r : "error: " + r.error().message);
    }
  });
  REQUIRE(got.size() == 6);
  auto status = json::parse(got[0]);
  CHECK(status["ok"] == true);
  CHECK(status["version"] == "0.1.0-test");
  CHECK(status["queue"]["messages"] == 2);
  auto list = json::parse(got[1]);
  REQUIRE(list["messages"].size() == 2);
  CHECK(list["messages"][0]["id"] == a);
  CHECK(list["messages"][1]["id"] == b);
  CHECK(error_of(got[2]) == "bad_json");  // the connection goes on after a bad request
  CHECK(json::parse(got[3])["ids"] == json({a}));
  CHECK(error_of(got[4]) == "unknown_id");
  auto held = json::parse(got[5]);
  REQUIRE(held["messages"].size() == 1);
  CHECK(held["messages"][0]["id"] == a);
  CHECK(h.admin.find(a)->held);
  CHECK_FALSE(h.admin.find(b)->held);

  // close() removed the socket file.
  CHECK_FALSE(std::filesystem::exists(h.path));
}

TEST_CASE("control server: pipelined requests, a last line without newline, half-close") {
  Harness h;
  REQUIRE(h.server->listen());
  std::vector<std::string> got;
  h.run([&] {
    RawConn c(h.path);
    c.send("{\"command\":\"status\"}\n\n  \r\n{\"command\":\"queue.list\"}\r\n{\"command\":\"queue.flush\"}");
    ::shutdown(c.fd, SHUT_WR);
    for (int i = 0; i < 4; ++i) got.push_back(c.line());
  });
  REQUIRE(got.size() == 4);
  CHECK(json::parse(got[0])["version"] == "0.1.0-test");  // blank lines are skipped
  CHECK(json::parse(got[1])["messages"].size() == 2);
  CHECK(json::parse(got[2])["action"] == "flushed");
  CHECK(got[3] == "<eof>");
}

TEST_CASE("control server: an oversize request line is refused and the connection closed") {
  ControlOptions o;
  o.max_line = 1000;
  Harness h(o);
  REQUIRE(h.server->listen());
  std::vector<std::string> got;
  h.run([&] {
    {
      RawConn c(h.path);  // no newline ever comes
      c.send(std::string(5000, 'x'));
      got.push_back(c.line());
      got.push_back(c.line());
    }
    {
      RawConn c(h.path);  // a whole line, too long
      c.send(R"({"command":"status","pad":")" + std::string(1200, 'p') + "\"}\n{\"command\":\"status\"}\n");
      got.push_back(c.line());
      got.push_back(c.line());
    }
    {
      RawConn c(h.path);  // exactly at the limit is fine
      std::string req = R"({"command":"queue.show","id":")";
      req += std::string(1000 - req.size() - 2, 'A') + "\"}";
      c.send(req + "\n");
      got.push_back(c.line());
    }
  });
  REQUIRE(got.size() == 5);
  CHECK(error_of(got[0]) == "line_too_long");
  CHECK(got[1] == "<eof>");
  CHECK(error_of(got[2]) == "line_too_long");
  CHECK(got[3] == "<eof>");
  CHECK(error_of(got[4]) == "unknown_id");
}

TEST_CASE("control server: beyond max_clients a client gets busy") {
  ControlOptions o;
  o.max_clients = 2;
  Harness h(o);
  REQUIRE(h.server->listen());
  std::vector<std::string> got;
  h.run([&] {
    RawConn c1(h.path), c2(h.path);
    c1.send("{\"command\":\"status\"}\n");
    c2.send("{\"command\":\"status\"}\n");
    got.push_back(c1.line());  // both accepted and counted by now
    got.push_back(c2.line());
    RawConn c3(h.path);
    got.push_back(c3.line());
    got.push_back(c3.line());
    c2.send("{\"command\":\"status\"}\n");  // the first two still work
    got.push_back(c2.line());
  });
  REQUIRE(got.size() == 5);
  CHECK(json::parse(got[0])["ok"] == true);
  CHECK(json::parse(got[1])["ok"] == true);
  CHECK(error_of(got[2]) == "busy");
  CHECK(got[3] == "<eof>");
  CHECK(json::parse(got[4])["ok"] == true);
}

TEST_CASE("control server: an idle client is closed") {
  ControlOptions o;
  o.idle_timeout = 200ms;
  Harness h(o);
  REQUIRE(h.server->listen());
  std::string first, after_idle;
  h.run([&] {
    RawConn c(h.path);
    c.send("{\"command\":\"status\"}\n");
    first = c.line();
    after_idle = c.line();  // nothing sent: the server hangs up after 200 ms
  });
  CHECK(json::parse(first)["ok"] == true);
  CHECK(after_idle == "<eof>");
}

TEST_CASE("control server: a client that does not read holds up only itself") {
  ControlOptions o;
  o.max_unsent = 1;  // every response backs the client up
  Harness h(o);
  for (unsigned i = 3; i < 500; ++i)
    h.admin.add(make_envelope(make_id(kT0 + i, i), kT0 + i, "s@example.org", {"r@example.net"}, 10), "");
  REQUIRE(h.server->listen());
  std::vector<std::string> got;
  std::string other;
  h.run([&] {
    RawConn slow(h.path);
    std::string many;
    for (int i = 0; i < 40; ++i) many += "{\"command\":\"queue.list\"}\n";
    slow.send(many);
    // Meanwhile another client is served at once.
    RawConn quick(h.path);
    quick.send("{\"command\":\"status\"}\n");
    other = quick.line();
    for (int i = 0; i < 40; ++i) got.push_back(slow.line());
  });
  CHECK(json::parse(other)["ok"] == true);
  REQUIRE(got.size() == 40);
  for (const auto& l : got) {
    auto j = json::parse(l, nullptr, false);
    REQUIRE_FALSE(j.is_discarded());
    CHECK(j["messages"].size() == 499);
  }
}

TEST_CASE("control server: a list of 10,000 messages through the socket") {
  Harness h;
  for (unsigned i = 3; i < 10'003; ++i) {
    int64_t t = kT0 - 20'000'000 + int64_t(i) * 1000;
    h.admin.add(make_envelope(make_id(t, i), t, "sender@example.org",
                              {"rcpt" + std::to_string(i) + "@example.net"}, 2048), "");
  }
  REQUIRE(h.server->listen());
  std::string response, error;
  std::chrono::milliseconds took{0};
  h.run([&] {
    auto start = std::chrono::steady_clock::now();
    auto c = control::ControlClient::connect(h.path, 30s);
    if (!c) {
      error = c.error().message;
      return;
    }
    auto r = c->request(R"({"command":"queue.list"})");
    if (r) response = std::move(*r);
    else error = r.error().message;
    took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  });
  REQUIRE(error.empty());
  WARN("queue.list of 10,002 messages over the socket: " << took.count() << " ms, "
       << response.size() << " bytes");
  auto j = json::parse(response);
  CHECK(j["messages"].size() == 10'002);
  CHECK(j["total"]["messages"] == 10'002);
  auto start = std::chrono::steady_clock::now();
  std::string table = control::format_list(j);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  WARN("rendering it as a table: " << ms.count() << " ms");
  CHECK(table.ends_with("-- 10002 messages, 20001 KB: 10002 queued, 0 deferred, 0 held\n"));
}

TEST_CASE("control server: listen() and stale, live and foreign files") {
  SECTION("a stale socket left by a crash is replaced") {
    Harness h;
    std::filesystem::create_directories(h.dir.path + "/run/sluice");
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", h.path.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    ::close(fd);
    REQUIRE(std::filesystem::exists(h.path));
    auto ok = h.server->listen();
    CHECK(ok);
    std::string got;
    h.run([&] {
      RawConn c(h.path);
      c.send("{\"command\":\"status\"}\n");
      got = c.line();
    });
    CHECK(json::parse(got)["ok"] == true);
  }
  SECTION("a live socket means another daemon: refuse, and leave it alone") {
    Harness h;
    REQUIRE(h.server->listen());
    MemoryAdmin other_admin;
    auto second = std::make_unique<ControlServer>(&h.loop, h.path, other_admin);
    auto ok = second->listen();
    REQUIRE_FALSE(ok);
    CHECK(ok.error().find("another sluiced is running") != std::string::npos);
    bool second_closed = false;
    second->close([&] { second_closed = true; });
    uv_run(&h.loop, UV_RUN_NOWAIT);
    CHECK(second_closed);
    second.reset();
    CHECK(std::filesystem::exists(h.path));  // the second did not remove the first's socket
    std::string got;
    h.run([&] {
      RawConn c(h.path);
      c.send("{\"command\":\"status\"}\n");
      got = c.line();
    });
    CHECK(json::parse(got)["ok"] == true);
  }
  SECTION("a file that is not a socket is never removed") {
    Harness h;
    std::filesystem::create_directories(h.dir.path + "/run/sluice");
    { std::FILE* f = std::fopen(h.path.c_str(), "w"); std::fputs("precious", f); std::fclose(f); }
    auto ok = h.server->listen();
    REQUIRE_FALSE(ok);
    CHECK(ok.error().find("not a socket") != std::string::npos);
    h.run([] {});
    CHECK(std::filesystem::file_size(h.path) == 8);
  }
  SECTION("a path too long for a Unix socket") {
    MemoryAdmin admin;
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
      ControlServer s(&loop, "/tmp/" + std::string(120, 'x'), admin);
      auto ok = s.listen();
      REQUIRE_FALSE(ok);
      CHECK(ok.error().find("longer than 107 bytes") != std::string::npos);
      bool done = false;
      s.close([&] { done = true; });
      CHECK(done);
    }
    CHECK(uv_loop_close(&loop) == 0);
  }
}

TEST_CASE("control server: who may connect") {
  SECTION("the rule") {
    const gid_t sock = 50;
    CHECK(peer_allowed({1, 0, 0}, 1000, sock, {}));           // root
    CHECK(peer_allowed({1, 1000, 1000}, 1000, sock, {}));     // the daemon's own uid
    CHECK(peer_allowed({1, 2000, 50}, 1000, sock, {}));       // primary group
    CHECK(peer_allowed({1, 2000, 2000}, 1000, sock, {2000, 7, 50}));  // supplementary
    CHECK_FALSE(peer_allowed({1, 2000, 2000}, 1000, sock, {2000, 7}));
    CHECK_FALSE(peer_allowed({1, 2000, gid_t(-1)}, 1000, gid_t(-1), {gid_t(-1)}));
  }
  SECTION("groups from the user database") {
    auto root = groups_of_user(0);
    REQUIRE_FALSE(root.empty());
    CHECK(root[0] == 0);
    CHECK(groups_of_user(4'000'000'000u).empty());  // no such user
  }
  SECTION("another user is refused with one response; the group is let in") {
    if (geteuid() != 0) {
      WARN("not root: cannot switch to another user to test this");
      return;
    }
    // As root the socket is root:root; chown it as the daemon would to a
    // group, here nogroup (65534), through the options.
    for (bool in_group : {false, true}) {
      INFO("in_group=" << in_group);
      ControlOptions o;
      o.owner = 0;
      o.group = in_group ? 65534 : 0;
      Harness h(o);
      REQUIRE(h.server->listen());
      REQUIRE(::chmod(h.dir.path.c_str(), 0755) == 0);
      REQUIRE(::chmod((h.dir.path + "/run").c_str(), 0755) == 0);
      REQUIRE(::chmod((h.dir.path + "/run/sluice").c_str(), 0755) == 0);
      REQUIRE(::chmod(h.path.c_str(), 0666) == 0);  // past the file mode: SO_PEERCRED decides
      std::string got;
      h.run([&] {
        int p[2];
        if (::pipe(p) != 0) return;
        pid_t pid = ::fork();
        if (pid == 0) {
          ::close(p[0]);
          if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(2);
          RawConn c(h.path);
          c.send("{\"command\":\"queue.delete\",\"all\":true}\n");
          std::string l = c.line();
          if (l.find("\"ok\":false") != std::string::npos) l += "\n" + c.line();  // then closed?
          (void)!::write(p[1], l.data(), l.size());
          _exit(0);
        }
        ::close(p[1]);
        char b[4096];
        ssize_t n;
        while ((n = ::read(p[0], b, sizeof b)) > 0) got.append(b, size_t(n));
        ::close(p[0]);
        ::waitpid(pid, nullptr, 0);
      });
      INFO(got);
      if (in_group) {
        CHECK(got.starts_with(R"({"ok":true,"action":"deleted","count":2)"));
        CHECK(h.admin.ids().empty());
      } else {
        CHECK(error_of(got.substr(0, got.find('\n'))) == "permission_denied");
        CHECK(got.ends_with("\n<eof>"));
        CHECK(h.admin.ids().size() == 2);  // nothing was touched
      }
    }
  }
}
