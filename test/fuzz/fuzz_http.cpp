// fuzz_http.cpp — the MTA-STS policy fetch's HTTP/1.1 response parser
// (sts/http.hpp) against any server bytes.
//
// The first input byte picks a piece size and whether the peer closes at
// the end; the rest is the response. Invariants checked (a violation traps):
//  - fed whole and in pieces of that size (and byte by byte), the result,
//    error, status, Content-Type, Location and body are the same, and so is
//    what is left after a complete response;
//  - "more" consumes every byte given; the body never exceeds kMaxBody and
//    is empty after an error; an error has a name other than "none", done
//    has none;
//  - judge() hands out exactly the body, only for 200 and text/plain, and
//    a 3xx is always a redirect.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sts/http.hpp"
#include "sts/policy.hpp"

using namespace sluice::sts;
using R = ResponseParser::Result;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Run {
  R result;
  ResponseParser::Error error;
  Response response;
  size_t left;
};

Run run(std::string_view in, size_t piece, bool close) {
  ResponseParser p;
  R r = R::more;
  size_t left = 0;
  while (!in.empty()) {
    size_t n = piece == 0 ? in.size() : std::min(piece, in.size());
    std::string_view chunk = in.substr(0, n);
    in.remove_prefix(n);
    r = p.feed(chunk);
    check(r == p.result());
    check(p.response().body.size() <= kMaxBody);
    if (r != R::more) {
      left = chunk.size() + in.size();
      break;
    }
    check(chunk.empty());
  }
  if (r == R::more && close) r = p.finish();
  check(r == p.result());
  return {r, p.error(), p.response(), left};
}

void same(const Run& a, const Run& b) {
  check(a.result == b.result);
  check(a.error == b.error);
  check(a.response.status == b.response.status);
  check(a.response.content_type == b.response.content_type);
  check(a.response.location == b.response.location);
  check(a.response.body == b.response.body);
  if (a.result == R::done) check(a.left == b.left);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t piece = 1 + data[0] % 31;
  const bool close = data[0] & 0x80;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  const Run whole = run(in, 0, close);
  same(whole, run(in, piece, close));
  same(whole, run(in, 1, close));

  check(whole.response.body.size() <= kMaxBody);
  if (whole.result == R::error) {
    check(whole.response.body.empty());
    check(error_name(whole.error) != "none");
  } else {
    check(whole.error == ResponseParser::Error::none);
  }
  if (whole.result == R::done) {
    check(whole.response.status >= 200 && whole.response.status <= 599);
    auto body = judge(whole.response);
    if (body) {
      check(whole.response.status == 200 && is_text_plain(whole.response.content_type));
      check(*body == whole.response.body);
      (void)parse_policy(*body);
    } else if (whole.response.status >= 300 && whole.response.status < 400) {
      check(body.error() == FetchProblem::redirect);
    }
  }
  return 0;
}
