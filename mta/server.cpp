// server.cpp — see server.hpp.
#include "mta/server.hpp"

#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <utility>

#include "conf/log.hpp"
#include "mta/auth/users.hpp"
#include "mta/events.hpp"
#include "mta/smtp_session.hpp"
#include "mta/tls/tls.hpp"
#include "mta/uv/guard.hpp"
#include "mta/uv/stream.hpp"
#include "mta/uv_util.hpp"
#include "obs/sluice_metrics.hpp"
#include "shaping/store.hpp"

namespace sluice::mta {

namespace {

constexpr size_t kReadBufferSize = 64 * 1024;
// Stop reading from a client while this much of our output is unsent (a
// client that pipelines commands but never reads replies).
constexpr size_t kMaxUnsentOutput = 256 * 1024;
// While the spool writer has more than this waiting (a slow or hung disk),
// no connection reads: clients wait in their TCP window, not in our memory.
constexpr uint64_t kSpoolBacklog = 4ull << 20;
constexpr uint64_t kBacklogPollMs = 20;
// Slow clients: a command line or a DATA phase must be complete within
// command_timeout / data_timeout of its start; bytes arriving meanwhile buy
// extra time only at this rate (Postfix's smtpd_min_data_rate), never more
// than a fresh timeout. And no session lasts longer than kSessionDeadlineMs.
constexpr uint64_t kMinDataRate = 500;  // bytes per second
constexpr uint64_t kSessionDeadlineMs = 3'600'000;
// Fairness (docs/architecture.md, "Fairness"): one client address holds at
// most this many TLS handshakes in progress (from its first bytes to the
// end of the handshake) and password checks (queued, hashing, or waiting out
// auth_failure_delay); its further connections wait, not read from, until
// one of its own finishes. Other addresses never wait for it.
constexpr uint32_t kHandshakesPerClient = 4;
constexpr uint32_t kAuthChecksPerClient = 2;
// Handshake steps (TlsStream::process() before the handshake is done: the
// key exchange and the signature, about a millisecond each) run at most this
// many per loop iteration; the rest wait in Server::hs_queue_ for the next
// iterations, so that every other connection's reads are served in between.
constexpr int kHandshakeStepsPerIteration = 2;

Mode to_mode(conf::ListenerMode m) {
  switch (m) {
    case conf::ListenerMode::submission: return Mode::submission;
    case conf::ListenerMode::submissions: return Mode::submissions;
    case conf::ListenerMode::relay: return Mode::relay;
  }
  return Mode::relay;
}

}  // namespace

// One client connection: the session's host, on a uv::StreamConnection
// (socket, deadline timer, output gathered per event, delayed deletion).
// With TLS (STARTTLS or an implicit-TLS listener) the stream's TlsStream sits
// between the socket and the session: reads go socket -> TLS -> session,
// replies session -> TLS -> socket.
class Connection final : public uv::StreamConnection, public SessionHost {
 public:
  Connection(Server& server, uint64_t id, const conf::Listener& listener)
      : StreamConnection(server.loop_, Kind::tcp, {server.readbuf_.get(), kReadBufferSize}),
        server_(server),
        id_(id),
        listener_(listener) {}

  // After uv_accept: start the dialogue, or refuse it when `refuse_why`
  // names a connection limit that was hit.
  void start(std::shared_ptr<const conf::Config> cfg, std::optional<net::IpAddress> peer,
             std::string_view refuse_why) {
    config_ = std::move(cfg);
    peer_ = peer;
    client_ = peer ? peer->str() : "unknown";
    const bool over_limit = !refuse_why.empty();
    uv_tcp_nodelay(tcp(), 1);
    log::info("conn={} connect from={} listener={} mode={}", id_, client_, listener_.address,
              conf::to_string(listener_.mode));
    const bool implicit_tls = listener_.mode == conf::ListenerMode::submissions;
    if (over_limit) {
      proto::Reply r{421, "4.7.0", fmt::format("Error: {}, try again later", refuse_why)};
      rejected("connect", r);
      if (!implicit_tls) send(r.wire());  // a TLS client could not read plaintext
      close();
      after_event();
      return;
    }
    counted_ = true;
    ++server_.per_client_[client_];
    started_ = uv_now(server_.loop_);
    if (implicit_tls) {
      // RFC 8314: TLS first; the session (and its greeting) start once the
      // handshake is done.
      if (!begin_tls()) return;
      after_event();
      return;
    }
    make_session("");
    after_event();
  }

  uint64_t id() const { return id_; }
  const std::string& client() const { return client_; }

  void on_commit(bool ok, const queue::Envelope& committed) {
    if (!session_) return;
    session_->on_commit(ok, committed);
    after_event();
  }

  void shutdown() {
    if (session_) {
      session_->shutdown();
      after_event();
    } else {
      begin_close();
    }
  }

  // The start of begin_close(): give back what the connection holds.
  void on_closing() override {
    // Slots go to the next connection of the same address before we are
    // forgotten (which may end a shutdown).
    auth_pending_.reset();  // a password check in flight is dropped
    if (auth_waiting_) {
      server_.auth_slots_.leave(client_, id_);
      auth_waiting_.reset();  // wipes the password
    }
    release_auth_slot();
    if (hs_waiting_) {
      server_.hs_slots_.leave(client_, id_);
      hs_waiting_ = false;
    }
    release_handshake_slot();
    server_.forget(*this);
    message_.reset();  // an unfinished message is discarded
    close_handle(auth_timer_);  // closing stops it
    log::info("conn={} disconnect from={} messages={} rejects={}", id_, client_, messages_,
              rejects_);
  }

  bool counted() const { return counted_; }

  // The spool caught up (Server::on_backlog).
  void spool_caught_up() {
    backlogged_ = false;
    after_event();
  }

  // Another connection of this address gave back its password-check slot.
  void auth_slot_granted() {
    auth_slot_ = true;
    auth::Credentials creds = std::move(*auth_waiting_);
    auth_waiting_.reset();
    start_check(std::move(creds));
    after_event();
  }

  // Another connection of this address finished its handshake: ours may
  // start, within the loop's budget of handshake steps.
  void handshake_slot_granted() {
    hs_waiting_ = false;
    hs_slot_ = true;
    hs_deferred_ = true;
    server_.defer_handshake(id_);
  }

  // Server::on_check, within the iteration's budget of handshake steps.
  void run_handshake_step() {
    hs_deferred_ = false;
    if (closing() || !tls()) return;
    tls_step();
    after_event();
  }


  // SessionHost
  void send(std::string_view bytes) override {
    progress_ = true;  // a reply: the client gets a fresh timeout
    write(bytes);
  }
  void close() override { close_requested_ = true; }
  int64_t now_us() override { return wall_clock_us(); }
  std::string begin_message(const mail::Trace& trace) override {
    const auto source = to_mode(listener_.mode) == Mode::relay ? Intake::Source::relay
                                                               : Intake::Source::submission;
    message_ = server_.intake_.begin(source, trace);
    // A login signs only with the From addresses it may use (mta/signing.hpp).
    if (user_)
      message_->from_rule([user = user_](std::string_view from) { return auth::may_send_as(*user, from); });
    return message_->id();
  }
  void message_data(std::string_view content) override {
    if (message_) message_->append(content);
  }
  void end_of_headers(const mail::Present& have, std::string_view sender) override {
    if (message_) message_->end_of_headers(have, sender);
  }
  void commit_message(queue::Envelope env) override {
    if (!message_) {
      session_->on_commit(false, env);
      return;
    }
    // The intake delivers the message whatever happens to this connection;
    // the answer finds it by id, if it is still there.
    Server* server = &server_;
    const uint64_t id = id_;
    server_.intake_.commit(std::move(message_), std::move(env),
                           [server, id](bool ok, const queue::Envelope& committed) {
                             if (auto it = server->conns_.find(id); it != server->conns_.end())
                               it->second->on_commit(ok, committed);
                           });
  }
  void abort_message() override { message_.reset(); }
  void start_tls() override { start_tls_after_flush_ = true; }
  // AUTH: a slot of this address (kAuthChecksPerClient), the check on the
  // thread pool, and a failure held back until auth_failure_delay after the
  // check began. The slot is given back when the answer is sent. While this
  // goes on the session is blocked (auth_checking) and nothing is read.
  void check_password(auth::Credentials creds) override {
    if (!server_.auth_slots_.acquire(client_, id_)) {
      log::info("conn={} auth waits from={}: {} checks of this address in progress", id_, client_,
                server_.auth_slots_.per_client());
      auth_waiting_ = std::make_unique<auth::Credentials>(std::move(creds));  // until Server::grant_auth
      return;
    }
    auth_slot_ = true;
    start_check(std::move(creds));
  }
  uint64_t spool_free_space(uint64_t low_water) override {
    return server_.spool_.free_space(low_water);  // cached: no statvfs per MAIL FROM
  }
  // The submission limits: the store's answer finds this connection by id
  // (not there once it closed). A store that answers at once does so inside
  // the session's feed(), whose caller runs after_event().
  void check_limit(const std::string& key, shaping::Rate rate, uint32_t burst,
                   bool take) override {
    if (!server_.store_) {
      session_->on_limit(shaping::Admission{.allowed = true});
      return;
    }
    Server* server = &server_;
    auto done = [server, id = id_](shaping::Admission a) {
      if (auto it = server->conns_.find(id); it != server->conns_.end())
        it->second->limit_answered(a);
    };
    const bool outer = std::exchange(in_limit_call_, true);
    if (take)
      server_.store_->take(key, rate, burst, std::move(done));
    else
      server_.store_->peek(key, rate, burst, std::move(done));
    in_limit_call_ = outer;
  }
  void count_limit(const std::string& key, shaping::Rate rate, uint32_t burst) override {
    if (server_.store_) server_.store_->take(key, rate, burst, [](shaping::Admission) {});
  }
  bool sender_allowed(std::string_view, std::string_view sender) override {
    return user_ && auth::may_send_as(*user_, sender);
  }
  void rejected(std::string_view what, const proto::Reply& r) override { reject(what, r, false); }
  void rejected_warning(std::string_view what, const proto::Reply& r) override { reject(what, r, true); }
  void accepted(const queue::Envelope& env) override {
    ++messages_;
    events::reception(env, "smtp:" + listener_.address, tls_info_,
                      fmt::format("{}: accept conn={} from=<{}> size={} nrcpt={} msgid={} client={}{}{}", env.id,
                                  id_, log::sanitize(env.sender), env.size, env.recipients.size(),
                                  env.message_id.empty() ? "-" : log::sanitize(env.message_id), client_,
                                  env.auth_user.empty() ? "" : " login=", log::sanitize(env.auth_user)));
  }
  void state_changed(std::string_view from, std::string_view to) override {
    log::debug("conn={} state {} -> {}", id_, from, to);  // off unless SLUICE_LOG_LEVEL=debug
  }

 private:
  void reject(std::string_view what, const proto::Reply& r, bool warning) {
    ++rejects_;
    obs::sluice_metrics().record_rejection(r.code, r.enhanced);
    const std::string text = r.text();
    events::rejection("smtp:" + listener_.address, session_ ? session_->helo() : std::string_view(), client_,
                      r.code, r.enhanced, text, warning,
                      fmt::format("conn={} reject from={} cmd=\"{}\" reply=\"{} {} {}\"", id_, client_,
                                  log::sanitize(what), r.code, r.enhanced, log::sanitize(text)));
  }

  void make_session(std::string tls_info) {
    SessionConfig sc;
    sc.hostname = config_->hostname;
    sc.mode = to_mode(listener_.mode);
    sc.client_address = client_;
    sc.max_message_size = config_->limits.max_message_size;
    sc.max_recipients = config_->limits.max_recipients;
    sc.max_hops = config_->limits.max_hops;
    sc.min_free_space = config_->limits.min_free_space;
    sc.command_timeout = config_->limits.command_timeout;
    sc.data_timeout = config_->limits.data_timeout;
    sc.trusted = peer_ && config_->relay.trusts(*peer_);
    sc.tls_offered = server_.tls_ != nullptr && listener_.mode != conf::ListenerMode::submissions;
    sc.in_tls = !tls_info.empty();
    sc.tls_info = std::move(tls_info);
    sc.auth_offered = server_.users_ != nullptr;
    // The connection's configuration owns the table (a reload reaches new connections).
    sc.aliases = std::shared_ptr<const aliases::Table>(config_, &config_->aliases);
    if (server_.store_) {
      sc.messages_per_login = config_->limits.messages_per_login;
      sc.auth_failures_per_client = config_->limits.auth_failures_per_client;
    }
    session_ = std::make_unique<Session>(std::move(sc), *this);
    session_->start();
  }

  bool begin_tls() {
    // The certificate in force now: a SIGHUP reload reaches the next handshake,
    // also on connections that were open before it.
    if (!server_.tls_) {
      log::error("conn={} tls: no certificate loaded", id_);
      begin_close();
      return false;
    }
    auto stream = tls::TlsStream::server(server_.tls_);
    if (!stream) {
      log::error("conn={} tls: {}", id_, stream.error());
      begin_close();
      return false;
    }
    StreamConnection::start_tls(std::move(*stream));
    return true;
  }

  std::string tls_description() const {
    return fmt::format("{} with cipher {} ({}/{} bits)", tls()->version(), tls()->cipher(),
                       tls()->cipher_bits(), tls()->cipher_bits());
  }

  // Bytes read (into the server's one read buffer, consumed here).
  void on_bytes(std::string_view bytes) override {
    fresh_bytes_ += bytes.size();
    if (tls()) {
      read_tls(bytes);
    } else if (session_) {
      session_->feed(bytes);
    }
  }

  void on_end(int) override { begin_close(); }  // EOF or error: the client is gone

  void read_tls(std::string_view ciphertext) {
    tls()->feed_ciphertext(ciphertext);
    if (!tls()->handshake_done()) {
      // The expensive part of TLS is rationed: a slot of this address, then
      // a step of the loop's per-iteration budget. Without either, the bytes
      // wait in the stream and reading pauses (after_event).
      if (hs_waiting_ || hs_deferred_) return;
      if (!hs_slot_) {
        if (!server_.hs_slots_.acquire(client_, id_)) {
          log::info("conn={} tls waits from={}: {} handshakes of this address in progress", id_,
                    client_, server_.hs_slots_.per_client());
          hs_waiting_ = true;
          return;
        }
        hs_slot_ = true;
      }
      if (!server_.take_handshake_step()) {
        hs_deferred_ = true;
        server_.defer_handshake(id_);
        return;
      }
    }
    tls_step();
  }

  // process() what was fed; hand plaintext to the session.
  void tls_step() {
    plain_.clear();
    const bool was_done = tls()->handshake_done();
    auto ev = tls_pump({}, plain_);
    if (!ev) {
      if (!was_done) obs::sluice_metrics().record_tls(obs::Direction::inbound, obs::TlsOutcome::failed);
      log::info("conn={} tls error from={}: {}", id_, client_, log::sanitize(ev.error()));
      release_handshake_slot();
      close_requested_ = true;  // after what it has to send (perhaps an alert)
      return;
    }
    if (ev->handshake_completed) {
      obs::sluice_metrics().record_tls(obs::Direction::inbound, obs::TlsOutcome::ok);
      release_handshake_slot();
      progress_ = true;
      std::string info = tls_description();
      log::info("conn={} tls from={} {}", id_, client_, info);
      tls_info_ = info;
      if (session_)
        session_->on_tls_started(std::move(info));  // after STARTTLS
      else
        make_session(std::move(info));  // implicit TLS: now the greeting
    }
    if (!plain_.empty() && session_) session_->feed(plain_);
    if (ev->peer_closed) close_requested_ = true;
  }

  void on_timer() override {
    if (session_) {
      if (uv_now(server_.loop_) >= started_ + kSessionDeadlineMs)
        log::info("conn={} session deadline of {} s reached from={}", id_, kSessionDeadlineMs / 1000,
                  client_);
      session_->on_timeout();
    } else {
      obs::sluice_metrics().record_tls(obs::Direction::inbound, obs::TlsOutcome::failed);
      log::info("conn={} tls handshake timeout from={}", id_, client_);
      begin_close();
    }
  }

  void start_check(auth::Credentials creds) {
    auth_started_ns_ = uv_hrtime();
    // The callback runs later on the loop, never inside verify(); destroying
    // auth_pending_ (at close) cancels it, so capturing `this` is safe.
    auto pending = server_.verifier_.verify(
        server_.users_, std::move(creds.login), std::move(creds.password),
        [this](auth::Verifier::Result r) { checked(std::move(r)); });
    if (pending) {
      auth_pending_ = std::move(*pending);
      return;
    }
    release_auth_slot();  // the thread pool's queue is full: 454 at once
    if (session_) session_->on_auth_temporary();
  }

  void checked(auth::Verifier::Result r) {
    if (closing() || !session_) return;
    if (r.ok) {  // success is answered at once
      release_auth_slot();
      user_ = r.user;
      log::info("conn={} auth from={} login={}", id_, client_, log::sanitize(r.login));
      session_->on_auth_result(true, r.login);
      after_event();
      return;
    }
    obs::sluice_metrics().record_auth_failure();
    // A failure is answered auth_failure_delay after the check began, what-
    // ever it cost (unknown login, cheap or expensive hash), so the time
    // tells nothing about the login.
    failed_login_ = std::move(r.login);
    const auto delay_ns =
        static_cast<uint64_t>(config_->limits.auth_failure_delay.count()) * 1'000'000;
    const uint64_t elapsed_ns = uv_hrtime() - auth_started_ns_;
    if (elapsed_ns < delay_ns) {
      uv_update_time(server_.loop_);  // the timer counts from now, not from the iteration's start
      const uint64_t ms = (delay_ns - elapsed_ns + 999'999) / 1'000'000;
      if (!auth_timer_) {  // made at the first failure: idle connections do not carry it
        auth_timer_.init(server_.loop_, uv_timer_init);
        auth_timer_->data = this;
      }
      uv_timer_start(auth_timer_.get(), on_auth_timer, ms, 0);
      return;
    }
    answer_failure();
  }

  static void on_auth_timer(uv_timer_t* t) {
    uv::guard("auth timer", [t] { static_cast<Connection*>(t->data)->answer_failure(); });
  }

  void answer_failure() {
    release_auth_slot();
    if (closing() || !session_) return;
    session_->on_auth_result(false, failed_login_);
    after_event();
  }

  void limit_answered(const shaping::Admission& a) {
    if (closing() || !session_) return;
    session_->on_limit(a);
    if (!in_limit_call_) after_event();
  }

  void release_auth_slot() {
    if (!auth_slot_) return;
    auth_slot_ = false;
    server_.grant_auth(server_.auth_slots_.release(client_), client_);
  }

  void release_handshake_slot() {
    if (!hs_slot_) return;
    hs_slot_ = false;
    server_.grant_handshake(server_.hs_slots_.release(client_), client_);
  }

  std::chrono::milliseconds timeout() const {
    if (session_) return session_->timeout();
    return std::min<std::chrono::milliseconds>(config_->limits.command_timeout,
                                               std::chrono::seconds(30));
  }

  // Flushes output, then decides about reading, the timer and closing.
  void after_event() override {
    if (closing()) return;
    if (close_requested_ && tls() && tls()->handshake_done() && writes_in_flight() == 0 &&
        !tls_closed_) {
      tls_closed_ = true;
      flush();
      tls()->close_notify();
    }
    flush();
    if (start_tls_after_flush_) {  // the "220 Ready to start TLS" went out in plaintext
      start_tls_after_flush_ = false;
      if (!begin_tls()) return;
    }
    if (closing()) return;
    if (close_requested_) {
      if (writes_in_flight() == 0) begin_close();
      return;
    }
    const bool spool_ok = server_.spool_.pending_bytes() < kSpoolBacklog;
    if (!spool_ok && !backlogged_) {
      backlogged_ = true;
      server_.wait_for_spool(id_);
    }
    read(spool_ok && !(session_ && session_->blocked()) && !hs_waiting_ && !hs_deferred_ &&
         unsent() < kMaxUnsentOutput);
    arm_deadline();
  }

  // One timer per connection, armed for the earliest of: the deadline of
  // what the client is sending now (a command line, the DATA phase), and
  // the session deadline. A reply resets the first; bytes without a reply
  // extend it by their size at kMinDataRate, up to a fresh timeout.
  void arm_deadline() {
    const uint64_t now = uv_now(server_.loop_);
    const auto t = static_cast<uint64_t>(timeout().count());
    if (progress_ || deadline_ == 0)
      deadline_ = now + t;
    else if (fresh_bytes_ > 0)
      deadline_ = std::min(now + t, deadline_ + fresh_bytes_ * 1000 / kMinDataRate);
    progress_ = false;
    fresh_bytes_ = 0;
    uint64_t until = deadline_;
    if (session_) until = std::min(until, started_ + kSessionDeadlineMs);
    arm_timer(until > now ? until - now : 0);
  }

  Server& server_;
  uint64_t id_;
  conf::Listener listener_;
  std::shared_ptr<const conf::Config> config_;
  // Holds back a failed AUTH's answer. Made at the first failure (an idle
  // connection does not carry it); closed with the connection.
  uv::Handle<uv_timer_t> auth_timer_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<Intake::Message> message_;  // the message in DATA
  std::optional<auth::Verifier::Pending> auth_pending_;
  std::unique_ptr<auth::Credentials> auth_waiting_;  // waiting for a slot of this address
  std::string failed_login_;                       // for the held-back 535
  uint64_t auth_started_ns_ = 0;                   // uv_hrtime() when the check began
  bool auth_slot_ = false;                         // holds one of server_.auth_slots_
  bool hs_slot_ = false;                           // holds one of server_.hs_slots_
  bool in_limit_call_ = false;                     // inside Store::take/peek (an answer at once)
  bool hs_waiting_ = false;                        // waits for one (not reading)
  bool hs_deferred_ = false;                       // in server_.hs_queue_ (not reading)
  std::shared_ptr<const auth::User> user_;  // after a successful AUTH
  std::optional<net::IpAddress> peer_;
  std::string client_;
  std::string tls_info_;  // what the handshake negotiated, "" without TLS
  std::string plain_;  // decrypted input, reused
  bool close_requested_ = false;
  bool start_tls_after_flush_ = false;
  bool tls_closed_ = false;
  bool counted_ = false;
  bool backlogged_ = false;  // waiting in Server::backlogged_ for the spool
  bool progress_ = false;    // the session replied since the timer was armed
  size_t fresh_bytes_ = 0;   // bytes read since the timer was armed
  uint64_t deadline_ = 0;    // uv_now() by which the current command / DATA must be complete
  uint64_t started_ = 0;     // uv_now() at accept
  uint64_t messages_ = 0;
  uint64_t rejects_ = 0;
};

Server::Server(uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool,
               Intake& intake)
    : loop_(loop),
      config_(std::move(config)),
      spool_(spool),
      intake_(intake),
      verifier_(loop),
      hs_slots_(kHandshakesPerClient),
      auth_slots_(kAuthChecksPerClient),
      hs_budget_(kHandshakeStepsPerIteration) {
  backlog_timer_.init(loop_, uv_timer_init);
  backlog_timer_->data = this;
  // The handshake budget is renewed after every poll; the check handle does
  // not keep the loop alive, and the idle handle runs only while steps wait
  // (it makes the next poll return at once).
  hs_check_.init(loop_, uv_check_init);
  hs_check_->data = this;
  uv_check_start(hs_check_.get(), on_check);
  uv_unref(hs_check_.handle());
  hs_idle_.init(loop_, uv_idle_init);
  hs_idle_->data = this;
  readbuf_.reset(new char[kReadBufferSize]);  // not zero-filled: only read into
}

Server::~Server() = default;

std::expected<void, std::string> Server::listen() {
  for (const auto& lc : config_->listeners) {
    auto l = std::make_unique<Listener>();
    l->server = this;
    l->cfg = lc;
    l->tcp.init(loop_, uv_tcp_init);
    l->tcp->data = l.get();
    sockaddr_storage ss{};
    lc.endpoint.to_sockaddr(&ss);
    unsigned flags = lc.endpoint.ip.family == net::IpAddress::Family::v6 ? UV_TCP_IPV6ONLY : 0;
    int rc = uv_tcp_bind(l->tcp.get(), reinterpret_cast<const sockaddr*>(&ss), flags);
    if (rc == 0) rc = uv_listen(l->tcp.stream(), 1024, on_connection);
    Listener* raw = l.get();
    listeners_.push_back(std::move(l));
    if (rc == UV_EACCES && lc.endpoint.port < 1024)
      return std::unexpected(fmt::format(
          "listener {}: {}: ports below 1024 need root (sluiced binds them, then runs as `user`) "
          "or the CAP_NET_BIND_SERVICE capability (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE)",
          lc.address, uv_strerror(rc)));
    if (rc < 0) return std::unexpected(fmt::format("listener {}: {}", lc.address, uv_strerror(rc)));
    log::info("listening on {} mode={}", raw->cfg.address, conf::to_string(raw->cfg.mode));
  }
  listening_ = true;
  return {};
}

void Server::reload(std::shared_ptr<const conf::Config> config) { config_ = std::move(config); }

void Server::set_tls(std::shared_ptr<const tls::TlsContext> ctx) { tls_ = std::move(ctx); }

void Server::set_users(std::shared_ptr<const auth::UserDb> users) { users_ = std::move(users); }

void Server::on_connection(uv_stream_t* s, int status) {
  uv::guard("accept", [&] {
    auto* l = static_cast<Listener*>(s->data);
    if (status < 0) {
      log::warning("listener {}: accept failed: {}", l->cfg.address, uv_strerror(status));
      return;
    }
    l->server->accept_from(*l);
  });
}

void Server::accept_from(Listener& l) {
  auto* c = new Connection(*this, next_id_++, l.cfg);
  if (uv_accept(l.tcp.stream(), c->stream()) < 0) {
    conns_.emplace(c->id(), c);
    c->begin_close();
    return;
  }
  conns_.emplace(c->id(), c);
  std::optional<net::IpAddress> peer;
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(c->tcp(), reinterpret_cast<sockaddr*>(&ss), &len) == 0)
    peer = net::IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
  const auto& lim = config_->limits;
  std::string_view why;
  if (conns_.size() > lim.max_connections) {
    why = "too many connections";
  } else if (auto it = per_client_.find(peer ? peer->str() : "unknown");
             it != per_client_.end() && it->second >= lim.max_connections_per_client &&
             !(peer && config_->relay.trusts(*peer))) {
    why = "too many connections from your address";
  }
  c->start(config_, peer, why);
}

bool Server::take_handshake_step() {
  if (hs_budget_ == 0) return false;
  --hs_budget_;
  return true;
}

void Server::defer_handshake(uint64_t conn) {
  hs_queue_.push_back(conn);
  uv_idle_start(hs_idle_.get(), [](uv_idle_t*) {});
}

void Server::on_check(uv_check_t* h) {
  uv::guard("handshake budget", [h] {
    auto* self = static_cast<Server*>(h->data);
    self->hs_budget_ = kHandshakeStepsPerIteration;
    while (self->hs_budget_ > 0 && !self->hs_queue_.empty()) {
      const uint64_t id = self->hs_queue_.front();
      self->hs_queue_.pop_front();
      auto it = self->conns_.find(id);
      if (it == self->conns_.end()) continue;  // closed meanwhile
      --self->hs_budget_;
      it->second->run_handshake_step();
    }
    if (self->hs_queue_.empty()) uv_idle_stop(self->hs_idle_.get());
  });
}

namespace {

// A slot of `client` came free and `next` waits for it: `granted` starts
// that connection's work. One that is gone (cannot happen: connections
// leave() at close) passes the slot on, so it is never stranded.
template <class Granted>
void grant_slot(const std::unordered_map<uint64_t, Connection*>& conns, ClientSlots& slots,
                std::optional<uint64_t> next, const std::string& client, Granted granted) {
  for (; next; next = slots.release(client)) {
    if (auto it = conns.find(*next); it != conns.end()) {
      granted(*it->second);
      return;
    }
  }
}

}  // namespace

void Server::grant_handshake(std::optional<uint64_t> next, const std::string& client) {
  grant_slot(conns_, hs_slots_, next, client, [](Connection& c) { c.handshake_slot_granted(); });
}

void Server::grant_auth(std::optional<uint64_t> next, const std::string& client) {
  grant_slot(conns_, auth_slots_, next, client, [](Connection& c) { c.auth_slot_granted(); });
}

void Server::forget(Connection& c) {
  conns_.erase(c.id());
  backlogged_.erase(c.id());
  if (c.counted()) {
    auto it = per_client_.find(c.client());
    if (it != per_client_.end() && --it->second == 0) per_client_.erase(it);
  }
  check_drained();
}

void Server::wait_for_spool(uint64_t conn) {
  backlogged_.insert(conn);
  if (backlog_waiting_) return;
  backlog_waiting_ = true;
  log::warning("spool: writer {} MB behind; clients wait until it catches up",
               spool_.pending_bytes() >> 20);
  uv_timer_start(backlog_timer_.get(), on_backlog, kBacklogPollMs, kBacklogPollMs);
}

void Server::on_backlog(uv_timer_t* t) {
  uv::guard("spool backlog timer", [t] {
    auto* self = static_cast<Server*>(t->data);
    if (self->spool_.pending_bytes() >= kSpoolBacklog) return;
    uv_timer_stop(self->backlog_timer_.get());
    self->backlog_waiting_ = false;
    auto waiting = std::move(self->backlogged_);
    self->backlogged_.clear();
    for (uint64_t id : waiting)
      if (auto it = self->conns_.find(id); it != self->conns_.end()) it->second->spool_caught_up();
  });
}

void Server::shutdown(std::function<void()> done) {
  shutting_down_ = true;
  listening_ = false;
  drained_ = std::move(done);
  for (auto& l : listeners_) l->tcp.close();
  std::vector<Connection*> all;
  for (auto& [id, c] : conns_) all.push_back(c);
  for (auto* c : all) c->shutdown();
  check_drained();
}

void Server::abort_all() {
  std::vector<Connection*> all;
  for (auto& [id, c] : conns_) all.push_back(c);
  for (auto* c : all) c->begin_close();
}

void Server::check_drained() {
  if (shutting_down_ && conns_.empty() && drained_) {
    auto done = std::move(drained_);
    drained_ = nullptr;
    done();
  }
}

void Server::close_handles() {
  listening_ = false;
  for (auto& l : listeners_) l->tcp.close();
  backlog_timer_.close();
  hs_check_.close();
  hs_idle_.close();
}

}  // namespace sluice::mta
