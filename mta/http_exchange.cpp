// http_exchange.cpp — see http_exchange.hpp.
#include "mta/http_exchange.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sluice::mta {

std::string one_line(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 300)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

HttpExchange::HttpExchange(uv_loop_t* loop, std::shared_ptr<const tls::TlsContext> ctx, std::string host,
                           std::string request, uint64_t budget_ms, Report report)
    : StreamConnection(loop, Kind::tcp, {ExchangeBuffer::bytes.get(), ExchangeBuffer::kSize}),
      ctx_(std::move(ctx)), host_(std::move(host)), request_(std::move(request)), budget_ms_(budget_ms),
      report_(std::move(report)) {}

void HttpExchange::start(const net::IpAddress& ip, uint16_t port) {
  sockaddr_storage ss{};
  net::Endpoint{ip, port}.to_sockaddr(&ss);
  where_ = net::Endpoint{ip, port}.str();
  if (const int rc = connect(reinterpret_cast<const sockaddr*>(&ss)); rc < 0) {
    conclude({true, std::unexpected(fmt::format("connect to {}: {}", where_, uv_strerror(rc))), 0, false, where_});
    return;
  }
  arm_timer(std::max<uint64_t>(budget_ms_, 1));
}

void HttpExchange::detach() {
  report_ = nullptr;
  begin_close();
}

void HttpExchange::conclude(Outcome o) {
  if (auto r = std::exchange(report_, nullptr)) r(std::move(o));
  begin_close();
}

void HttpExchange::fail(std::string why) {
  conclude({false, std::unexpected(fmt::format("{}: {}", where_, why)), 0, false, where_});
}

void HttpExchange::on_connect(int status) {
  if (status < 0) {
    conclude({true, std::unexpected(fmt::format("connect to {}: {}", where_, uv_strerror(status))), 0, false, where_});
    return;
  }
  if (ctx_) {
    auto s = tls::TlsStream::client(ctx_, host_);
    if (!s) {
      fail("tls: " + s.error());
      return;
    }
    start_tls(std::move(*s));
    std::string none;
    if (auto ev = tls_pump({}, none); !ev) {  // the ClientHello
      fail("tls: " + ev.error());
      return;
    }
  }
  write(request_);  // under TLS held until the handshake completes
  request_.clear();
  request_.shrink_to_fit();
  read(true);
}

void HttpExchange::on_bytes(std::string_view bytes) {
  std::string_view in = bytes;
  bool peer_closed = false;
  if (tls()) {
    plain_.clear();
    auto ev = tls_pump(bytes, plain_);
    if (!ev) {
      fail("tls: " + one_line(ev.error()));
      return;
    }
    in = plain_;
    peer_closed = ev->peer_closed;
  }
  if (parser_.feed(in) != sts::ResponseParser::Result::more) {
    report_response();
    return;
  }
  if (peer_closed) end_of_response();
}

void HttpExchange::on_end(int) {
  if (tls() && !tls()->handshake_done()) {
    fail("tls: connection closed during handshake");
    return;
  }
  end_of_response();
}

// The peer closed: a body delimited by the close ends here.
void HttpExchange::end_of_response() {
  parser_.finish();
  report_response();
}

void HttpExchange::report_response() {
  using R = sts::ResponseParser::Result;
  if (parser_.result() == R::done) {
    conclude({false, parser_.response(), parser_.response().status, false, where_});
    return;
  }
  const std::string why = parser_.result() == R::error
                              ? fmt::format("bad HTTP response: {}", sts::error_name(parser_.error()))
                              : std::string("bad HTTP response: truncated");
  conclude({false, std::unexpected(fmt::format("{}: {}", where_, why)), parser_.response().status,
            parser_.result() == R::error && parser_.error() == sts::ResponseParser::Error::body_too_big, where_});
}

void HttpExchange::on_closing() {
  if (auto r = std::exchange(report_, nullptr))
    r({false, std::unexpected(fmt::format("{}: connection lost", where_)), 0, false, where_});
}

}  // namespace sluice::mta
