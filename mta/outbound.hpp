// outbound.hpp — one outgoing SMTP connection (socket, TLS, content
// streaming) driving a client::ClientSession for Delivery. Split out of
// delivery.cpp unchanged; see delivery.hpp for the memory rules.
#pragma once

#include <fmt/format.h>
#include <sys/socket.h>
#include <uv.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "conf/log.hpp"
#include "mta/client/client_session.hpp"
#include "mta/delivery.hpp"
#include "mta/tls/tls.hpp"
#include "mta/uv_util.hpp"
#include "queue/policy.hpp"

namespace sluice::mta {

namespace outbound_detail {

constexpr size_t kReadBufferSize = 64 * 1024;
// The content goes out in pieces of this size, read from the spool as the
// socket takes them: at most kBodyQueued bytes wait in a connection's output.
constexpr size_t kBodyChunk = 64 * 1024;
constexpr size_t kBodyQueued = 4 * kBodyChunk;
// A connection with nothing to do stays open this long for the destination's
// next message (Postfix: smtp_connection_cache_time_limit), and is not
// reused once it is this old (smtp_connection_reuse_time_limit).
constexpr std::chrono::milliseconds kIdleCacheTime{2000};
constexpr uint64_t kReuseTimeLimitMs = 300'000;

struct Target {
  std::string host;  // MX (or relayhost) name
  net::IpAddress ip;
};

inline queue::Outcome to_outcome(const proto::Reply& r) {
  return queue::Outcome{r.code, r.enhanced, r.text()};
}

// With a relayhost every message goes to it, under delivery.relayhost_tls
// (resolved by conf: "verify" when credentials are set); else delivery.tls.
inline conf::DeliveryTls outbound_tls(const conf::Delivery& dc) {
  return dc.relayhost.empty() ? dc.tls : dc.relayhost_tls;
}

// What to change when a certificate did not verify, for the log line that
// reports it (the reason is in the failure's text).
inline std::string trust_fix(const conf::Delivery& dc) {
  std::string fix = fmt::format("add the CA that signed it to delivery.ca_file ({})", dc.ca_file);
  if (dc.relayhost.empty()) return fix;
  if (!dc.relayhost_tls_name.empty())
    return fix + fmt::format(", and check that the certificate names {} "
                             "(delivery.relayhost_tls_name)", dc.relayhost_tls_name);
  if (net::IpAddress::parse(dc.relayhost_name))
    return fix + fmt::format(", or set delivery.relayhost_tls_name to the name in its certificate "
                             "(an address alone must be an IP entry of the certificate: {})",
                             dc.relayhost_name);
  return fix + fmt::format(", and check that the certificate names {}", dc.relayhost_name);
}

inline client::TlsPolicy to_policy(conf::DeliveryTls t) {
  switch (t) {
    case conf::DeliveryTls::none: return client::TlsPolicy::none;
    case conf::DeliveryTls::opportunistic: return client::TlsPolicy::opportunistic;
    case conf::DeliveryTls::required: return client::TlsPolicy::required;
    case conf::DeliveryTls::verify: return client::TlsPolicy::verify;
  }
  return client::TlsPolicy::opportunistic;
}

}  // namespace outbound_detail
using namespace outbound_detail;

// One job in flight: its targets (addresses in the order to try), the
// failures met so far, and one verdict per job recipient once decided.
struct JobRun {
  queue::Job job;
  client::Transaction tx;
  std::vector<Target> targets;
  size_t next = 0;
  std::vector<queue::policy::SessionEvent> events;
  std::vector<std::optional<queue::Verdict>> verdicts;
  std::vector<std::string> relay;  // per recipient, for the log
  std::string last_relay = "none";
  Outbound* conn = nullptr;
  // Running on a connection that an earlier job opened: if it turns out to
  // be unusable before the end of the data went out, the job starts afresh
  // (lookup, first host) rather than counting that as a host's failure.
  bool reused = false;
  // The job recipients (indexes, ascending) in the transaction in flight:
  // those without a verdict when it started. A recipient an earlier host
  // already answered for (a RCPT refusal) is not offered to the next one.
  std::vector<size_t> sent;

  client::Transaction undecided_tx() {
    client::Transaction t;
    t.sender = tx.sender;
    t.size = tx.size;
    t.needs_8bitmime = tx.needs_8bitmime;
    t.needs_smtputf8 = tx.needs_smtputf8;
    t.envid = tx.envid;
    t.ret = tx.ret;
    sent.clear();
    for (size_t i = 0; i < tx.recipients.size(); ++i) {
      if (verdicts[i]) continue;
      t.recipients.push_back(tx.recipients[i]);
      sent.push_back(i);
    }
    return t;
  }
};

// One outgoing TCP connection driving a ClientSession; it carries one job at
// a time and may carry several in turn: the destination's next waiting job
// (take_job_for) or, after waiting idle in Delivery's cache, a new one.
//
// Output: whatever the session sends while one event is handled is gathered
// in `out_` (or, in TLS, in the stream) and written with one uv_write at the
// end of the event (after_event), so e.g. the content and the final dot
// leave in one write.
class Outbound final : public client::ClientHost {
 public:
  Outbound(Delivery& d, uint64_t id, Target target, uint16_t port, std::string destination)
      : d_(d), id_(id), target_(std::move(target)), port_(port), destination_(std::move(destination)) {
    uv_tcp_init(d_.loop_, &tcp_);
    uv_timer_init(d_.loop_, &timer_);
    tcp_.data = this;
    timer_.data = this;
    connect_.data = this;
    host_ = fmt::format("{}[{}]", target_.host, target_.ip.str());
    relay_ = fmt::format("{}:{}", host_, port_);
  }

  uint64_t id() const { return id_; }
  const std::string& relay() const { return relay_; }
  const std::string& destination() const { return destination_; }

  void attach(JobRun* run) {
    run_ = run;
    run->conn = this;
    run->last_relay = relay_;
    result_.reset();
    tx_started_ = false;
    body_active_ = false;
  }

  // May carry another job: ready, not closing, and not too old.
  bool reusable() const {
    return connected_ && !closing_ && !close_requested_ && session_->ready() &&
           uv_now(d_.loop_) - connected_at_ < kReuseTimeLimitMs;
  }

  // Starts a job on this ready connection (it came out of the idle cache or
  // the previous job just ended here).
  void reuse(JobRun* run) {
    attach(run);
    run->reused = true;
    tx_started_ = true;
    ++transactions_;
    session_->start_transaction(run->undecided_tx());
  }

  // The same from outside an event (Delivery::start_job): then flush.
  void reuse_now(JobRun* run) {
    idle_since_ = 0;
    reuse(run);
    after_event();
  }

  // Parked in the idle cache: at most kIdleCacheTime.
  void park() {
    idle_since_ = uv_now(d_.loop_);
  }
  uint64_t idle_since() const { return idle_since_; }

  void connect() {
    const auto& dc = d_.config_->delivery;
    client::ClientConfig cc;
    cc.helo_name = d_.config_->hostname;
    cc.tls = to_policy(outbound_tls(dc));
    cc.tls_available = d_.tls_ != nullptr;
    implicit_tls_ = !dc.relayhost.empty() && port_ == 465 && d_.tls_ != nullptr;
    cc.in_tls = implicit_tls_;
    cc.timeouts.idle = kIdleCacheTime;
    if (!dc.relayhost.empty() && !d_.relay_login_.empty()) {
      auth::Credentials cr;
      cr.login = d_.relay_login_;
      cr.password = d_.relay_password_;
      cc.credentials = std::move(cr);
    }
    session_ = std::make_unique<client::ClientSession>(std::move(cc), *this);
    sockaddr_storage ss{};
    net::Endpoint ep{target_.ip, port_};
    ep.to_sockaddr(&ss);
    int rc = uv_tcp_connect(&connect_, &tcp_, reinterpret_cast<const sockaddr*>(&ss), on_connect);
    if (rc < 0) {
      connect_error_ = uv_strerror(rc);
      begin_close();
      return;
    }
    connecting_ = true;
    uv_timer_start(&timer_, on_timer,
                   static_cast<uint64_t>(std::chrono::milliseconds(client::Timeouts{}.connect).count()), 0);
  }

  // Shutdown: abort whatever is in flight.
  void abort() {
    if (closing_) return;
    if (!connected_) {
      connect_error_ = "delivery stopped";
      begin_close();
      return;
    }
    session_->quit();
    after_event();
  }

  // --- ClientHost ----------------------------------------------------------
  void send(std::string_view bytes) override {
    if (closing_) return;
    if (tls_) {
      tls_->write_plaintext(bytes);
      tls_pending_ += bytes.size();
    } else {
      out_.append(bytes);
    }
  }

  void start_tls() override {
    flush_output();  // plaintext before the handshake goes first
    // The name the certificate must carry: the MX name, or for the relayhost
    // its name, delivery.relayhost_tls_name, or its address (IP entries).
    const auto& dc = d_.config_->delivery;
    auto s = tls::TlsStream::client(d_.tls_, dc.relayhost.empty() ? target_.host
                                                                  : dc.relayhost_verify_name());
    if (!s) {
      tls_fail_ = s.error();
      return;
    }
    tls_ = std::move(*s);
    std::string plain;
    (void)tls_->process(plain);  // the ClientHello
    send_ciphertext();
  }

  void need_body() override {
    if (!run_) {
      session_->body_end();
      return;
    }
    // The content is streamed: read from the spool a piece at a time while
    // the output holds less than kBodyQueued; each finished write reads on.
    body_active_ = true;
    body_off_ = 0;
    ++body_seq_;
    pump_body();
  }

  void transaction_done(client::TransactionResult result) override { result_ = std::move(result); }

  void connection_failed(client::ConnectionFailure f) override {
    if (f.kind == client::Failure::tls_untrusted)
      log::warning("{}: relay={} {}; mail deferred; fix: {}", run_ ? run_->job.message_id : "delivery",
                   relay_, log::sanitize(f.reply.text(), 400), trust_fix(d_.config_->delivery));
    failure_ = std::move(f);
  }

  void idle() override {
    if (closing_) return;
    if (run_ && result_) {
      bool moved_on = settle();
      if (moved_on || d_.stopping_) {
        session_->quit();
        return;
      }
      // Reuse: the destination's next message over the same connection.
      if (reusable()) {
        if (auto job = d_.scheduler_.take_job_for(destination_, wall_clock_us())) {
          JobRun* next = d_.make_run(std::move(*job));
          if (next) {
            reuse(next);
            d_.run();
            return;
          }
        }
      }
      d_.run();
      if (run_ || closing_ || session_->closed()) return;
      // Nothing waiting: keep it for the destination's next message.
      if (reusable()) {
        d_.park(*this);
        return;
      }
      session_->quit();
      return;
    }
    if (run_ && !tx_started_) {
      tx_started_ = true;
      ++transactions_;
      session_->start_transaction(run_->undecided_tx());
      return;
    }
    session_->quit();
  }

  void close() override { close_requested_ = true; }

 private:
  friend class Delivery;

  static void on_connect(uv_connect_t* req, int status) {
    auto* o = static_cast<Outbound*>(req->data);
    o->connecting_ = false;
    if (o->closing_) return;
    if (status < 0) {
      o->connect_error_ = uv_strerror(status);
      o->begin_close();
      return;
    }
    o->connected_ = true;
    o->connected_at_ = uv_now(o->d_.loop_);
    uv_tcp_nodelay(&o->tcp_, 1);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&o->tcp_), on_alloc, on_read);
    if (o->implicit_tls_) {
      o->start_tls();
      if (!o->tls_) {
        o->session_->on_tls_failed(std::exchange(o->tls_fail_, std::string()));
        o->after_event();
        return;
      }
    } else {
      o->session_->on_connected();
    }
    o->after_event();
  }

  // One read buffer for every connection: libuv fills it and calls on_read
  // at once, and on_read keeps nothing pointing into it.
  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* o = static_cast<Outbound*>(h->data);
    std::span<char> b = o->d_.read_buffer();
    *buf = uv_buf_init(b.data(), static_cast<unsigned>(b.size()));
  }

  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* o = static_cast<Outbound*>(s->data);
    if (n == 0 || o->closing_) return;
    if (n < 0) {
      if (o->implicit_tls_ && !o->tls_->handshake_done()) {
        o->local_failure(queue::policy::SessionFailure::connection_lost, "during the TLS handshake");
        return;
      }
      o->session_->on_eof();
      o->after_event();
      return;
    }
    std::string_view bytes(buf->base, static_cast<size_t>(n));
    if (o->tls_) {
      o->read_tls(bytes);
    } else {
      o->session_->feed(bytes);
    }
    o->after_event();
  }

  void read_tls(std::string_view ciphertext) {
    tls_->feed_ciphertext(ciphertext);
    std::string plain;
    bool was_done = tls_->handshake_done();
    auto ev = tls_->process(plain);
    send_ciphertext();
    if (!ev) {
      if (!was_done) {  // implicit or after STARTTLS: the session decides
        session_->on_tls_failed(ev.error(), tls_->certificate_refused());
      } else {
        session_->on_eof();
      }
      return;
    }
    if (ev->handshake_completed) {
      log::info("delivery: tls to {} {} with cipher {} verified={}{}", relay_, tls_->version(),
                tls_->cipher(), tls_->peer_verified() ? "yes" : "no",
                tls_->peer_verified() ? "" : " (" + log::sanitize(tls_->verify_error()) + ")");
      if (implicit_tls_)
        session_->on_connected(tls_->peer_verified(), tls_->verify_error());
      else
        session_->on_tls_ready(tls_->peer_verified(), tls_->verify_error());
    }
    if (!plain.empty() && !closing_) session_->feed(plain);
    if (ev->peer_closed && !closing_) session_->on_eof();
  }

  // A failure outside the session (implicit TLS handshake): record and close.
  void local_failure(queue::policy::SessionFailure what, std::string detail) {
    local_event_ = queue::policy::SessionEvent{what, host_, {}, std::move(detail), false};
    begin_close();
  }

  static void on_timer(uv_timer_t* t) {
    auto* o = static_cast<Outbound*>(t->data);
    if (o->closing_) return;
    if (!o->connected_) {
      o->connect_error_ = "connection timed out";
      o->local_event_ = queue::policy::SessionEvent{queue::policy::SessionFailure::timeout, o->host_, {},
                                            "while connecting", false};
      o->begin_close();
      return;
    }
    if (o->implicit_tls_ && !o->tls_->handshake_done()) {
      o->local_failure(queue::policy::SessionFailure::timeout, "during the TLS handshake");
      return;
    }
    o->session_->on_timeout();
    o->after_event();
  }

  static void on_write(void* ctx, int status) {
    auto* o = static_cast<Outbound*>(ctx);
    --o->writes_;
    if (o->closing_) return;
    if (status < 0) {
      o->body_active_ = false;
      o->session_->on_eof();
    } else if (o->body_active_) {
      o->pump_body();
    }
    o->after_event();
  }

  static void on_close(uv_handle_t* h) {
    auto* o = static_cast<Outbound*>(h->data);
    if (++o->closed_handles_ == 2) delete o;
  }

  void after_event() {
    if (closing_) return;
    if (!tls_fail_.empty() && !implicit_tls_) {
      std::string why = std::move(tls_fail_);
      tls_fail_.clear();
      session_->on_tls_failed(why);
    }
    if (closing_) return;
    flush_output();
    if (close_requested_) {
      if (writes_ == 0) begin_close();
      return;
    }
    uint64_t ms = connected_ && (!implicit_tls_ || tls_->handshake_done())
                      ? static_cast<uint64_t>(session_->timeout().count())
                      : static_cast<uint64_t>(client::Timeouts{}.starttls.count());
    uv_timer_start(&timer_, on_timer, ms, 0);
  }

  void send_ciphertext() {
    tls_pending_ = 0;
    std::string data;
    if (tls_->take_ciphertext(data)) write_raw(std::move(data));
  }

  // What the session sent during this event, in one write.
  void flush_output() {
    if (!out_.empty()) write_raw(std::exchange(out_, std::string()));
    if (tls_ && tls_pending_ > 0) send_ciphertext();
  }

  // Bytes given to this connection and not yet taken by the kernel.
  size_t queued_output() const {
    return out_.size() + tls_pending_ +
           uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(&tcp_));
  }

  // Reads and hands over content while the output is short of kBodyQueued;
  // body_end() after the last piece. A failed read aborts the transaction
  // (temporary for everyone).
  void pump_body() {
    const uint64_t seq = body_seq_;
    while (body_active_) {
      if (seq != body_seq_ || closing_ || !run_ ||
          session_->state() != client::ClientSession::State::body) {
        body_active_ = false;
        return;
      }
      if (body_off_ >= run_->tx.size) {
        body_active_ = false;
        session_->body_end();
        return;
      }
      if (queued_output() >= kBodyQueued) return;  // on_write reads on
      auto n = d_.spool_.read_at(run_->job.message_id, body_off_, d_.body_buffer());
      if (!n || *n == 0) {
        body_active_ = false;
        log::error("{}: cannot read the message: {}", run_->job.message_id,
                   n ? std::string("content ends early") : n.error());
        body_failed_ = true;
        session_->on_eof();
        return;
      }
      body_off_ += *n;
      session_->body(std::string_view(d_.body_buffer().data(), *n));
    }
  }

  void write_raw(std::string data) {
    if (closing_ || data.empty()) return;
    if (write_owned(reinterpret_cast<uv_stream_t*>(&tcp_), std::move(data), on_write, this) < 0) {
      close_requested_ = true;
      return;
    }
    ++writes_;
  }

  // The job on this connection is over for this host: decide what is known
  // and hand the rest to the next host (or finish). True when the job moved
  // on to another host (so this connection should not be reused).
  bool settle() {
    JobRun* run = run_;
    run_ = nullptr;
    run->conn = nullptr;
    const size_t n = run->job.recipients.size();
    bool undecided = false;
    std::optional<queue::policy::SessionEvent> mail_ev;
    size_t k = 0;  // result_->recipients[k] is job recipient run->sent[k]
    for (size_t i = 0; i < n; ++i) {
      if (run->verdicts[i]) continue;
      while (k < run->sent.size() && run->sent[k] < i) ++k;
      if (!result_ || k >= run->sent.size() || run->sent[k] != i ||
          k >= result_->recipients.size()) {
        undecided = true;
        continue;
      }
      const auto& r = result_->recipients[k];
      queue::Outcome o = to_outcome(r.reply);
      const std::string remote_host = r.remote ? host_ : std::string();
      if (r.outcome == client::Outcome::sent) {
        run->verdicts[i] = queue::policy::data_reply(o, host_);
      } else if (r.stage == client::Stage::mail && r.remote) {
        if (!mail_ev) mail_ev = queue::policy::SessionEvent{queue::policy::SessionFailure::mail_from, host_, o, {}, false};
        undecided = true;
        continue;
      } else if (!r.remote && r.outcome == client::Outcome::temporary && failure_) {
        undecided = true;  // the connection failure decides
        continue;
      } else if (r.stage == client::Stage::rcpt) {
        auto v = queue::policy::rcpt_reply(o, remote_host);
        run->verdicts[i] = v ? *v : queue::policy::data_reply(o, remote_host);
      } else if (r.stage == client::Stage::local) {
        queue::Verdict v;
        v.action = r.outcome == client::Outcome::permanent ? queue::Action::bounce
                                                            : queue::Action::defer;
        v.status = queue::policy::status_of(o);
        v.reply = o.str();
        run->verdicts[i] = std::move(v);
      } else {
        run->verdicts[i] = queue::policy::data_reply(o, remote_host);
      }
      run->relay[i] = relay_;
    }
    result_.reset();
    if (!undecided) {
      failure_.reset();
      d_.finish(run, false);
      return false;
    }
    queue::policy::SessionEvent ev;
    if (failure_) {
      ev = event_of(*failure_);
      failure_.reset();
    } else if (local_event_) {
      ev = *local_event_;
      local_event_.reset();
    } else if (mail_ev) {
      ev = *mail_ev;
    } else if (!connect_error_.empty()) {
      ev = queue::policy::SessionEvent{queue::policy::SessionFailure::connect_failed, host_, {},
                                       connect_error_, false};
    } else {
      ev = queue::policy::SessionEvent{queue::policy::SessionFailure::connection_lost, host_, {},
                                       "(delivery aborted)", false};
    }
    if (run->reused) {
      // A kept connection failed (the server may have dropped it while it
      // was idle): that says nothing about the host yet. Start the job over
      // like a new one, unless the end of the data went out (the server may
      // have the message) or the failure must not be retried elsewhere.
      run->reused = false;
      queue::policy::Context ctx{!d_.config_->delivery.relayhost.empty()};
      if (!d_.stopping_ && queue::policy::try_next_host(ev, ctx)) {
        d_.resolve(run);
        return true;
      }
    }
    run->events.push_back(std::move(ev));
    d_.try_next(run);
    return true;
  }

  queue::policy::SessionEvent event_of(const client::ConnectionFailure& f) const {
    using SF = queue::policy::SessionFailure;
    queue::policy::SessionEvent ev;
    ev.host = host_;
    ev.data_sent = f.data_sent;
    if (f.remote) ev.reply = to_outcome(f.reply);
    switch (f.kind) {
      case client::Failure::greeting_refused: ev.what = SF::greeting; break;
      case client::Failure::helo_refused: ev.what = SF::helo; break;
      case client::Failure::tls_not_offered:
      case client::Failure::tls_unavailable: ev.what = SF::tls_unavailable; break;
      case client::Failure::tls_refused:
      case client::Failure::tls_failed:
      case client::Failure::tls_untrusted: ev.what = SF::tls_failed; break;
      case client::Failure::auth_not_offered:
      case client::Failure::auth_failed:
        ev.what = SF::auth_failed;
        ev.reply = to_outcome(f.reply);  // "451 4.7.8 Authentication failed (server said ...)"
        break;
      case client::Failure::timeout: ev.what = SF::timeout; break;
      case client::Failure::protocol_error: ev.what = SF::protocol_error; break;
      case client::Failure::connection_closed:
      case client::Failure::service_closing: ev.what = SF::connection_lost; break;
    }
    if (ev.reply.code == 0) {
      if (f.kind == client::Failure::timeout || f.kind == client::Failure::connection_closed)
        ev.detail = "while " + f.phase;
      else
        ev.detail = f.reply.code ? f.reply.text() : f.phase;
    }
    return ev;
  }

  void begin_close() {
    if (closing_) return;
    closing_ = true;
    body_active_ = false;
    uv_timer_stop(&timer_);
    if (connected_)
      log::info("delivery: conn={} relay={} closed transactions={} age={:.1f}s", id_, relay_,
                transactions_, static_cast<double>(uv_now(d_.loop_) - connected_at_) / 1e3);
    if (run_ && !settle()) d_.run();
    d_.forget(*this);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_close);
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
  }

  Delivery& d_;
  uint64_t id_;
  Target target_;
  uint16_t port_;
  std::string destination_;
  std::string host_;   // "mx.example.com[192.0.2.1]"
  std::string relay_;  // ... ":25"
  uv_tcp_t tcp_;
  uv_timer_t timer_;
  uv_connect_t connect_;
  std::unique_ptr<client::ClientSession> session_;
  std::unique_ptr<tls::TlsStream> tls_;
  JobRun* run_ = nullptr;
  std::optional<client::TransactionResult> result_;
  std::optional<client::ConnectionFailure> failure_;
  std::optional<queue::policy::SessionEvent> local_event_;
  std::string connect_error_;
  std::string tls_fail_;
  std::string out_;          // sent by the session during this event, not yet written
  size_t tls_pending_ = 0;   // plaintext given to the TLS stream since its last flush
  uint64_t body_off_ = 0;    // next content byte to read from the spool
  bool body_active_ = false; // streaming the content
  uint64_t connected_at_ = 0;  // uv_now() when the connection came up
  uint64_t idle_since_ = 0;    // uv_now() when parked; 0 while busy
  uint64_t transactions_ = 0;  // started on this connection
  uint64_t body_seq_ = 0;
  int writes_ = 0;
  int closed_handles_ = 0;
  bool implicit_tls_ = false;
  bool connecting_ = false;
  bool connected_ = false;
  bool closing_ = false;
  bool close_requested_ = false;
  bool tx_started_ = false;
  bool body_failed_ = false;
};

}  // namespace sluice::mta
