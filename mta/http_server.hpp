// http_server.hpp — the daemon's HTTP/1.1 server ([http] address) on the
// loop: /healthz, /metrics and the injection API are routes of it
// (docs/http-api.md, "The HTTP server").
//
// One listener; each client a uv::StreamConnection (mta/uv/stream.hpp, the
// connection layer of the SMTP server) feeding an http::RequestParser
// (http/request_parser.hpp, pure). With a certificate (set_tls) every
// connection is TLS from its first byte. Requests are answered one at a
// time per connection and in order: while a handler has not replied the
// connection does not read, so pipelined requests wait in the parser or
// the socket. Routes are exact paths: an unknown path is 404, a known path
// with another method 405 with Allow.
//
// Handlers: route() before the loop runs. A handler gets the Request, the
// Peer and a Reply to call exactly once, now or later on the loop (after a
// spool commit). The Reply finds its connection by id through a registry
// the server shares with it (weak): called after the connection (or the
// server) went away, or a second time, it does nothing.
//
// Limits (docs/http-api.md): request line and header section 16 KiB (431),
// 100 fields (431), the body max_body() bytes (413, from Content-Length
// before the body is read), at most limits.max_connections connections
// (503 and close beyond). Deadlines per connection: 10 s from its start, or
// from a request's first byte, to a complete header section (TLS handshake
// included); 60 s for the body; 30 s idle between requests. A slow request
// is answered 408, an idle connection just closed. A request the parser
// refuses (400, 413, 417, 431, 505) is answered and the connection closed.
//
// Logs: each request at debug level, each 4xx/5xx answer at info, with the
// connection id, method, path and status (never a header's value).
//
// Single-threaded: every method runs on the loop thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "conf/config.hpp"
#include "http/message.hpp"
#include "mta/uv/handle.hpp"
#include "obs/sluice_metrics.hpp"

namespace sluice::tls {
class TlsContext;
}

namespace sluice::mta {

class HttpConnection;

class HttpServer {
 public:
  HttpServer(uv_loop_t* loop, std::shared_ptr<const conf::Config> config);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Adds a route: requests for exactly `path` (without the query) with
  // `method` go to `handler`. A later route for the same pair replaces it.
  void route(std::string method, std::string path, http::Handler handler);
  // The certificate (null: plain HTTP). Connections keep the one in force
  // when they were accepted.
  void set_tls(std::shared_ptr<const tls::TlsContext> ctx);
  // Binds and listens on config.http.endpoint; the problem names
  // http.address.
  std::expected<void, std::string> listen();
  bool listening() const { return listening_; }
  // New connections use the new limits; the listener is not re-bound.
  void reload(std::shared_ptr<const conf::Config> config);
  // Stops listening and closes idle connections; a request whose handler
  // has not replied yet is answered (Connection: close) when it does.
  // `done` runs once the last connection has closed.
  void shutdown(std::function<void()> done);
  void abort_all();     // closes every connection at once
  void close_handles();  // the listener; the loop can end afterwards

  size_t connections() const;
  // The body limit: 2 * limits.max_message_size + 64 KiB (the API's JSON
  // carries the message in base64).
  static uint64_t max_body(const conf::Config& c);

 private:
  friend class HttpConnection;
  // What a Reply finds its connection through (shared with every Reply,
  // weakly, so a late one after the server is gone finds nothing).
  struct Registry {
    std::unordered_map<uint64_t, HttpConnection*> conns;
  };
  static void on_connection(uv_stream_t* s, int status);
  void accept();
  void forget(HttpConnection& c);
  void check_drained();
  // The handler for (method, path), or an answer: 404, or 405 with Allow.
  // `metric`: the route's sluice_http_requests_total series ("other" for 404).
  const http::Handler* find(const http::Request& req, http::Response& refusal,
                            obs::SluiceMetrics::HttpRoute*& metric) const;
  std::string date();  // IMF-fixdate of now, made once a second

  uv_loop_t* loop_;
  std::shared_ptr<const conf::Config> config_;
  std::shared_ptr<const tls::TlsContext> tls_;
  struct Route {
    std::vector<std::pair<std::string, http::Handler>> methods;
    obs::SluiceMetrics::HttpRoute* metric = nullptr;  // its requests by status (metrics)
  };
  std::map<std::string, Route> routes_;  // by path
  // Answers no route gave (404, the parser's errors, 408, 503): route="other".
  obs::SluiceMetrics::HttpRoute* other_metric_ = &obs::sluice_metrics().http_route("other");
  uv::Handle<uv_tcp_t> listener_;
  std::shared_ptr<Registry> registry_;
  std::unique_ptr<char[]> readbuf_;  // shared by every connection's reads
  uint64_t next_id_ = 1;
  bool listening_ = false;
  bool shutting_down_ = false;
  std::function<void()> drained_;
  int64_t date_second_ = -1;
  std::string date_;
};

}  // namespace sluice::mta
