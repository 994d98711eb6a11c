#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <string>
#include <vector>

#include "http/request_parser.hpp"

using namespace sluice::http;
using Kind = RequestParser::Event::Kind;

namespace {

// Everything `input` yields, fed in pieces of `step` bytes (0: whole).
std::vector<RequestParser::Event> run(std::string_view input, size_t step = 0, uint64_t max_body = 1000) {
  RequestParser p(max_body);
  std::vector<RequestParser::Event> out;
  auto drain = [&] {
    for (;;) {
      auto e = p.next();
      if (e.kind == Kind::more) return true;
      const bool stop = e.kind == Kind::error;
      out.push_back(std::move(e));
      if (stop) return false;
    }
  };
  if (step == 0) step = input.size() ? input.size() : 1;
  for (size_t i = 0; i < input.size(); i += step) {
    p.feed(input.substr(i, step));
    if (!drain()) break;
  }
  return out;
}

std::vector<Request> requests(const std::vector<RequestParser::Event>& ev) {
  std::vector<Request> r;
  for (const auto& e : ev)
    if (e.kind == Kind::request) r.push_back(e.request);
  return r;
}

int error_of(const std::vector<RequestParser::Event>& ev) {
  return !ev.empty() && ev.back().kind == Kind::error ? ev.back().status : 0;
}

}  // namespace

TEST_CASE("request parser: a GET, whole and byte by byte") {
  const std::string in = "GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\nX-A:  b c \r\n\r\n";
  for (size_t step : {0, 1, 3, 7}) {
    auto ev = run(in, step);
    REQUIRE(ev.size() == 1);
    const auto& r = ev[0].request;
    CHECK(r.method == "GET");
    CHECK(r.target == "/healthz?x=1");
    CHECK(r.path == "/healthz");
    REQUIRE(r.headers.size() == 2);
    CHECK(r.headers[1].name == "X-A");
    CHECK(r.headers[1].value == "b c");
    CHECK(r.header("x-a") == "b c");
    CHECK(r.keep_alive);
    CHECK(r.body.empty());
  }
}

TEST_CASE("request parser: bodies by Content-Length and chunked") {
  auto ev = run("POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
  REQUIRE(requests(ev).size() == 1);
  CHECK(requests(ev)[0].body == "hello");
  const std::string chunked =
      "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n";
  for (size_t step : {0, 1, 5}) {
    ev = run(chunked, step);
    REQUIRE(requests(ev).size() == 1);
    CHECK(requests(ev)[0].body == "abcde");
    CHECK(requests(ev)[0].headers.size() == 1);  // the trailer is not a header
  }
}

TEST_CASE("request parser: pipelined requests come out in order") {
  const std::string in =
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 2\r\n\r\nxyGET /3 HTTP/1.1\r\n\r\n";
  for (size_t step : {0, 1, 4}) {
    auto r = requests(run(in, step));
    REQUIRE(r.size() == 3);
    CHECK(r[0].path == "/1");
    CHECK(r[1].path == "/2");
    CHECK(r[1].body == "xy");
    CHECK(r[2].path == "/3");
  }
}

TEST_CASE("request parser: keep-alive by version and Connection") {
  CHECK(requests(run("GET / HTTP/1.0\r\n\r\n"))[0].keep_alive == false);
  CHECK(requests(run("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))[0].keep_alive);
  CHECK(requests(run("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))[0].keep_alive == false);
  // Nothing after the last request is parsed.
  auto ev = run("GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].request.path == "/a");
  auto up = run("GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n");
  REQUIRE(requests(up).size() == 1);
  CHECK(!requests(up)[0].keep_alive);
}

TEST_CASE("request parser: errors and their status") {
  CHECK(error_of(run("garbage\r\n\r\n")) == 400);
  CHECK(error_of(run("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n")) == 400);
  CHECK(error_of(run("GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")) == 400);
  CHECK(error_of(run("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")) == 400);
  CHECK(error_of(run("GET / HTTP/2.0\r\n\r\n")) == 505);
  CHECK(error_of(run("GET / HTTP/1.1\r\nExpect: something\r\n\r\n")) == 417);
  // 413 from Content-Length, before any body byte.
  auto ev = run("POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n");
  CHECK(error_of(ev) == 413);
  CHECK(run("POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n").empty());  // waits for its body
  // 413 while a chunked body is counted.
  std::string big = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) big += "190\r\n" + std::string(400, 'x') + "\r\n";
  CHECK(error_of(run(big)) == 413);
  CHECK(error_of(run(big, 1)) == 413);
}

TEST_CASE("request parser: header limits") {
  std::string many = "GET / HTTP/1.1\r\n";
  for (size_t i = 0; i < RequestParser::kMaxHeaderFields; ++i) many += fmt::format("X-{}: v\r\n", i);
  CHECK(requests(run(many + "\r\n")).size() == 1);
  CHECK(error_of(run(many + "X-last: v\r\n\r\n")) == 431);
  // Exactly the limit passes; one more byte is refused, whole or in pieces.
  const std::string head = "GET / HTTP/1.1\r\nX: ";
  const std::string tail = "\r\n\r\n";
  const std::string fits = head + std::string(RequestParser::kMaxHeaderBytes - head.size() - tail.size(), 'a') + tail;
  CHECK(fits.size() == RequestParser::kMaxHeaderBytes);
  CHECK(requests(run(fits)).size() == 1);
  CHECK(requests(run(fits, 1000)).size() == 1);
  const std::string over = head + std::string(RequestParser::kMaxHeaderBytes - head.size() - tail.size() + 1, 'a') + tail;
  CHECK(error_of(run(over)) == 431);
  CHECK(error_of(run(over, 999)) == 431);
  // A header section that never ends is refused once it passes the limit.
  CHECK(error_of(run(head + std::string(20000, 'a'))) == 431);
  // Each request of a pipeline has its own budget.
  CHECK(requests(run(fits + fits + fits)).size() == 3);
}

TEST_CASE("request parser: Expect: 100-continue before the body") {
  RequestParser p(1000);
  p.feed("POST /a HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n");
  auto e = p.next();
  CHECK(e.kind == Kind::expect_continue);
  CHECK(p.phase() == RequestParser::Phase::body);
  CHECK(p.next().kind == Kind::more);
  p.feed("abc");
  e = p.next();
  REQUIRE(e.kind == Kind::request);
  CHECK(e.request.body == "abc");
  CHECK(p.phase() == RequestParser::Phase::idle);
  // Over the limit: 413 instead of 100.
  RequestParser q(10);
  q.feed("POST /a HTTP/1.1\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
  e = q.next();
  CHECK(e.kind == Kind::error);
  CHECK(e.status == 413);
  // Without a body there is nothing to continue.
  CHECK(run("GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n")[0].kind == Kind::request);
}

TEST_CASE("request parser: phases and a dead parser") {
  RequestParser p(100);
  CHECK(p.phase() == RequestParser::Phase::idle);
  p.feed("GET / HT");
  CHECK(p.next().kind == Kind::more);
  CHECK(p.phase() == RequestParser::Phase::head);
  p.feed("TP/1.1\r\n\r\n");
  CHECK(p.next().kind == Kind::request);
  CHECK(p.phase() == RequestParser::Phase::idle);
  p.feed("\x01\x02");
  CHECK(p.next().status == 400);
  CHECK(p.phase() == RequestParser::Phase::done);
  p.feed("GET / HTTP/1.1\r\n\r\n");
  CHECK(p.next().status == 400);
}

TEST_CASE("serialize and imf_fixdate") {
  CHECK(imf_fixdate(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(imf_fixdate(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
  CHECK(imf_fixdate(951782400) == "Tue, 29 Feb 2000 00:00:00 GMT");
  auto r = Response::text(200, "ok");
  r.headers.push_back({"Content-Length", "99"});
  r.headers.push_back({"X-Evil", "a\r\nSet-Cookie: x"});
  CHECK(serialize(r, true, "D") ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: D\r\nContent-Length: 2\r\n\r\nok");
  Response nc;
  nc.status = 204;
  nc.body = "x";
  CHECK(serialize(nc, false, "D") == "HTTP/1.1 204 No Content\r\nDate: D\r\nConnection: close\r\n\r\n");
  auto nf = Response::text(404, "");
  CHECK(serialize(nf, false, "D").starts_with("HTTP/1.1 404 Not Found\r\n"));
}
