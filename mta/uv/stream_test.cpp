// stream_test.cpp — uv::StreamConnection over real sockets (a socketpair
// through uv_pipe_open, and TCP on loopback): one uv_write per event, write
// counting, EOF, closing with a write in flight (the object outlives it),
// an extra handle closed with the connection, connect(), TLS pumped both
// ways between two connections, and write_bulk() (in order with write(),
// encrypted at once under TLS).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

#include "mta/tls/tls.hpp"
#include "mta/uv/stream.hpp"
#include "mta/uv/test_loop.hpp"

using namespace sluice;
using namespace sluice::uv;
using sluice::uv::testing::TestLoop;

namespace {

// What a Peer saw; outlives it.
struct Record {
  std::string received;      // plaintext
  int ends = 0;
  int end_status = 0;
  int written = 0;           // on_written() calls
  int uv_writes = 0;         // flushes that started a uv_write
  int max_in_flight = 0;
  bool handshake = false;
  bool destroyed = false;
};

// A connection whose behaviour each test sets with small functions.
class Peer final : public StreamConnection {
 public:
  Peer(uv_loop_t* loop, Kind kind, std::span<char> buf, Record& rec)
      : StreamConnection(loop, kind, buf), rec_(rec) {}

  void open_fd(int fd) { REQUIRE(uv_pipe_open(reinterpret_cast<uv_pipe_t*>(stream()), fd) == 0); }
  using StreamConnection::connect;
  using StreamConnection::flush;
  using StreamConnection::read;
  using StreamConnection::start_tls;
  using StreamConnection::tls_pump;
  using StreamConnection::write;
  using StreamConnection::write_bulk;

  std::function<void(Peer&, std::string_view plain)> on_plain;
  std::function<void(Peer&)> on_handshake;
  std::function<void(Peer&)> when_written;
  std::function<void(Peer&, int)> when_connected;
  Handle<uv_timer_t> extra;

  // A client's ClientHello; it goes out at the end of the event.
  void hello() {
    std::string plain;
    REQUIRE(tls_pump({}, plain));
  }

 private:
  ~Peer() override { rec_.destroyed = true; }

  void on_bytes(std::string_view bytes) override {
    if (!tls()) {
      deliver(bytes);
      return;
    }
    plain_.clear();
    auto ev = tls_pump(bytes, plain_);
    REQUIRE(ev);
    if (ev->handshake_completed) {
      rec_.handshake = true;
      if (on_handshake) on_handshake(*this);
    }
    if (!plain_.empty()) deliver(plain_);
  }
  void deliver(std::string_view plain) {
    rec_.received.append(plain);
    if (on_plain) on_plain(*this, plain);
  }
  void on_end(int status) override {
    ++rec_.ends;
    rec_.end_status = status;
  }
  void on_written() override {
    ++rec_.written;
    if (when_written) when_written(*this);
  }
  void on_connect(int status) override {
    if (when_connected) when_connected(*this, status);
  }
  void on_closing() override { close_handle(extra); }
  void after_event() override {
    const int before = writes_in_flight();
    flush();
    if (writes_in_flight() > before) ++rec_.uv_writes;
    rec_.max_in_flight = std::max(rec_.max_in_flight, writes_in_flight());
  }

  Record& rec_;
  std::string plain_;
};

struct SocketPair {
  int fd[2];
  SocketPair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) == 0); }
  ~SocketPair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  int take(int i) { return std::exchange(fd[i], -1); }
};

std::string read_all(int fd) {
  std::string s;
  char b[4096];
  ssize_t n;
  while ((n = ::read(fd, b, sizeof b)) > 0) s.append(b, size_t(n));
  return s;
}

char g_buffer[64 * 1024];

// Two peers over a socket pair with the two sides of one TLS handshake
// ready to start (a throwaway self-signed certificate for "mail.example").
struct TlsPair {
  SocketPair sp;
  Record srec, crec;
  Peer* srv = nullptr;
  Peer* cl = nullptr;
  std::unique_ptr<tls::TlsStream> sstream, cstream;

  explicit TlsPair(uv_loop_t* loop) {
    char tmpl[] = "/tmp/sluice-uvtls-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    const std::string dir = tmpl;
    REQUIRE(tls::make_self_signed(dir + "/cert.pem", dir + "/key.pem", "mail.example"));
    auto sctx = tls::TlsContext::server(dir + "/cert.pem", dir + "/key.pem");
    auto cctx = tls::TlsContext::client(false);
    std::filesystem::remove_all(dir);
    REQUIRE(sctx);
    REQUIRE(cctx);
    auto s = tls::TlsStream::server(*sctx);
    auto c = tls::TlsStream::client(*cctx, "mail.example");
    REQUIRE(s);
    REQUIRE(c);
    sstream = std::move(*s);
    cstream = std::move(*c);
    static char server_buf[16 * 1024], client_buf[16 * 1024];
    srv = new Peer(loop, StreamConnection::Kind::pipe, server_buf, srec);
    cl = new Peer(loop, StreamConnection::Kind::pipe, client_buf, crec);
    srv->open_fd(sp.take(0));
    cl->open_fd(sp.take(1));
  }
};

}  // namespace

TEST_CASE("uv::StreamConnection: output of one event leaves in one uv_write", "[uv][stream]") {
  TestLoop loop;
  SocketPair sp;
  Record rec;
  auto* p = new Peer(loop.get(), StreamConnection::Kind::pipe, g_buffer, rec);
  p->open_fd(sp.take(0));
  p->on_plain = [](Peer& self, std::string_view) {
    self.write("250-one\r\n");  // three pieces in one event
    self.write("250-two\r\n");
    self.write("250 three\r\n");
  };
  p->when_written = [](Peer& self) { self.begin_close(); };
  p->read(true);
  REQUIRE(::write(sp.fd[1], "EHLO x\r\n", 8) == 8);
  loop.run();
  CHECK(rec.destroyed);
  CHECK(rec.received == "EHLO x\r\n");
  CHECK(rec.uv_writes == 1);
  CHECK(rec.max_in_flight == 1);
  CHECK(rec.written == 1);
  CHECK(read_all(sp.fd[1]) == "250-one\r\n250-two\r\n250 three\r\n");
}

TEST_CASE("uv::StreamConnection: EOF ends reading and is reported once", "[uv][stream]") {
  TestLoop loop;
  SocketPair sp;
  Record rec;
  auto* p = new Peer(loop.get(), StreamConnection::Kind::pipe, g_buffer, rec);
  p->open_fd(sp.take(0));
  p->read(true);
  REQUIRE(::write(sp.fd[1], "last words", 10) == 10);
  ::shutdown(sp.fd[1], SHUT_WR);
  while (rec.ends == 0) loop.once();
  CHECK(rec.received == "last words");
  CHECK(rec.end_status == UV_EOF);
  CHECK_FALSE(p->closing());
  p->begin_close();
  loop.run();
  CHECK(rec.destroyed);
}

TEST_CASE("uv::StreamConnection: closed with a write in flight, it lives until the write is cancelled",
          "[uv][stream]") {
  TestLoop loop;
  SocketPair sp;  // the other end never reads
  Record rec;
  auto* p = new Peer(loop.get(), StreamConnection::Kind::pipe, g_buffer, rec);
  p->open_fd(sp.take(0));
  REQUIRE(p->extra.init(loop.get(), uv_timer_init) == 0);  // one more handle to wait for
  p->write(std::string(16 << 20, 'x'));
  p->flush();
  CHECK(p->writes_in_flight() == 1);
  CHECK(p->unsent() > 0);
  p->begin_close();
  CHECK(p->closing());
  CHECK_FALSE(rec.destroyed);  // never inside begin_close
  loop.once();
  loop.run();
  CHECK(rec.destroyed);
  CHECK(rec.written == 0);  // a cancelled write reaches no hook
}

TEST_CASE("uv::StreamConnection: connect() over TCP and a reply", "[uv][stream]") {
  TestLoop loop;
  Record client_rec, server_rec;
  Handle<uv_tcp_t> listener;
  REQUIRE(listener.init(loop.get(), uv_tcp_init) == 0);
  sockaddr_in addr{};
  REQUIRE(uv_ip4_addr("127.0.0.1", 0, &addr) == 0);
  REQUIRE(uv_tcp_bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), 0) == 0);
  int len = sizeof addr;
  REQUIRE(uv_tcp_getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  struct Ctx {
    uv_loop_t* loop;
    Record* rec;
  } ctx{loop.get(), &server_rec};
  listener->data = &ctx;
  REQUIRE(uv_listen(listener.stream(), 4, [](uv_stream_t* s, int status) {
    REQUIRE(status == 0);
    auto* c = static_cast<Ctx*>(s->data);
    auto* srv = new Peer(c->loop, StreamConnection::Kind::tcp, g_buffer, *c->rec);
    REQUIRE(uv_accept(s, srv->stream()) == 0);
    srv->on_plain = [](Peer& self, std::string_view) { self.write("pong\n"); };
    srv->when_written = [](Peer& self) { self.begin_close(); };
    srv->read(true);
  }) == 0);

  int connect_status = 1;
  auto* cl = new Peer(loop.get(), StreamConnection::Kind::tcp, g_buffer, client_rec);
  cl->when_connected = [&](Peer& self, int status) {
    connect_status = status;
    self.write("ping\n");
    self.read(true);
  };
  cl->on_plain = [&](Peer& self, std::string_view) { self.begin_close(); };
  REQUIRE(cl->connect(reinterpret_cast<const sockaddr*>(&addr)) == 0);
  while (!(client_rec.destroyed && server_rec.destroyed)) loop.once();
  listener.close();
  CHECK(connect_status == 0);
  CHECK(server_rec.received == "ping\n");
  CHECK(client_rec.received == "pong\n");
}

TEST_CASE("uv::StreamConnection: TLS pumped between two connections", "[uv][stream][tls]") {
  TestLoop loop;
  TlsPair t(loop.get());
  Peer* srv = t.srv;
  Peer* cl = t.cl;
  Record& srec = t.srec;
  Record& crec = t.crec;
  srv->start_tls(std::move(t.sstream));
  srv->write("220 held until the handshake is done\r\n");  // encrypted once it is
  srv->flush();
  CHECK(srv->writes_in_flight() == 0);  // nothing to send before the ClientHello
  srv->on_plain = [](Peer& self, std::string_view line) {
    if (line == "QUIT\r\n") self.write("221 bye\r\n");
  };
  cl->on_plain = [](Peer& self, std::string_view plain) {
    if (plain.starts_with("220 ")) self.write("QUIT\r\n");
    if (plain.starts_with("221 ")) self.begin_close();
  };
  srv->read(true);
  cl->read(true);
  cl->start_tls(std::move(t.cstream));
  cl->hello();
  cl->flush();
  CHECK(cl->writes_in_flight() == 1);
  while (!crec.destroyed) loop.once();
  while (srec.ends == 0) loop.once();  // the client went away
  srv->begin_close();
  loop.run();
  CHECK(srec.handshake);
  CHECK(crec.handshake);
  CHECK(crec.received == "220 held until the handshake is done\r\n221 bye\r\n");
  CHECK(srec.received == "QUIT\r\n");
  CHECK(srec.destroyed);
}

TEST_CASE("uv::StreamConnection: write_bulk() without TLS is gathered like write()", "[uv][stream]") {
  TestLoop loop;
  SocketPair sp;
  Record rec;
  auto* p = new Peer(loop.get(), StreamConnection::Kind::pipe, g_buffer, rec);
  p->open_fd(sp.take(0));
  p->on_plain = [](Peer& self, std::string_view) {
    self.write("354 go\r\n");
    self.write_bulk("line one\r\n");
    self.write(".\r\n");
  };
  p->when_written = [](Peer& self) { self.begin_close(); };
  p->read(true);
  REQUIRE(::write(sp.fd[1], "x", 1) == 1);
  loop.run();
  CHECK(rec.destroyed);
  CHECK(rec.uv_writes == 1);
  CHECK(read_all(sp.fd[1]) == "354 go\r\nline one\r\n.\r\n");
}

TEST_CASE("uv::StreamConnection: write_bulk() under TLS is encrypted at once, in order with write()",
          "[uv][stream][tls]") {
  TestLoop loop;
  TlsPair t(loop.get());
  Peer* srv = t.srv;
  Peer* cl = t.cl;
  Record& srec = t.srec;
  Record& crec = t.crec;
  srv->start_tls(std::move(t.sstream));
  const std::string bulk(100 * 1024, 'b');
  const std::string expected = "DATA\r\n" + bulk + ".\r\n";
  size_t unsent_after_bulk = 0, unsent_before_bulk = 0;
  // Once the handshake is done, the client sends a command, bulk data and a
  // trailer in one event.
  cl->on_handshake = [&](Peer& self) {
    self.write("DATA\r\n");
    unsent_before_bulk = self.unsent();
    self.write_bulk(bulk);
    unsent_after_bulk = self.unsent();
    self.write(".\r\n");
  };
  srv->on_plain = [&](Peer& self, std::string_view) {
    if (srec.received.size() == expected.size()) self.write("250 ok\r\n");
  };
  cl->on_plain = [](Peer& self, std::string_view plain) {
    if (plain.starts_with("250 ")) self.begin_close();
  };
  srv->read(true);
  cl->read(true);
  cl->start_tls(std::move(t.cstream));
  cl->hello();
  cl->flush();
  while (!crec.destroyed) loop.once();
  while (srec.ends == 0) loop.once();
  srv->begin_close();
  loop.run();
  CHECK(crec.handshake);
  CHECK(srec.received == expected);  // the order of write() and write_bulk() kept
  // Before write_bulk() the command is gathered plaintext; after it the
  // command and the bulk are ciphertext already (records add their overhead).
  CHECK(unsent_before_bulk >= 6);
  CHECK(unsent_after_bulk > unsent_before_bulk + bulk.size());
  CHECK(srec.destroyed);
}
