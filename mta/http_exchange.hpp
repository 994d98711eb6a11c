// http_exchange.hpp — one HTTP/1.1 request and its response over one
// connection to one address: the client side that the MTA-STS policy fetch
// (mta/sts_fetch.*) and the webhooks (mta/webhooks.*) share.
//
// An HttpExchange connects, starts TLS when given a context (SNI and the
// context's verification for `host`), writes the request bytes it was given
// (under TLS held until the handshake completes), reads the response with
// sts::ResponseParser (Content-Length, chunked or close-delimited, its body
// cap) and reports once: the whole response, or why there is none. Callers
// judge the response (status, content type, body). One budget covers the
// whole exchange. It is a uv::StreamConnection: it frees itself once closed;
// detach() drops the report and closes (the caller no longer wants it).
#pragma once

#include <uv.h>

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>

#include "conf/net.hpp"
#include "mta/tls/tls.hpp"
#include "mta/uv/stream.hpp"
#include "sts/http.hpp"

namespace sluice::mta {

namespace detail {
// The read buffer comes first among the bases, so that it exists before
// StreamConnection is given it.
struct ExchangeBuffer {
  static constexpr size_t kSize = 16 * 1024;
  std::unique_ptr<char[]> bytes = std::make_unique_for_overwrite<char[]>(kSize);
};
}  // namespace detail

class HttpExchange final : private detail::ExchangeBuffer, public uv::StreamConnection {
 public:
  struct Outcome {
    bool connect_failed = false;  // nothing was exchanged: the next address may be tried
    // The whole response, or why there is none, prefixed with `where`.
    std::expected<sts::Response, std::string> response;
    // What parsing stopped at when there is no response: the status line's
    // code when it was read (0 otherwise), and whether the body went over
    // the parser's cap (a receiver's long answer some callers ignore).
    int status = 0;
    bool body_too_big = false;
    std::string where;  // "ADDRESS:PORT"
  };
  using Report = std::function<void(Outcome)>;

  // `ctx` null: plain HTTP. `host`: the TLS name (SNI, verification).
  HttpExchange(uv_loop_t* loop, std::shared_ptr<const tls::TlsContext> ctx, std::string host, std::string request,
               uint64_t budget_ms, Report report);

  void start(const net::IpAddress& ip, uint16_t port);
  void detach();

 private:
  ~HttpExchange() override = default;

  void conclude(Outcome o);
  void fail(std::string why);
  void on_connect(int status) override;
  void on_bytes(std::string_view bytes) override;
  void on_end(int) override;
  void end_of_response();
  void report_response();
  void on_timer() override { fail("timed out"); }
  void on_closing() override;
  void after_event() override { flush(); }

  std::shared_ptr<const tls::TlsContext> ctx_;
  std::string host_;
  std::string request_;
  uint64_t budget_ms_;
  Report report_;
  std::string where_;
  std::string plain_;
  sts::ResponseParser parser_;
};

// Keeps a remote reason printable on one log line (at most 300 octets).
std::string one_line(std::string_view s);

}  // namespace sluice::mta
