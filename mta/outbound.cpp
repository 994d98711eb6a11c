// outbound.cpp — one outgoing SMTP connection (see outbound.hpp).
#include "mta/outbound.hpp"

#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "conf/log.hpp"
#include "mta/tls/tls.hpp"
#include "obs/sluice_metrics.hpp"

namespace sluice::mta {

namespace {

using queue::policy::SessionEvent;
using queue::policy::SessionFailure;

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

queue::Outcome to_outcome(const proto::Reply& r) {
  return queue::Outcome{r.code, r.enhanced, r.text()};
}

queue::policy::Stage to_stage(client::Stage s) {
  using S = queue::policy::Stage;
  switch (s) {
    case client::Stage::local: return S::local;
    case client::Stage::mail: return S::mail;
    case client::Stage::rcpt: return S::rcpt;
    case client::Stage::data: return S::data;
    case client::Stage::message: return S::message;
    case client::Stage::end_of_data: return S::end_of_data;
    case client::Stage::requiretls: return S::requiretls;
  }
  return S::local;
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

// "the MTA-STS policy of example.com", for reasons.
std::string demand_of(Protection::Rule r, const std::string& destination) {
  switch (r) {
    case Protection::Rule::mta_sts: return "the MTA-STS policy of " + destination;
    case Protection::Rule::dane: return "DANE (TLSA records)";
    case Protection::Rule::dane_unusable: return "DANE (TLSA records, none usable)";
    case Protection::Rule::configured: break;
  }
  return "delivery.tls";
}

std::string_view to_string(Protection::Rule r) {
  switch (r) {
    case Protection::Rule::configured: return "configured";
    case Protection::Rule::mta_sts: return "mta-sts";
    case Protection::Rule::dane: return "dane";
    case Protection::Rule::dane_unusable: return "dane (unusable TLSA)";
  }
  return "configured";
}

conf::DeliveryTls outbound_tls(const conf::Delivery& dc) {
  return dc.relayhost.empty() ? dc.tls : dc.relayhost_tls;
}

// --- OutboundShared ----------------------------------------------------------

OutboundShared::~OutboundShared() {
  // The relayhost password lives as long as the daemon (every connection
  // needs it); wipe it at the end like the session wipes its copy after AUTH.
  std::fill(relay_password.begin(), relay_password.end(), '\0');
  asm volatile("" : : "r"(relay_password.data()) : "memory");
}

std::span<char> OutboundShared::read_buffer() {
  if (!read_buf_) read_buf_ = std::make_unique_for_overwrite<char[]>(kReadBufferSize);
  return {read_buf_.get(), kReadBufferSize};
}

std::span<char> OutboundShared::body_buffer() {
  if (!body_buf_) body_buf_ = std::make_unique_for_overwrite<char[]>(kBodyChunk);
  return {body_buf_.get(), kBodyChunk};
}

// --- Outbound: what Delivery asks ---------------------------------------------

Outbound::Outbound(OutboundShared& shared, OutboundHost& host, uint64_t id, queue::Target target,
                   uint16_t port, std::string destination, Protection protection)
    : StreamConnection(shared.loop, Kind::tcp, shared.read_buffer()), shared_(shared), owner_(host),
      id_(id), target_(std::move(target)), port_(port), destination_(std::move(destination)),
      protection_(std::move(protection)), config_(shared.config), tls_ctx_(shared.tls) {
  host_ = target_.str();
  relay_ = fmt::format("{}:{}", host_, port_);
}

Outbound::~Outbound() = default;

bool Outbound::reusable() const {
  return connected_ && !closing() && !close_requested_ && session_->ready() &&
         uv_now(loop()) - connected_at_ < kReuseTimeLimitMs;
}

void Outbound::take_job(uint64_t serial, std::string message_id, uint64_t size) {
  job_ = serial;
  message_id_ = std::move(message_id);
  size_ = size;
  result_.reset();
  tx_started_ = false;
  body_active_ = false;
}

void Outbound::start(client::Transaction t) {
  tx_started_ = true;
  ++transactions_;
  session_->start_transaction(std::move(t));
}

void Outbound::start_now(client::Transaction t) {
  idle_since_ = 0;
  start(std::move(t));
  after_event();
}

void Outbound::quit() { session_->quit(); }

void Outbound::park() { idle_since_ = uv_now(loop()); }

void Outbound::connect() {
  const auto& dc = config_->delivery;
  client::ClientConfig cc;
  cc.helo_name = config_->hostname;
  cc.own_hostname = config_->hostname;  // the loop check (docs/delivery.md, "Mail loops")
  // What the destination publishes overrides the configuration: an MTA-STS
  // policy or usable TLSA records demand verified TLS; TLSA records none of
  // which is usable, TLS at least (RFC 7672 §2.2).
  switch (protection_.rule) {
    case Protection::Rule::configured:
      cc.tls = protection_.verify ? client::TlsPolicy::verify : to_policy(outbound_tls(dc));
      break;
    case Protection::Rule::mta_sts:
    case Protection::Rule::dane: cc.tls = client::TlsPolicy::verify; break;
    case Protection::Rule::dane_unusable: cc.tls = client::TlsPolicy::required; break;
  }
  cc.tls_available = tls_ctx_ != nullptr;
  implicit_tls_ = !dc.relayhost.empty() && port_ == 465 && tls_ctx_ != nullptr;
  cc.in_tls = implicit_tls_;
  cc.timeouts.idle = kIdleCacheTime;
  if (!dc.relayhost.empty() && !shared_.relay_login.empty()) {
    auth::Credentials cr;
    cr.login = shared_.relay_login;
    cr.password = shared_.relay_password;
    cc.credentials = std::move(cr);
  }
  session_ = std::make_unique<client::ClientSession>(std::move(cc), *this);
  sockaddr_storage ss{};
  net::Endpoint ep{target_.ip, port_};
  ep.to_sockaddr(&ss);
  const int rc = StreamConnection::connect(reinterpret_cast<const sockaddr*>(&ss));
  if (rc < 0) {
    connect_error_ = uv_strerror(rc);
    close_now();
    return;
  }
  arm_timer(static_cast<uint64_t>(std::chrono::milliseconds(client::Timeouts{}.connect).count()));
}

void Outbound::abort() {
  if (closing()) return;
  if (!connected_) {
    connect_error_ = "delivery stopped";
    close_now();
    return;
  }
  session_->quit();
  after_event();
}

// --- ClientHost -----------------------------------------------------------------

// The content goes through write_bulk(): under TLS it is encrypted at once
// instead of being gathered first (no extra copy of a message); the rest is
// gathered, so one event's commands make one write (one TLS record).
void Outbound::send(std::string_view bytes) {
  if (body_active_)
    write_bulk(bytes);
  else
    write(bytes);
}

void Outbound::start_tls() {
  // The name the certificate must carry: the MX name, or for the relayhost
  // its name, delivery.relayhost_tls_name, or its address (IP entries).
  const auto& dc = config_->delivery;
  const std::string& name = dc.relayhost.empty() ? target_.host : dc.relayhost_verify_name();
  auto s = protection_.rule == Protection::Rule::dane
               ? tls::TlsStream::client_dane(tls_ctx_, name, protection_.tlsa)
               : tls::TlsStream::client(tls_ctx_, name);
  if (!s) {
    tls_fail_ = s.error();
    return;
  }
  StreamConnection::start_tls(std::move(*s));  // plaintext before the handshake goes first
  plain_.clear();
  (void)tls_pump({}, plain_);  // the ClientHello, sent at the end of the event
}

void Outbound::need_body() {
  if (!job_) {
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

void Outbound::transaction_done(client::TransactionResult result) { result_ = std::move(result); }

void Outbound::connection_failed(client::ConnectionFailure f) {
  // Failures only the administrator can fix: warnings, counted for status.
  if (f.kind == client::Failure::tls_untrusted)
    log::alert(log::Alert::tls_verify, "{}: relay={} {}; mail deferred; fix: {}",
               job_ ? message_id_ : "delivery", relay_, log::sanitize(f.reply.text(), 400),
               trust_fix(config_->delivery));
  else if (f.kind == client::Failure::auth_failed || f.kind == client::Failure::auth_not_offered)
    log::alert(log::Alert::relayhost_auth,
               "{}: relay={} relayhost login {} failed: {}; mail deferred; fix: check "
               "delivery.relayhost_username and delivery.relayhost_password_file ({}), then "
               "reload (SIGHUP)",
               job_ ? message_id_ : "delivery", relay_, log::sanitize(shared_.relay_login),
               log::sanitize(f.reply.text(), 400), config_->delivery.relayhost_password_file);
  else if (f.kind == client::Failure::loop)
    log::warning("{}: relay={} replied to EHLO with my own hostname {}: mail loops back to myself; "
                 "deferred (4.4.6), the next host is tried", job_ ? message_id_ : "delivery", relay_,
                 log::sanitize(config_->hostname));
  failure_ = std::move(f);
}

void Outbound::idle() {
  if (closing()) return;
  if (job_ && result_) {
    const uint64_t job = std::exchange(job_, 0);
    owner_.on_transaction_done(*this, job, take_report());
    return;
  }
  if (job_ && !tx_started_) {
    owner_.on_ready(*this, job_);
    if (tx_started_ || closing()) return;
  }
  session_->quit();
}

void Outbound::close() { close_requested_ = true; }

// --- stream events (each inside uv::guard; after_event() follows) ------------------

void Outbound::on_connect(int status) {
  if (status < 0) {
    connect_error_ = uv_strerror(status);
    close_now();
    return;
  }
  connected_ = true;
  connected_at_ = uv_now(loop());
  uv_tcp_nodelay(tcp(), 1);
  read(true);
  if (implicit_tls_) {
    start_tls();
    if (!tls()) session_->on_tls_failed(std::exchange(tls_fail_, std::string()));
  } else {
    session_->on_connected();
  }
}

// The bytes are in the shared read buffer: the session consumes them here.
void Outbound::on_bytes(std::string_view bytes) {
  if (tls())
    read_tls(bytes);
  else
    session_->feed(bytes);
}

// sluice_tls_handshakes_total{direction="outbound"}: once per connection.
void Outbound::count_tls(obs::TlsOutcome outcome) {
  if (!std::exchange(tls_counted_, true)) obs::sluice_metrics().record_tls(obs::Direction::outbound, outcome);
}

void Outbound::on_end(int) {
  if (tls() && !tls()->handshake_done())  // the peer left during the handshake
    count_tls(obs::TlsOutcome::failed);
  if (implicit_tls_ && tls() && !tls()->handshake_done()) {
    local_failure(SessionFailure::connection_lost, "during the TLS handshake");
    return;
  }
  session_->on_eof();
}

void Outbound::read_tls(std::string_view ciphertext) {
  tls::TlsStream& t = *tls();
  const bool was_done = t.handshake_done();
  plain_.clear();
  auto ev = tls_pump(ciphertext, plain_);  // what it produces leaves at the flush
  if (!ev) {
    if (!was_done) {  // implicit or after STARTTLS: the session decides
      count_tls(!t.certificate_refused().empty() ? obs::TlsOutcome::cert_refused : obs::TlsOutcome::failed);
      session_->on_tls_failed(ev.error(), t.certificate_refused());
    } else {
      session_->on_eof();
    }
    return;
  }
  if (ev->handshake_completed) {
    count_tls(obs::TlsOutcome::ok);
    // What the session can be called: verified only counts when the rule
    // demanded it (an opportunistic session that happens to verify is
    // still opportunistic: nothing would have stopped a downgrade).
    const bool verified = t.peer_verified();
    peer_verified_ = verified;
    const bool demanded = protection_.rule == Protection::Rule::mta_sts ||
                          protection_.rule == Protection::Rule::dane || protection_.verify ||
                          (protection_.rule == Protection::Rule::configured &&
                           outbound_tls(config_->delivery) == conf::DeliveryTls::verify);
    tls_level_ = queue::TlsLevel::opportunistic;
    if (verified && demanded) {
      switch (protection_.rule) {
        case Protection::Rule::mta_sts: tls_level_ = queue::TlsLevel::mta_sts; break;
        case Protection::Rule::dane: tls_level_ = queue::TlsLevel::dane; break;
        default: tls_level_ = queue::TlsLevel::pkix; break;
      }
    }
    log::info("delivery: tls to {} {} with cipher {} verified={}{}{}", relay_, t.version(), t.cipher(),
              verified ? "yes" : "no",
              verified ? "" : " (" + log::sanitize(t.verify_error()) + ")",
              t.dane_match().empty() ? "" : " dane=\"" + log::sanitize(t.dane_match()) + "\"");
    if (implicit_tls_)
      session_->on_connected(t.peer_verified(), t.verify_error());
    else
      session_->on_tls_ready(t.peer_verified(), t.verify_error());
  }
  if (!plain_.empty() && !closing()) session_->feed(plain_);
  if (ev->peer_closed && !closing()) session_->on_eof();
}

// A failure outside the session (implicit TLS handshake): record and close.
void Outbound::local_failure(SessionFailure what, std::string detail) {
  local_event_ = SessionEvent{what, host_, {}, std::move(detail), false};
  close_now();
}

void Outbound::on_timer() {
  if (!connected_) {
    connect_error_ = "connection timed out";
    local_event_ = SessionEvent{SessionFailure::timeout, host_, {}, "while connecting", false};
    close_now();
    return;
  }
  if (tls() && !tls()->handshake_done())  // the handshake timed out
    count_tls(obs::TlsOutcome::failed);
  if (implicit_tls_ && tls() && !tls()->handshake_done()) {
    local_failure(SessionFailure::timeout, "during the TLS handshake");
    return;
  }
  session_->on_timeout();
}

// A write finished: read on while the content is being streamed. (A failed
// write closes the connection in the stream connection: see on_closing().)
void Outbound::on_written() {
  if (body_active_) pump_body();
}

// --- output ---------------------------------------------------------------------

// The end of every event, and of start_now()/abort(): the session's output
// in one write, then close or re-arm the timer.
void Outbound::after_event() {
  if (!greeting_noted_ && session_ && session_->greeting_names_self()) {
    // Only noted: a neighbour may share the name; its EHLO reply decides.
    greeting_noted_ = true;
    log::info("{}: relay={} greets with my own hostname {}", job_ ? message_id_ : "delivery",
              relay_, log::sanitize(config_->hostname));
  }
  if (closing()) return;
  if (!tls_fail_.empty() && !implicit_tls_) {
    std::string why = std::exchange(tls_fail_, std::string());
    session_->on_tls_failed(why);
  }
  if (closing()) return;
  flush();
  if (closing()) return;  // the write failed
  if (close_requested_) {
    if (writes_in_flight() == 0) close_now();
    return;
  }
  const uint64_t ms = connected_ && (!implicit_tls_ || (tls() && tls()->handshake_done()))
                          ? static_cast<uint64_t>(session_->timeout().count())
                          : static_cast<uint64_t>(client::Timeouts{}.starttls.count());
  arm_timer(ms);
}

// Reads and hands over content while less than kBodyQueued bytes are unsent;
// body_end() after the last piece. A failed read aborts the transaction
// (temporary for everyone).
void Outbound::pump_body() {
  const uint64_t seq = body_seq_;
  while (body_active_) {
    if (seq != body_seq_ || closing() || !job_ || session_->state() != client::ClientSession::State::body) {
      body_active_ = false;
      return;
    }
    if (body_off_ >= size_) {
      body_active_ = false;
      session_->body_end();
      return;
    }
    if (unsent() >= kBodyQueued) return;  // on_written() reads on
    auto n = shared_.spool.read_at(message_id_, body_off_, shared_.body_buffer());
    if (!n || *n == 0) {
      body_active_ = false;
      log::error("{}: cannot read the message: {}", message_id_,
                 n ? std::string("content ends early") : n.error());
      session_->on_eof();
      return;
    }
    body_off_ += *n;
    session_->body(std::string_view(shared_.body_buffer().data(), *n));
  }
}

// --- reports ----------------------------------------------------------------------

// Translation only (client vocabulary -> queue/policy's); what each one
// means is decided in queue/policy.
queue::HostReport Outbound::take_report() {
  queue::HostReport rep;
  rep.tls = tls_level_;
  if (result_) {
    if (result_->too_big) {
      rep.failure = SessionEvent{SessionFailure::too_big, host_, {},
                                 fmt::format("size {} over its limit {}", result_->too_big->size,
                                             result_->too_big->limit),
                                 false};
    } else {
      rep.results.reserve(result_->recipients.size());
      for (const auto& r : result_->recipients)
        rep.results.push_back({to_stage(r.stage), to_outcome(r.reply), r.remote});
    }
  }
  if (failure_)
    rep.failure = event_of(*failure_);
  else if (local_event_)
    rep.failure = *local_event_;
  else if (!connect_error_.empty() && !rep.failure)
    rep.failure = SessionEvent{SessionFailure::connect_failed, host_, {}, connect_error_, false};
  result_.reset();
  failure_.reset();
  local_event_.reset();
  return rep;
}

SessionEvent Outbound::event_of(const client::ConnectionFailure& f) const {
  SessionEvent ev;
  ev.host = host_;
  ev.data_sent = f.data_sent;
  if (f.remote) ev.reply = to_outcome(f.reply);
  switch (f.kind) {
    case client::Failure::greeting_refused: ev.what = SessionFailure::greeting; break;
    case client::Failure::helo_refused: ev.what = SessionFailure::helo; break;
    case client::Failure::tls_not_offered:
    case client::Failure::tls_unavailable: ev.what = SessionFailure::tls_unavailable; break;
    case client::Failure::tls_refused:
    case client::Failure::tls_failed:
    case client::Failure::tls_untrusted: ev.what = SessionFailure::tls_failed; break;
    case client::Failure::auth_not_offered:
    case client::Failure::auth_failed:
      ev.what = SessionFailure::auth_failed;
      ev.reply = to_outcome(f.reply);  // "451 4.7.8 Authentication failed (server said ...)"
      break;
    case client::Failure::timeout: ev.what = SessionFailure::timeout; break;
    case client::Failure::protocol_error: ev.what = SessionFailure::protocol_error; break;
    case client::Failure::connection_closed:
    case client::Failure::service_closing: ev.what = SessionFailure::connection_lost; break;
    case client::Failure::loop: ev.what = SessionFailure::loop; break;
  }
  // A REQUIRETLS message whose TLS could not be authenticated: the
  // REQUIRETLS failure (next host, then defer; 5.7.30 at the end), whatever
  // else demanded TLS.
  const bool tls_kind = f.kind == client::Failure::tls_not_offered ||
                        f.kind == client::Failure::tls_unavailable ||
                        f.kind == client::Failure::tls_refused ||
                        f.kind == client::Failure::tls_untrusted || f.kind == client::Failure::tls_failed;
  if (protection_.verify && tls_kind) {
    if (auto rq = queue::policy::requiretls_refusal(host_, true, queue::TlsLevel::none, false)) {
      rq->detail += fmt::format(" ({})", f.reply.code ? f.reply.text() : f.phase);
      return *rq;
    }
  }
  // TLS that the destination demands (MTA-STS, DANE) and could not be had:
  // a TLS failure, 4.7.5, whatever stopped it (a stripped STARTTLS
  // included), and the log says which demand it was.
  if (protection_.rule != Protection::Rule::configured && tls_kind) {
    ev.what = SessionFailure::tls_failed;
    ev.reply = {};
    ev.detail = fmt::format("{} requires TLS: {}", demand_of(protection_.rule, destination_),
                            f.reply.code ? f.reply.text() : f.phase);
    return ev;
  }
  if (ev.reply.code == 0) {
    if (f.kind == client::Failure::timeout || f.kind == client::Failure::connection_closed)
      ev.detail = "while " + f.phase;
    else
      ev.detail = f.reply.code ? f.reply.text() : f.phase;
  }
  return ev;
}

// --- closing ----------------------------------------------------------------------

void Outbound::close_now() {
  closed_by_us_ = true;
  begin_close();
}

// First thing in begin_close(): the socket and the timer close right after.
void Outbound::on_closing() {
  body_active_ = false;
  // Not asked for by this connection or its session: a write failed. The
  // connection is lost; the session says so (connection_failed, if it was
  // in a transaction), so the job's report carries the failure.
  if (!closed_by_us_ && session_) session_->on_eof();
  if (connected_)
    log::info("delivery: conn={} relay={} closed transactions={} age={:.1f}s", id_, relay_,
              transactions_, static_cast<double>(uv_now(loop()) - connected_at_) / 1e3);
  if (job_) {
    const uint64_t job = std::exchange(job_, 0);
    owner_.on_failed(*this, job, take_report());
  }
  owner_.on_closed(*this);
}

}  // namespace sluice::mta
