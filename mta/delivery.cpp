// delivery.cpp — see delivery.hpp.
#include "mta/delivery.hpp"

#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <optional>
#include <utility>

#include "conf/log.hpp"
#include "mta/client/client_session.hpp"
#include "mta/tls/tls.hpp"
#include "mta/uv_util.hpp"
#include "queue/dsn.hpp"
#include "queue/policy.hpp"

namespace sluice::mta {

namespace {

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

queue::Outcome to_outcome(const proto::Reply& r) {
  return queue::Outcome{r.code, r.enhanced, r.text()};
}

// With a relayhost every message goes to it, under delivery.relayhost_tls
// (resolved by conf: "verify" when credentials are set); else delivery.tls.
conf::DeliveryTls outbound_tls(const conf::Delivery& dc) {
  return dc.relayhost.empty() ? dc.tls : dc.relayhost_tls;
}

// What to change when a certificate did not verify, for the log line that
// reports it (the reason is in the failure's text).
std::string trust_fix(const conf::Delivery& dc) {
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

client::TlsPolicy to_policy(conf::DeliveryTls t) {
  switch (t) {
    case conf::DeliveryTls::none: return client::TlsPolicy::none;
    case conf::DeliveryTls::opportunistic: return client::TlsPolicy::opportunistic;
    case conf::DeliveryTls::required: return client::TlsPolicy::required;
    case conf::DeliveryTls::verify: return client::TlsPolicy::verify;
  }
  return client::TlsPolicy::opportunistic;
}

}  // namespace

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

// ---------------------------------------------------------------------------

Delivery::Delivery(uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool)
    : loop_(loop), config_(std::move(config)), spool_(spool), scheduler_([this] {
        const auto& dc = config_->delivery;
        queue::SchedulerOptions o;
        o.max_connections = std::max<uint32_t>(1, dc.max_connections);
        o.max_connections_per_destination = std::max<uint32_t>(1, dc.max_connections_per_destination);
        if (!dc.retry_schedule.empty()) {
          o.retry_schedule_us.clear();
          for (auto d : dc.retry_schedule)
            o.retry_schedule_us.push_back(
                std::chrono::duration_cast<std::chrono::microseconds>(d).count());
        }
        o.max_queue_lifetime_us =
            std::chrono::duration_cast<std::chrono::microseconds>(dc.max_queue_lifetime).count();
        o.relayhost = dc.relayhost;
        return o;
      }()) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  uv_async_init(loop_, &async_, on_async);
  async_.data = this;
}

Delivery::~Delivery() {
  // The relayhost password lives as long as the daemon (every connection
  // needs it); wipe it at the end like the session wipes its copy after AUTH.
  std::fill(relay_password_.begin(), relay_password_.end(), '\0');
  asm volatile("" : : "r"(relay_password_.data()) : "memory");
}

std::expected<std::unique_ptr<Delivery>, std::string> Delivery::create(
    uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool) {
  const auto& dc = config->delivery;
  std::string login, password;
  if (!dc.relayhost.empty() && !dc.relayhost_username.empty()) {
    std::ifstream f(dc.relayhost_password_file);
    if (!f) return std::unexpected("cannot read relayhost_password_file " + dc.relayhost_password_file);
    std::getline(f, password);
    while (!password.empty() && (password.back() == '\r' || password.back() == ' ' ||
                                 password.back() == '\t'))
      password.pop_back();
    size_t b = password.find_first_not_of(" \t");
    password = b == std::string::npos ? std::string() : password.substr(b);
    if (password.empty()) return std::unexpected("relayhost_password_file " + dc.relayhost_password_file + " is empty");
    login = dc.relayhost_username;
  }
  // One client context: every message goes either to the relayhost or to
  // MX hosts. Verifying contexts abort the handshake on a certificate that
  // does not verify against delivery.ca_file; the others only report it.
  std::shared_ptr<const tls::TlsContext> tls;
  const conf::DeliveryTls policy = outbound_tls(dc);
  if (policy != conf::DeliveryTls::none || !login.empty()) {
    const bool verify = policy == conf::DeliveryTls::verify;
    auto ctx = tls::TlsContext::client(verify, dc.ca_file);
    if (!ctx && !verify) {
      // Nothing is verified: the CA file only feeds the log's verified=.
      log::warning("delivery: {}; TLS is used, but verified=no for every server", ctx.error());
      ctx = tls::TlsContext::client(false);
    }
    if (!ctx) return std::unexpected("delivery tls: " + ctx.error());
    tls = std::move(*ctx);
  }
  dns::Options dopt;
  dopt.servers = config->dns.servers;
  auto res = dns::Resolver::create(loop, std::move(dopt));
  if (!res) return std::unexpected("dns: " + res.error());
  std::unique_ptr<Delivery> d(new Delivery(loop, std::move(config), spool));
  d->resolver_ = std::move(*res);
  d->tls_ = std::move(tls);
  d->relay_login_ = std::move(login);
  d->relay_password_ = std::move(password);
  return d;
}

void Delivery::start() {
  auto msgs = spool_.messages();
  for (auto& env : msgs) {
    auto c = scheduler_.add(std::move(env));
    if (c.persist == queue::Completion::Persist::remove)
      spool_.remove(c.id, [](bool) {});
  }
  const auto& dc = config_->delivery;
  log::info("delivery: {} messages queued, relayhost={} tls={} ca_file={}{}", msgs.size(),
            dc.relayhost.empty() ? "-" : dc.relayhost, conf::to_string(outbound_tls(dc)),
            dc.ca_file,
            dc.relayhost.empty() ? "" : fmt::format(" tls_name={}", dc.relayhost_verify_name()));
  run();
}

void Delivery::add(queue::Envelope env) {
  if (scheduler_.find(env.id)) return;
  auto c = scheduler_.add(std::move(env));
  if (c.persist == queue::Completion::Persist::remove) spool_.remove(c.id, [](bool) {});
  run();
}

bool Delivery::hold(std::string_view id) {
  auto c = scheduler_.hold(id, wall_clock_us());
  if (!c) return false;
  handle_completion(std::move(*c));
  run();
  return true;
}

bool Delivery::release(std::string_view id) {
  auto c = scheduler_.release(id);
  if (!c) return false;
  handle_completion(std::move(*c));
  run();
  return true;
}

bool Delivery::flush(std::string_view id) {
  if (!scheduler_.flush(id, wall_clock_us())) return false;
  run();
  return true;
}

size_t Delivery::flush_all() {
  size_t n = scheduler_.flush_all(wall_clock_us());
  run();
  return n;
}

bool Delivery::bounce(std::string_view id) {
  auto c = scheduler_.bounce_now(id, wall_clock_us());
  if (!c) return false;
  handle_completion(std::move(*c));
  run();
  return true;
}

bool Delivery::remove(std::string_view id) {
  auto c = scheduler_.remove(id);
  if (!c) return false;
  handle_completion(std::move(*c));
  run();
  return true;
}

void Delivery::run() {
  if (stopping_) return;
  for (auto& job : scheduler_.take_jobs(wall_clock_us())) start_job(std::move(job));
  arm_timer();
}

void Delivery::arm_timer() {
  if (stopping_) return;
  auto w = scheduler_.next_wakeup();
  if (!w) {
    uv_timer_stop(&timer_);
    return;
  }
  int64_t delta = *w - wall_clock_us();
  uint64_t ms = delta <= 0 ? 0 : static_cast<uint64_t>((delta + 999) / 1000);
  uv_timer_start(&timer_, on_timer, ms, 0);
}

void Delivery::on_timer(uv_timer_t* t) { static_cast<Delivery*>(t->data)->run(); }

JobRun* Delivery::make_run(queue::Job job) {
  const queue::Envelope* env = scheduler_.find(job.message_id);
  auto run = std::make_unique<JobRun>();
  run->verdicts.resize(job.recipients.size());
  run->relay.assign(job.recipients.size(), "none");
  if (env) {
    run->tx.sender = env->sender;
    run->tx.size = env->size;
    run->tx.needs_8bitmime = env->body == queue::BodyType::eight_bit_mime;
    run->tx.needs_smtputf8 = env->smtputf8;
    run->tx.envid = env->envid;
    run->tx.ret = env->ret;
    for (uint32_t k : job.recipients) {
      const auto& r = env->recipients.at(k);
      run->tx.recipients.push_back(client::Recipient{r.address, r.orcpt, r.notify});
    }
  }
  JobRun* raw = run.get();
  run->job = std::move(job);
  runs_[raw->job.serial] = std::move(run);
  if (!env) {  // cannot happen: the scheduler hands out jobs of live messages
    for (auto& v : raw->verdicts)
      v = queue::Verdict{queue::Action::defer, "4.3.0", "451 4.3.0 message not found", ""};
    finish(raw, true);
    return nullptr;
  }
  return raw;
}

void Delivery::start_job(queue::Job job) {
  JobRun* run = make_run(std::move(job));
  if (!run) return;
  if (Outbound* o = take_idle(run->job.destination)) {
    o->reuse_now(run);
    return;
  }
  resolve(run);
}

void Delivery::park(Outbound& o) {
  o.park();
  idle_[o.destination()].push_back(&o);
}

// The most recently parked connection to `destination` that can still carry
// a job (LIFO: the others reach their idle limit and close).
Outbound* Delivery::take_idle(const std::string& destination) {
  auto it = idle_.find(destination);
  if (it == idle_.end()) return nullptr;
  Outbound* found = nullptr;
  auto& v = it->second;
  std::vector<Outbound*> spent;  // too old to reuse: they say QUIT now
  while (!v.empty() && !found) {
    Outbound* o = v.back();
    v.pop_back();
    if (o->reusable())
      found = o;
    else
      spent.push_back(o);
  }
  if (v.empty()) idle_.erase(it);
  for (Outbound* o : spent) o->abort();
  return found;
}

void Delivery::unpark(Outbound& o) {
  auto it = idle_.find(o.destination());
  if (it == idle_.end()) return;
  auto& v = it->second;
  v.erase(std::remove(v.begin(), v.end(), &o), v.end());
  if (v.empty()) idle_.erase(it);
}

// At delivery.max_connections: the connection idle the longest says QUIT to
// make room.
void Delivery::evict_idle() {
  Outbound* oldest = nullptr;
  for (auto& [dest, v] : idle_)
    for (Outbound* o : v)
      if (!oldest || o->idle_since() < oldest->idle_since()) oldest = o;
  if (!oldest) return;
  unpark(*oldest);
  oldest->abort();
}

std::span<char> Delivery::body_buffer() {
  if (!body_buf_) body_buf_ = std::make_unique_for_overwrite<char[]>(kBodyChunk);
  return {body_buf_.get(), kBodyChunk};
}

std::span<char> Delivery::read_buffer() {
  if (!read_buf_) read_buf_ = std::make_unique_for_overwrite<char[]>(kReadBufferSize);
  return {read_buf_.get(), kReadBufferSize};
}

void Delivery::resolve(JobRun* run) {
  const auto& dc = config_->delivery;
  const uint64_t serial = run->job.serial;
  queue::policy::Context ctx{!dc.relayhost.empty()};
  if (!dc.relayhost.empty()) {
    resolver_->resolve_addresses(dc.relayhost_name, [this, serial, ctx](dns::AddrResult r) {
      auto it = runs_.find(serial);
      if (it == runs_.end()) return;
      JobRun* run = it->second.get();
      if (r.status != dns::Status::ok) {
        auto v = queue::policy::dns_failure(queue::policy::DnsFailure::temporary,
                                            config_->delivery.relayhost_name, r.reason, ctx);
        for (auto& x : run->verdicts)
          if (!x) x = v;
        finish(run, true);
        return;
      }
      for (const auto& ip : r.ipv4) run->targets.push_back({config_->delivery.relayhost_name, ip});
      for (const auto& ip : r.ipv6) run->targets.push_back({config_->delivery.relayhost_name, ip});
      try_next(run);
    });
    return;
  }
  const std::string domain = run->job.destination;
  resolver_->resolve_mx(domain, [this, serial, ctx, domain](dns::MxResult r) {
    auto it = runs_.find(serial);
    if (it == runs_.end()) return;
    JobRun* run = it->second.get();
    if (r.status != dns::Status::ok) {
      using DF = queue::policy::DnsFailure;
      DF what = DF::temporary;
      if (r.status == dns::Status::null_mx)
        what = DF::null_mx;
      else if (r.status == dns::Status::permanent)
        what = r.reason.starts_with(domain + ": domain does not exist") ? DF::nxdomain : DF::no_route;
      auto v = queue::policy::dns_failure(what, domain, r.reason, ctx);
      for (auto& x : run->verdicts)
        if (!x) x = v;
      finish(run, true);
      return;
    }
    for (const auto& h : r.hosts) {
      for (const auto& ip : h.ipv4) run->targets.push_back({h.name, ip});
      for (const auto& ip : h.ipv6) run->targets.push_back({h.name, ip});
    }
    try_next(run);
  });
}

void Delivery::try_next(JobRun* run) {
  queue::policy::Context ctx{!config_->delivery.relayhost.empty()};
  bool go_on = run->events.empty() || queue::policy::try_next_host(run->events.back(), ctx);
  if (stopping_ || !go_on || run->next >= run->targets.size()) {
    finish(run, true);
    return;
  }
  const Target& t = run->targets[run->next++];
  const auto& dc = config_->delivery;
  uint16_t port = dc.relayhost.empty() ? dc.port : dc.relayhost_port;
  if (conns_.size() >= dc.max_connections) evict_idle();
  auto* o = new Outbound(*this, next_conn_++, t, port, run->job.destination);
  conns_.emplace(o->id(), o);
  o->attach(run);
  o->connect();
}

void Delivery::finish(JobRun* run, bool run_after) {
  if (stopping_ && std::none_of(run->verdicts.begin(), run->verdicts.end(), [](const auto& v) {
        return v && v->action != queue::Action::defer;
      })) {
    // Interrupted by shutdown with nothing final learnt: write nothing, so
    // the message keeps its state on disk and is due at once after a restart
    // (docs/delivery.md, "What is kept on disk"). The scheduler is not used
    // for delivery again in this process.
    log::info("{}: delivery to {} interrupted by shutdown; retried at the next start",
              run->job.message_id, log::sanitize(run->job.destination));
    runs_.erase(run->job.serial);
    return;
  }
  queue::policy::Context ctx{!config_->delivery.relayhost.empty()};
  std::optional<queue::Verdict> session_v;
  std::vector<queue::Verdict> verdicts;
  for (size_t i = 0; i < run->verdicts.size(); ++i) {
    if (run->verdicts[i]) {
      verdicts.push_back(*run->verdicts[i]);
      continue;
    }
    if (!session_v) session_v = queue::policy::session_verdict(run->events, ctx);
    verdicts.push_back(*session_v);
    run->relay[i] = run->last_relay;
  }
  const int64_t now = wall_clock_us();
  queue::Job job = run->job;
  std::vector<std::string> relays = run->relay;
  runs_.erase(job.serial);  // `run` is gone from here on
  auto c = scheduler_.complete(job, verdicts, now);
  // One line per recipient attempt.
  for (size_t i = 0; i < job.recipients.size() && i < verdicts.size(); ++i) {
    const auto& v = verdicts[i];
    std::string rcpt = job.recipients[i] < c.envelope.recipients.size()
                           ? c.envelope.recipients[job.recipients[i]].address
                           : std::string("?");
    std::string_view status = "deferred";
    std::string dsn = v.status;
    if (job.recipients[i] < c.envelope.recipients.size()) {
      const auto& er = c.envelope.recipients[job.recipients[i]];
      if (!er.dsn_status.empty()) dsn = er.dsn_status;
      auto st = er.status;
      if (st == queue::RcptStatus::sent) status = "sent";
      else if (st == queue::RcptStatus::bounced) status = "bounced";
    } else if (v.action == queue::Action::sent) {
      status = "sent";
    } else if (v.action == queue::Action::bounce) {
      status = "bounced";
    }
    double delay = static_cast<double>(now - c.envelope.arrival_us) / 1e6;
    log::info("{}: to=<{}> relay={} delay={:.1f} dsn={} status={} ({})", job.message_id,
              log::sanitize(rcpt), log::sanitize(relays[i]), delay, dsn, status,
              log::sanitize(v.reply, 400));
  }
  handle_completion(std::move(c));
  if (run_after) this->run();
}

void Delivery::handle_completion(queue::Completion c) {
  if (!c.bounce.empty()) store_bounce(c);
  const std::string id = c.id;
  switch (c.persist) {
    case queue::Completion::Persist::nothing: break;
    case queue::Completion::Persist::update:
      spool_.update(std::move(c.envelope), [id](bool ok) {
        if (!ok) log::error("{}: could not write the delivery state to the spool", id);
      });
      break;
    case queue::Completion::Persist::remove:
      spool_.remove(id, [id](bool ok) {
        if (!ok) log::error("{}: could not remove the message from the spool", id);
      });
      log::info("{}: removed", id);
      break;
  }
}

void Delivery::store_bounce(const queue::Completion& c) {
  const std::string& hostname = config_->hostname;
  const int64_t now = wall_clock_us();
  std::string head;
  auto r = spool_.read_body(c.id, [&head](std::string_view s) { head.append(s); },
                            queue::kMaxDsnHeaderBytes + 4);
  if (!r) log::warning("{}: bounce without the original headers: {}", c.id, r.error());
  auto in = spool_.begin();
  const std::string mid = "<" + in->id() + "@" + hostname + ">";
  std::string content = queue::make_dsn(c.envelope, c.bounce, hostname, head, now, mid);
  queue::Envelope env = queue::bounce_envelope(c.envelope, content, mid, now);
  in->append(content);
  env.id = in->id();
  env.size = in->size();
  log::info("{}: sender non-delivery notification: {} to=<{}> nrcpt={}", c.id, in->id(),
            log::sanitize(c.envelope.sender), c.bounce.size());
  Delivery* self = this;
  queue::Envelope copy = env;
  in->commit(std::move(env), [self, copy = std::move(copy)](bool ok) mutable {
    if (!ok) {
      log::error("{}: could not store the bounce", copy.id);
      return;
    }
    {
      std::lock_guard lock(self->mu_);
      self->bounces_.push_back(std::move(copy));
    }
    uv_async_send(&self->async_);
  });
}

void Delivery::on_async(uv_async_t* a) {
  auto* self = static_cast<Delivery*>(a->data);
  std::vector<queue::Envelope> batch;
  {
    std::lock_guard lock(self->mu_);
    batch.swap(self->bounces_);
  }
  if (self->closed_) return;
  for (auto& env : batch) self->add(std::move(env));
}

void Delivery::forget(Outbound& o) {
  unpark(o);
  conns_.erase(o.id());
  check_drained();
}

void Delivery::shutdown(std::function<void()> done) {
  stopping_ = true;
  drained_ = std::move(done);
  uv_timer_stop(&timer_);
  std::vector<Outbound*> all;
  for (auto& [id, o] : conns_) all.push_back(o);
  for (auto* o : all) o->abort();
  resolver_->close([this] {
    resolver_closed_ = true;
    check_drained();
  });
  check_drained();
}

void Delivery::check_drained() {
  if (stopping_ && resolver_closed_ && conns_.empty() && drained_) {
    auto done = std::move(drained_);
    drained_ = nullptr;
    log::info("delivery: stopped");
    done();
  }
}

void Delivery::close_handles() {
  on_async(&async_);  // bounces that raced in (only added to the scheduler)
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  resolver_.reset();
}

}  // namespace sluice::mta
