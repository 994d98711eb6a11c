// fake_dns_test.hpp — what the Resolver tests share (resolver_test.cpp,
// tlsa_test.cpp): FakeDns, the one testdata/fake_dns.py server of the test
// binary (python3-dnslib, run by /usr/bin/python3), serving testdata/zone.txt
// on a free UDP/TCP port of 127.0.0.1 and logging every query it receives;
// Harness, a uv loop with a Resolver pointed at it and a fake clock, which
// checks at the end that every handle was closed; and small helpers. Only
// dns_test's sources include it.
#pragma once

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "dns/resolver.hpp"

extern char** environ;

namespace dns_test {

using namespace sluice;
using namespace std::chrono_literals;
using dns::AddrResult;
using dns::MxResult;
using dns::Resolver;
using dns::Status;


class FakeDns {
 public:
  static FakeDns& get() {
    static FakeDns server;
    return server;
  }

  uint16_t port() const { return port_; }

  // How many queries for (name, type) the server has received so far.
  int count(const std::string& name, const std::string& type) const {
    std::ifstream in(log_);
    std::string line, want = name + " " + type;
    int n = 0;
    while (std::getline(in, line)) n += line == want;
    return n;
  }

 private:
  FakeDns() {
    char log[] = "/tmp/sluice-fake-dns-XXXXXX";
    int fd = mkstemp(log);
    REQUIRE(fd >= 0);
    ::close(fd);
    log_ = log;
    int out[2], in[2];
    REQUIRE(pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(pipe2(in, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::string script = DNS_TESTDATA "/fake_dns.py", zone = DNS_TESTDATA "/zone.txt";
    const char* argv[] = {"/usr/bin/python3", script.c_str(), zone.c_str(), log_.c_str(), nullptr};
    int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    REQUIRE(rc == 0);
    stdin_ = in[1];
    // The first line of its output is the port.
    std::string line;
    char c;
    pollfd p{out[0], POLLIN, 0};
    while (line.find('\n') == std::string::npos && poll(&p, 1, 10000) == 1 && ::read(out[0], &c, 1) == 1)
      line += c;
    ::close(out[0]);
    INFO("fake_dns.py did not start (is python3-dnslib installed? apt-get install python3-dnslib)");
    REQUIRE(!line.empty());
    port_ = static_cast<uint16_t>(std::stoi(line));
  }
  ~FakeDns() {
    ::close(stdin_);  // the server exits at EOF
    for (int i = 0; i < 100; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = 0;
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    unlink(log_.c_str());
  }

  pid_t pid_ = 0;
  int stdin_ = -1;
  uint16_t port_ = 0;
  std::string log_;
};

inline net::Endpoint loopback(uint16_t port) {
  auto ep = net::Endpoint::parse("127.0.0.1:" + std::to_string(port));
  REQUIRE(ep);
  return *ep;
}

// A UDP port of 127.0.0.1 nobody listens on (bound, then released).
inline uint16_t dead_port() {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

inline std::vector<std::string> ips(const std::vector<net::IpAddress>& v) {
  std::vector<std::string> out;
  for (auto& a : v) out.push_back(a.str());
  return out;
}
inline std::vector<std::string> names(const MxResult& r) {
  std::vector<std::string> out;
  for (auto& h : r.hosts) out.push_back(h.name);
  return out;
}

// Runs the loop until pred() holds; false if the loop ran dry or 10 s passed.
inline bool run_until(uv_loop_t* loop, const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    if (uv_run(loop, UV_RUN_ONCE) == 0 && !pred()) return false;
  }
  return true;
}

// A loop, a Resolver pointed at the fake server, and a fake clock.
struct Harness {
  uv_loop_t loop{};
  std::unique_ptr<Resolver> resolver;
  std::chrono::milliseconds clock{1'000'000};

  explicit Harness(std::function<void(dns::Options&)> tweak = {}) {
    REQUIRE(uv_loop_init(&loop) == 0);
    dns::Options o;
    o.servers = {loopback(FakeDns::get().port())};
    o.timeout = 300ms;
    o.tries = 1;
    o.clock = [this] { return clock; };
    if (tweak) tweak(o);
    auto r = Resolver::create(&loop, std::move(o));
    INFO((r ? "" : r.error()));
    REQUIRE(r);
    resolver = std::move(*r);
  }

  ~Harness() {
    if (resolver) {
      bool done = false;
      resolver->close([&] { done = true; });
      CHECK(run_until(&loop, [&] { return done; }));
      resolver.reset();
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);  // every handle was closed
  }

  MxResult mx(std::string_view domain) {
    std::optional<MxResult> out;
    resolver->resolve_mx(domain, [&](MxResult r) { out = std::move(r); });
    REQUIRE(run_until(&loop, [&] { return out.has_value(); }));
    return *out;
  }

  dns::TxtResult txt(std::string_view name) {
    std::optional<dns::TxtResult> out;
    resolver->resolve_txt(name, [&](dns::TxtResult r) { out = std::move(r); });
    REQUIRE(run_until(&loop, [&] { return out.has_value(); }));
    return *out;
  }

  dns::PtrResult ptr(std::string_view address) {
    std::optional<dns::PtrResult> out;
    resolver->resolve_ptr(*net::IpAddress::parse(address), [&](dns::PtrResult r) { out = std::move(r); });
    REQUIRE(run_until(&loop, [&] { return out.has_value(); }));
    return *out;
  }

  AddrResult addrs(std::string_view host) {
    std::optional<AddrResult> out;
    resolver->resolve_addresses(host, [&](AddrResult r) { out = std::move(r); });
    REQUIRE(run_until(&loop, [&] { return out.has_value(); }));
    return *out;
  }
};

}  // namespace dns_test
