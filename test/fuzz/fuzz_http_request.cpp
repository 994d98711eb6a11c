// fuzz_http_request.cpp — the HTTP server's request parser
// (http/request_parser.hpp, over llhttp) against any client bytes.
//
// The first input byte picks a piece size and the body cap; the rest is
// what the client sends. Invariants checked (a violation traps):
//  - fed whole, in pieces of that size and byte by byte, the events are the
//    same: each request (method, target, path, headers, body, keep-alive),
//    each 100-continue, the error status;
//  - a body never exceeds the cap, a header section never has more than
//    kMaxHeaderFields fields, an error status is one of those documented,
//    a path is the target up to '?';
//  - after an error the parser stays dead.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/request_parser.hpp"

using namespace sluice::http;
using Kind = RequestParser::Event::Kind;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::vector<RequestParser::Event> run(std::string_view in, size_t piece, uint64_t cap) {
  RequestParser p(cap);
  std::vector<RequestParser::Event> out;
  while (!in.empty()) {
    const size_t n = piece == 0 ? in.size() : std::min(piece, in.size());
    p.feed(in.substr(0, n));
    in.remove_prefix(n);
    for (;;) {
      auto e = p.next();
      if (e.kind == Kind::more) break;
      if (e.kind == Kind::request) {
        const auto& r = e.request;
        check(r.body.size() <= cap);
        check(r.headers.size() <= RequestParser::kMaxHeaderFields);
        check(r.target.substr(0, r.path.size()) == r.path);
        check(r.path.size() == r.target.size() || r.target[r.path.size()] == '?');
      }
      if (e.kind == Kind::error) {
        const int s = e.status;
        check(s == 400 || s == 413 || s == 417 || s == 431 || s == 505);
        check(p.phase() == RequestParser::Phase::done);
        p.feed("GET / HTTP/1.1\r\n\r\n");
        auto again = p.next();
        check(again.kind == Kind::error && again.status == s);
        out.push_back(std::move(e));
        return out;
      }
      out.push_back(std::move(e));
    }
  }
  return out;
}

void same(const std::vector<RequestParser::Event>& a, const std::vector<RequestParser::Event>& b) {
  check(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    check(a[i].kind == b[i].kind);
    check(a[i].status == b[i].status);
    const auto& x = a[i].request;
    const auto& y = b[i].request;
    check(x.method == y.method && x.target == y.target && x.path == y.path);
    check(x.body == y.body && x.keep_alive == y.keep_alive);
    check(x.headers.size() == y.headers.size());
    for (size_t h = 0; h < x.headers.size(); ++h)
      check(x.headers[h].name == y.headers[h].name && x.headers[h].value == y.headers[h].value);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t piece = 1 + data[0] % 61;
  const uint64_t cap = (data[0] & 0x80) ? 16 : 4096;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto whole = run(in, 0, cap);
  same(whole, run(in, piece, cap));
  same(whole, run(in, 1, cap));
  return 0;
}
