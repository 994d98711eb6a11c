// http.hpp — the one HTTP/1.1 exchange MTA-STS needs (RFC 8461 §3.3): the
// request bytes of `GET /.well-known/mta-sts.txt` and an incremental parser
// of the response (RFC 9112). Pure: bytes in, a Response value out; no
// sockets, clocks or logs. The TLS connection around it is the caller's.
//
// Rules:
//  - Fed in pieces of any size, the parser reaches the same result as fed
//    whole; it consumes only up to the end of the response (bytes after it
//    stay in the caller's view). finish() is the peer's close: it ends a
//    body delimited by the close, anything else unfinished is truncated.
//  - Status line `HTTP/1.x SP 3DIGIT SP reason`; 1xx interim responses are
//    skipped. Lines end in CRLF or a bare LF (RFC 9112 §2.2); a CR anywhere
//    else, NUL, and other control octets but HTAB in a line are errors.
//  - Header fields: a token name (case-insensitive), ":" OWS value OWS. A
//    folded line (starting with SP/HTAB), WSP before the colon, and the
//    status line with header section over kMaxHead octets are errors.
//    Content-Length (digits only), Transfer-Encoding, Content-Type and
//    Location may each appear once; Content-Length and Transfer-Encoding
//    together are refused (a smuggling sign, never needed here); the only
//    transfer coding accepted is `chunked`.
//  - Body: none for 1xx/204/304; else Content-Length, or chunked (sizes in
//    hex, extensions ignored, trailers read and dropped, within kMaxHead),
//    or up to the close. Over kMaxBody octets is an error as soon as it is
//    known (a Content-Length or chunk size already over it), so the body
//    held never exceeds kMaxBody.
//  - After an error the body is empty (so pieces and whole agree); status,
//    Content-Type and Location stay as far as they were parsed.
//  - A 3xx is reported as a redirect with its Location; it is not followed.
//    judge() says whether a finished response is a usable policy body:
//    200 with Content-Type text/plain (parameters allowed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::sts {

inline constexpr size_t kMaxBody = 64 * 1024;  // the body cap (RFC 8461 §3.3)
inline constexpr size_t kMaxHead = 16 * 1024;  // status line + header section (+ trailers)

// "mta-sts." + the policy domain, lower-case, its final dot dropped; nullopt
// if the domain is not a plain host name (so no header injection possible).
std::optional<std::string> policy_host(std::string_view domain);
// The request for `host` (as policy_host returns it).
std::string policy_request(std::string_view host);

struct Response {
  int status = 0;
  std::string content_type;  // as sent, OWS trimmed; empty if absent
  std::string location;      // of a redirect; empty if absent
  std::string body;          // de-chunked, at most kMaxBody octets
};

class ResponseParser {
 public:
  enum class Error {
    none,
    bad_status_line,
    bad_header,          // malformed field line, control octets, bare CR
    folded_header,       // obs-fold
    head_too_big,        // over kMaxHead
    duplicate_header,    // Content-Length/Transfer-Encoding/Content-Type/Location twice
    bad_content_length,
    bad_transfer_encoding,  // not exactly "chunked", or with Content-Length
    bad_chunk,
    body_too_big,        // over kMaxBody
    truncated,           // the peer closed before the response was complete
  };
  enum class Result { more, done, error };

  // Consumes bytes from `in` (advancing it) up to the end of the response.
  Result feed(std::string_view& in);
  // The peer closed the connection.
  Result finish();

  Result result() const;
  Error error() const { return error_; }
  const Response& response() const { return response_; }

 private:
  enum class State : uint8_t {
    status_line,
    header_line,
    body_length,     // Content-Length octets left in remaining_
    body_close,      // up to the close
    chunk_size_line,
    chunk_data,      // remaining_ octets of this chunk
    chunk_data_end,  // the CRLF after a chunk's data
    trailer_line,
    done,
    error,
  };

  enum class Line { more, complete, too_long };

  Result fail(Error e);
  // Collects one line into line_ (without its end) within `cap` octets.
  Line take_line(std::string_view& in, size_t cap);
  Result on_status_line();
  Result on_header_line();
  Result on_head_end();
  Result on_chunk_size_line();

  State state_ = State::status_line;
  Error error_ = Error::none;
  Response response_;
  std::string line_;
  size_t line_octets_ = 0;   // the last complete line's octets, its end included
  bool bare_cr_ = false;     // the last complete line held a CR not before its LF
  size_t head_bytes_ = 0;    // status lines, header sections and trailers, against kMaxHead
  std::optional<uint64_t> content_length_;
  bool seen_te_ = false, seen_type_ = false, seen_location_ = false;
  uint64_t remaining_ = 0;
};

std::string_view error_name(ResponseParser::Error e);

// What a finished response means for the policy fetch.
enum class FetchProblem {
  redirect,      // 3xx: not followed (§3.3)
  http_status,   // anything but 200
  content_type,  // 200 but not text/plain
};
// The policy body of a 200 text/plain response, or why not.
std::expected<std::string_view, FetchProblem> judge(const Response& r);
// Media type text/plain, case-insensitively, parameters allowed.
bool is_text_plain(std::string_view content_type);

}  // namespace sluice::sts
