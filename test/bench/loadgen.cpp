// loadgen.cpp — sluice_loadgen, the benchmark's own SMTP load generator
// (test/bench/bench.py drives it; docs/performance.md explains the method).
//
// Two modes, one libuv loop, one thread:
//
//   load (default): opens --connections persistent SMTP connections (EHLO
//     once each), then offers --messages messages at a fixed --rate
//     (open loop: message i is due at t0 + i/rate whatever the server does;
//     a due message waits in a backlog until a connection is free). Each
//     message is MAIL, RCPT and DATA pipelined in one write, then the content
//     and the final "." in one write. The accept latency of a message is the
//     time from that last write to reading its "250"; the queueing latency is
//     the time from when it was due to that "250" (it shows the client-side
//     wait that a closed-loop tool would hide). Prints p50/p90/p99/max of
//     both, the offered and achieved rates, and the failures.
//
//   api (--api-key KEY): the load mode over HTTP instead of SMTP: each
//     message is one keep-alive POST /api/v1/messages of the same content
//     ({"from", "to": [...], "content"}, Authorization: Bearer KEY), and it
//     counts as accepted on its "202". The accept latency runs from the
//     request's write to the end of that response.
//
//   idle (--idle N): opens N connections (at most --connect-batch connecting
//     at once, spread over the --source addresses), reads each greeting and
//     holds them. When every connection is open (or has failed) it prints one
//     line, then holds until SIGTERM/SIGINT or --hold seconds, and prints a
//     final line saying how many were still open.
//
// Output: human-readable lines, or with --json one JSON object per line on
// standard output. Exit status: 0 when every message was accepted (load) or
// every connection opened and stayed open (idle), 1 otherwise, 2 on bad
// usage. A broken server reply, a refused connection or a 4xx/5xx counts as
// a failure; a dropped connection is reopened (load mode).
//
// Lifetime: a Conn owns its uv_tcp_t and is deleted in the handle's close
// callback; write requests own their buffers (send(), freed in on_written).
// Pending writes are cancelled by uv_close before the close callback runs.
#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>
#include <uv.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "mta/client/reply_parser.hpp"

namespace sluice::bench {

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 25;
  std::vector<std::string> sources;  // local addresses to bind, round robin
  int connections = 20;
  double rate = 100;        // messages per second offered
  uint64_t messages = 1000;
  uint64_t warmup = 0;      // first messages left out of the statistics
  size_t size = 2048;       // payload octets (headers come on top)
  std::string from = "loadgen@source.test";
  std::string to = "sink@dest.test";
  std::string helo = "loadgen.test";
  double timeout = 300;     // seconds for the whole run
  uint64_t idle = 0;        // idle mode: this many connections
  int connect_batch = 256;
  double hold = 0;          // idle mode: seconds to hold, 0 = until a signal
  bool json = false;
  std::string api_key;      // api mode: POST /api/v1/messages with this key
};

uint64_t now_ns() { return uv_hrtime(); }

// The message content: a few headers and `size` octets of 76-character lines
// (none starts with "."), then the end-of-data line.
std::string make_content(const Options& o) {
  std::string s = fmt::format(
      "From: <{}>\r\nTo: <{}>\r\nSubject: sluice benchmark\r\n"
      "Message-ID: <loadgen.{}@{}>\r\n\r\n",
      o.from, o.to, now_ns(), o.helo);
  size_t left = o.size;
  int line = 0;
  while (left > 0) {
    size_t n = std::min<size_t>(left, 78);
    size_t text = n > 2 ? n - 2 : 0;
    std::string l(text, static_cast<char>('a' + line % 26));
    s += l;
    s += "\r\n";
    left -= std::min(left, text + 2);
    ++line;
  }
  s += ".\r\n";
  return s;
}

class Loadgen;
struct Conn;
void close_conn(Conn* c, std::string why);

// One SMTP connection and where it is in its dialogue.
struct Conn {
  enum class State { connecting, greeting, ehlo, ready, envelope, content, rset, quitting, closing };

  uv_tcp_t tcp{};
  uv_connect_t connect_req{};
  Loadgen* gen = nullptr;
  State state = State::connecting;
  client::ReplyParser parser;
  int envelope_replies = 0;  // of MAIL, RCPT, DATA seen for the message in flight
  bool envelope_ok = true;
  uint64_t due_ns = 0;       // when the message in flight was due
  uint64_t dot_ns = 0;       // when its final "." was written
  uint64_t seq = 0;          // its number (0-based)
  std::string http_in;       // api mode: response bytes not yet consumed
};

class Loadgen {
 public:
  explicit Loadgen(Options o) : o_(std::move(o)), content_(make_content(o_)) {
    if (api_mode()) request_ = make_request();
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &tick_);
    uv_timer_init(&loop_, &deadline_);
    uv_signal_init(&loop_, &sigterm_);
    uv_signal_init(&loop_, &sigint_);
    tick_.data = deadline_.data = sigterm_.data = sigint_.data = this;
  }

  int run() {
    if (!resolve()) return 2;
    uv_timer_start(&deadline_, [](uv_timer_t* t) { static_cast<Loadgen*>(t->data)->on_deadline(); },
                   static_cast<uint64_t>(o_.timeout * 1000), 0);
    auto on_signal = [](uv_signal_t* s, int) { static_cast<Loadgen*>(s->data)->on_signal(); };
    uv_signal_start(&sigterm_, on_signal, SIGTERM);
    uv_signal_start(&sigint_, on_signal, SIGINT);
    start_ = now_ns();
    if (idle_mode()) {
      fill_idle();
    } else {
      for (int i = 0; i < o_.connections; ++i) open_conn();
    }
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    return exit_code_;
  }

  // ---- called by connections ----

  void on_ready(Conn* c) {
    if (idle_mode()) {
      ++idle_open_;
      --connecting_;
      fill_idle();
      maybe_idle_report();
      return;
    }
    ++ready_;
    if (!started_ && ready_ == o_.connections) start_load();
    if (started_) dispatch_to(c); else idle_conns_.push_back(c);
  }

  void on_message_done(Conn* c, bool accepted) {
    uint64_t t = now_ns();
    if (accepted) {
      ++accepted_;
      if (c->seq >= o_.warmup) {
        latency_.push_back(t - c->dot_ns);
        queueing_.push_back(t - c->due_ns);
      }
    } else {
      ++failed_;
    }
    last_done_ = t;
    if (accepted_ + failed_ == o_.messages) {
      finish();
      return;
    }
    dispatch_to(c);
  }

  // A connection went away (closed by the server, refused, reset, or a
  // broken reply). `in_flight`: a message was lost with it.
  void on_conn_lost(Conn* c, bool in_flight, const std::string& why) {
    if (first_error_.empty()) first_error_ = why;
    ++conn_errors_;
    if (idle_mode()) {
      if (c->state == Conn::State::ready) --idle_open_;
      else --connecting_, ++idle_failed_;
      if (reported_) ++idle_dropped_;
      fill_idle();
      maybe_idle_report();
      return;
    }
    if (c->state == Conn::State::ready) {
      auto it = std::find(idle_conns_.begin(), idle_conns_.end(), c);
      if (it != idle_conns_.end()) idle_conns_.erase(it);
    }
    if (c->state != Conn::State::connecting && c->state != Conn::State::greeting &&
        c->state != Conn::State::ehlo)
      --ready_;
    if (in_flight) {
      ++failed_;
      last_done_ = now_ns();
      if (accepted_ + failed_ == o_.messages) {
        finish();
        return;
      }
    }
    if (!finishing_ && conn_errors_ < 1000) open_conn();  // keep the pool full
    else if (!finishing_) fail_all("too many connection errors");
  }

  void note_error(const std::string& why) {
    if (first_error_.empty()) first_error_ = why;
  }

  const Options& options() const { return o_; }
  const std::string& content() const { return content_; }
  const std::string& request() const { return request_; }
  bool api_mode() const { return !o_.api_key.empty(); }
  uv_loop_t* loop() { return &loop_; }
  const sockaddr_in& target() const { return target_; }
  bool finishing() const { return finishing_; }

 private:
  bool idle_mode() const { return o_.idle > 0; }

  bool resolve() {
    if (uv_ip4_addr(o_.host.c_str(), o_.port, &target_) != 0) {
      fmt::print(stderr, "loadgen: --host must be an IPv4 address: {}\n", o_.host);
      return false;
    }
    for (const auto& s : o_.sources) {
      sockaddr_in a{};
      if (uv_ip4_addr(s.c_str(), 0, &a) != 0) {
        fmt::print(stderr, "loadgen: --source must be an IPv4 address: {}\n", s);
        return false;
      }
      sources_.push_back(a);
    }
    return true;
  }

  void open_conn();

  // The one POST every message of the api mode sends (the content without
  // SMTP's final ".").
  std::string make_request() const {
    std::string content = content_.substr(0, content_.size() - 3);
    std::string body = nlohmann::json{{"from", o_.from}, {"to", {o_.to}}, {"content", content}}.dump();
    return fmt::format("POST /api/v1/messages HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Bearer {}\r\n"
                       "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                       o_.host, o_.port, o_.api_key, body.size(), body);
  }

  void fill_idle() {
    while (!finishing_ && opened_ < o_.idle && connecting_ < static_cast<uint64_t>(o_.connect_batch)) {
      ++connecting_;
      open_conn();
    }
  }

  void maybe_idle_report() {
    if (reported_ || finishing_ || connecting_ > 0 || opened_ < o_.idle) return;
    reported_ = true;
    uint64_t t = now_ns();
    if (o_.json) {
      nlohmann::json j = {{"mode", "idle"}, {"event", "open"}, {"wanted", o_.idle},
                          {"open", idle_open_}, {"failed", idle_failed_},
                          {"seconds", (t - start_) / 1e9}};
      if (!first_error_.empty()) j["first_error"] = first_error_;
      fmt::print("{}\n", j.dump());
    } else {
      fmt::print("idle: {} of {} connections open ({} failed) after {:.2f}s\n", idle_open_, o_.idle,
                 idle_failed_, (t - start_) / 1e9);
    }
    std::fflush(stdout);
    if (o_.hold > 0) {
      uv_timer_stop(&deadline_);
      uv_timer_start(&deadline_, [](uv_timer_t* t) { static_cast<Loadgen*>(t->data)->on_signal(); },
                     static_cast<uint64_t>(o_.hold * 1000), 0);
    } else {
      uv_timer_stop(&deadline_);  // hold until a signal
    }
  }

  void start_load() {
    started_ = true;
    t0_ = now_ns();
    uv_timer_start(&tick_, [](uv_timer_t* t) { static_cast<Loadgen*>(t->data)->on_tick(); }, 0, 1);
  }

  // Every millisecond: messages that fell due join the backlog, and free
  // connections take them.
  void on_tick() {
    uint64_t elapsed = now_ns() - t0_;
    auto due = static_cast<uint64_t>(std::floor(elapsed / 1e9 * o_.rate)) + 1;
    due = std::min(due, o_.messages);
    while (issued_ < due) {
      backlog_.push_back({issued_, t0_ + static_cast<uint64_t>(issued_ * 1e9 / o_.rate)});
      ++issued_;
    }
    max_backlog_ = std::max<uint64_t>(max_backlog_, backlog_.size());
    while (!backlog_.empty() && !idle_conns_.empty()) {
      Conn* c = idle_conns_.back();
      idle_conns_.pop_back();
      dispatch_to(c);
    }
    if (issued_ == o_.messages) uv_timer_stop(&tick_);
  }

  void dispatch_to(Conn* c);

  void on_deadline() {
    if (!first_error_.size()) first_error_ = "timeout";
    fail_all("timeout");
  }

  void on_signal() {
    if (idle_mode()) {
      finish();
    } else {
      fail_all("interrupted");
    }
  }

  void fail_all(const char* why) {
    if (first_error_.empty()) first_error_ = why;
    timed_out_ = true;
    finish();
  }

  void finish();
  void end_linger();
  void report();

  struct Due {
    uint64_t seq;
    uint64_t due_ns;
  };

  Options o_;
  std::string content_;
  std::string request_;  // api mode
  uv_loop_t loop_{};
  uv_timer_t tick_{}, deadline_{};
  uv_signal_t sigterm_{}, sigint_{};
  sockaddr_in target_{};
  std::vector<sockaddr_in> sources_;
  std::unordered_set<Conn*> all_;   // every Conn not yet closed
  std::vector<Conn*> idle_conns_;   // ready, no message in flight
  std::deque<Due> backlog_;
  uint64_t opened_ = 0, connecting_ = 0;
  int ready_ = 0;
  bool started_ = false, finishing_ = false, timed_out_ = false, reported_ = false;
  bool linger_over_ = false;
  uint64_t start_ = 0, t0_ = 0, last_done_ = 0;
  uint64_t issued_ = 0, accepted_ = 0, failed_ = 0, conn_errors_ = 0, max_backlog_ = 0;
  uint64_t idle_open_ = 0, idle_failed_ = 0, idle_dropped_ = 0;
  std::vector<uint64_t> latency_, queueing_;
  std::string first_error_;
  int exit_code_ = 0;

  friend void close_conn(Conn* c, std::string why);
};

// ---- one connection ----

// A write request that owns its buffer; freed in its callback.
struct OwnedWrite {
  uv_write_t req;
  std::string data;
  Conn* conn;
};

void on_written(uv_write_t* req, int status) {
  auto* w = reinterpret_cast<OwnedWrite*>(req);
  Conn* conn = w->conn;
  delete w;
  if (status < 0 && conn->state != Conn::State::closing)
    close_conn(conn, fmt::format("write: {}", uv_strerror(status)));
}

void send(Conn* c, std::string data) {
  auto* w = new OwnedWrite{{}, std::move(data), c};
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  const int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1, on_written);
  if (rc < 0) {
    delete w;
    close_conn(c, fmt::format("write: {}", uv_strerror(rc)));
  }
}

void on_closed(uv_handle_t* h) { delete static_cast<Conn*>(h->data); }

void close_conn(Conn* c, std::string why) {
  if (c->state == Conn::State::closing) return;
  Loadgen* g = c->gen;
  auto before = c->state;
  bool in_flight = before == Conn::State::envelope || before == Conn::State::content ||
                   before == Conn::State::rset;
  bool quitting = before == Conn::State::quitting;
  g->all_.erase(c);
  if (!quitting && !g->finishing()) {
    g->on_conn_lost(c, in_flight, why);
  }
  c->state = Conn::State::closing;
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_closed);
  if (g->finishing() && g->all_.empty()) g->end_linger();
}

void on_reply(Conn* c, const proto::Reply& r) {
  Loadgen* g = c->gen;
  using S = Conn::State;
  switch (c->state) {
    case S::greeting:
      if (r.code != 220) return close_conn(c, "greeting: " + client::describe(r, 200));
      if (g->options().idle > 0) {
        c->state = S::ready;
        g->on_ready(c);
        return;
      }
      c->state = S::ehlo;
      send(c, fmt::format("EHLO {}\r\n", g->options().helo));
      return;
    case S::ehlo:
      if (r.code != 250) return close_conn(c, "EHLO: " + client::describe(r, 200));
      c->state = S::ready;
      g->on_ready(c);
      return;
    case S::envelope:
      // MAIL, RCPT, DATA: 250, 250, 354.
      ++c->envelope_replies;
      if (c->envelope_replies < 3) {
        if (r.code != 250) c->envelope_ok = false;
        return;
      }
      if (r.code != 354 || !c->envelope_ok) {
        g->note_error("envelope refused; DATA: " + client::describe(r, 200));
        if (r.code == 354) {
          // DATA went through although MAIL or RCPT did not: end it empty.
          send(c, ".\r\n");
          c->state = S::rset;
          return;
        }
        c->state = S::rset;
        send(c, "RSET\r\n");
        return;
      }
      c->state = S::content;
      c->dot_ns = now_ns();
      send(c, g->content());
      return;
    case S::content:
      c->state = S::ready;
      if (r.code != 250) g->note_error("end of data: " + client::describe(r, 200));
      g->on_message_done(c, r.code == 250);
      return;
    case S::rset:
      // The reply to RSET (or to the empty message): the message failed.
      c->state = S::ready;
      g->on_message_done(c, false);
      return;
    case S::quitting:
      return;
    case S::ready:
    case S::connecting:
    case S::closing:
      // A reply nobody asked for (e.g. 421 before closing).
      close_conn(c, "unexpected reply: " + client::describe(r, 200));
      return;
  }
}

char g_read_buffer[64 * 1024];  // one loop, one read at a time

// api mode: whole responses (status line, headers, Content-Length body) out
// of what was read; each one ends the message in flight.
void on_http_bytes(Conn* c, std::string_view in) {
  c->http_in.append(in);
  while (c->state == Conn::State::content) {
    const size_t end = c->http_in.find("\r\n\r\n");
    if (end == std::string::npos) return;
    std::string_view head(c->http_in.data(), end);
    if (head.size() < 12 || !head.starts_with("HTTP/1.1 ")) return close_conn(c, "bad HTTP response");
    const int status = std::atoi(std::string(head.substr(9, 3)).c_str());
    size_t length = 0;
    for (std::string_view name : {"Content-Length: ", "content-length: "})
      if (auto at = head.find(name); at != std::string_view::npos)
        length = static_cast<size_t>(std::atol(std::string(head.substr(at + name.size(), 20)).c_str()));
    if (c->http_in.size() < end + 4 + length) return;
    const std::string body = c->http_in.substr(end + 4, length);
    c->http_in.erase(0, end + 4 + length);
    c->state = Conn::State::ready;
    if (status != 202) c->gen->note_error(fmt::format("HTTP {}: {}", status, body.substr(0, 200)));
    c->gen->on_message_done(c, status == 202);
  }
}

void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t*) {
  auto* c = static_cast<Conn*>(s->data);
  if (n < 0) return close_conn(c, n == UV_EOF ? "closed by the server" : uv_strerror(static_cast<int>(n)));
  std::string_view in(g_read_buffer, static_cast<size_t>(n));
  if (c->gen->api_mode()) return on_http_bytes(c, in);
  while (!in.empty() && c->state != Conn::State::closing) {
    auto r = c->parser.next(in);
    if (!r) return close_conn(c, fmt::format("bad reply: {}", client::to_string(r.error())));
    if (!*r) break;
    on_reply(c, **r);
  }
}

void on_connect(uv_connect_t* req, int status) {
  auto* c = static_cast<Conn*>(req->data);
  if (c->state == Conn::State::closing) return;
  if (status < 0) return close_conn(c, fmt::format("connect: {}", uv_strerror(status)));
  c->state = Conn::State::greeting;
  uv_tcp_nodelay(&c->tcp, 1);
  if (c->gen->api_mode()) {  // HTTP: no greeting, ready at once
    c->state = Conn::State::ready;
    c->gen->on_ready(c);
  }
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&c->tcp),
      [](uv_handle_t*, size_t, uv_buf_t* b) { *b = uv_buf_init(g_read_buffer, sizeof g_read_buffer); },
      on_read);
}

void Loadgen::open_conn() {
  auto* c = new Conn;
  c->gen = this;
  c->tcp.data = c;
  c->connect_req.data = c;
  uv_tcp_init(&loop_, &c->tcp);
  all_.insert(c);
  if (!sources_.empty()) {
    const sockaddr_in& src = sources_[opened_ % sources_.size()];
    uv_tcp_bind(&c->tcp, reinterpret_cast<const sockaddr*>(&src), 0);
  }
  ++opened_;
  int rc = uv_tcp_connect(&c->connect_req, &c->tcp, reinterpret_cast<const sockaddr*>(&target_),
                          on_connect);
  if (rc < 0) {
    close_conn(c, fmt::format("connect: {}", uv_strerror(rc)));
  }
}

void Loadgen::dispatch_to(Conn* c) {
  if (finishing_) return;
  if (backlog_.empty()) {
    idle_conns_.push_back(c);
    return;
  }
  Due d = backlog_.front();
  backlog_.pop_front();
  c->seq = d.seq;
  c->due_ns = d.due_ns;
  c->state = Conn::State::envelope;
  c->envelope_replies = 0;
  c->envelope_ok = true;
  if (api_mode()) {
    c->state = Conn::State::content;
    c->dot_ns = now_ns();
    send(c, request_);
    return;
  }
  send(c, fmt::format("MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\nDATA\r\n", o_.from, o_.to));
}

void Loadgen::finish() {
  if (finishing_) return;
  finishing_ = true;
  report();
  uv_timer_stop(&tick_);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
  // The deadline timer becomes the linger timer: connections that have not
  // closed 2 s after QUIT are cut.
  uv_timer_stop(&deadline_);
  uv_timer_start(&deadline_, [](uv_timer_t* t) { static_cast<Loadgen*>(t->data)->end_linger(); },
                 2000, 0);
  auto conns = all_;
  for (Conn* c : conns) {
    if (idle_mode() || api_mode() || c->state != Conn::State::ready) {
      close_conn(c, "finished");
    } else {
      c->state = Conn::State::quitting;
      send(c, "QUIT\r\n");
      // The server answers 221 and closes; our read then sees EOF.
    }
  }
  if (all_.empty()) end_linger();
}

void Loadgen::end_linger() {
  if (linger_over_) return;
  linger_over_ = true;
  auto conns = all_;
  for (Conn* c : conns) close_conn(c, "finished");
  uv_close(reinterpret_cast<uv_handle_t*>(&deadline_), nullptr);
}

// Nearest-rank percentile of sorted values, in milliseconds.
double pct_ms(const std::vector<uint64_t>& v, double q) {
  if (v.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  rank = std::clamp<size_t>(rank, 1, v.size());
  return static_cast<double>(v[rank - 1]) / 1e6;
}

void Loadgen::report() {
  if (idle_mode()) {
    bool ok = idle_open_ == o_.idle && idle_dropped_ == 0;
    exit_code_ = ok ? 0 : 1;
    if (o_.json) {
      fmt::print("{}\n", nlohmann::json{{"mode", "idle"}, {"event", "end"}, {"wanted", o_.idle},
                                        {"still_open", idle_open_}, {"failed", idle_failed_},
                                        {"dropped", idle_dropped_}}
                             .dump());
    } else {
      fmt::print("idle: end, {} still open, {} failed, {} dropped by the server\n", idle_open_,
                 idle_failed_, idle_dropped_);
    }
    std::fflush(stdout);
    return;
  }
  std::sort(latency_.begin(), latency_.end());
  std::sort(queueing_.begin(), queueing_.end());
  double seconds = started_ && last_done_ > t0_ ? (last_done_ - t0_) / 1e9 : 0;
  double achieved = seconds > 0 ? accepted_ / seconds : 0;
  bool ok = !timed_out_ && failed_ == 0 && accepted_ == o_.messages;
  exit_code_ = ok ? 0 : 1;
  if (o_.json) {
    nlohmann::json j = {
        {"mode", "load"},
        {"connections", o_.connections},
        {"offered_rate", o_.rate},
        {"messages", o_.messages},
        {"size", o_.size},
        {"warmup", o_.warmup},
        {"accepted", accepted_},
        {"failed", failed_},
        {"connection_errors", conn_errors_},
        {"seconds", seconds},
        {"achieved_rate", achieved},
        {"max_backlog", max_backlog_},
        {"measured", latency_.size()},
        {"latency_ms",
         {{"p50", pct_ms(latency_, 0.50)}, {"p90", pct_ms(latency_, 0.90)},
          {"p99", pct_ms(latency_, 0.99)}, {"max", pct_ms(latency_, 1.0)}}},
        {"queueing_ms",
         {{"p50", pct_ms(queueing_, 0.50)}, {"p90", pct_ms(queueing_, 0.90)},
          {"p99", pct_ms(queueing_, 0.99)}, {"max", pct_ms(queueing_, 1.0)}}},
        {"ok", ok},
    };
    if (!first_error_.empty()) j["first_error"] = first_error_;
    fmt::print("{}\n", j.dump());
  } else {
    fmt::print("load: {} accepted, {} failed of {} in {:.3f}s: offered {:.0f}/s, achieved {:.0f}/s "
               "({} connections, max backlog {})\n",
               accepted_, failed_, o_.messages, seconds, o_.rate, achieved, o_.connections,
               max_backlog_);
    fmt::print("accept latency ms (last \".\" -> 250): p50 {:.3f} p90 {:.3f} p99 {:.3f} max {:.3f}\n",
               pct_ms(latency_, 0.5), pct_ms(latency_, 0.9), pct_ms(latency_, 0.99),
               pct_ms(latency_, 1.0));
    fmt::print("queueing latency ms (due -> 250): p50 {:.3f} p90 {:.3f} p99 {:.3f} max {:.3f}\n",
               pct_ms(queueing_, 0.5), pct_ms(queueing_, 0.9), pct_ms(queueing_, 0.99),
               pct_ms(queueing_, 1.0));
    if (!first_error_.empty()) fmt::print("first error: {}\n", first_error_);
  }
  std::fflush(stdout);
}

// Enough descriptors for the connections asked for (root may raise the hard
// limit too).
void raise_nofile(uint64_t wanted) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlim_t need = static_cast<rlim_t>(wanted + 64);
  if (rl.rlim_cur >= need) return;
  if (rl.rlim_max < need) {
    rlimit up{need, need};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0) return;
  }
  rl.rlim_cur = std::min(rl.rlim_max, need);
  setrlimit(RLIMIT_NOFILE, &rl);
}

}  // namespace

}  // namespace sluice::bench

int main(int argc, char** argv) {
  using sluice::bench::Options;
  Options o;
  CLI::App app{"sluice_loadgen: open-loop SMTP load with accept latency, or N idle connections"};
  app.add_option("--host", o.host, "server IPv4 address");
  app.add_option("--port", o.port, "server port")->required();
  app.add_option("--source", o.sources, "local IPv4 address(es) to connect from, round robin")
      ->delimiter(',');
  app.add_option("--connections,-c", o.connections, "persistent connections (load mode)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--rate,-r", o.rate, "messages per second offered")->check(CLI::PositiveNumber);
  app.add_option("--messages,-m", o.messages, "messages to send")->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "first messages left out of the latency figures");
  app.add_option("--size,-l", o.size, "payload octets per message");
  app.add_option("--from", o.from, "envelope sender");
  app.add_option("--to", o.to, "envelope recipient");
  app.add_option("--helo", o.helo, "EHLO name");
  app.add_option("--timeout", o.timeout, "seconds before giving up")->check(CLI::PositiveNumber);
  app.add_option("--idle", o.idle, "idle mode: open this many connections and hold them");
  app.add_option("--connect-batch", o.connect_batch, "idle mode: connections being opened at once")
      ->check(CLI::Range(1, 100000));
  app.add_option("--hold", o.hold, "idle mode: seconds to hold (default: until SIGTERM)");
  app.add_flag("--json", o.json, "one JSON object per line on standard output");
  app.add_option("--api-key", o.api_key, "api mode: POST each message to /api/v1/messages with this key");
  CLI11_PARSE(app, argc, argv);
  if (o.warmup >= o.messages && o.idle == 0) {
    fmt::print(stderr, "loadgen: --warmup must be below --messages\n");
    return 2;
  }
  sluice::bench::raise_nofile(o.idle > 0 ? o.idle : static_cast<uint64_t>(o.connections));
  signal(SIGPIPE, SIG_IGN);
  sluice::bench::Loadgen gen(std::move(o));
  return gen.run();
}
