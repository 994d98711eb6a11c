// smtp_session.cpp — see smtp_session.hpp: the session's input loop (command
// lines, DATA content, SASL lines), the commit, TLS and AUTH results,
// timeouts and shutdown, and the trace headers. The commands themselves are
// in smtp_commands.cpp. Reply texts follow Postfix where an administrator
// would recognise them; every reply after the greeting and EHLO carries an
// RFC 3463 enhanced status code (RFC 2034).
#include "mta/smtp_session.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sluice::mta {

using proto::Reply;

namespace {

const Reply kTimeout{421, "4.4.2", "Error: timeout exceeded"};
const Reply kTooManyErrors{421, "4.7.0", "Error: too many errors"};
const Reply kShutdown{421, "4.3.2", "Service shutting down, closing transmission channel"};

}  // namespace

Session::Session(SessionConfig cfg, SessionHost& host)
    : cfg_(std::move(cfg)),
      host_(host),
      lines_(proto::Limits::command_line),
      in_tls_(cfg_.in_tls),
      tls_info_(cfg_.tls_info) {}

std::string_view Session::to_string(State s) {
  switch (s) {
    case State::connected: return "connected";
    case State::ready: return "ready";
    case State::mail: return "mail";
    case State::rcpt: return "rcpt";
    case State::data: return "data";
    case State::committing: return "committing";
    case State::tls_handshake: return "tls_handshake";
    case State::auth: return "auth";
    case State::auth_checking: return "auth_checking";
    case State::mail_limit: return "mail_limit";
    case State::auth_limit: return "auth_limit";
    case State::quitting: return "quitting";
    case State::closed: return "closed";
  }
  return "?";
}

void Session::enter(State next) {
  if (next == state_) return;
  const State old = state_;
  state_ = next;
  host_.state_changed(to_string(old), to_string(next));
}

std::chrono::milliseconds Session::timeout() const {
  if (state_ == State::data) return cfg_.data_timeout;
  if (state_ == State::tls_handshake)
    return std::min<std::chrono::milliseconds>(cfg_.command_timeout, std::chrono::seconds(30));
  return cfg_.command_timeout;
}

void Session::start() {
  Reply greeting;
  greeting.code = 220;
  greeting.lines = {fmt::format("{} ESMTP Sluice", cfg_.hostname)};
  reply(greeting);
}

void Session::reply(const Reply& r) {
  std::string wire;
  r.append_wire(wire);
  host_.send(wire);
}

void Session::error(std::string_view what, const Reply& r, bool warn) {
  if (warn) {
    host_.rejected_warning(what, r);
  } else {
    host_.rejected(what, r);
  }
  reply(r);
  if (++errors_ >= cfg_.max_errors) {
    host_.rejected("session", kTooManyErrors);
    close_with(kTooManyErrors);
  }
}

void Session::close_with(const Reply& r) {
  if (closed()) return;
  if (state_ == State::data) host_.abort_message();
  sasl_.reset();
  limit_creds_.reset();
  reply(r);
  enter(State::closed);
  pending_.clear();
  host_.close();
}

void Session::on_timeout() {
  if (closed()) return;
  if (state_ == State::tls_handshake) {  // no plaintext reply in the middle of TLS
    host_.rejected("STARTTLS", Reply{421, "4.4.2", "TLS handshake timeout"});
    enter(State::closed);
    host_.close();
    return;
  }
  host_.rejected("timeout", kTimeout);
  close_with(kTimeout);
}

void Session::shutdown() {
  if (closed()) return;
  shutting_down_ = true;
  if (state_ == State::data || state_ == State::committing) return;  // finish first
  if (state_ == State::tls_handshake) {  // no plaintext in the middle of a handshake
    enter(State::closed);
    host_.close();
    return;
  }
  close_with(kShutdown);
}

void Session::feed(std::string_view bytes) {
  if (closed() || state_ == State::tls_handshake) return;
  if (blocked() || !pending_.empty()) {
    pending_.append(bytes);
    if (!blocked()) process();
    return;
  }
  // Fast path: work straight on the caller's buffer; keep only what is left
  // over if we get blocked part-way.
  std::string_view in = bytes;
  while (!in.empty() && !closed() && !blocked() && state_ != State::tls_handshake) {
    if (state_ == State::data) {
      out_.clear();
      const uint64_t before = data_.size();
      const bool was_in_headers = data_.in_headers();
      bool end = data_.feed(in, out_);
      if (data_.error() == proto::DataReader::Error::none) {
        std::string_view out = out_;
        if (was_in_headers && !data_.in_headers()) {
          const size_t k = static_cast<size_t>(data_.header_end() - before);
          host_.message_data(out.substr(0, k));
          host_.end_of_headers(present(), env_.sender);
          out.remove_prefix(k);
        }
        if (!out.empty()) host_.message_data(out);
      }
      if (end) finish_data();
      continue;
    }
    auto line = lines_.next(in);
    if (!line) break;
    if (line->endless) {  // past 64 KB: not a client that made a mistake
      if (line->too_long) error("command", Reply{500, "5.5.2", "Error: line too long"});
      if (!closed()) {
        const Reply bye{421, "4.7.0", "Error: line too long, closing connection"};
        host_.rejected("session", bye);
        close_with(bye);
      }
      break;
    }
    if (state_ == State::auth) {  // a SASL response line, never logged
      if (line->too_long) {
        sasl_.reset();
        lines_.set_max_line(proto::Limits::command_line);
        enter(State::ready);
        error("AUTH", auth::reply_line_too_long());
      } else {
        auth_step(sasl_.step(line->text));
      }
      continue;
    }
    if (line->too_long) {
      error("command", Reply{500, "5.5.2", "Error: line too long"});
      continue;
    }
    handle_line(line->text);
  }
  if (!in.empty() && blocked()) pending_.assign(in);
}

void Session::process() {
  std::string buf = std::move(pending_);
  pending_.clear();
  feed(buf);
}

void Session::on_commit(bool ok, const queue::Envelope& committed) {
  if (state_ != State::committing) return;
  if (ok) {
    host_.accepted(committed);
    reply(Reply{250, "2.0.0", fmt::format("Ok: queued as {}", committed.id)});
  } else {
    Reply r{451, "4.3.0", "Error: local error in processing, try again later"};
    host_.rejected("data", r);
    reply(r);
  }
  reset_transaction();
  enter(State::ready);
  if (shutting_down_) {
    close_with(kShutdown);
    return;
  }
  if (!pending_.empty()) process();
}

void Session::reset_transaction() {
  env_ = queue::Envelope{};
  rejected_rcpts_ = 0;
  overshoot_ = 0;
  if (state_ == State::mail || state_ == State::rcpt) enter(State::ready);
}

mail::Trace Session::trace() const {
  // The protocol name is from RFC 3848 / 6531 (ESMTP + S for TLS + A for
  // AUTH). The recipient is named only when there is exactly one, so Bcc
  // recipients are not disclosed to each other.
  mail::Trace t;
  t.by = cfg_.hostname;
  t.unix_us = env_.arrival_us;
  t.helo = helo_;
  t.client_address = cfg_.client_address;
  t.with = esmtp_ ? (env_.smtputf8 ? "UTF8SMTP" : "ESMTP") : "SMTP";
  if (esmtp_ && in_tls_) t.with += "S";
  if (esmtp_ && !env_.auth_user.empty()) t.with += "A";
  if (in_tls_) t.tls_info = tls_info_;
  if (env_.recipients.size() == 1) t.for_recipient = env_.recipients.front().address;
  return t;
}

mail::Present Session::present() const {
  return mail::Present{data_.has_date(), data_.has_message_id(), data_.has_from()};
}

void Session::finish_data() {
  using E = proto::DataReader::Error;
  std::optional<Reply> bad;
  switch (data_.error()) {
    case E::none: break;
    case E::too_big: bad = Reply{552, "5.3.4", "Error: message size exceeds fixed limit"}; break;
    case E::bare_cr: bad = Reply{554, "5.6.0", "Error: bare CR in message content"}; break;
    case E::nul: bad = Reply{554, "5.6.0", "Error: NUL in message content"}; break;
    case E::line_too_long:
      bad = Reply{500, "5.5.2", "Error: message line longer than 998 characters"};
      break;
  }
  if (!bad && data_.received() > cfg_.max_hops)  // a mail loop: stop it here
    bad = Reply{554, "5.4.6", "Error: too many hops"};
  if (bad) {
    std::string what = fmt::format("DATA {}", env_.id);
    host_.abort_message();
    reset_transaction();
    enter(State::ready);
    error(what, *bad);
    if (shutting_down_ && !closed()) close_with(kShutdown);
    return;
  }
  if (data_.in_headers())  // no empty line: the header section runs to the end
    host_.end_of_headers(present(), env_.sender);
  if (env_.message_id.empty()) env_.message_id = data_.message_id();
  enter(State::committing);
  host_.commit_message(env_);
}

}  // namespace sluice::mta

namespace sluice::mta {

void Session::on_tls_started(std::string info) {
  if (state_ != State::tls_handshake) return;
  in_tls_ = true;
  tls_info_ = std::move(info);
  // RFC 3207 §4.2: forget everything learnt before TLS, AUTH included.
  reset_transaction();
  auth_login_.clear();
  helo_.clear();
  esmtp_ = false;
  enter(State::connected);
}

}  // namespace sluice::mta

namespace sluice::mta {

// AUTH is offered inside TLS, or without TLS only to trusted clients of a
// relay listener (local programs on a loopback relay port).
bool Session::auth_allowed() const {
  return cfg_.auth_offered && (in_tls_ || (cfg_.mode == Mode::relay && cfg_.trusted));
}

void Session::auth_step(auth::Step step) {
  if (auto* ch = std::get_if<auth::Challenge>(&step)) {
    enter(State::auth);
    // RFC 4954 §4: responses may be up to 12288 octets.
    lines_.set_max_line(12288);
    host_.send(ch->wire());
    return;
  }
  lines_.set_max_line(proto::Limits::command_line);
  if (auto* creds = std::get_if<auth::Credentials>(&step)) {
    const shaping::Rate& rate = cfg_.auth_failures_per_client;
    if (!cfg_.trusted && !rate.unlimited()) {
      // Has this address failed too often (in any session)? Ask first.
      limit_creds_.emplace(std::move(*creds));
      enter(State::auth_limit);
      host_.check_limit("authfail:" + cfg_.client_address, rate, rate.count, false);
      return;
    }
    check_password(std::move(*creds));
    return;
  }
  enter(State::ready);
  error("AUTH", std::get<Reply>(step));
}

void Session::check_password(auth::Credentials creds) {
  enter(State::auth_checking);
  host_.check_password(std::move(creds));
}

void Session::on_limit(const shaping::Admission& a) {
  if (state_ == State::mail_limit) {
    mail_admitted(a);
  } else if (state_ == State::auth_limit) {
    auth_admitted(a);
  } else {
    return;  // not waiting (closed meanwhile)
  }
  if (closed() || blocked()) return;
  if (shutting_down_) {
    close_with(kShutdown);
    return;
  }
  if (!pending_.empty()) process();
}

std::string Session::retry_in(const shaping::Admission& a) {
  const int64_t us = a.retry_at_us - host_.now_us();
  return fmt::format("{} s", us <= 0 ? 1 : (us + 999'999) / 1'000'000);
}

// MAIL of a login under messages_per_login: env_ holds the new transaction.
void Session::mail_admitted(const shaping::Admission& a) {
  if (a.allowed) {
    enter(State::mail);
    reply(Reply{250, "2.1.0", "Ok"});
    return;
  }
  const std::string what = fmt::format("MAIL <{}> login={}", env_.sender, auth_login_);
  env_ = queue::Envelope{};
  enter(State::ready);
  error(what, Reply{450, "4.7.1",
                    fmt::format("Error: too much mail from login {} (limit {}), try again in {}",
                                auth_login_, shaping::to_string(cfg_.messages_per_login),
                                retry_in(a))});
}

// AUTH under auth_failures_per_client: the credentials wait in limit_creds_.
void Session::auth_admitted(const shaping::Admission& a) {
  auth::Credentials creds = std::move(*limit_creds_);
  limit_creds_.reset();
  if (a.allowed) {
    check_password(std::move(creds));
    return;
  }
  // Refused without looking at the password, right or wrong.
  enter(State::ready);
  error(fmt::format("AUTH login={}", creds.login),
        Reply{454, "4.7.0",
              fmt::format("Error: too many failed authentications from {}, try again in {}",
                          cfg_.client_address, retry_in(a))});
}

void Session::on_auth_temporary() {
  if (state_ != State::auth_checking) return;
  enter(State::ready);
  Reply r = auth::reply_temporary();
  host_.rejected("AUTH", r);
  reply(r);
}

void Session::on_auth_result(bool ok, const std::string& login) {
  if (state_ != State::auth_checking) return;
  enter(State::ready);
  if (ok) {
    auth_login_ = login;
    reply(auth::reply_success());
  } else {
    Reply r = auth::reply_failed();
    host_.rejected(fmt::format("AUTH login={}", login), r);
    const shaping::Rate& rate = cfg_.auth_failures_per_client;
    if (!cfg_.trusted && !rate.unlimited())
      host_.count_limit("authfail:" + cfg_.client_address, rate, rate.count);
    reply(r);
    if (++auth_failures_ >= cfg_.max_auth_failures) {
      Reply bye{421, "4.7.0", "Error: too many authentication failures"};
      host_.rejected("session", bye);
      close_with(bye);
      return;
    }
    if (++errors_ >= cfg_.max_errors) {
      host_.rejected("session", kTooManyErrors);
      close_with(kTooManyErrors);
      return;
    }
  }
  if (shutting_down_) {
    close_with(kShutdown);
    return;
  }
  if (!pending_.empty()) process();
}

}  // namespace sluice::mta
