// message.hpp — an HTTP/1.1 request and response as values, and what a
// route of the daemon's HTTP server is (SPEC "Observability and the HTTP
// interface"). Pure: the parser (http/request_parser.hpp) makes Requests,
// the server (mta/http_server.hpp) writes Responses; the routes (/metrics,
// /healthz, /api/v1/messages) see only these types.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::http {

struct Header {
  std::string name;   // as sent
  std::string value;  // without surrounding whitespace
};

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // origin form as sent: "/api/v1/messages?x=1"
  std::string path;    // target up to '?'
  std::vector<Header> headers;
  std::string body;  // decoded (Content-Length or chunked)
  bool keep_alive = true;

  // The first header of that name (ASCII case-insensitive).
  std::optional<std::string_view> header(std::string_view name) const;
};

struct Response {
  int status = 200;
  // Besides these the server writes Date, Content-Length and Connection.
  std::vector<Header> headers;
  std::string body;

  static Response json(int status, std::string body);  // application/json
  static Response text(int status, std::string body);  // text/plain; charset=utf-8
};

std::string_view reason_phrase(int status);  // "OK", "Not Found", ...

// Who asked: what a route needs to decide (logs, limits).
struct Peer {
  std::string address;  // the client's IP
  bool tls = false;
  uint64_t connection = 0;  // the server's connection id (logs)
};

// Answers a request: call it exactly once, on the loop, now or later (after
// a spool commit). Calling it after the connection closed does nothing.
using Reply = std::function<void(Response)>;
using Handler = std::function<void(const Request&, const Peer&, Reply)>;

}  // namespace sluice::http
