// request_parser.hpp — HTTP/1.1 requests from a byte stream, incremental and
// pure (no sockets, clocks or logs), over llhttp (Debian's node-llhttp, the
// parser of node.js; compiled as sluice_llhttp).
//
// The server feed()s whatever it read, split anywhere, and asks next() for
// one event at a time: a complete Request (body decoded from Content-Length
// or chunked), "this request waits for 100 Continue" (Expect: 100-continue,
// reported once its header section is complete and before its body), an
// error (the status to answer), or "need more bytes". Pipelined requests
// come out one by one, in order; bytes not yet parsed wait inside. The
// parser stops at each event, so a server that answers one request at a
// time and stops reading while it waits holds at most one read's worth.
//
// Limits (each an error with the status to answer, then the parser is dead:
// the server answers and closes):
//   - the request line and header section: kMaxHeaderBytes (431), at most
//     kMaxHeaderFields fields (431); a chunked body's trailer likewise;
//   - the body: max_body bytes (413), decided from Content-Length before a
//     byte of the body arrives, and while a chunked body is counted;
//   - malformed (llhttp's strict mode: bad tokens, both Content-Length and
//     Transfer-Encoding, an invalid chunk size, ...) 400; a version other
//     than HTTP/1.0 or 1.1 505; an Expect other than 100-continue 417.
// A request that does not keep the connection alive (HTTP/1.0 without
// keep-alive, Connection: close, an Upgrade) is the last: bytes after it
// are ignored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "http/message.hpp"

namespace sluice::http {

class RequestParser {
 public:
  static constexpr size_t kMaxHeaderBytes = 16 * 1024;
  static constexpr size_t kMaxHeaderFields = 100;

  enum class Phase {
    idle,  // between requests, nothing of the next one seen
    head,  // in a request line or header section
    body,  // in a body (after the header section)
    done,  // after an error or the last request
  };

  struct Event {
    enum class Kind { more, expect_continue, request, error } kind = Kind::more;
    Request request;     // kind == request
    int status = 0;      // kind == error: 400, 413, 417, 431 or 505
    std::string reason;  // kind == error: for the log and the answer's body
  };

  explicit RequestParser(uint64_t max_body);
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Keeps `bytes` for next(); ignored once the parser is done.
  void feed(std::string_view bytes);
  // Parses what was fed up to the next event. After an error every call
  // returns that error again; after the last request, `more`.
  Event next();

  Phase phase() const;
  // Bytes fed and not yet parsed.
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string buf_;
  size_t pos_ = 0;
};

// The bytes of `response` on the wire: the status line, its headers (a
// header it gives named Content-Length, Transfer-Encoding, Connection or
// Date is left out, and one holding CR or LF is dropped), Date: `date`,
// Content-Length (not for 1xx, 204 and 304), and Connection: close when
// the connection ends after it (keep_alive false). Pure.
std::string serialize(const Response& response, bool keep_alive, std::string_view date);

// An HTTP date (RFC 9110 IMF-fixdate): "Sun, 06 Nov 1994 08:49:37 GMT".
std::string imf_fixdate(int64_t unix_seconds);

}  // namespace sluice::http
