// client_session.cpp — see client_session.hpp: the connection phases
// (greeting, EHLO/HELO, STARTTLS, AUTH), idle, and the failures. The
// transactions are in client_transaction.cpp. Pure.
//
// References, as applied here:
// RFC 5321 §3.1: a 554 greeting means no service; the client "SHOULD send
//   QUIT" — we send QUIT after every failure that leaves the dialogue in step
//   (a refusal), and just close after protocol errors, timeouts, 421 and EOF.
// RFC 5321 §3.2 / §4.1.4: EHLO first; "if the server ... returns a 'command
//   not recognized' ... the client SHOULD fall back to HELO" — any 5xx to EHLO
//   gets HELO; a 4xx is a temporary failure of the server.
// RFC 5321 §3.8: "421 ... the client ... SHOULD close" — a 421 anywhere ends
//   the connection and defers whatever is in flight.
// RFC 5321 §4.5.3.2: per-phase timeouts (Timeouts).
// RFC 3207 §4.2: "the client MUST discard any knowledge obtained from the
//   server ... which was not obtained from the TLS negotiation itself", and
//   "SHOULD send an EHLO command as the first command after a successful TLS
//   negotiation".
// RFC 4954 §4: "AUTH mechanism [initial-response]"; the initial response is
//   omitted when the command would exceed 512 octets (the server then sends
//   "334 " and the client sends the response on its own line).
// RFC 4616 (PLAIN): message = [authzid] NUL authcid NUL passwd.
#include "mta/proto/ascii.hpp"
#include "mta/client/client_session.hpp"

#include <fmt/format.h>

#include <utility>

#include "mta/auth/secret.hpp"

namespace sluice::client {

using proto::Reply;

namespace {

constexpr size_t kMaxCommandLine = 512;  // RFC 5321 §4.5.3.1.4, CRLF included


using ascii::iequals;

std::string_view first_word(std::string_view s) {
  const size_t sp = s.find(' ');
  return sp == std::string_view::npos ? s : s.substr(0, sp);
}

// "SIZE 35882577", "SIZE", "SIZE 0": 0 means no declared limit. Anything
// unreadable (or beyond 64 bits) is taken as no limit too: refusing a message
// locally on a garbled number would be worse than letting the server decide.
uint64_t parse_size(std::string_view p) {
  while (!p.empty() && p.front() == ' ') p.remove_prefix(1);
  p = first_word(p);
  if (p.empty() || p.size() > 19) return 0;
  uint64_t v = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

void add_mechanisms(Capabilities& c, std::string_view words) {
  while (!words.empty()) {
    const size_t sp = words.find(' ');
    const std::string_view w = words.substr(0, sp);
    if (iequals(w, "PLAIN")) c.auth_plain = true;
    if (iequals(w, "LOGIN")) c.auth_login = true;
    if (sp == std::string_view::npos) break;
    words.remove_prefix(sp + 1);
  }
}

// RFC 5321 §4.1.1.1: ehlo-ok-rsp = "250" SP Domain [ SP ehlo-greet ] CRLF /
//   "250-" Domain [ SP ehlo-greet ] CRLF *( "250-" ehlo-line CRLF )
//   "250" SP ehlo-line CRLF; ehlo-line = ehlo-keyword *( SP ehlo-param ).
// Keywords are case-insensitive. "AUTH=PLAIN LOGIN" is the pre-RFC 4954 form
// some servers still send.
Capabilities parse_ehlo(const Reply& r) {
  Capabilities c;
  c.esmtp = true;
  if (!r.lines.empty()) c.name = std::string(first_word(r.lines.front()));
  for (size_t i = 1; i < r.lines.size(); ++i) {
    std::string_view l = r.lines[i];
    while (!l.empty() && l.front() == ' ') l.remove_prefix(1);
    const std::string_view kw = first_word(l);
    const std::string_view params = kw.size() < l.size() ? l.substr(kw.size() + 1) : "";
    if (iequals(kw, "PIPELINING")) c.pipelining = true;
    else if (iequals(kw, "STARTTLS")) c.starttls = true;
    else if (iequals(kw, "8BITMIME")) c.eightbitmime = true;
    else if (iequals(kw, "SMTPUTF8")) c.smtputf8 = true;
    else if (iequals(kw, "DSN")) c.dsn = true;
    else if (iequals(kw, "REQUIRETLS")) c.requiretls = true;
    else if (iequals(kw, "ENHANCEDSTATUSCODES")) c.enhanced = true;
    else if (iequals(kw, "SIZE")) c.size = parse_size(params);
    else if (iequals(kw, "AUTH")) add_mechanisms(c, params);
    else if (kw.size() > 5 && iequals(kw.substr(0, 5), "AUTH=")) {
      add_mechanisms(c, kw.substr(5));
      add_mechanisms(c, params);
    }
  }
  return c;
}

// A temporary form of a reply that is not 4xx (used where a server's refusal
// must defer rather than bounce: AUTH, STARTTLS under a TLS requirement).
Reply soften(const Reply& r, std::string_view what, std::string_view default_enhanced) {
  std::string enh(default_enhanced);
  if (r.enhanced.size() >= 5) enh = "4" + r.enhanced.substr(1);
  return Reply(451, enh, fmt::format("{} (server said: {})", what, describe(r, 600)));
}

std::string_view soften_text(Failure f) {
  switch (f) {
    case Failure::auth_failed: return "Authentication failed";
    case Failure::tls_refused: return "STARTTLS refused, but TLS is required";
    default: return "Server refused";
  }
}

Stage stage_of(ClientSession::State s) {
  using S = ClientSession::State;
  switch (s) {
    case S::mail: return Stage::mail;
    case S::rcpt: return Stage::rcpt;
    case S::data: return Stage::data;
    case S::body: return Stage::message;
    case S::data_done: return Stage::end_of_data;
    default: return Stage::local;
  }
}

}  // namespace

// ---- names ----

std::string_view to_string(TlsPolicy p) {
  switch (p) {
    case TlsPolicy::none: return "none";
    case TlsPolicy::opportunistic: return "opportunistic";
    case TlsPolicy::required: return "required";
    case TlsPolicy::verify: return "verify";
  }
  return "?";
}

std::string_view to_string(Outcome o) {
  switch (o) {
    case Outcome::sent: return "sent";
    case Outcome::temporary: return "temporary";
    case Outcome::permanent: return "permanent";
  }
  return "?";
}

std::string_view to_string(Stage s) {
  switch (s) {
    case Stage::local: return "local";
    case Stage::mail: return "MAIL FROM";
    case Stage::rcpt: return "RCPT TO";
    case Stage::data: return "DATA";
    case Stage::message: return "message content";
    case Stage::end_of_data: return "end of DATA";
    case Stage::requiretls: return "REQUIRETLS";
  }
  return "?";
}

std::string_view to_string(Failure f) {
  switch (f) {
    case Failure::greeting_refused: return "greeting_refused";
    case Failure::helo_refused: return "helo_refused";
    case Failure::tls_not_offered: return "tls_not_offered";
    case Failure::tls_unavailable: return "tls_unavailable";
    case Failure::tls_refused: return "tls_refused";
    case Failure::tls_failed: return "tls_failed";
    case Failure::tls_untrusted: return "tls_untrusted";
    case Failure::auth_not_offered: return "auth_not_offered";
    case Failure::auth_failed: return "auth_failed";
    case Failure::protocol_error: return "protocol_error";
    case Failure::timeout: return "timeout";
    case Failure::connection_closed: return "connection_closed";
    case Failure::service_closing: return "service_closing";
    case Failure::loop: return "loop";
  }
  return "?";
}

size_t TransactionResult::count(Outcome o) const {
  size_t n = 0;
  for (const auto& r : recipients)
    if (r.outcome == o) ++n;
  return n;
}

std::string_view ClientSession::to_string(State s) {
  switch (s) {
    case State::connecting: return "connecting";
    case State::greeting: return "greeting";
    case State::ehlo: return "ehlo";
    case State::helo: return "helo";
    case State::starttls: return "starttls";
    case State::tls_handshake: return "tls_handshake";
    case State::auth: return "auth";
    case State::ready: return "ready";
    case State::mail: return "mail";
    case State::rcpt: return "rcpt";
    case State::data: return "data";
    case State::body: return "body";
    case State::data_done: return "data_done";
    case State::rset: return "rset";
    case State::closed: return "closed";
  }
  return "?";
}

std::string_view ClientSession::phase(State s) {
  switch (s) {
    case State::connecting: return "connecting";
    case State::greeting: return "receiving the initial server greeting";
    case State::ehlo: return "sending EHLO";
    case State::helo: return "sending HELO";
    case State::starttls: return "sending STARTTLS";
    case State::tls_handshake: return "performing the TLS handshake";
    case State::auth: return "authenticating";
    case State::ready: return "idle";
    case State::mail: return "sending MAIL FROM";
    case State::rcpt: return "sending RCPT TO";
    case State::data: return "sending DATA";
    case State::body: return "sending the message content";
    case State::data_done: return "sending end of data";
    case State::rset: return "sending RSET";
    case State::closed: return "closed";
  }
  return "?";
}

// ---- life cycle ----

ClientSession::ClientSession(ClientConfig cfg, ClientHost& host)
    : cfg_(std::move(cfg)), host_(host), in_tls_(cfg_.in_tls) {}

std::chrono::milliseconds ClientSession::timeout() const {
  const Timeouts& t = cfg_.timeouts;
  switch (state_) {
    case State::connecting: return t.connect;
    case State::greeting: return t.greeting;
    case State::ehlo:
    case State::helo: return t.helo;
    case State::starttls:
    case State::tls_handshake: return t.starttls;
    case State::auth: return t.auth;
    case State::ready: return t.idle;
    case State::mail: return t.mail;
    case State::rcpt: return t.rcpt;
    case State::data: return t.data_init;
    case State::body: return t.data_block;
    case State::data_done: return t.data_done;
    case State::rset: return t.rset;
    case State::closed: return t.idle;
  }
  return t.idle;
}

void ClientSession::on_connected(bool peer_verified, std::string_view verify_error) {
  if (state_ != State::connecting) return;
  state_ = State::greeting;
  if (!in_tls_) return;
  peer_verified_ = peer_verified;
  if (cfg_.tls == TlsPolicy::verify && !peer_verified) untrusted(verify_error, false);
}

void ClientSession::feed(std::string_view bytes) {
  if (state_ == State::connecting) state_ = State::greeting;
  std::string_view in = bytes;
  const uint64_t tls_epoch = tls_epoch_;
  while (!in.empty()) {
    // STARTTLS accepted: whatever else came in the clear is dropped here —
    // also when the host finished the handshake from inside start_tls().
    if (state_ == State::closed || state_ == State::tls_handshake || tls_epoch != tls_epoch_)
      return;
    if (state_ == State::body) {
      // The server should be silent until the final dot. Keep (bounded) what
      // it says and read it as the reply to the dot, as a client that does
      // not read while sending would.
      if (held_.size() + in.size() > max_held) {
        protocol_error("server sent too much while the message content was being sent");
        return;
      }
      held_.append(in);
      return;
    }
    auto r = parser_.next(in);
    if (!r) {
      protocol_error(fmt::format("bad reply from server: {}", client::to_string(r.error())));
      return;
    }
    if (!r->has_value()) return;
    handle(std::move(**r));
  }
}

void ClientSession::handle(Reply r) {
  if (r.code == 421 && state_ != State::greeting) {
    if (state_ == State::ready) {  // an idle connection closed by the server: normal
      state_ = State::closed;
      host_.close();
      return;
    }
    fail(Failure::service_closing, std::move(r), true, false);
    return;
  }
  switch (state_) {
    case State::greeting: on_greeting(r); return;
    case State::ehlo: on_ehlo(r); return;
    case State::helo: on_helo(r); return;
    case State::starttls: on_starttls(r); return;
    case State::auth: on_auth(r); return;
    case State::mail:
    case State::rcpt:
    case State::data: on_tx_reply(r); return;
    case State::data_done: on_final(r); return;
    case State::rset: on_rset(r); return;
    case State::ready:
      protocol_error(fmt::format("unexpected reply while idle: {}", describe(r, 200)));
      return;
    case State::connecting:
    case State::tls_handshake:
    case State::body:
    case State::closed:
      return;  // not reached: feed() does not parse in these states
  }
}

// ---- greeting, EHLO/HELO, STARTTLS, AUTH ----

void ClientSession::on_greeting(const Reply& r) {
  if (r.code / 100 == 2) {
    greeting_names_self_ = !r.lines.empty() && names_self(first_word(r.lines.front()));
    send_ehlo();
  } else if (r.transient() || r.permanent()) {
    fail(Failure::greeting_refused, r, true, true);
  } else {
    protocol_error(fmt::format("unexpected greeting: {}", describe(r, 200)));
  }
}

void ClientSession::send_ehlo() {
  state_ = State::ehlo;
  host_.send(fmt::format("EHLO {}\r\n", cfg_.helo_name));
}

void ClientSession::on_ehlo(const Reply& r) {
  if (r.code / 100 == 2) {
    caps_ = parse_ehlo(r);
    after_hello();
  } else if (r.permanent()) {
    state_ = State::helo;
    host_.send(fmt::format("HELO {}\r\n", cfg_.helo_name));
  } else if (r.transient()) {
    fail(Failure::helo_refused, r, true, true);
  } else {
    protocol_error(fmt::format("unexpected reply to EHLO: {}", describe(r, 200)));
  }
}

void ClientSession::on_helo(const Reply& r) {
  if (r.code / 100 == 2) {
    caps_ = Capabilities{};
    if (!r.lines.empty()) caps_.name = std::string(first_word(r.lines.front()));
    after_hello();
  } else if (r.transient() || r.permanent()) {
    fail(Failure::helo_refused, r, true, true);
  } else {
    protocol_error(fmt::format("unexpected reply to HELO: {}", describe(r, 200)));
  }
}

bool ClientSession::names_self(std::string_view name) const {
  auto bare = [](std::string_view n) {
    if (!n.empty() && n.back() == '.') n.remove_suffix(1);
    return n;
  };
  return !cfg_.own_hostname.empty() && !bare(name).empty() &&
         iequals(bare(name), bare(cfg_.own_hostname));
}

bool ClientSession::tls_required() const {
  return cfg_.tls == TlsPolicy::required || cfg_.tls == TlsPolicy::verify ||
         (cfg_.credentials.has_value() && !authenticated_);
}

void ClientSession::after_hello() {
  if (names_self(caps_.name)) {
    fail(Failure::loop,
         Reply(451, "4.4.6", fmt::format("Server replied to EHLO with my own hostname {}",
                                         sanitise(cfg_.own_hostname, 255))),
         false, true);
    return;
  }
  const bool want_tls = cfg_.tls != TlsPolicy::none || cfg_.credentials.has_value();
  if (!in_tls_ && want_tls) {
    if (caps_.starttls && cfg_.tls_available) {
      state_ = State::starttls;
      host_.send("STARTTLS\r\n");
      return;
    }
    if (tls_required()) {
      const char* why = cfg_.credentials ? "TLS is required to send credentials"
                                         : "TLS is required";
      if (!caps_.starttls) {
        fail(Failure::tls_not_offered,
             Reply(451, "4.7.4", fmt::format("{}, but was not offered by the server", why)),
             false, true);
      } else {
        fail(Failure::tls_unavailable,
             Reply(451, "4.3.5", fmt::format("{}, but no TLS client context is configured", why)),
             false, true);
      }
      return;
    }
  }
  after_tls_choice();
}

void ClientSession::on_starttls(const Reply& r) {
  if (r.code == 220) {
    // Everything after this reply in the current read, and anything fed
    // until on_tls_ready(), is dropped (feed() checks the state).
    state_ = State::tls_handshake;
    ++tls_epoch_;
    parser_.reset();
    host_.start_tls();
    return;
  }
  if (!r.transient() && !r.permanent()) {
    protocol_error(fmt::format("unexpected reply to STARTTLS: {}", describe(r, 200)));
    return;
  }
  if (tls_required()) {
    fail(Failure::tls_refused, r, true, true);
    return;
  }
  after_tls_choice();  // opportunistic: carry on in plaintext
}

void ClientSession::on_tls_ready(bool peer_verified, std::string_view verify_error) {
  if (state_ != State::tls_handshake) return;
  in_tls_ = true;
  peer_verified_ = peer_verified;
  if (cfg_.tls == TlsPolicy::verify && !peer_verified) {
    untrusted(verify_error, true);
    return;
  }
  caps_ = Capabilities{};  // RFC 3207 §4.2: forget what plaintext said
  parser_.reset();
  send_ehlo();
}

void ClientSession::on_tls_failed(std::string_view reason, std::string_view certificate_refused) {
  // Implicit TLS: the handshake runs before on_connected().
  const bool implicit = state_ == State::connecting && cfg_.in_tls;
  if (state_ != State::tls_handshake && !implicit) return;
  if (!certificate_refused.empty()) {
    untrusted(certificate_refused, false);  // the stream sent its alert; nothing else goes out
    return;
  }
  fail(Failure::tls_failed,
       Reply(451, "4.7.5", fmt::format("TLS handshake failed: {}", sanitise(reason, 200))), false,
       false);
}

// The certificate did not verify under `verify`: the connection ends here,
// temporary (the administrator fixes the trust anchors or the name; the mail
// waits). `polite`: QUIT inside the established TLS session.
void ClientSession::untrusted(std::string_view why, bool polite) {
  std::string text = fmt::format("Server certificate not trusted: {}",
                                 why.empty() ? std::string("not verified") : sanitise(why, 200));
  if (cfg_.credentials && !authenticated_) text += "; AUTH not sent";
  fail(Failure::tls_untrusted, Reply(451, "4.7.5", std::move(text)), false, polite);
}

void ClientSession::after_tls_choice() {
  if (cfg_.credentials && !authenticated_) {
    if (!in_tls_) {  // after_hello() already refused this; never send a password in the clear
      fail(Failure::tls_not_offered,
           Reply(451, "4.7.4", "TLS is required to send credentials, but is not active"), false,
           true);
      return;
    }
    if (cfg_.tls == TlsPolicy::verify && !peer_verified_) {  // on_tls_ready() refused it already
      untrusted("not verified", true);
      return;
    }
    if (!caps_.auth_plain && !caps_.auth_login) {
      fail(Failure::auth_not_offered,
           Reply(451, "4.7.0", "Authentication is required, but the server offers neither "
                               "AUTH PLAIN nor AUTH LOGIN"),
           false, true);
      return;
    }
    start_auth();
    return;
  }
  become_ready();
}

namespace {

// base64(NUL login NUL password), in a buffer the caller wipes.
std::string plain_response(const auth::Credentials& c) {
  std::string msg;
  auth::reserve_secret(msg, c.login.size() + c.password.size() + 2);
  msg.push_back('\0');
  msg += c.login;
  msg.push_back('\0');
  msg += c.password;
  std::string b64 = auth::base64_encode(msg);
  auth::wipe(msg);
  return b64;
}

// Sends `prefix` + secret + CRLF and wipes every buffer that held the secret.
void send_secret(ClientHost& host, std::string_view prefix, std::string& secret) {
  std::string line;
  auth::reserve_secret(line, prefix.size() + secret.size() + 2);
  line += prefix;
  line += secret;
  line += "\r\n";
  host.send(line);
  auth::wipe(line);
  auth::wipe(secret);
}

}  // namespace

void ClientSession::start_auth() {
  state_ = State::auth;
  const auth::Credentials& c = *cfg_.credentials;
  if (caps_.auth_plain) {
    std::string b64 = plain_response(c);
    if (b64.size() + 13 <= kMaxCommandLine) {  // "AUTH PLAIN " + CRLF
      auth_step_ = AuthStep::plain_result;
      send_secret(host_, "AUTH PLAIN ", b64);
    } else {
      auth::wipe(b64);
      auth_step_ = AuthStep::plain_challenge;
      host_.send("AUTH PLAIN\r\n");
    }
    return;
  }
  auth_step_ = AuthStep::login_user;
  host_.send("AUTH LOGIN\r\n");
}

void ClientSession::on_auth(const Reply& r) {
  if (!cfg_.credentials) {  // cannot happen: credentials live until AUTH ends
    protocol_error("AUTH state without credentials");
    return;
  }
  const auth::Credentials& c = *cfg_.credentials;
  switch (auth_step_) {
    case AuthStep::plain_challenge:
      if (r.code == 334) {
        std::string b64 = plain_response(c);
        auth_step_ = AuthStep::plain_result;
        send_secret(host_, "", b64);
        return;
      }
      break;
    case AuthStep::login_user:
      if (r.code == 334) {
        std::string b64 = auth::base64_encode(c.login);
        auth_step_ = AuthStep::login_password;
        send_secret(host_, "", b64);
        return;
      }
      break;
    case AuthStep::login_password:
      if (r.code == 334) {
        std::string b64 = auth::base64_encode(c.password);
        auth_step_ = AuthStep::login_result;
        send_secret(host_, "", b64);
        return;
      }
      break;
    case AuthStep::plain_result:
    case AuthStep::login_result:
      if (r.code / 100 == 2) {
        auth_done();
        return;
      }
      break;
  }
  if (r.transient() || r.permanent()) {
    fail(Failure::auth_failed, r, true, true);
    return;
  }
  protocol_error(fmt::format("unexpected reply to AUTH: {}", describe(r, 200)));
}

void ClientSession::auth_done() {
  authenticated_ = true;
  wipe_credentials();
  become_ready();
}

void ClientSession::wipe_credentials() {
  cfg_.credentials.reset();  // ~Credentials wipes the password
}

void ClientSession::become_ready() {
  state_ = State::ready;
  notify_idle();
}

void ClientSession::notify_idle() {
  // Trampoline: a transaction started from idle() that ends at once (refused
  // locally) asks for idle() again; that call happens here, in a loop, not
  // nested inside the host's idle().
  if (in_idle_) {
    idle_pending_ = true;
    return;
  }
  in_idle_ = true;
  do {
    idle_pending_ = false;
    host_.idle();
  } while (idle_pending_ && state_ == State::ready);
  in_idle_ = false;
}

// ---- failures ----

void ClientSession::fail(Failure kind, Reply reply, bool remote, bool polite) {
  if (state_ == State::closed) return;
  const State was = state_;
  const bool data_sent = was == State::data_done && !discard_final_;
  bool temporary = true;
  if (kind == Failure::greeting_refused || kind == Failure::helo_refused)
    temporary = !reply.permanent();
  if (temporary && !reply.transient()) {
    reply = soften(reply, soften_text(kind),
                   kind == Failure::auth_failed || kind == Failure::tls_refused ? "4.7.0"
                                                                                : "4.0.0");
    remote = false;
  }
  state_ = State::closed;
  wipe_credentials();
  held_.clear();
  if (polite) host_.send("QUIT\r\n");
  if (tx_active_) {
    const Stage st = stage_of(was);
    for (size_t i = 0; i < decided_.size(); ++i) decide(i, Outcome::temporary, st, reply, remote);
    tx_active_ = false;
    ++transactions_;
    TransactionResult res = std::move(result_);
    result_ = TransactionResult{};
    host_.transaction_done(std::move(res));
  }
  host_.connection_failed(ConnectionFailure{kind, temporary, std::move(reply), remote,
                                            std::string(phase(was)), data_sent});
  host_.close();
}

void ClientSession::protocol_error(std::string_view what) {
  fail(Failure::protocol_error,
       Reply(451, "4.5.0", fmt::format("Protocol error while {}: {}", phase(state_), what)), false,
       false);
}

void ClientSession::on_eof() {
  if (state_ == State::closed) return;
  if (state_ == State::ready || state_ == State::connecting) {  // nothing lost
    state_ = State::closed;
    host_.close();
    return;
  }
  if (state_ == State::body && tx_active_ && !held_.empty()) {
    // The server refused the content early ("552 too big") and hung up:
    // that refusal, not the lost connection, decides the recipients.
    ReplyParser p;
    std::string_view in = held_;
    auto r = p.next(in);
    if (r && r->has_value() && ((*r)->transient() || (*r)->permanent())) {
      for (size_t i = 0; i < accepted_flags_.size(); ++i)
        if (accepted_flags_[i]) decide_reply(i, Stage::message, **r);
    }
  }
  fail(Failure::connection_closed,
       Reply(451, "4.4.2", fmt::format("Lost connection with server while {}", phase(state_))),
       false, false);
}

void ClientSession::on_timeout() {
  if (state_ == State::closed) return;
  if (state_ == State::ready) {  // idle limit of a reused connection
    state_ = State::closed;
    host_.send("QUIT\r\n");
    host_.close();
    return;
  }
  fail(Failure::timeout,
       Reply(451, "4.4.2", fmt::format("Conversation timed out while {}", phase(state_))), false,
       false);
}

void ClientSession::quit() {
  if (state_ == State::closed) return;
  const State was = state_;
  state_ = State::closed;
  wipe_credentials();
  if (was == State::ready) {
    host_.send("QUIT\r\n");
    host_.close();
    return;
  }
  if (tx_active_) {
    const Reply r(451, "4.3.2", "Delivery aborted: connection closed locally");
    const Stage st = stage_of(was);
    for (size_t i = 0; i < decided_.size(); ++i) decide(i, Outcome::temporary, st, r, false);
    tx_active_ = false;
    ++transactions_;
    TransactionResult res = std::move(result_);
    result_ = TransactionResult{};
    host_.transaction_done(std::move(res));
  }
  host_.close();
}

}  // namespace sluice::client
