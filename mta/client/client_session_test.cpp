// client_session_test.cpp — client dialogues against scripted server replies:
// a recording host stands in for the glue; the test plays the server.
#include <catch2/catch.hpp>

#include "mta/client/client_test_util.hpp"

TEST_CASE("client: one transaction without PIPELINING, one command per reply") {
  Host h;
  ClientSession s(config(), h);
  connect(s, h, kEhloPlain);
  CHECK(s.ready());
  CHECK(h.idle_n == 1);
  CHECK(s.capabilities().esmtp);
  CHECK(s.capabilities().name == "mx.test");
  CHECK(s.capabilities().size == 1000u);
  CHECK_FALSE(s.capabilities().pipelining);
  CHECK(h.take().empty());

  s.start_transaction(tx({"b@y.test", "c@y.test"}));
  CHECK(h.take() == "MAIL FROM:<a@x.test> SIZE=100\r\n");
  CHECK(s.timeout() == 5min);
  s.feed("250 2.1.0 Ok\r\n");
  CHECK(h.take() == "RCPT TO:<b@y.test>\r\n");
  s.feed("250 2.1.5 Ok\r\n");
  CHECK(h.take() == "RCPT TO:<c@y.test>\r\n");
  s.feed("550 5.1.1 <c@y.test>: no such user\r\n");
  CHECK(h.take() == "DATA\r\n");
  CHECK(s.timeout() == 2min);
  s.feed("354 End data with <CR><LF>.<CR><LF>\r\n");
  CHECK(s.state() == State::body);
  CHECK(h.need_body_n == 1);
  CHECK(s.timeout() == 3min);
  s.body("Subject: hi\r\n\r\n.hidden\r\n");
  s.body("last line");
  s.body_end();
  CHECK(h.take() == "Subject: hi\r\n\r\n..hidden\r\nlast line\r\n.\r\n");
  CHECK(s.timeout() == 10min);
  CHECK(h.done.empty());
  s.feed("250 2.0.0 Ok: queued as ABC\r\n");
  REQUIRE(h.done.size() == 1);
  const auto& r = h.done[0].recipients;
  REQUIRE(r.size() == 2);
  CHECK(r[0].address == "b@y.test");
  CHECK(r[0].outcome == Outcome::sent);
  CHECK(r[0].stage == Stage::end_of_data);
  CHECK(r[0].remote);
  CHECK(r[0].reply.code == 250);
  CHECK(r[0].reply.text() == "Ok: queued as ABC");
  CHECK(r[1].outcome == Outcome::permanent);
  CHECK(r[1].stage == Stage::rcpt);
  CHECK(r[1].reply.enhanced == "5.1.1");
  CHECK(s.ready());
  CHECK(h.idle_n == 2);
  CHECK(h.take().empty());  // no RSET after a completed transaction
  CHECK(s.timeout() == 5s);
  s.quit();
  CHECK(h.take() == "QUIT\r\n");
  CHECK(h.closed_n == 1);
  CHECK(s.closed());
  CHECK(h.failures.empty());
}

TEST_CASE("client: PIPELINING sends MAIL, RCPTs and DATA in one write") {
  Host h;
  ClientSession s(config(), h);
  connect(s, h, kEhloPipe);
  CHECK(s.capabilities().pipelining);
  CHECK(s.capabilities().enhanced);
  CHECK(s.capabilities().name == "mx.test");
  h.on_need_body = [&] {
    s.body("Hello\n.\nworld\r\n");
    s.body_end();
  };
  s.start_transaction(tx({"b@y.test", "c@y.test", "d@y.test"}));
  CHECK(h.take() ==
        "MAIL FROM:<a@x.test> SIZE=100\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\n"
        "RCPT TO:<d@y.test>\r\nDATA\r\n");
  // All replies in one read.
  s.feed("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n450 4.2.1 try later\r\n250 2.1.5 Ok\r\n354 go\r\n");
  CHECK(h.take() == "Hello\r\n..\r\nworld\r\n.\r\n");
  s.feed("250 2.0.0 queued\r\n");
  REQUIRE(h.done.size() == 1);
  const auto& r = h.done[0].recipients;
  CHECK(r[0].outcome == Outcome::sent);
  CHECK(r[1].outcome == Outcome::temporary);
  CHECK(r[1].stage == Stage::rcpt);
  CHECK(r[1].reply.code == 450);
  CHECK(r[2].outcome == Outcome::sent);
  CHECK(h.done[0].count(Outcome::sent) == 2);
  CHECK(s.ready());
}

TEST_CASE("client: pipelined replies split at every byte give the same result") {
  const std::string replies =
      "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n354 go\r\n";
  for (size_t step = 1; step <= 7; ++step) {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    h.on_need_body = [&] { s.body_end(); };
    s.start_transaction(tx({"b@y.test", "c@y.test"}));
    h.take();
    for (size_t pos = 0; pos < replies.size(); pos += step)
      s.feed(std::string_view(replies).substr(pos, step));
    CHECK(h.take() == ".\r\n");
    s.feed("250 ok\r\n");
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].outcome == Outcome::sent);
    CHECK(h.done[0].recipients[1].outcome == Outcome::permanent);
    CHECK(h.done[0].recipients[1].reply.lines == std::vector<std::string>{"no", "such user"});
  }
}

TEST_CASE("client: two transactions on one connection, the second without RSET") {
  Host h;
  ClientSession s(config(), h);
  connect(s, h, kEhloPipe);
  h.on_need_body = [&] {
    s.body("x\r\n");
    s.body_end();
  };
  int started = 0;
  h.on_idle = [&] {
    if (started < 2) {
      ++started;
      s.start_transaction(tx({"b@y.test"}, 10));
    } else {
      s.quit();
    }
  };
  // connect() already had its idle(); the first transaction starts by hand,
  // the second from idle() after the first, and idle() then quits.
  ++started;
  s.start_transaction(tx({"b@y.test"}, 10));
  CHECK(h.take() == "MAIL FROM:<a@x.test> SIZE=10\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
  s.feed("250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 one\r\n");
  // Transaction 2 was started from idle() and is on the wire.
  CHECK(h.take() ==
        "x\r\n.\r\nMAIL FROM:<a@x.test> SIZE=10\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
  s.feed("250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 two\r\n");
  CHECK(h.take() == "x\r\n.\r\nQUIT\r\n");
  REQUIRE(h.done.size() == 2);
  CHECK(h.done[0].recipients[0].reply.text() == "one");
  CHECK(h.done[1].recipients[0].reply.text() == "two");
  CHECK(s.transactions() == 2);
  CHECK(s.closed());
  CHECK(h.closed_n == 1);
}

TEST_CASE("client: HELO fallback after 5xx to EHLO, no extensions then") {
  Host h;
  ClientSession s(config(), h);
  connect(s, h, "502 5.5.2 Error: command not recognized\r\n");
  CHECK(h.take() == "HELO client.test\r\n");
  CHECK(s.state() == State::helo);
  s.feed("250 mx.test\r\n");
  CHECK(s.ready());
  CHECK_FALSE(s.capabilities().esmtp);
  CHECK(s.capabilities().name == "mx.test");
  s.start_transaction(tx({"b@y.test"}));
  CHECK(h.take() == "MAIL FROM:<a@x.test>\r\n");  // no SIZE without EHLO

  SECTION("8-bit content to a server without 8BITMIME bounces locally") {
    Host h2;
    ClientSession s2(config(), h2);
    connect(s2, h2, "500 what\r\n");
    s2.feed("250 mx.test\r\n");
    Transaction t = tx({"b@y.test"});
    t.needs_8bitmime = true;
    s2.start_transaction(std::move(t));
    CHECK(h2.take() == "HELO client.test\r\n");  // nothing else went out
    REQUIRE(h2.done.size() == 1);
    CHECK(h2.done[0].recipients[0].outcome == Outcome::permanent);
    CHECK(h2.done[0].recipients[0].stage == Stage::local);
    CHECK(h2.done[0].recipients[0].reply.code == 554);
    CHECK(h2.done[0].recipients[0].reply.enhanced == "5.6.3");
    CHECK_FALSE(h2.done[0].recipients[0].remote);
    CHECK(s2.ready());
    CHECK(h2.idle_n == 2);
  }
}

TEST_CASE("client: EHLO and HELO refusals") {
  SECTION("EHLO 4xx: temporary failure, QUIT") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, "421-4.3.2 going\r\n421 4.3.2 down\r\n");
    // 421 is service_closing at any point after the greeting, without QUIT.
    CHECK(h.take().empty());
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::service_closing);
    CHECK(h.failures[0].temporary);
    CHECK(h.closed_n == 1);
  }
  SECTION("EHLO 451") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, "451 4.3.0 busy\r\n");
    CHECK(h.take() == "QUIT\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::helo_refused);
    CHECK(h.failures[0].temporary);
    CHECK(h.failures[0].remote);
    CHECK(h.failures[0].reply.code == 451);
    CHECK(h.failures[0].phase == "sending EHLO");
  }
  SECTION("EHLO 5xx, HELO 5xx: permanent") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, "550 no\r\n");
    CHECK(h.take() == "HELO client.test\r\n");
    s.feed("550 5.7.1 go away\r\n");
    CHECK(h.take() == "QUIT\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::helo_refused);
    CHECK_FALSE(h.failures[0].temporary);
    CHECK(h.failures[0].reply.code == 550);
    CHECK(s.closed());
  }
}

TEST_CASE("client: greeting refusals") {
  SECTION("4xx greeting: temporary, QUIT") {
    Host h;
    ClientSession s(config(), h);
    s.on_connected();
    s.feed("421 4.7.0 mx.test too many connections\r\n");
    CHECK(h.take() == "QUIT\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::greeting_refused);
    CHECK(h.failures[0].temporary);
    CHECK(h.failures[0].phase == "receiving the initial server greeting");
    CHECK(h.closed_n == 1);
  }
  SECTION("554 greeting: permanent") {
    Host h;
    ClientSession s(config(), h);
    s.on_connected();
    s.feed("554 5.7.1 you are listed\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::greeting_refused);
    CHECK_FALSE(h.failures[0].temporary);
  }
  SECTION("garbage greeting: protocol error, no QUIT") {
    Host h;
    ClientSession s(config(), h);
    s.on_connected();
    s.feed("SSH-2.0-OpenSSH_9.2\r\n");
    CHECK(h.take().empty());
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::protocol_error);
    CHECK(h.failures[0].temporary);
    CHECK(h.failures[0].reply.code == 451);
    CHECK(h.failures[0].reply.enhanced == "4.5.0");
    CHECK(h.failures[0].reply.text().find("malformed reply code") != std::string::npos);
  }
}

TEST_CASE("client: STARTTLS opportunistic, with plaintext after the 220 discarded") {
  Host h;
  ClientSession s(config(TlsPolicy::opportunistic, true), h);
  connect(s, h, kEhloTls);
  CHECK(h.take() == "STARTTLS\r\n");
  CHECK(s.state() == State::starttls);
  // An attacker in the path appends a reply to the 220, hoping it is read
  // as the first reply inside TLS.
  s.feed("220 2.0.0 Ready to start TLS\r\n250-evil\r\n250 AUTH PLAIN\r\n");
  CHECK(h.tls_started == 1);
  CHECK(s.state() == State::tls_handshake);
  s.feed("250 more plaintext before the handshake\r\n");
  CHECK(h.take().empty());
  CHECK(h.failures.empty());
  s.on_tls_ready(false);  // opportunistic: unverified is fine
  CHECK(s.in_tls());
  CHECK(h.take() == "EHLO client.test\r\n");
  CHECK_FALSE(s.capabilities().esmtp);  // forgotten until the new EHLO reply
  s.feed("250-mx.test\r\n250 SIZE 500\r\n");
  CHECK(s.ready());
  CHECK_FALSE(s.capabilities().pipelining);  // the plaintext EHLO's PIPELINING is gone
  CHECK(s.capabilities().size == 500u);
  CHECK(h.idle_n == 1);
}

TEST_CASE("client: plaintext after the 220 is dropped even if TLS is up at once") {
  Host h;
  ClientSession s(config(TlsPolicy::opportunistic, true), h);
  connect(s, h, kEhloTls);
  CHECK(h.take() == "STARTTLS\r\n");
  h.on_start_tls = [&] { s.on_tls_ready(false); };  // a host that finishes synchronously
  s.feed("220 go\r\n250-injected\r\n250 PIPELINING\r\n");
  CHECK(h.take() == "EHLO client.test\r\n");
  CHECK(s.state() == State::ehlo);  // still waiting: the injected reply was not read
  s.feed("250 mx.test\r\n");
  CHECK(s.ready());
  CHECK_FALSE(s.capabilities().pipelining);
}

TEST_CASE("client: STARTTLS opportunistic falls back to plaintext") {
  SECTION("offered but no TLS context") {
    Host h;
    ClientSession s(config(TlsPolicy::opportunistic, false), h);
    connect(s, h, kEhloTls);
    CHECK(h.take().empty());
    CHECK(s.ready());
    CHECK_FALSE(s.in_tls());
  }
  SECTION("not offered") {
    Host h;
    ClientSession s(config(TlsPolicy::opportunistic, true), h);
    connect(s, h, kEhloPipe);
    CHECK(s.ready());
  }
  SECTION("refused with 454") {
    Host h;
    ClientSession s(config(TlsPolicy::opportunistic, true), h);
    connect(s, h, kEhloTls);
    CHECK(h.take() == "STARTTLS\r\n");
    s.feed("454 4.7.0 TLS not available due to temporary reason\r\n");
    CHECK(s.ready());
    CHECK(h.tls_started == 0);
  }
  SECTION("policy none ignores STARTTLS") {
    Host h;
    ClientSession s(config(TlsPolicy::none, true), h);
    connect(s, h, kEhloTls);
    CHECK(h.take().empty());
    CHECK(s.ready());
  }
}

TEST_CASE("client: STARTTLS required") {
  SECTION("not offered: temporary failure, QUIT") {
    Host h;
    ClientSession s(config(TlsPolicy::required, true), h);
    connect(s, h, kEhloPipe);
    CHECK(h.take() == "QUIT\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::tls_not_offered);
    CHECK(h.failures[0].temporary);
    CHECK(h.failures[0].reply.code == 451);
    CHECK(h.failures[0].reply.enhanced == "4.7.4");
    CHECK(h.closed_n == 1);
  }
  SECTION("offered, no TLS context") {
    Host h;
    ClientSession s(config(TlsPolicy::required, false), h);
    connect(s, h, kEhloTls);
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::tls_unavailable);
  }
  SECTION("refused with 5xx: deferred, never bounced") {
    Host h;
    ClientSession s(config(TlsPolicy::required, true), h);
    connect(s, h, kEhloTls);
    h.take();
    s.feed("502 5.5.1 no\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::tls_refused);
    CHECK(h.failures[0].temporary);
    CHECK(h.failures[0].reply.transient());
    CHECK(h.failures[0].reply.enhanced == "4.5.1");
    CHECK_FALSE(h.failures[0].remote);
    CHECK(h.failures[0].reply.text().find("502 5.5.1 no") != std::string::npos);
  }
  SECTION("handshake fails") {
    Host h;
    ClientSession s(config(TlsPolicy::required, true), h);
    connect(s, h, kEhloTls);
    h.take();
    s.feed("220 go\r\n");
    CHECK(s.timeout() == 5min);
    s.on_tls_failed("alert from peer: handshake failure");
    CHECK(h.take().empty());  // no plaintext QUIT after a failed handshake
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::tls_failed);
    CHECK(h.failures[0].reply.text() == "TLS handshake failed: alert from peer: handshake failure");
    CHECK(h.closed_n == 1);
  }
  SECTION("implicit TLS: no STARTTLS") {
    Host h;
    ClientConfig c = config(TlsPolicy::required, true);
    c.in_tls = true;
    ClientSession s(std::move(c), h);
    connect(s, h, kEhloTls);
    CHECK(h.take().empty());
    CHECK(s.ready());
    CHECK(s.in_tls());
  }
}

TEST_CASE("client: STARTTLS verify") {
  SECTION("unverified peer fails") {
    Host h;
    ClientSession s(config(TlsPolicy::verify, true), h);
    connect(s, h, kEhloTls);
    h.take();
    s.feed("220 go\r\n");
    s.on_tls_ready(false, "Hostname mismatch");
    CHECK(h.take() == "QUIT\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::tls_untrusted);
    CHECK(h.failures[0].temporary);
    CHECK(h.failures[0].reply.enhanced == "4.7.5");
    CHECK(h.failures[0].reply.text() == "Server certificate not trusted: Hostname mismatch");
  }
  SECTION("verified peer goes on") {
    Host h;
    ClientSession s(config(TlsPolicy::verify, true), h);
    connect(s, h, kEhloTls);
    h.take();
    s.feed("220 go\r\n");
    s.on_tls_ready(true);
    CHECK(h.take() == "EHLO client.test\r\n");
    s.feed(kEhloTls);  // STARTTLS offered again inside TLS: not used twice
    CHECK(h.take().empty());
    CHECK(s.ready());
  }
}


TEST_CASE("client: relayhost credentials under verify go only to a verified server") {
  auto session_config = [](TlsPolicy p, bool implicit = false) {
    ClientConfig c = config(p, true);
    c.credentials = creds();
    c.in_tls = implicit;
    return c;
  };
  constexpr std::string_view kEhloAuth = "250-relay.test\r\n250 AUTH PLAIN LOGIN\r\n";
  SECTION("STARTTLS, the verifying stream refuses the certificate: nothing more is sent") {
    Host h;
    ClientSession s(session_config(TlsPolicy::verify), h);
    connect(s, h, kEhloTls);
    CHECK(h.take() == "STARTTLS\r\n");
    s.feed("220 go\r\n");
    s.on_tls_failed("certificate verify failed: self signed certificate", "self signed certificate");
    CHECK(h.take().empty());
    REQUIRE(h.failures.size() == 1);
    const auto& f = h.failures[0];
    CHECK(f.kind == Failure::tls_untrusted);
    CHECK(f.temporary);
    CHECK_FALSE(f.remote);
    CHECK(f.reply.code == 451);
    CHECK(f.reply.enhanced == "4.7.5");
    CHECK(f.reply.text() == "Server certificate not trusted: self signed certificate; AUTH not sent");
    CHECK(h.closed_n == 1);
    s.feed(kEhloAuth);  // after close() every event is ignored
    CHECK(h.take().empty());
  }
  SECTION("STARTTLS, handshake done but unverified: QUIT inside TLS, no AUTH") {
    Host h;
    ClientSession s(session_config(TlsPolicy::verify), h);
    connect(s, h, kEhloTls);
    h.take();
    s.feed("220 go\r\n");
    s.on_tls_ready(false, "unable to get local issuer certificate");
    CHECK(h.take() == "QUIT\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::tls_untrusted);
    CHECK(h.failures[0].reply.text() ==
          "Server certificate not trusted: unable to get local issuer certificate; AUTH not sent");
    CHECK_FALSE(s.peer_verified());
  }
  SECTION("STARTTLS, verified: AUTH") {
    Host h;
    ClientSession s(session_config(TlsPolicy::verify), h);
    connect(s, h, kEhloTls);
    into_tls(s, h);
    CHECK(s.peer_verified());
    s.feed(kEhloAuth);
    CHECK(h.take() == "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
  }
  SECTION("required (written out): AUTH to an unverified server") {
    Host h;
    ClientSession s(session_config(TlsPolicy::required), h);
    connect(s, h, kEhloTls);
    h.take();
    s.feed("220 go\r\n");
    s.on_tls_ready(false, "self signed certificate");
    CHECK(h.take() == "EHLO client.test\r\n");
    s.feed(kEhloAuth);
    CHECK(h.take() == "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    CHECK(h.failures.empty());
  }
  SECTION("implicit TLS, unverified: not even EHLO") {
    Host h;
    ClientSession s(session_config(TlsPolicy::verify, true), h);
    s.on_connected(false, "self signed certificate");
    s.feed("220 relay.test ESMTP\r\n");
    CHECK(h.take().empty());
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::tls_untrusted);
    CHECK(h.failures[0].reply.text() ==
          "Server certificate not trusted: self signed certificate; AUTH not sent");
    CHECK(s.closed());
  }
  SECTION("implicit TLS, the verifying stream refuses the certificate") {
    Host h;
    ClientSession s(session_config(TlsPolicy::verify, true), h);
    s.on_tls_failed("certificate verify failed: IP address mismatch", "IP address mismatch");
    CHECK(h.take().empty());
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::tls_untrusted);
    CHECK(h.failures[0].reply.text() ==
          "Server certificate not trusted: IP address mismatch; AUTH not sent");
    CHECK(h.closed_n == 1);
  }
  SECTION("implicit TLS, another handshake failure") {
    Host h;
    ClientSession s(session_config(TlsPolicy::verify, true), h);
    s.on_tls_failed("alert from peer: handshake failure");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::tls_failed);
    CHECK(h.failures[0].reply.text() == "TLS handshake failed: alert from peer: handshake failure");
  }
  SECTION("implicit TLS, verified: greeting, EHLO, AUTH") {
    Host h;
    ClientSession s(session_config(TlsPolicy::verify, true), h);
    s.on_connected(true);
    s.feed("220 relay.test ESMTP\r\n");
    CHECK(h.take() == "EHLO client.test\r\n");
    s.feed(kEhloAuth);
    CHECK(h.take() == "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
  }
  SECTION("a handshake failure outside a handshake is ignored") {
    Host h;
    ClientSession s(session_config(TlsPolicy::verify), h);
    connect(s, h, kEhloTls);
    h.take();
    s.on_tls_failed("late", "self signed certificate");  // STARTTLS not answered yet
    CHECK(h.failures.empty());
    CHECK(s.state() == State::starttls);
  }
}

TEST_CASE("client: relayhost AUTH PLAIN inside TLS") {
  Host h;
  ClientConfig c = config(TlsPolicy::opportunistic, true);
  c.credentials = creds();
  ClientSession s(std::move(c), h);
  connect(s, h, kEhloTls);
  into_tls(s, h);
  s.feed("250-relay.test\r\n250-AUTH LOGIN PLAIN\r\n250 PIPELINING\r\n");
  // base64("\0alice\0secret")
  CHECK(h.take() == "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
  CHECK(s.state() == State::auth);
  s.feed("235 2.7.0 Authentication successful\r\n");
  CHECK(s.ready());
  CHECK(s.authenticated());
  CHECK(h.idle_n == 1);
}

TEST_CASE("client: relayhost AUTH LOGIN, old AUTH= form") {
  Host h;
  ClientConfig c = config(TlsPolicy::required, true);
  c.credentials = creds();
  ClientSession s(std::move(c), h);
  connect(s, h, kEhloTls);
  into_tls(s, h);
  s.feed("250-relay.test\r\n250 AUTH=LOGIN\r\n");
  CHECK(h.take() == "AUTH LOGIN\r\n");
  s.feed("334 VXNlcm5hbWU6\r\n");
  CHECK(h.take() == "YWxpY2U=\r\n");
  s.feed("334 UGFzc3dvcmQ6\r\n");
  CHECK(h.take() == "c2VjcmV0\r\n");
  s.feed("235 2.7.0 ok\r\n");
  CHECK(s.ready());
}

TEST_CASE("client: AUTH PLAIN without initial response when the line would be too long") {
  Host h;
  ClientConfig c = config(TlsPolicy::required, true);
  c.credentials = creds("alice", std::string(600, 'p'));
  ClientSession s(std::move(c), h);
  connect(s, h, kEhloTls);
  into_tls(s, h);
  s.feed("250-relay.test\r\n250 AUTH PLAIN\r\n");
  CHECK(h.take() == "AUTH PLAIN\r\n");
  s.feed("334 \r\n");
  const std::string resp = h.take();
  CHECK(resp == sluice::auth::base64_encode(std::string("\0alice\0", 7) + std::string(600, 'p')) +
                    "\r\n");
  s.feed("235 ok\r\n");
  CHECK(s.ready());
}

TEST_CASE("client: AUTH failure defers, never bounces") {
  Host h;
  ClientConfig c = config(TlsPolicy::required, true);
  c.credentials = creds();
  ClientSession s(std::move(c), h);
  connect(s, h, kEhloTls);
  into_tls(s, h);
  s.feed("250-relay.test\r\n250 AUTH PLAIN LOGIN\r\n");
  h.take();
  s.feed("535 5.7.8 Authentication credentials invalid\r\n");
  CHECK(h.take() == "QUIT\r\n");
  REQUIRE(h.failures.size() == 1);
  const auto& f = h.failures[0];
  CHECK(f.kind == Failure::auth_failed);
  CHECK(f.temporary);
  CHECK(f.reply.transient());
  CHECK(f.reply.enhanced == "4.7.8");
  CHECK(f.reply.text().find("535 5.7.8 Authentication credentials invalid") != std::string::npos);
  CHECK(h.closed_n == 1);
}

TEST_CASE("client: credentials are never sent without TLS") {
  SECTION("STARTTLS not offered") {
    Host h;
    ClientConfig c = config(TlsPolicy::opportunistic, true);
    c.credentials = creds();
    ClientSession s(std::move(c), h);
    connect(s, h, "250-relay.test\r\n250 AUTH PLAIN LOGIN\r\n");
    const std::string sent = h.take();
    CHECK(sent == "QUIT\r\n");
    CHECK(sent.find("AUTH") == std::string::npos);
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::tls_not_offered);
    CHECK(h.failures[0].temporary);
  }
  SECTION("policy none with credentials still uses STARTTLS") {
    Host h;
    ClientConfig c = config(TlsPolicy::none, true);
    c.credentials = creds();
    ClientSession s(std::move(c), h);
    connect(s, h, kEhloTls);
    CHECK(h.out == "STARTTLS\r\n");
  }
  SECTION("STARTTLS refused") {
    Host h;
    ClientConfig c = config(TlsPolicy::opportunistic, true);
    c.credentials = creds();
    ClientSession s(std::move(c), h);
    connect(s, h, kEhloTls);
    h.take();
    s.feed("454 4.7.0 no TLS today\r\n");
    CHECK(h.take() == "QUIT\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::tls_refused);
  }
  SECTION("HELO only") {
    Host h;
    ClientConfig c = config(TlsPolicy::opportunistic, true);
    c.credentials = creds();
    ClientSession s(std::move(c), h);
    connect(s, h, "502 no\r\n");
    h.take();
    s.feed("250 relay.test\r\n");
    CHECK(h.take() == "QUIT\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::tls_not_offered);
  }
  SECTION("AUTH not offered inside TLS") {
    Host h;
    ClientConfig c = config(TlsPolicy::opportunistic, true);
    c.credentials = creds();
    ClientSession s(std::move(c), h);
    connect(s, h, kEhloTls);
    into_tls(s, h);
    s.feed("250-relay.test\r\n250 AUTH CRAM-MD5\r\n");
    CHECK(h.take() == "QUIT\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::auth_not_offered);
  }
}

// --- loops (docs/delivery.md, "Mail loops") ----------------------------------

TEST_CASE("client: an EHLO reply naming our own hostname is a loop: QUIT, temporary 4.4.6") {
  Host h;
  ClientConfig c = config();
  c.own_hostname = "Mail.Sluice.Test";
  ClientSession s(std::move(c), h);
  s.on_connected();
  s.feed("220 mx.test ESMTP\r\n");
  CHECK_FALSE(s.greeting_names_self());
  REQUIRE(h.take() == "EHLO client.test\r\n");
  SECTION("EHLO, any case, with a final dot") {
    s.feed("250-mail.sluice.test. hello\r\n250 PIPELINING\r\n");
  }
  SECTION("HELO after a refused EHLO") {
    s.feed("502 5.5.1 no EHLO\r\n");
    REQUIRE(h.take() == "HELO client.test\r\n");
    s.feed("250 MAIL.SLUICE.TEST\r\n");
  }
  CHECK(h.take() == "QUIT\r\n");
  CHECK(s.closed());
  CHECK(h.closed_n == 1);
  REQUIRE(h.failures.size() == 1);
  const ConnectionFailure& f = h.failures[0];
  CHECK(f.kind == Failure::loop);
  CHECK(f.temporary);
  CHECK_FALSE(f.remote);
  CHECK(f.reply.code == 451);
  CHECK(f.reply.enhanced == "4.4.6");
  CHECK(f.reply.text() == "Server replied to EHLO with my own hostname Mail.Sluice.Test");
  CHECK(sluice::client::to_string(f.kind) == "loop");
}

TEST_CASE("client: the EHLO inside TLS naming our hostname is a loop too") {
  Host h;
  ClientConfig c = config(TlsPolicy::opportunistic, true);
  c.own_hostname = "mail.sluice.test";
  ClientSession s(std::move(c), h);
  connect(s, h, kEhloTls);
  into_tls(s, h);
  s.feed("250-mail.sluice.test\r\n250 SIZE 1000\r\n");
  REQUIRE(h.failures.size() == 1);
  CHECK(h.failures[0].kind == Failure::loop);
}

TEST_CASE("client: a greeting naming our hostname is only noted; the EHLO reply decides") {
  Host h;
  ClientConfig c = config();
  c.own_hostname = "mail.sluice.test";
  ClientSession s(std::move(c), h);
  s.on_connected();
  s.feed("220 MAIL.sluice.test ESMTP a neighbour sharing the name\r\n");
  CHECK(s.greeting_names_self());
  REQUIRE(h.take() == "EHLO client.test\r\n");
  s.feed(kEhloPlain);
  CHECK(s.ready());
  CHECK(h.failures.empty());
}

TEST_CASE("client: names that only look like ours, or no own_hostname, are no loop") {
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"mail.sluice.test", "250 mail.sluice.test.example\r\n"},
      {"mail.sluice.test", "250 xmail.sluice.test\r\n"},
      {"mail.sluice.test", "250 \r\n"},
      {"", "250 client.test\r\n"},  // no own hostname: no check at all
  };
  for (const auto& [own, ehlo] : rows) {
    INFO(own << " / " << ehlo);
    Host h;
    ClientConfig c = config();
    c.own_hostname = own;
    ClientSession s(std::move(c), h);
    s.on_connected();
    s.feed("220 " + (own.empty() ? std::string("client.test") : own) + " ESMTP\r\n");
    (void)h.take();
    s.feed(ehlo);
    CHECK(s.ready());
    CHECK(h.failures.empty());
  }
}
