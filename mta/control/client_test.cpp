// client_test.cpp — the blocking control client against small socket
// servers in a thread: request/response framing, several requests on one
// connection, large answers, and every way of not getting an answer (no
// socket, stale socket, permission denied, hang-up, timeout, a refusal sent
// before the request was read).
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>
#include <thread>

#include "mta/control/client.hpp"
#include "mta/control/format.hpp"

using namespace sluice::control;
using namespace std::chrono_literals;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sluice-ctl-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

int listen_at(const std::string& path, bool do_listen = true) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  if (do_listen) REQUIRE(::listen(fd, 8) == 0);
  return fd;
}

// Accepts one connection and hands it to `serve` in a thread.
struct OneShotServer {
  int lfd;
  std::thread thread;
  OneShotServer(const std::string& path, std::function<void(int)> serve) : lfd(listen_at(path)) {
    thread = std::thread([this, serve = std::move(serve)] {
      int c = ::accept(lfd, nullptr, nullptr);
      if (c >= 0) {
        serve(c);
        ::close(c);
      }
    });
  }
  ~OneShotServer() {
    thread.join();
    ::close(lfd);
  }
};

std::string read_line(int fd) {
  std::string line;
  char ch;
  while (::read(fd, &ch, 1) == 1 && ch != '\n') line += ch;
  return line;
}

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    s.remove_prefix(size_t(n));
  }
}

}  // namespace

TEST_CASE("client: no socket, a stale socket, a path too long") {
  TempDir dir;
  auto c = ControlClient::connect(dir.path + "/control.sock", 1s);
  REQUIRE_FALSE(c);
  CHECK(c.error().kind == ClientError::Kind::unreachable);
  CHECK(c.error().message == "no control socket at " + dir.path + "/control.sock: is sluiced running?");

  int fd = listen_at(dir.path + "/stale.sock", /*do_listen=*/false);
  ::close(fd);  // the file stays, nobody listens: what a crashed daemon leaves
  c = ControlClient::connect(dir.path + "/stale.sock", 1s);
  REQUIRE_FALSE(c);
  CHECK(c.error().message.find("sluiced is not running") != std::string::npos);

  c = ControlClient::connect(dir.path + "/" + std::string(120, 'x'), 1s);
  REQUIRE_FALSE(c);
  CHECK(c.error().message.find("longer than 107 bytes") != std::string::npos);

  std::ostringstream out, err;
  Request r;
  r.command = Command::status;
  CHECK(run_request(dir.path + "/control.sock", r, false, out, err) == kExitUnreachable);
  CHECK(err.str() == "sluicectl: no control socket at " + dir.path + "/control.sock: is sluiced running?\n");
  err.str("");
  CHECK(list_queue(dir.path + "/control.sock", false, out, err) == kExitUnreachable);
  CHECK(err.str().starts_with("mailq: no control socket at "));
  CHECK(out.str().empty());
}

TEST_CASE("client: permission denied on the socket file") {
  if (geteuid() != 0) {
    WARN("not root: cannot switch to another user to test this");
    return;
  }
  TempDir dir;
  REQUIRE(::chmod(dir.path.c_str(), 0755) == 0);
  const std::string path = dir.path + "/control.sock";
  int lfd = listen_at(path);
  REQUIRE(::chmod(path.c_str(), 0660) == 0);  // root:root 0660, as sluiced makes it
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(2);
    auto c = ControlClient::connect(path, 1s);
    bool ok = !c && c.error().kind == ClientError::Kind::unreachable &&
              c.error().message.find("permission denied") != std::string::npos;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  ::close(lfd);
}

TEST_CASE("client: several requests on one connection, answered in order") {
  TempDir dir;
  const std::string path = dir.path + "/c.sock";
  const std::string big(5 * 1024 * 1024, 'x');
  OneShotServer server(path, [&](int fd) {
    for (int i = 0; i < 3; ++i) {
      std::string line = read_line(fd);
      if (line.empty()) return;
      if (i == 2)
        write_all(fd, "{\"big\":\"" + big + "\"}\n");
      else
        write_all(fd, "{\"n\":" + std::to_string(i) + ",\"got\":" + line + "}\n");
    }
  });
  auto c = ControlClient::connect(path, 5s);
  REQUIRE(c);
  auto r1 = c->request(R"({"command":"status"})");
  REQUIRE(r1);
  CHECK(*r1 == R"({"n":0,"got":{"command":"status"}})");
  auto r2 = c->request(R"({"command":"queue.list"})");
  REQUIRE(r2);
  CHECK(*r2 == R"({"n":1,"got":{"command":"queue.list"}})");
  auto r3 = c->request(R"({"command":"queue.list"})");
  REQUIRE(r3);
  CHECK(r3->size() == big.size() + 10);
}

TEST_CASE("client: the daemon hangs up without answering") {
  TempDir dir;
  const std::string path = dir.path + "/c.sock";
  OneShotServer server(path, [](int fd) { read_line(fd); });
  auto c = ControlClient::connect(path, 5s);
  REQUIRE(c);
  auto r = c->request(R"({"command":"status"})");
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == ClientError::Kind::protocol);
  CHECK(r.error().message.find("closed the connection without answering") != std::string::npos);
}

TEST_CASE("client: no answer within the timeout") {
  TempDir dir;
  const std::string path = dir.path + "/c.sock";
  OneShotServer server(path, [](int fd) {
    read_line(fd);
    read_line(fd);  // waits until the client gives up and closes
  });
  auto start = std::chrono::steady_clock::now();
  {
    auto c = ControlClient::connect(path, 300ms);
    REQUIRE(c);
    auto r = c->request(R"({"command":"status"})");
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ClientError::Kind::unreachable);
    CHECK(r.error().message.find("no answer from sluiced within 0.3 s") != std::string::npos);
  }
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("client: a refusal sent before the request is read still arrives") {
  TempDir dir;
  const std::string path = dir.path + "/c.sock";
  const std::string refusal =
      R"({"ok":false,"error":"permission_denied","message":"uid 1000 may not use the control socket"})";
  OneShotServer server(path, [&](int fd) { write_all(fd, refusal + "\n"); });
  auto c = ControlClient::connect(path, 5s);
  REQUIRE(c);
  std::this_thread::sleep_for(100ms);  // the server has answered and closed by now
  auto r = c->request(R"({"command":"status"})");
  REQUIRE(r);
  CHECK(*r == refusal);
  std::ostringstream out, err;
  Request req;
  req.command = Command::status;
  CHECK(render(req, *r, false, out, err) == kExitUnreachable);
  CHECK(err.str() == "sluicectl: uid 1000 may not use the control socket\n");
}
