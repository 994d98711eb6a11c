// Session limits without sockets: sizes, line lengths, hops, errors.
#include <catch2/catch.hpp>

#include <string>

#include "mta/session_test_util.hpp"

using namespace sluice::mta::test;

TEST_CASE("message size: SIZE= and streamed content") {
  Host h;
  Session s(relay_cfg(), h);
  s.feed("EHLO c\r\nMAIL FROM:<a@x.test> SIZE=1001\r\n");
  CHECK(h.out.ends_with("552 5.3.4 Message size exceeds fixed limit\r\n"));
  h.take();
  s.feed("MAIL FROM:<a@x.test> SIZE=1000\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
  std::string big(2000, 'x');
  for (size_t i = 80; i < big.size(); i += 82) big.replace(i, 2, "\r\n");
  s.feed(big + "\r\n.\r\nNOOP\r\n");
  CHECK(h.committed == 0);
  CHECK(h.aborted == 1);
  CHECK(h.codes() == std::vector<int>{250, 250, 354, 552, 250});
  CHECK(s.state() == Session::State::ready);
}

TEST_CASE("bare CR, NUL and long lines in DATA are rejected after the end") {
  const std::pair<std::string, std::string> cases[] = {
      {"a\rb\r\n.\r\n", "554 5.6.0 Error: bare CR in message content\r\n"},
      {std::string("a\0b\r\n.\r\n", 8), "554 5.6.0 Error: NUL in message content\r\n"},
      {std::string(999, 'l') + "\r\n.\r\n", "500 5.5.2 Error: message line longer than 998 characters\r\n"},
  };
  for (const auto& [body, want] : cases) {
    Host h;
    Session s(relay_cfg(), h);
    s.feed("EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
    h.take();
    s.feed(body);
    CHECK(h.out == want);
    CHECK(h.committed == 0);
  }
  Host h;
  Session s(relay_cfg(), h);
  s.feed("EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
  s.feed(std::string(998, 'l') + "\r\n.\r\n");
  CHECK(h.committed == 1);
}

TEST_CASE("overlong command line: 500 5.5.2 and the session goes on") {
  Host h;
  Session s(relay_cfg(), h);
  s.feed("NOOP " + std::string(505, 'a') + "\r\n");  // 510 + CRLF = 512: fine
  CHECK(h.take() == "250 2.0.0 Ok\r\n");
  s.feed("NOOP " + std::string(506, 'a') + "\r\nNOOP\r\n");
  CHECK(h.take() == "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n");
}

TEST_CASE("an endless command line: 500 5.5.2 before it ends, closed past 64 KB") {
  Host h;
  Session s(relay_cfg(), h);
  h.take();
  s.feed("NOOP\r\n" + std::string(600, 'a'));  // no line end yet
  CHECK(h.take() == "250 2.0.0 Ok\r\n500 5.5.2 Error: line too long\r\n");
  for (int i = 0; i < 15; ++i) s.feed(std::string(4096, 'a'));  // ~61 KB: still open
  CHECK(h.take().empty());
  CHECK_FALSE(s.closed());
  s.feed(std::string(4096, 'a'));  // past 64 KB
  CHECK(h.take() == "421 4.7.0 Error: line too long, closing connection\r\n");
  CHECK(s.closed());
}

TEST_CASE("a long line that ends before 64 KB: one 500, then the session goes on") {
  Host h;
  Session s(relay_cfg(), h);
  h.take();
  s.feed(std::string(30000, 'a'));
  CHECK(h.take() == "500 5.5.2 Error: line too long\r\n");
  s.feed(std::string(30000, 'a') + "\r\nNOOP\r\n");
  CHECK(h.take() == "250 2.0.0 Ok\r\n");
  CHECK_FALSE(s.closed());
}

TEST_CASE("a client that keeps erring is disconnected") {
  Host h;
  Session s(relay_cfg(), h);
  for (int i = 0; i < 12; ++i) s.feed("BOGUS\r\n");
  auto codes = h.codes();
  REQUIRE(codes.size() == 11);
  CHECK(codes.back() == 421);
  CHECK(h.out.ends_with("421 4.7.0 Error: too many errors\r\n"));
  CHECK(h.closed);
  CHECK(s.closed());
}

TEST_CASE("more Received fields than max_hops: 554 5.4.6 at the end of DATA, nothing kept") {
  auto hops = [](int n) {
    std::string m;
    for (int i = 0; i < n; ++i) m += "Received: from h" + std::to_string(i) + " by x; date\r\n";
    return m + "Subject: loop\r\n\r\nbody\r\n.\r\n";
  };
  Host h;
  SessionConfig cfg = relay_cfg();
  cfg.max_message_size = 100000;
  cfg.max_hops = 5;
  Session s(cfg, h);
  s.feed("EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
  h.take();
  s.feed(hops(6));
  CHECK(h.take() == "554 5.4.6 Error: too many hops\r\n");
  CHECK(h.committed == 0);
  CHECK(h.aborted == 1);
  s.feed("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
  h.take();
  s.feed(hops(5));  // exactly max_hops: accepted
  CHECK(h.committed == 1);
}
