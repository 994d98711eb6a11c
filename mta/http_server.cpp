// http_server.cpp — see http_server.hpp.
#include "mta/http_server.hpp"

#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>
#include <ctime>
#include <optional>

#include "conf/log.hpp"
#include "http/request_parser.hpp"
#include "mta/tls/tls.hpp"
#include "mta/uv/guard.hpp"
#include "mta/uv/stream.hpp"

namespace sluice::mta {

namespace {

constexpr size_t kReadBufferSize = 64 * 1024;
// Stop reading while this much of our output is unsent.
constexpr size_t kMaxUnsentOutput = 256 * 1024;
constexpr uint64_t kHeaderTimeoutMs = 10'000;
constexpr uint64_t kBodyTimeoutMs = 60'000;
constexpr uint64_t kIdleTimeoutMs = 30'000;

}  // namespace

// One client: socket (and TLS) -> parser -> handler -> Reply -> socket.
class HttpConnection final : public uv::StreamConnection {
 public:
  HttpConnection(HttpServer& server, uint64_t id)
      : StreamConnection(server.loop_, Kind::tcp, {server.readbuf_.get(), kReadBufferSize}),
        server_(server),
        id_(id) {}

  uint64_t id() const { return id_; }
  bool busy() const { return busy_; }

  void start(std::shared_ptr<const conf::Config> cfg, std::string peer, bool over_limit) {
    config_ = std::move(cfg);
    peer_.address = std::move(peer);
    peer_.connection = id_;
    parser_.emplace(HttpServer::max_body(*config_));
    started_ = phase_since_ = uv_now(loop());
    uv_tcp_nodelay(tcp(), 1);
    log::debug("http conn={} connect from={}", id_, peer_.address);
    if (over_limit) {
      log::info("http conn={} from={} refused: more than {} connections (503)", id_, peer_.address,
                config_->limits.max_connections);
      if (!server_.tls_)
        write(http::serialize(http::Response::text(503, "too many connections\n"), false, server_.date()));
      server_.other_metric_->count(503);
      close_requested_ = true;
      after_event();
      return;
    }
    if (server_.tls_) {
      auto stream = tls::TlsStream::server(server_.tls_);
      if (!stream) {
        log::error("http conn={} tls: {}", id_, stream.error());
        begin_close();
        return;
      }
      start_tls(std::move(*stream));
      peer_.tls = true;
    }
    after_event();
  }

  // The server shuts down: an idle connection closes now, a busy one after
  // its answer.
  void shutdown() {
    shutting_down_ = true;
    if (!busy_) close_requested_ = true;
    after_event();
  }

  // A handler's answer (through the Reply; `seq` tells which request).
  void answer(uint64_t seq, http::Response r) {
    if (closing() || !busy_ || seq != seq_) return;
    busy_ = false;
    respond(std::move(r), keep_alive_ && !shutting_down_);
    if (!in_process_) {
      process();
      after_event();
    }
  }

 private:
  void on_closing() override {
    server_.forget(*this);
    log::debug("http conn={} disconnect from={} requests={}", id_, peer_.address, requests_);
  }

  void on_bytes(std::string_view bytes) override {
    if (tls()) {
      tls()->feed_ciphertext(bytes);
      plain_.clear();
      auto ev = tls_pump({}, plain_);
      if (!ev) {
        log::info("http conn={} tls error from={}: {}", id_, peer_.address, log::sanitize(ev.error()));
        close_requested_ = true;
        return;
      }
      if (ev->handshake_completed)
        log::debug("http conn={} tls from={} {} {}", id_, peer_.address, tls()->version(), tls()->cipher());
      if (!plain_.empty()) parser_->feed(plain_);
      if (ev->peer_closed) eof_ = true;
    } else {
      parser_->feed(bytes);
    }
    process();
  }

  void on_end(int) override {
    eof_ = true;
    process();
  }

  // Hands every complete request to its handler, one at a time.
  void process() {
    if (in_process_) return;
    in_process_ = true;
    while (!busy_ && !close_requested_ && !closing()) {
      auto e = parser_->next();
      using Kind = http::RequestParser::Event::Kind;
      if (e.kind == Kind::more) break;
      if (e.kind == Kind::expect_continue) {
        write("HTTP/1.1 100 Continue\r\n\r\n");
        continue;
      }
      if (e.kind == Kind::error) {
        log::info("http conn={} from={} status={}: {}", id_, peer_.address, e.status,
                  log::sanitize(e.reason));
        respond(http::Response::text(e.status, e.reason + "\n"), false, false);
        break;
      }
      dispatch(std::move(e.request));
    }
    // The client is gone (or half-closed) and nothing waits for an answer.
    if (eof_ && !busy_) close_requested_ = true;
    in_process_ = false;
  }

  void dispatch(http::Request req) {
    ++requests_;
    method_ = log::sanitize(req.method);
    path_ = log::sanitize(req.path);
    keep_alive_ = req.keep_alive;
    log::debug("http conn={} {} {} from={}", id_, method_, path_, peer_.address);
    http::Response refusal;
    const http::Handler* h = server_.find(req, refusal, metric_);
    if (!h) {
      respond(std::move(refusal), keep_alive_ && !shutting_down_);
      return;
    }
    busy_ = true;
    const uint64_t seq = ++seq_;
    std::weak_ptr<HttpServer::Registry> reg = server_.registry_;
    http::Reply reply = [reg, id = id_, seq](http::Response r) {
      auto registry = reg.lock();
      if (!registry) return;
      if (auto it = registry->conns.find(id); it != registry->conns.end())
        it->second->answer(seq, std::move(r));
    };
    (*h)(req, peer_, std::move(reply));
  }

  // Writes the answer to the current request; closes after it unless
  // `keep_alive`. `log_it`: an error answer is logged here unless the
  // parser's error was logged already.
  void respond(http::Response r, bool keep_alive, bool log_it = true) {
    (metric_ ? metric_ : server_.other_metric_)->count(r.status);
    metric_ = nullptr;
    if (log_it && r.status >= 400)
      log::info("http conn={} {} {} from={} status={}", id_, method_, path_, peer_.address, r.status);
    write(http::serialize(r, keep_alive, server_.date()));
    answered_ = true;
    if (!keep_alive) close_requested_ = true;
  }

  void on_timer() override {
    const auto phase = parser_->phase();
    if (busy_) return;
    if (phase == http::RequestParser::Phase::head || phase == http::RequestParser::Phase::body) {
      log::info("http conn={} from={} status=408: {} not complete in time", id_, peer_.address,
                phase == http::RequestParser::Phase::head ? "header section" : "body");
      if (!tls() || tls()->handshake_done())
        write(http::serialize(http::Response::text(408, "request timeout\n"), false, server_.date()));
      server_.other_metric_->count(408);
    } else if (!tls() || tls()->handshake_done()) {
      log::debug("http conn={} from={} idle timeout", id_, peer_.address);
    } else {
      log::info("http conn={} from={} tls handshake timeout", id_, peer_.address);
    }
    close_requested_ = true;
  }

  void after_event() override {
    if (closing()) return;
    if (close_requested_ && tls() && tls()->handshake_done() && writes_in_flight() == 0 && !tls_closed_) {
      tls_closed_ = true;
      flush();
      tls()->close_notify();
    }
    flush();
    if (closing()) return;
    if (close_requested_) {
      read(false);
      stop_timer();
      if (writes_in_flight() == 0) begin_close();
      return;
    }
    read(!busy_ && !eof_ && unsent() < kMaxUnsentOutput);
    arm_deadline();
  }

  void on_written() override {}

  // The deadline of what the client is doing now (http_server.hpp).
  void arm_deadline() {
    if (busy_) {
      stop_timer();
      return;
    }
    const uint64_t now = uv_now(loop());
    const auto phase = parser_->phase();
    if (phase != last_phase_ || answered_) {
      last_phase_ = phase;
      phase_since_ = now;
      answered_ = false;
    }
    uint64_t deadline;
    using P = http::RequestParser::Phase;
    if (phase == P::body)
      deadline = phase_since_ + kBodyTimeoutMs;
    else if (requests_ == 0)  // the first request (and the TLS handshake) from the connection's start
      deadline = started_ + kHeaderTimeoutMs;
    else if (phase == P::head)
      deadline = phase_since_ + kHeaderTimeoutMs;
    else
      deadline = phase_since_ + kIdleTimeoutMs;
    arm_timer(deadline > now ? deadline - now : 0);
  }

  HttpServer& server_;
  uint64_t id_;
  std::shared_ptr<const conf::Config> config_;
  std::optional<http::RequestParser> parser_;
  http::Peer peer_;
  std::string plain_;  // decrypted input, reused
  std::string method_, path_;  // of the current request, sanitized for the log
  obs::SluiceMetrics::HttpRoute* metric_ = nullptr;  // its route's requests counter (metrics)
  bool keep_alive_ = true;
  bool busy_ = false;        // a handler has the current request
  bool in_process_ = false;  // inside process(): an answer at once does not recurse
  bool close_requested_ = false;
  bool shutting_down_ = false;
  bool tls_closed_ = false;
  bool eof_ = false;
  bool answered_ = false;  // an answer since the deadline was armed
  uint64_t seq_ = 0;       // the current request's number (its Reply carries it)
  uint64_t requests_ = 0;
  uint64_t started_ = 0;
  uint64_t phase_since_ = 0;
  http::RequestParser::Phase last_phase_ = http::RequestParser::Phase::idle;
};

HttpServer::HttpServer(uv_loop_t* loop, std::shared_ptr<const conf::Config> config)
    : loop_(loop), config_(std::move(config)), registry_(std::make_shared<Registry>()) {
  readbuf_.reset(new char[kReadBufferSize]);
}

HttpServer::~HttpServer() = default;

uint64_t HttpServer::max_body(const conf::Config& c) {
  return 2 * c.limits.max_message_size + 64 * 1024;
}

void HttpServer::route(std::string method, std::string path, http::Handler handler) {
  auto& r = routes_[path];
  if (!r.metric) r.metric = &obs::sluice_metrics().http_route(path);
  auto& methods = r.methods;
  for (auto& [m, h] : methods)
    if (m == method) {
      h = std::move(handler);
      return;
    }
  methods.emplace_back(std::move(method), std::move(handler));
}

void HttpServer::set_tls(std::shared_ptr<const tls::TlsContext> ctx) { tls_ = std::move(ctx); }

void HttpServer::reload(std::shared_ptr<const conf::Config> config) { config_ = std::move(config); }

size_t HttpServer::connections() const { return registry_->conns.size(); }

std::expected<void, std::string> HttpServer::listen() {
  const auto& h = config_->http;
  if (!h.endpoint) return std::unexpected("http.address: not set");
  listener_.init(loop_, uv_tcp_init);
  listener_->data = this;
  sockaddr_storage ss{};
  h.endpoint->to_sockaddr(&ss);
  const unsigned flags = h.endpoint->ip.family == net::IpAddress::Family::v6 ? UV_TCP_IPV6ONLY : 0;
  int rc = uv_tcp_bind(listener_.get(), reinterpret_cast<const sockaddr*>(&ss), flags);
  if (rc == 0) rc = uv_listen(listener_.stream(), 1024, on_connection);
  if (rc == UV_EACCES && h.endpoint->port < 1024)
    return std::unexpected(fmt::format("http.address {}: {}: ports below 1024 need root or "
                                       "CAP_NET_BIND_SERVICE", h.address, uv_strerror(rc)));
  if (rc < 0) return std::unexpected(fmt::format("http.address {}: {}", h.address, uv_strerror(rc)));
  listening_ = true;
  log::info("http: listening on {}{}", h.address, tls_ ? " (TLS)" : "");
  return {};
}

void HttpServer::on_connection(uv_stream_t* s, int status) {
  uv::guard("http accept", [&] {
    auto* self = static_cast<HttpServer*>(s->data);
    if (status < 0) {
      log::warning("http: accept failed: {}", uv_strerror(status));
      return;
    }
    self->accept();
  });
}

void HttpServer::accept() {
  auto* c = new HttpConnection(*this, next_id_++);
  registry_->conns.emplace(c->id(), c);
  if (uv_accept(listener_.stream(), c->stream()) < 0) {
    c->begin_close();
    return;
  }
  std::string peer = "unknown";
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(c->tcp(), reinterpret_cast<sockaddr*>(&ss), &len) == 0)
    if (auto ip = net::IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))) peer = ip->str();
  c->start(config_, std::move(peer), registry_->conns.size() > config_->limits.max_connections);
}

const http::Handler* HttpServer::find(const http::Request& req, http::Response& refusal,
                                      obs::SluiceMetrics::HttpRoute*& metric) const {
  auto it = routes_.find(req.path);
  if (it == routes_.end()) {
    metric = other_metric_;
    refusal = http::Response::text(404, "not found\n");
    return nullptr;
  }
  metric = it->second.metric;
  std::string allow;
  for (const auto& [m, h] : it->second.methods) {
    if (m == req.method) return &h;
    allow += (allow.empty() ? "" : ", ") + m;
  }
  refusal = http::Response::text(405, "method not allowed\n");
  refusal.headers.push_back({"Allow", allow});
  return nullptr;
}

std::string HttpServer::date() {
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  if (now != date_second_) {
    date_second_ = now;
    date_ = http::imf_fixdate(now);
  }
  return date_;
}

void HttpServer::forget(HttpConnection& c) {
  registry_->conns.erase(c.id());
  check_drained();
}

void HttpServer::shutdown(std::function<void()> done) {
  shutting_down_ = true;
  drained_ = std::move(done);
  listening_ = false;
  listener_.close();
  std::vector<HttpConnection*> all;
  for (auto& [id, c] : registry_->conns) all.push_back(c);
  for (auto* c : all) c->shutdown();
  check_drained();
}

void HttpServer::abort_all() {
  std::vector<HttpConnection*> all;
  for (auto& [id, c] : registry_->conns) all.push_back(c);
  for (auto* c : all) c->begin_close();
}

void HttpServer::check_drained() {
  if (shutting_down_ && registry_->conns.empty() && drained_) {
    auto done = std::move(drained_);
    drained_ = nullptr;
    done();
  }
}

void HttpServer::close_handles() {
  listening_ = false;
  listener_.close();
}

}  // namespace sluice::mta
