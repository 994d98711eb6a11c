// client_transaction_test.cpp — client transactions against scripted server
// replies: local refusals (SIZE, 8BITMIME, SMTPUTF8), refused MAIL / RCPT /
// DATA, 421, timeouts, the server talking during the content, re-entrancy,
// quit(), DSN parameters.
#include <catch2/catch.hpp>

#include "mta/client/client_test_util.hpp"

TEST_CASE("client: SIZE over the server's limit is refused locally") {
  Host h;
  ClientSession s(config(), h);
  connect(s, h, kEhloPipe);
  s.start_transaction(tx({"b@y.test", "c@y.test"}, 1001));
  CHECK(h.take().empty());
  REQUIRE(h.done.size() == 1);
  // Reported as "too big for this server", for delivery's policy (bounce
  // 5.3.4, no next host), not as the server's refusal.
  REQUIRE(h.done[0].too_big.has_value());
  CHECK(h.done[0].too_big->size == 1001u);
  CHECK(h.done[0].too_big->limit == 1000u);
  CHECK(h.failures.empty());
  for (const auto& r : h.done[0].recipients) {
    CHECK(r.outcome == Outcome::permanent);
    CHECK(r.stage == Stage::local);
    CHECK(r.reply.code == 552);
    CHECK(r.reply.enhanced == "5.3.4");
  }
  CHECK(s.ready());
  CHECK(h.idle_n == 2);
  // Exactly at the limit goes out; "SIZE" without a number is no limit.
  s.start_transaction(tx({"b@y.test"}, 1000));
  CHECK(h.take().starts_with("MAIL FROM:<a@x.test> SIZE=1000\r\n"));
  s.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  s.body("x\r\n");
  s.body_end();
  s.feed("250 queued\r\n");
  REQUIRE(h.done.size() == 2);
  CHECK_FALSE(h.done[1].too_big.has_value());

  Host h2;
  ClientSession s2(config(), h2);
  connect(s2, h2, "250-mx\r\n250 SIZE\r\n");
  CHECK(s2.capabilities().size == 0u);
  s2.start_transaction(tx({"b@y.test"}, 1u << 30));
  CHECK(h2.take() == "MAIL FROM:<a@x.test> SIZE=1073741824\r\n");
}

TEST_CASE("client: 8BITMIME and SMTPUTF8") {
  SECTION("both needed and offered") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    Transaction t = tx({"b@y.test"});
    t.needs_8bitmime = true;
    t.needs_smtputf8 = true;
    s.start_transaction(std::move(t));
    CHECK(h.take().starts_with("MAIL FROM:<a@x.test> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n"));
  }
  SECTION("8-bit needed, not offered") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, "250-mx\r\n250 PIPELINING\r\n");
    Transaction t = tx({"b@y.test"});
    t.needs_8bitmime = true;
    s.start_transaction(std::move(t));
    CHECK(h.take().empty());
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].reply.enhanced == "5.6.3");
    CHECK_FALSE(h.done[0].too_big.has_value());  // a local refusal of its own kind
  }
  SECTION("non-ASCII address implies SMTPUTF8; not offered: 553 5.6.7") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPlain);
    s.start_transaction(tx({"b\xc3\xa9@y.test"}));
    CHECK(h.take().empty());
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].outcome == Outcome::permanent);
    CHECK(h.done[0].recipients[0].reply.code == 553);
    CHECK(h.done[0].recipients[0].reply.enhanced == "5.6.7");
  }
  SECTION("non-ASCII address, offered") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"b\xc3\xa9@y.test"}));
    CHECK(h.take().starts_with("MAIL FROM:<a@x.test> SIZE=100 SMTPUTF8\r\n"));
  }
  SECTION("8-bit not needed: no BODY parameter") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"b@y.test"}, 5, ""));
    CHECK(h.take().starts_with("MAIL FROM:<> SIZE=5\r\n"));
  }
}

TEST_CASE("client: every RCPT refused") {
  SECTION("without pipelining: no DATA, RSET, then idle") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPlain);
    s.start_transaction(tx({"b@y.test", "c@y.test"}));
    h.take();
    s.feed("250 ok\r\n");
    h.take();
    s.feed("550 5.1.1 no\r\n");
    h.take();
    s.feed("450 4.1.1 later\r\n");
    CHECK(h.take() == "RSET\r\n");
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].outcome == Outcome::permanent);
    CHECK(h.done[0].recipients[1].outcome == Outcome::temporary);
    CHECK(s.state() == State::rset);
    CHECK(h.idle_n == 1);
    s.feed("250 2.0.0 Ok\r\n");
    CHECK(s.ready());
    CHECK(h.idle_n == 2);
  }
  SECTION("pipelined: DATA refused, RSET") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"b@y.test"}));
    h.take();
    s.feed("250 ok\r\n550 5.1.1 no\r\n554 5.5.1 Error: no valid recipients\r\n");
    CHECK(h.take() == "RSET\r\n");
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].stage == Stage::rcpt);
    CHECK(h.done[0].recipients[0].reply.enhanced == "5.1.1");
  }
  SECTION("pipelined: the server still says 354 — a lone dot ends it") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"b@y.test"}));
    h.take();
    s.feed("250 ok\r\n550 5.1.1 no\r\n354 go\r\n");
    CHECK(h.need_body_n == 0);
    CHECK(h.take() == ".\r\n");
    CHECK(h.done.empty());
    s.feed("554 5.5.1 no recipients\r\n");
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].reply.enhanced == "5.1.1");
    CHECK(s.ready());
  }
}

TEST_CASE("client: MAIL refused") {
  SECTION("pipelined: RCPT/DATA replies ignored, every recipient gets MAIL's reply") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"b@y.test", "c@y.test"}));
    h.take();
    s.feed("553 5.7.1 sender rejected\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
           "503 5.5.1 need RCPT\r\n");
    CHECK(h.take() == "RSET\r\n");
    REQUIRE(h.done.size() == 1);
    for (const auto& r : h.done[0].recipients) {
      CHECK(r.outcome == Outcome::permanent);
      CHECK(r.stage == Stage::mail);
      CHECK(r.reply.code == 553);
    }
  }
  SECTION("without pipelining: stop at once") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPlain);
    s.start_transaction(tx({"b@y.test"}));
    h.take();
    s.feed("451 4.3.0 try later\r\n");
    CHECK(h.take() == "RSET\r\n");
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].outcome == Outcome::temporary);
  }
}

TEST_CASE("client: DATA and end-of-data refusals") {
  auto run = [](std::string_view data_reply, std::string_view final_reply) {
    auto h = std::make_unique<Host>();
    auto s = std::make_unique<ClientSession>(config(), *h);
    connect(*s, *h, kEhloPipe);
    Host* hp = h.get();
    ClientSession* sp = s.get();
    hp->on_need_body = [sp] {
      sp->body("x\r\n");
      sp->body_end();
    };
    s->start_transaction(tx({"b@y.test", "c@y.test"}));
    hp->take();
    s->feed(std::string("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n") + std::string(data_reply));
    if (!final_reply.empty()) s->feed(final_reply);
    return std::make_pair(std::move(h), std::move(s));
  };
  SECTION("DATA 451") {
    auto [h, s] = run("451 4.3.0 later\r\n", "");
    CHECK(h->take() == "RSET\r\n");
    REQUIRE(h->done.size() == 1);
    CHECK(h->done[0].recipients[0].outcome == Outcome::temporary);
    CHECK(h->done[0].recipients[0].stage == Stage::data);
    CHECK(h->done[0].recipients[1].outcome == Outcome::permanent);
    CHECK(h->done[0].recipients[1].stage == Stage::rcpt);
  }
  SECTION("DATA 554") {
    auto [h, s] = run("554 5.7.1 no\r\n", "");
    REQUIRE(h->done.size() == 1);
    CHECK(h->done[0].recipients[0].outcome == Outcome::permanent);
  }
  SECTION("final 452") {
    auto [h, s] = run("354 go\r\n", "452 4.3.1 disk full\r\n");
    CHECK(h->take() == "x\r\n.\r\n");  // no RSET after the final reply
    REQUIRE(h->done.size() == 1);
    CHECK(h->done[0].recipients[0].outcome == Outcome::temporary);
    CHECK(h->done[0].recipients[0].stage == Stage::end_of_data);
    CHECK(s->ready());
  }
  SECTION("final 554") {
    auto [h, s] = run("354 go\r\n", "554 5.6.0 spam\r\n");
    REQUIRE(h->done.size() == 1);
    CHECK(h->done[0].recipients[0].outcome == Outcome::permanent);
    CHECK(h->done[0].recipients[0].reply.enhanced == "5.6.0");
  }
}

TEST_CASE("client: 421 in the middle of a transaction") {
  Host h;
  ClientSession s(config(), h);
  connect(s, h, kEhloPlain);
  s.start_transaction(tx({"b@y.test", "c@y.test", "d@y.test"}));
  h.take();
  s.feed("250 ok\r\n");
  h.take();
  s.feed("550 5.1.1 no\r\n");  // b refused
  h.take();
  s.feed("250 ok\r\n");        // c accepted
  h.take();
  s.feed("421 4.3.2 shutting down\r\n");  // at d's RCPT
  CHECK(h.take().empty());  // no QUIT after 421
  REQUIRE(h.done.size() == 1);
  const auto& r = h.done[0].recipients;
  CHECK(r[0].outcome == Outcome::permanent);
  CHECK(r[1].outcome == Outcome::temporary);
  CHECK(r[1].reply.code == 421);
  CHECK(r[1].remote);
  CHECK(r[2].outcome == Outcome::temporary);
  CHECK(r[2].stage == Stage::rcpt);
  REQUIRE(h.failures.size() == 1);
  CHECK(h.failures[0].kind == Failure::service_closing);
  CHECK(h.failures[0].phase == "sending RCPT TO");
  CHECK_FALSE(h.failures[0].data_sent);
  CHECK(h.closed_n == 1);
  // Everything after close is ignored.
  s.feed("250 ok\r\n");
  s.on_timeout();
  s.on_eof();
  s.quit();
  CHECK(h.closed_n == 1);
  CHECK(h.failures.size() == 1);
  // A transaction started now is settled at once.
  s.start_transaction(tx({"e@y.test"}));
  REQUIRE(h.done.size() == 2);
  CHECK(h.done[1].recipients[0].outcome == Outcome::temporary);
  CHECK(h.done[1].recipients[0].reply.code == 451);
}

TEST_CASE("client: an idle connection closed by the server is not a failure") {
  Host h;
  ClientSession s(config(), h);
  connect(s, h, kEhloPipe);
  s.feed("421 4.4.2 idle too long\r\n");
  CHECK(s.closed());
  CHECK(h.closed_n == 1);
  CHECK(h.failures.empty());

  Host h2;
  ClientSession s2(config(), h2);
  connect(s2, h2, kEhloPipe);
  s2.on_eof();
  CHECK(h2.closed_n == 1);
  CHECK(h2.failures.empty());
}

TEST_CASE("client: timeouts per phase") {
  Host h;
  ClientConfig c = config();
  c.timeouts.idle = 7s;
  ClientSession s(std::move(c), h);
  CHECK(s.timeout() == 30s);  // connect
  s.on_connected();
  CHECK(s.timeout() == 5min);  // greeting
  s.feed("220 hi\r\n");
  CHECK(s.timeout() == 5min);  // EHLO
  s.feed(kEhloPipe);
  CHECK(s.timeout() == 7s);  // idle
  h.take();

  SECTION("idle timeout: QUIT and close, no failure") {
    s.on_timeout();
    CHECK(h.take() == "QUIT\r\n");
    CHECK(h.closed_n == 1);
    CHECK(h.failures.empty());
  }
  SECTION("timeout while waiting for RCPT replies") {
    s.start_transaction(tx({"b@y.test"}));
    s.feed("250 ok\r\n");  // MAIL; now waiting for RCPT
    CHECK(s.state() == State::rcpt);
    CHECK(s.timeout() == 5min);
    h.take();
    s.on_timeout();
    CHECK(h.take().empty());
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].outcome == Outcome::temporary);
    CHECK(h.done[0].recipients[0].reply.enhanced == "4.4.2");
    CHECK(h.done[0].recipients[0].reply.text() ==
          "Conversation timed out while sending RCPT TO");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::timeout);
    CHECK(h.closed_n == 1);
  }
  SECTION("timeout after the final dot") {
    h.on_need_body = [&] { s.body_end(); };
    s.start_transaction(tx({"b@y.test"}));
    s.feed("250 ok\r\n250 ok\r\n354 go\r\n");
    CHECK(s.state() == State::data_done);
    CHECK(s.timeout() == 10min);
    s.on_timeout();
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].outcome == Outcome::temporary);
    CHECK(h.done[0].recipients[0].stage == Stage::end_of_data);
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].data_sent);
  }
}

TEST_CASE("client: the server talking during the content") {
  SECTION("an early reply is read as the reply to the dot") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"b@y.test"}));
    s.feed("250 ok\r\n250 ok\r\n354 go\r\n");
    CHECK(s.state() == State::body);
    s.feed("552 5.3.4 too big\r\n");
    CHECK(h.done.empty());
    s.body("more");
    s.body_end();
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].outcome == Outcome::permanent);
    CHECK(h.done[0].recipients[0].reply.code == 552);
  }
  SECTION("early reply then EOF: the reply decides") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"b@y.test"}));
    s.feed("250 ok\r\n250 ok\r\n354 go\r\n552 5.3.4 too big\r\n");
    s.on_eof();
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].outcome == Outcome::permanent);
    CHECK(h.done[0].recipients[0].stage == Stage::message);
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::connection_closed);
    s.body("late chunk");  // ignored after close
    s.body_end();
  }
  SECTION("EOF during the content: temporary") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"b@y.test"}));
    s.feed("250 ok\r\n250 ok\r\n354 go\r\n");
    s.body("part");
    s.on_eof();
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].outcome == Outcome::temporary);
    CHECK(h.done[0].recipients[0].reply.text() ==
          "Lost connection with server while sending the message content");
  }
  SECTION("a flood during the content: protocol error") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"b@y.test"}));
    s.feed("250 ok\r\n250 ok\r\n354 go\r\n");
    s.feed(std::string(ClientSession::max_held + 1, 'x'));
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::protocol_error);
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].outcome == Outcome::temporary);
  }
}

TEST_CASE("client: bad replies are protocol errors") {
  const std::vector<std::string> bad = {
      std::string("250 ok\0x\r\n", 10),
      "250-a\r\n251 b\r\n",
      "hello\r\n",
      "250 a\rb\r\n",
  };
  for (const std::string& b : bad) {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"b@y.test"}));
    h.take();
    s.feed(b);
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::protocol_error);
    CHECK(h.failures[0].reply.text().starts_with("Protocol error while sending MAIL FROM: bad reply"));
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].outcome == Outcome::temporary);
    CHECK(h.done[0].recipients[0].stage == Stage::mail);
    CHECK(h.take().empty());
  }
  SECTION("a reply nobody asked for") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.feed("250 surprise\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::protocol_error);
  }
  SECTION("354 to MAIL") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPlain);
    s.start_transaction(tx({"b@y.test"}));
    s.feed("354 what\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::protocol_error);
  }
  SECTION("an overlong line") {
    Host h;
    ClientSession s(config(), h);
    s.on_connected();
    s.feed("220 " + std::string(5000, 'a'));
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].reply.text().find("line too long") != std::string::npos);
  }
}

TEST_CASE("client: re-entrancy — transactions started from idle()") {
  SECTION("many local refusals in a row do not nest") {
    Host h;
    ClientSession s(config(), h);
    int left = 100000;
    h.on_idle = [&] {
      if (left-- > 0) s.start_transaction(tx({"b@y.test"}, 5000));  // over SIZE 1000
    };
    connect(s, h, kEhloPipe);
    CHECK(h.done.size() == 100000);
    CHECK(s.ready());
    CHECK(h.take().empty());
  }
  SECTION("quit from transaction_done's idle()") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    h.on_idle = [&] { s.quit(); };
    h.on_need_body = [&] { s.body_end(); };
    s.start_transaction(tx({"b@y.test"}));
    s.feed("250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n");
    CHECK(h.out.ends_with(".\r\nQUIT\r\n"));
    CHECK(s.closed());
  }
  SECTION("start_transaction when not ready") {
    Host h;
    ClientSession s(config(), h);
    s.on_connected();
    s.start_transaction(tx({"b@y.test", "c@y.test"}));
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients.size() == 2);
    CHECK(h.done[0].recipients[1].outcome == Outcome::temporary);
    CHECK(h.out.empty());
  }
  SECTION("no recipients") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({}));
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients.empty());
    CHECK(h.idle_n == 2);
  }
}

TEST_CASE("client: quit() in the middle of a transaction aborts it") {
  Host h;
  ClientSession s(config(), h);
  connect(s, h, kEhloPipe);
  s.start_transaction(tx({"b@y.test"}));
  h.take();
  s.feed("250 ok\r\n250 ok\r\n354 go\r\n");
  s.body("part");
  h.take();
  s.quit();
  CHECK(h.take().empty());  // no QUIT in the middle of DATA
  REQUIRE(h.done.size() == 1);
  CHECK(h.done[0].recipients[0].outcome == Outcome::temporary);
  CHECK(h.done[0].recipients[0].reply.enhanced == "4.3.2");
  CHECK(h.failures.empty());
  CHECK(h.closed_n == 1);
}

TEST_CASE("client: addresses with line breaks never reach the wire") {
  Host h;
  ClientSession s(config(), h);
  connect(s, h, kEhloPipe);
  s.start_transaction(tx({"b@y.test\r\nRCPT TO:<evil@z>", "c@y.test"}));
  CHECK(h.take() == "MAIL FROM:<a@x.test> SIZE=100\r\nRCPT TO:<c@y.test>\r\nDATA\r\n");
  s.feed("250 ok\r\n250 ok\r\n554 no\r\n");
  REQUIRE(h.done.size() == 1);
  CHECK(h.done[0].recipients[0].outcome == Outcome::permanent);
  CHECK(h.done[0].recipients[0].stage == Stage::local);
  CHECK(h.done[0].recipients[1].outcome == Outcome::permanent);
  CHECK(h.done[0].recipients[1].stage == Stage::data);

  Host h2;
  ClientSession s2(config(), h2);
  connect(s2, h2, kEhloPipe);
  s2.start_transaction(tx({"c@y.test"}, 10, "a@x\nDATA"));
  CHECK(h2.take().empty());
  REQUIRE(h2.done.size() == 1);
  CHECK(h2.done[0].recipients[0].reply.enhanced == "5.1.7");
}

TEST_CASE("client: DSN parameters only when the server offers DSN") {
  Transaction t = tx({"b@y.test"});
  t.recipients[0].notify = 1 | 2;
  t.recipients[0].orcpt = "rfc822;b@y.test";
  t.ret = 2;
  t.envid = "QID123";
  {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, "250-mx\r\n250-DSN\r\n250 PIPELINING\r\n");
    Transaction copy = t;
    s.start_transaction(std::move(copy));
    CHECK(h.take() ==
          "MAIL FROM:<a@x.test> RET=HDRS ENVID=QID123\r\n"
          "RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@y.test\r\nDATA\r\n");
  }
  {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, "250-mx\r\n250 PIPELINING\r\n");
    s.start_transaction(std::move(t));
    CHECK(h.take() == "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
  }
}

TEST_CASE("client: odd corners") {
  SECTION("every recipient invalid: nothing sent") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"x\r\n@y", ""}));
    CHECK(h.take().empty());
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].count(Outcome::permanent) == 2);
    CHECK(s.ready());
  }
  SECTION("AUTH LOGIN refused at the first step") {
    Host h;
    ClientConfig c = config(TlsPolicy::required, true);
    c.credentials = creds();
    ClientSession s(std::move(c), h);
    connect(s, h, kEhloTls);
    into_tls(s, h);
    s.feed("250-relay.test\r\n250 AUTH LOGIN\r\n");
    CHECK(h.take() == "AUTH LOGIN\r\n");
    CHECK(s.timeout() == 5min);
    s.feed("504 5.5.4 unrecognized mechanism\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::auth_failed);
    CHECK(h.failures[0].reply.transient());
    CHECK(h.failures[0].phase == "authenticating");
  }
  SECTION("RSET refused: the connection is not reused") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"b@y.test"}));
    s.feed("451 4.3.0 later\r\n503 no\r\n503 no\r\n");
    CHECK(s.state() == State::rset);
    CHECK(s.timeout() == 2min);
    s.feed("500 5.5.1 what\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::protocol_error);
    CHECK(h.done.size() == 1);  // settled before RSET
  }
  SECTION("2xx to DATA") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    s.start_transaction(tx({"b@y.test"}));
    s.feed("250 ok\r\n250 ok\r\n250 ok\r\n");
    REQUIRE(h.failures.size() == 1);
    CHECK(h.failures[0].kind == Failure::protocol_error);
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].recipients[0].outcome == Outcome::temporary);
    CHECK(h.done[0].recipients[0].stage == Stage::data);
  }
  SECTION("names") {
    CHECK(sluice::client::to_string(TlsPolicy::verify) == "verify");
    CHECK(sluice::client::to_string(Outcome::permanent) == "permanent");
    CHECK(sluice::client::to_string(Stage::end_of_data) == "end of DATA");
    CHECK(sluice::client::to_string(Failure::auth_failed) == "auth_failed");
    CHECK(ClientSession::to_string(State::data_done) == "data_done");
  }
}

TEST_CASE("client: REQUIRETLS only to a server that offers it (RFC 8689)") {
  SECTION("offered in TLS: MAIL carries REQUIRETLS, the transaction runs") {
    Host h;
    ClientSession s(config(TlsPolicy::opportunistic, true), h);
    connect(s, h, kEhloTls);
    CHECK_FALSE(s.capabilities().requiretls);
    into_tls(s, h);
    s.feed("250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 REQUIRETLS\r\n");
    REQUIRE(s.ready());
    CHECK(s.capabilities().requiretls);
    Transaction t = tx({"b@y.test"});
    t.requiretls = true;
    s.start_transaction(std::move(t));
    CHECK(h.take() == "MAIL FROM:<a@x.test> SIZE=100 REQUIRETLS\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
    s.feed("250 ok\r\n250 ok\r\n354 go\r\n");
    s.body("x\r\n");
    s.body_end();
    s.feed("250 queued\r\n");
    REQUIRE(h.done.size() == 1);
    CHECK(h.done[0].count(Outcome::sent) == 1);
  }
  SECTION("not offered: nothing sent, every recipient Stage::requiretls, 451 4.7.30") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, kEhloPipe);
    REQUIRE(s.ready());
    // Checked first: a message that also needs SMTPUTF8 or is too big is
    // still "not for this server" rather than refused for good.
    Transaction t = tx({"b@y.test", "c@y.test"}, 5000, "\xc3\xa4@x.test");
    t.requiretls = true;
    s.start_transaction(std::move(t));
    CHECK(h.take().empty());
    REQUIRE(h.done.size() == 1);
    CHECK_FALSE(h.done[0].too_big.has_value());
    REQUIRE(h.done[0].recipients.size() == 2);
    for (const auto& r : h.done[0].recipients) {
      CHECK(r.outcome == Outcome::temporary);
      CHECK(r.stage == Stage::requiretls);
      CHECK(r.reply.code == 451);
      CHECK(r.reply.enhanced == "4.7.30");
      CHECK_FALSE(r.remote);
    }
    CHECK(h.failures.empty());
    CHECK(sluice::client::to_string(Stage::requiretls) == "REQUIRETLS");
    // The connection stays usable for a message without REQUIRETLS.
    CHECK(s.ready());
    s.start_transaction(tx({"b@y.test"}));
    CHECK(h.take() == "MAIL FROM:<a@x.test> SIZE=100\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
  }
  SECTION("without requiretls the keyword is never sent, offered or not") {
    Host h;
    ClientSession s(config(), h);
    connect(s, h, "250-mx\r\n250-PIPELINING\r\n250 requiretls\r\n");
    CHECK(s.capabilities().requiretls);  // keywords are case-insensitive
    s.start_transaction(tx({"b@y.test"}));
    CHECK(h.take() == "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
  }
}
