// http_test.cpp — sts/http.hpp: the policy request, and the response parser
// as tables of responses and what they give, each fed whole, byte by byte
// and in pieces of every other size (all must agree).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "sts/http.hpp"

using namespace sluice::sts;
using E = ResponseParser::Error;
using R = ResponseParser::Result;

namespace {

struct Parsed {
  R result;
  E error;
  Response response;
  size_t left;  // bytes not consumed
};

// Feeds `in` in pieces of `piece` octets (0 = whole), then finish() if
// `close` and the response is not complete yet.
Parsed parse(std::string_view in, size_t piece = 0, bool close = true) {
  ResponseParser p;
  size_t left = 0;
  R r = R::more;
  while (!in.empty()) {
    size_t n = piece == 0 ? in.size() : std::min(piece, in.size());
    std::string_view chunk = in.substr(0, n);
    in.remove_prefix(n);
    r = p.feed(chunk);
    if (r != R::more) {
      left = chunk.size() + in.size();
      break;
    }
    REQUIRE(chunk.empty());  // more: everything was taken
  }
  if (r == R::more && close) r = p.finish();
  CHECK(r == p.result());
  return {r, p.error(), p.response(), left};
}

// The same result fed whole and in pieces of 1..16 and 1000 octets.
Parsed parse_all_ways(std::string_view in, bool close = true) {
  Parsed whole = parse(in, 0, close);
  for (size_t piece : {1, 2, 3, 5, 7, 16, 1000}) {
    INFO("piece " << piece);
    Parsed p = parse(in, piece, close);
    CHECK(p.result == whole.result);
    CHECK(p.error == whole.error);
    CHECK(p.response.status == whole.response.status);
    CHECK(p.response.body == whole.response.body);
    CHECK(p.response.content_type == whole.response.content_type);
    if (whole.result == R::done) CHECK(p.left == whole.left);  // after an error, what was consumed is moot
  }
  return whole;
}

const std::string kPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 86400\r\n";

}  // namespace

TEST_CASE("the policy request") {
  auto host = policy_host("Example.COM.");
  REQUIRE(host);
  CHECK(*host == "mta-sts.example.com");
  CHECK(policy_request(*host) ==
        "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\nConnection: close\r\n\r\n");
  CHECK_FALSE(policy_host(""));
  CHECK_FALSE(policy_host("example.com\r\nX-Evil: 1"));
  CHECK_FALSE(policy_host("exa mple.com"));
  CHECK_FALSE(policy_host("example..com"));
  CHECK_FALSE(policy_host("example.com/x"));
}

TEST_CASE("a 200 text/plain policy with Content-Length") {
  std::string in = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                   std::to_string(kPolicy.size()) + "\r\n\r\n" + kPolicy;
  Parsed p = parse_all_ways(in, false);  // complete without a close
  CHECK(p.result == R::done);
  CHECK(p.response.status == 200);
  CHECK(p.response.body == kPolicy);
  auto body = judge(p.response);
  REQUIRE(body);
  CHECK(*body == kPolicy);
  // Bytes after the response are left to the caller.
  CHECK(parse_all_ways(in + "extra", false).left == 5);
}

TEST_CASE("chunked bodies") {
  std::string in =
      "HTTP/1.1 200 OK\r\ncontent-type: TEXT/PLAIN; charset=utf-8\r\ntransfer-encoding: Chunked\r\n\r\n"
      "10\r\nversion: STSv1\r\n\r\n"
      "5;ext=1\r\nmode:\r\n"
      "a ; name\r\n enforce\r\n\r\n"
      "0\r\nX-Trailer: yes\r\n\r\n";
  Parsed p = parse_all_ways(in, false);
  CHECK(p.result == R::done);
  CHECK(p.response.body == "version: STSv1\r\nmode: enforce\r\n");
  CHECK(judge(p.response));

  // LF-only line ends are recognised too (RFC 9112 §2.2).
  p = parse_all_ways("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n", false);
  CHECK(p.result == R::done);
  CHECK(p.response.body == "abc");
}

TEST_CASE("a body delimited by the close") {
  Parsed p = parse_all_ways("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + kPolicy);
  CHECK(p.result == R::done);
  CHECK(p.response.body == kPolicy);
  // Without the close it is not complete.
  CHECK(parse_all_ways("HTTP/1.0 200 OK\r\n\r\nabc", false).result == R::more);
}

TEST_CASE("status codes: redirects, errors, interim responses, no-body statuses") {
  Parsed p = parse_all_ways(
      "HTTP/1.1 301 Moved Permanently\r\nLocation: https://evil.example/x\r\nContent-Length: 3\r\n\r\nabc", false);
  CHECK(p.result == R::done);
  CHECK(p.response.status == 301);
  CHECK(p.response.location == "https://evil.example/x");
  CHECK(judge(p.response).error() == FetchProblem::redirect);

  p = parse_all_ways("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n", false);
  CHECK(p.result == R::done);
  CHECK(judge(p.response).error() == FetchProblem::http_status);

  p = parse_all_ways("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1\r\n\r\nx", false);
  CHECK(judge(p.response).error() == FetchProblem::content_type);
  p = parse_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", false);
  CHECK(judge(p.response).error() == FetchProblem::content_type);

  p = parse_all_ways(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\nContent-Type: text/html\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
      false);
  CHECK(p.result == R::done);
  CHECK(p.response.status == 200);
  CHECK(p.response.content_type == "text/plain");
  CHECK(p.response.body == "ok");

  // 204 and 304 end at the head, whatever Content-Length says.
  p = parse_all_ways("HTTP/1.1 304 Not Modified\r\nContent-Length: 999999\r\n\r\nnext", false);
  CHECK(p.result == R::done);
  CHECK(p.left == 4);
  CHECK(parse_all_ways("HTTP/1.1 204 No Content\r\n\r\n", false).result == R::done);
  CHECK(parse_all_ways("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false).result == R::done);
}

TEST_CASE("text/plain recognition") {
  CHECK(is_text_plain("text/plain"));
  CHECK(is_text_plain("Text/Plain"));
  CHECK(is_text_plain("text/plain; charset=utf-8"));
  CHECK(is_text_plain("text/plain ;charset=\"utf-8\""));
  CHECK_FALSE(is_text_plain(""));
  CHECK_FALSE(is_text_plain("text/plainx"));
  CHECK_FALSE(is_text_plain("text/html"));
  CHECK_FALSE(is_text_plain("text/plain/x"));
}

TEST_CASE("malformed responses are refused") {
  struct Row {
    std::string in;
    E error;
  };
  const std::string ok_status = "HTTP/1.1 200 OK\r\n";
  const std::vector<Row> rows{
      {"HTTP/2 200 OK\r\n\r\n", E::bad_status_line},
      {"HTTP/1.1 200OK\r\n\r\n", E::bad_status_line},
      {"HTTP/1.1 20 OK\r\n\r\n", E::bad_status_line},
      {"HTTP/1.1 600 OK\r\n\r\n", E::bad_status_line},
      {"HTTP/1.1 2x0 OK\r\n\r\n", E::bad_status_line},
      {"http/1.1 200 OK\r\n\r\n", E::bad_status_line},
      {"HTTP/1.1 200 O\rK\r\n\r\n", E::bad_status_line},
      {"\r\nHTTP/1.1 200 OK\r\n\r\n", E::bad_status_line},
      {ok_status + "Content-Type : text/plain\r\n\r\n", E::bad_header},
      {ok_status + "No colon\r\n\r\n", E::bad_header},
      {ok_status + ": empty name\r\n\r\n", E::bad_header},
      {ok_status + "X: a\rb\r\n\r\n", E::bad_header},
      {ok_status + "X: a\r\n folded\r\n\r\n", E::folded_header},
      {ok_status + "X: a\r\n\tfolded\r\n\r\n", E::folded_header},
      {ok_status + "Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", E::duplicate_header},
      {ok_status + "Content-Type: text/plain\r\nContent-Type: text/plain\r\n\r\n", E::duplicate_header},
      {ok_status + "Location: a\r\nlocation: b\r\n\r\n", E::duplicate_header},
      {ok_status + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", E::duplicate_header},
      {ok_status + "Content-Length: -1\r\n\r\n", E::bad_content_length},
      {ok_status + "Content-Length: 1, 1\r\n\r\nx", E::bad_content_length},
      {ok_status + "Content-Length:\r\n\r\n", E::bad_content_length},
      {ok_status + "Transfer-Encoding: gzip, chunked\r\n\r\n", E::bad_transfer_encoding},
      {ok_status + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", E::bad_transfer_encoding},
      {ok_status + "Transfer-Encoding: chunked\r\n\r\nzz\r\n", E::bad_chunk},
      {ok_status + "Transfer-Encoding: chunked\r\n\r\n\r\n", E::bad_chunk},
      {ok_status + "Transfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n0\r\n\r\n", E::bad_chunk},
      {ok_status + "Transfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", E::bad_chunk},
      {ok_status + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\rx0\r\n\r\n", E::bad_chunk},
      {ok_status + "Transfer-Encoding: chunked\r\n\r\n3 " + std::string(2000, ' ') + "\r\n", E::bad_chunk},
      {ok_status + "Transfer-Encoding: chunked\r\n\r\n0\r\n folded: trailer\r\n\r\n", E::folded_header},
      // the peer closed early
      {"", E::truncated},
      {"HTTP/1.1 200 OK\r\n", E::truncated},
      {ok_status + "Content-Length: 5\r\n\r\nabc", E::truncated},
      {ok_status + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", E::truncated},
      {ok_status + "Transfer-Encoding: chunked\r\n\r\n0\r\n", E::truncated},
  };
  for (const auto& row : rows) {
    INFO(row.in);
    Parsed p = parse_all_ways(row.in);
    CHECK(p.result == R::error);
    CHECK(error_name(p.error) == error_name(row.error));
  }
  // The NUL inside a literal.
  Parsed p = parse_all_ways(std::string_view("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n", 29));
  CHECK(p.error == E::bad_header);
}

TEST_CASE("the body cap: 64 KB is fine, one octet more is an error") {
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n";
  const std::string full(kMaxBody, 'x');
  Parsed p = parse_all_ways(head + "Content-Length: 65536\r\n\r\n" + full, false);
  CHECK(p.result == R::done);
  CHECK(p.response.body.size() == kMaxBody);
  // A Content-Length over the cap is refused at once, before any body.
  p = parse_all_ways(head + "Content-Length: 65537\r\n\r\n", false);
  CHECK(p.error == E::body_too_big);
  p = parse_all_ways(head + "Content-Length: 99999999999999999999999999\r\n\r\n", false);
  CHECK(p.error == E::body_too_big);
  // Up to the close.
  p = parse_all_ways(head + "\r\n" + full);
  CHECK(p.result == R::done);
  p = parse_all_ways(head + "\r\n" + full + "y");
  CHECK(p.error == E::body_too_big);
  // Chunked: sizes add up against the cap; a chunk size over it is refused before its data.
  std::string chunked = head + "Transfer-Encoding: chunked\r\n\r\n8000\r\n" + std::string(0x8000, 'a') +
                        "\r\n8000\r\n" + std::string(0x8000, 'b') + "\r\n";
  p = parse_all_ways(chunked + "0\r\n\r\n", false);
  CHECK(p.result == R::done);
  CHECK(p.response.body.size() == kMaxBody);
  p = parse_all_ways(chunked + "1\r\n", false);
  CHECK(p.error == E::body_too_big);
  p = parse_all_ways(head + "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFFFFF\r\n", false);
  CHECK(p.error == E::body_too_big);
}

TEST_CASE("the head cap") {
  // A head of exactly kMaxHead octets passes, one octet more fails, fed
  // whole or in pieces.
  std::string base = "HTTP/1.1 204 No Content\r\nX: ";
  std::string ok = base + std::string(kMaxHead - base.size() - 4, 'v') + "\r\n\r\n";
  REQUIRE(ok.size() == kMaxHead);
  CHECK(parse_all_ways(ok, false).result == R::done);
  std::string over = base + std::string(kMaxHead - base.size() - 3, 'v') + "\r\n\r\n";
  CHECK(parse_all_ways(over, false).error == E::head_too_big);
  // An endless line is refused without waiting for its end.
  CHECK(parse_all_ways("HTTP/1.1 200 OK\r\nX: " + std::string(kMaxHead, 'v'), false).error == E::head_too_big);
  // Endless interim responses too.
  std::string interim;
  while (interim.size() <= kMaxHead) interim += "HTTP/1.1 100 Continue\r\n\r\n";
  CHECK(parse_all_ways(interim, false).error == E::head_too_big);
}
