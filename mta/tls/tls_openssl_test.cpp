// tls_openssl_test.cpp — a real peer: `openssl s_client` against a server
// stream over loopback TCP (skipped without the binary).
#include "mta/tls/tls_test_util.hpp"

extern char** environ;

using namespace tls_test;

// ---------------------------------------------------------------------------
// A real peer: openssl s_client over loopback TCP.

namespace {

struct SClientRun {
  std::string output;        // s_client's stdout and stderr
  std::string server_plain;  // what the server stream received
  std::string server_error;
  std::string version, cipher;
};

SClientRun run_s_client(std::shared_ptr<TlsContext> sctx, const std::vector<std::string>& extra) {
  using Clock = std::chrono::steady_clock;
  ::signal(SIGPIPE, SIG_IGN);
  SClientRun run;

  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(lfd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(lfd, 1) == 0);
  socklen_t alen = sizeof addr;
  REQUIRE(::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen) == 0);
  int port = ntohs(addr.sin_port);

  int in_pipe[2], out_pipe[2];
  REQUIRE(::pipe2(in_pipe, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(out_pipe, O_CLOEXEC) == 0);
  std::vector<std::string> args = {"openssl", "s_client", "-connect", fmt::format("127.0.0.1:{}", port),
                                   "-servername", kHost, "-verify_hostname", kHost,
                                   "-CAfile", files().cert, "-verify_return_error", "-brief"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 2);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, "openssl", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  REQUIRE(rc == 0);
  REQUIRE(::write(in_pipe[1], "PING\r\n", 6) == 6);

  auto deadline = Clock::now() + std::chrono::seconds(15);
  auto ms_left = [&] {
    auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::max<long>(0, d));
  };

  pollfd lp{lfd, POLLIN, 0};
  int fd = -1;
  if (::poll(&lp, 1, ms_left()) == 1) fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  ::close(lfd);

  if (fd >= 0) {
    auto s = TlsStream::server(sctx);
    REQUIRE(s);
    TlsStream& tls = **s;
    bool replied = false;
    auto flush = [&] {
      std::string out;
      tls.take_ciphertext(out);
      std::string_view v = out;
      while (!v.empty()) {
        ssize_t n = ::send(fd, v.data(), v.size(), MSG_NOSIGNAL);
        if (n <= 0) return;
        v.remove_prefix(static_cast<size_t>(n));
      }
    };
    while (ms_left() > 0) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, ms_left()) != 1) break;
      char buf[65536];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        tls.feed_ciphertext(std::string_view(buf, static_cast<size_t>(n)));
      } else {
        tls.feed_eof();
      }
      auto r = tls.process(run.server_plain);
      if (r && r->handshake_completed) {
        run.version = tls.version();
        run.cipher = tls.cipher();
      }
      if (!r) run.server_error = r.error();
      if (!replied && run.server_plain.find("PING\r\n") != std::string::npos) {
        tls.write_plaintext("PONG\r\n");
        tls.close_notify();
        replied = true;
      }
      flush();
      if (!r || replied || n <= 0) break;
    }
    ::close(fd);
  }
  ::close(in_pipe[1]);

  for (;;) {
    pollfd p{out_pipe[0], POLLIN, 0};
    if (::poll(&p, 1, ms_left()) != 1) break;
    char buf[4096];
    ssize_t n = ::read(out_pipe[0], buf, sizeof buf);
    if (n <= 0) break;
    run.output.append(buf, static_cast<size_t>(n));
  }
  ::close(out_pipe[0]);
  if (ms_left() == 0) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return run;
}

}  // namespace

TEST_CASE("openssl s_client as a real peer", "[tls][openssl]") {
  if (::access("/usr/bin/openssl", X_OK) != 0) {
    WARN("no /usr/bin/openssl; skipped");
    return;
  }
  auto sctx = server_ctx();

  SECTION("TLS 1.3") {
    SClientRun r = run_s_client(sctx, {});
    INFO(r.output);
    CHECK(r.server_error.empty());
    CHECK(r.server_plain == "PING\r\n");
    CHECK(r.version == "TLSv1.3");
    CHECK(r.output.find("PONG") != std::string::npos);
    CHECK(r.output.find("Verification: OK") != std::string::npos);
    CHECK(r.output.find("Protocol version: TLSv1.3") != std::string::npos);
  }
  SECTION("TLS 1.2") {
    SClientRun r = run_s_client(sctx, {"-tls1_2"});
    INFO(r.output);
    CHECK(r.server_error.empty());
    CHECK(r.version == "TLSv1.2");
    CHECK(r.cipher.starts_with("ECDHE-RSA-"));
    CHECK(r.output.find("PONG") != std::string::npos);
  }
  SECTION("TLS 1.1 is refused") {
    SClientRun r = run_s_client(sctx, {"-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"});
    INFO(r.output);
    CHECK(r.server_error == "unsupported protocol");
    CHECK(r.output.find("PONG") == std::string::npos);
  }
}
