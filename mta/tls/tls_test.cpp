// tls_test.cpp — TlsStream: server and client streams pumped against each
// other entirely in memory (pump()): handshakes, data both ways in random
// pieces, old protocol versions, garbage instead of a ClientHello, close and
// EOF, context reload and session resumption. Certificates and contexts:
// tls_cert_test.cpp; a real peer (openssl s_client): tls_openssl_test.cpp.
#include "mta/tls/tls_test_util.hpp"

using namespace tls_test;

TEST_CASE("TLS 1.3 handshake and data both ways", "[tls][stream]") {
  Side s = server_side(server_ctx());
  Side c = client_side(client_ctx());
  CHECK(s.s->version().empty());
  CHECK(s.s->cipher().empty());
  CHECK(s.s->cipher_bits() == 0);
  pump(c, s);
  INFO(s.error << " / " << c.error);
  REQUIRE(s.error.empty());
  REQUIRE(c.error.empty());
  CHECK(s.completions == 1);
  CHECK(c.completions == 1);
  CHECK(s.s->handshake_done());
  CHECK(c.s->handshake_done());
  CHECK(s.s->version() == "TLSv1.3");
  CHECK(c.s->version() == "TLSv1.3");
  CHECK(s.s->cipher().starts_with("TLS_"));
  CHECK(s.s->cipher() == c.s->cipher());
  CHECK((s.s->cipher_bits() == 128 || s.s->cipher_bits() == 256));

  c.s->write_plaintext("EHLO client.example\r\n");
  pump(c, s);
  CHECK(s.plain == "EHLO client.example\r\n");
  s.s->write_plaintext("250-mail.example.test\r\n");
  s.s->write_plaintext("250 SIZE 1000\r\n");
  pump(c, s);
  CHECK(c.plain == "250-mail.example.test\r\n250 SIZE 1000\r\n");
  CHECK(s.completions == 1);  // reported once only
  CHECK(s.closes == 0);
  CHECK_FALSE(s.s->failed());
  CHECK(s.s->pending_ciphertext_bytes() == 0);

  SECTION("take_ciphertext appends to what the caller has") {
    std::string out = "X";
    s.s->write_plaintext("hello");
    CHECK(s.s->take_ciphertext(out));
    CHECK(out.size() > 6);
    CHECK(out[0] == 'X');
    CHECK_FALSE(s.s->take_ciphertext(out));
  }
}

TEST_CASE("one megabyte each way in random pieces", "[tls][stream]") {
  std::mt19937 rng(42);
  Side s = server_side(server_ctx());
  Side c = client_side(client_ctx());
  pump(c, s, &rng, 700);
  REQUIRE(s.s->handshake_done());

  std::string up = random_bytes(rng, 1 << 20), down = random_bytes(rng, 1 << 20);
  for (size_t i = 0; i < up.size();) {
    size_t n = std::min(up.size() - i, std::uniform_int_distribution<size_t>(1, 40000)(rng));
    c.s->write_plaintext(std::string_view(up).substr(i, n));
    s.s->write_plaintext(std::string_view(down).substr(i, n));
    i += n;
    if (rng() % 4 == 0) pump(c, s, &rng, 70000);
  }
  pump(c, s, &rng, 70000);
  REQUIRE(s.error.empty());
  REQUIRE(c.error.empty());
  CHECK(s.plain.size() == up.size());
  CHECK(s.plain == up);
  CHECK(c.plain == down);
}

TEST_CASE("plaintext written before the handshake completes is sent after it", "[tls][stream]") {
  Side s = server_side(server_ctx());
  Side c = client_side(client_ctx());
  s.s->write_plaintext("220 mail.example.test ESMTP\r\n");  // implicit TLS: the greeting
  CHECK(s.s->pending_ciphertext_bytes() == 0);
  c.s->write_plaintext("EHLO early\r\n");
  pump(c, s);
  REQUIRE(s.s->handshake_done());
  CHECK(s.plain == "EHLO early\r\n");
  CHECK(c.plain == "220 mail.example.test ESMTP\r\n");
}

TEST_CASE("a TLS 1.2 client gets an ECDHE AEAD suite", "[tls][stream]") {
  auto cc = client_ctx();
  REQUIRE(SSL_CTX_set_max_proto_version(cc->native(), TLS1_2_VERSION));
  Side s = server_side(server_ctx());
  Side c = client_side(cc);
  pump(c, s);
  REQUIRE(s.error.empty());
  CHECK(s.s->version() == "TLSv1.2");
  CHECK(c.s->version() == "TLSv1.2");
  CHECK(s.s->cipher() == "ECDHE-RSA-AES128-GCM-SHA256");
  CHECK(s.s->cipher_bits() == 128);

  c.s->write_plaintext("QUIT\r\n");
  pump(c, s);
  CHECK(s.plain == "QUIT\r\n");

  SECTION("a client that offers only CBC suites gets no shared cipher") {
    auto cbc = client_ctx();
    REQUIRE(SSL_CTX_set_max_proto_version(cbc->native(), TLS1_2_VERSION));
    REQUIRE(SSL_CTX_set_strict_cipher_list(cbc->native(), "ECDHE-RSA-AES128-SHA:AES128-SHA"));
    Side s2 = server_side(server_ctx());
    Side c2 = client_side(cbc);
    pump(c2, s2);
    CHECK(s2.error == "no shared cipher");
    CHECK(c2.error == "alert from peer: handshake failure");
  }
  SECTION("CHACHA20-POLY1305 when the client prefers it") {
    auto cha = client_ctx();
    REQUIRE(SSL_CTX_set_max_proto_version(cha->native(), TLS1_2_VERSION));
    REQUIRE(SSL_CTX_set_strict_cipher_list(cha->native(), "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256"));
    Side s2 = server_side(server_ctx());
    Side c2 = client_side(cha);
    pump(c2, s2);
    CHECK(s2.s->cipher() == "ECDHE-RSA-CHACHA20-POLY1305");
    CHECK(s2.s->cipher_bits() == 256);
  }
}

TEST_CASE("a TLS 1.1 client is refused", "[tls][stream]") {
  auto old = client_ctx();
  REQUIRE(SSL_CTX_set_min_proto_version(old->native(), TLS1_1_VERSION));
  REQUIRE(SSL_CTX_set_max_proto_version(old->native(), TLS1_1_VERSION));
  REQUIRE(SSL_CTX_set_cipher_list(old->native(), "ALL"));
  Side s = server_side(server_ctx());
  Side c = client_side(old);
  pump(c, s);
  CHECK(s.error == "unsupported protocol");
  CHECK(c.error == "alert from peer: protocol version");
  CHECK_FALSE(s.s->handshake_done());
  CHECK(s.s->failed());
  CHECK(s.s->error() == "unsupported protocol");
  // It stays failed; writes are dropped; nothing more to send.
  std::string more;
  auto again = s.s->process(more);
  REQUIRE_FALSE(again);
  CHECK(again.error() == "unsupported protocol");
  s.s->write_plaintext("250 ok\r\n");
  CHECK(s.s->pending_ciphertext_bytes() == 0);
  CHECK(more.empty());
}

TEST_CASE("garbage instead of a ClientHello is a clean error", "[tls][stream]") {
  auto ctx = server_ctx();
  auto try_bytes = [&](std::string_view bytes) {
    auto s = TlsStream::server(ctx);
    REQUIRE(s);
    std::string plain;
    (*s)->feed_ciphertext(bytes);
    auto r = (*s)->process(plain);
    std::string err = r ? std::string() : r.error();
    if (r) {  // waiting for more: an EOF must end it with an error
      (*s)->feed_eof();
      auto r2 = (*s)->process(plain);
      REQUIRE_FALSE(r2);
      err = r2.error();
    }
    CHECK(plain.empty());
    CHECK_FALSE((*s)->handshake_done());
    CHECK((*s)->failed());
    std::string alert;
    (*s)->take_ciphertext(alert);  // an alert, or nothing
    CHECK(alert.size() < 64);
    return err;
  };

  CHECK(try_bytes("EHLO client.example\r\n") == "wrong version number");
  CHECK(try_bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n") == "http request");
  CHECK(try_bytes("POST /x HTTP/1.1\r\n\r\n") == "http request");
  CHECK(try_bytes("") == "connection closed during handshake");
  CHECK(try_bytes(std::string("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", 10)) != "");

  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    std::string junk = random_bytes(rng, std::uniform_int_distribution<size_t>(1, 3000)(rng));
    CHECK_FALSE(try_bytes(junk).empty());
  }

  // A real ClientHello with bytes flipped or cut short.
  Side c = client_side(client_ctx());
  std::string hello;
  REQUIRE(c.s->take_ciphertext(hello));
  for (int i = 0; i < 500; ++i) {
    std::string m = hello;
    int flips = std::uniform_int_distribution<int>(1, 8)(rng);
    for (int k = 0; k < flips; ++k) {
      m[std::uniform_int_distribution<size_t>(0, m.size() - 1)(rng)] = static_cast<char>(rng());
    }
    if (i % 5 == 0) m.resize(std::uniform_int_distribution<size_t>(0, m.size())(rng));
    auto s = TlsStream::server(ctx);
    REQUIRE(s);
    std::string plain;
    (*s)->feed_ciphertext(m);
    (void)(*s)->process(plain);  // any outcome but a crash
    (*s)->feed_eof();
    auto r = (*s)->process(plain);
    CHECK_FALSE(r);  // no Finished ever came: never a completed handshake
    CHECK(plain.empty());
  }
}

TEST_CASE("close_notify and EOF", "[tls][close]") {
  auto sctx = server_ctx();
  Side s = server_side(sctx);
  Side c = client_side(client_ctx());
  pump(c, s);
  REQUIRE(s.s->handshake_done());

  SECTION("client closes, then server") {
    c.s->write_plaintext("QUIT\r\n");
    c.s->close_notify();
    c.s->write_plaintext("dropped after close_notify");
    pump(c, s);
    CHECK(s.plain == "QUIT\r\n");
    CHECK(s.closes == 1);
    CHECK(s.s->peer_closed());
    CHECK(s.s->peer_close_notify());
    s.s->write_plaintext("221 2.0.0 Bye\r\n");
    s.s->close_notify();
    pump(c, s);
    CHECK(c.plain == "221 2.0.0 Bye\r\n");
    CHECK(c.closes == 1);
    CHECK(c.s->peer_close_notify());
    CHECK(s.error.empty());
    CHECK(c.error.empty());
    // Nothing is reported twice.
    std::string more;
    auto r = s.s->process(more);
    REQUIRE(r);
    CHECK_FALSE(r->peer_closed);
  }
  SECTION("a bare EOF after the handshake is a close, not an error") {
    s.s->feed_eof();
    s.step();
    CHECK(s.error.empty());
    CHECK(s.closes == 1);
    CHECK(s.s->peer_closed());
    CHECK_FALSE(s.s->peer_close_notify());
  }
  SECTION("EOF in the middle of a record") {
    c.s->write_plaintext("EHLO x\r\n");
    std::string bytes;
    REQUIRE(c.s->take_ciphertext(bytes));
    s.s->feed_ciphertext(std::string_view(bytes).substr(0, bytes.size() - 3));
    s.step();
    s.s->feed_eof();
    s.step();
    CHECK(s.plain.empty());
    CHECK(s.s->peer_closed());
  }
  SECTION("EOF during the handshake is an error") {
    Side s2 = server_side(sctx);
    Side c2 = client_side(client_ctx());
    transfer(c2, s2);  // ClientHello only
    s2.s->feed_eof();
    s2.step();
    CHECK(s2.error == "connection closed during handshake");
  }
}

TEST_CASE("a new context serves new connections while old ones keep theirs", "[tls][reload]") {
  auto first = server_ctx();
  Side s1 = server_side(first);
  Side c1 = client_side(client_ctx(false), kHost);
  pump(c1, s1);
  REQUIRE(c1.s->peer_verified());

  // "SIGHUP": the daemon replaces its context and drops its own reference.
  std::weak_ptr<TlsContext> watch = first;
  first = server_ctx(files().other_cert, files().other_key);
  CHECK_FALSE(watch.expired());  // the open connection holds it

  Side s2 = server_side(first);
  Side c2 = client_side(client_ctx(false, files().other_cert), kOtherHost);
  pump(c2, s2);
  REQUIRE(c2.error.empty());
  CHECK(c2.s->peer_verified());  // the new certificate

  c1.s->write_plaintext("still here\r\n");
  pump(c1, s1);
  CHECK(s1.plain == "still here\r\n");
  s1 = Side{};
  CHECK(watch.expired());
}

TEST_CASE("session resumption with tickets", "[tls][resume]") {
  auto sctx = server_ctx();
  struct Case {
    uint16_t version;
    bool tickets;
  };
  for (Case k : {Case{TLS1_2_VERSION, true}, Case{TLS1_2_VERSION, false}, Case{TLS1_3_VERSION, true}}) {
    INFO("version " << k.version << " tickets " << k.tickets);
    auto cc = client_ctx();
    REQUIRE(SSL_CTX_set_max_proto_version(cc->native(), k.version));
    if (!k.tickets) SSL_CTX_set_options(cc->native(), SSL_OP_NO_TICKET);  // the session cache
    static bssl::UniquePtr<SSL_SESSION> saved;
    saved.reset();
    SSL_CTX_set_session_cache_mode(cc->native(), SSL_SESS_CACHE_CLIENT);
    SSL_CTX_sess_set_new_cb(cc->native(), [](SSL*, SSL_SESSION* sess) {
      saved.reset(sess);
      return 1;
    });
    {
      Side s = server_side(sctx);
      Side c = client_side(cc);
      pump(c, s);
      // TLS 1.3 tickets follow the handshake, with the server's first write.
      s.s->write_plaintext("220 ready\r\n");
      pump(c, s);
      CHECK(c.plain == "220 ready\r\n");
      REQUIRE(saved);
      CHECK_FALSE(SSL_session_reused(c.s->native()));
    }
    Side s = server_side(sctx);
    auto cs = TlsStream::client(cc, kHost);
    REQUIRE(cs);
    REQUIRE(SSL_set_session((*cs)->native(), saved.get()));
    Side c{std::move(*cs)};
    c.step();
    pump(c, s);
    REQUIRE(c.error.empty());
    CHECK(SSL_session_reused(c.s->native()));
    CHECK(SSL_session_reused(s.s->native()));
    saved.reset();
  }
}

TEST_CASE("a plaintext alert during a TLS 1.3 handshake is the failure's reason", "[tls][stream]") {
  // OpenSSL's TLS 1.3 client that refuses the certificate sends its alert
  // unencrypted, where the server expects the client's encrypted Finished;
  // BoringSSL alone calls that "bad packet length".
  Side s = server_side(server_ctx());
  Side c = client_side(client_ctx());
  std::string hello, flight;
  REQUIRE(c.s->take_ciphertext(hello));
  s.s->feed_ciphertext(hello);
  s.step();
  REQUIRE(s.error.empty());
  REQUIRE(s.s->take_ciphertext(flight));  // ServerHello ... Finished: never delivered
  SECTION("unknown CA") {
    s.s->feed_ciphertext(std::string("\x15\x03\x03\x00\x02\x02\x30", 7));
    s.step();
    CHECK(s.error == "alert from peer: unknown CA");
  }
  SECTION("bad certificate, in two pieces, with the connection's end") {
    s.s->feed_ciphertext(std::string("\x15\x03\x03\x00", 4));
    s.step();
    CHECK(s.error.empty());
    s.s->feed_ciphertext(std::string("\x02\x02\x2a", 3));
    s.s->feed_eof();
    s.step();
    CHECK(s.error == "alert from peer: bad certificate");
  }
  CHECK_FALSE(s.s->handshake_done());
}

TEST_CASE("plaintext_fatal_alert walks whole records only", "[tls]") {
  using namespace std::string_literals;
  CHECK(plaintext_fatal_alert("") == -1);
  CHECK(plaintext_fatal_alert("\x15\x03\x03\x00\x02\x02\x30"s) == 48);
  // after a handshake record and a ChangeCipherSpec
  CHECK(plaintext_fatal_alert("\x16\x03\x01\x00\x03\x01\x02\x03" "\x14\x03\x03\x00\x01\x01"
                              "\x15\x03\x03\x00\x02\x02\x2a"s) == 42);
  CHECK(plaintext_fatal_alert("\x15\x03\x03\x00\x02\x01\x00"s) == -1);  // a warning
  CHECK(plaintext_fatal_alert("\x15\x03\x03\x00\x02\x02"s) == -1);      // cut short
  CHECK(plaintext_fatal_alert("\x17\x03\x03\x00\x02\x02\x30"s) == -1);  // encrypted
  // 0x15 inside another record's body is not a record
  CHECK(plaintext_fatal_alert("\x16\x03\x01\x00\x07\x15\x03\x03\x00\x02\x02\x30"s) == -1);
}
