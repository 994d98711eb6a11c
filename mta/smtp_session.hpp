// smtp_session.hpp — the SMTP server session as a state machine. Pure.
//
// Events in: start(), feed(bytes) from the client, on_commit(ok, envelope)
// when the intake has made a message durable, on_timeout(). Actions out,
// through SessionHost: send reply bytes, begin/stream/commit/abort a message
// (the host hands it to mta::Intake, which adds the trace and missing header
// fields the session describes), close, and report events for the log. No sockets, clocks or logs in here: the
// clock is the host's, so the whole dialogue is unit-tested without I/O.
//
// Replies are generated strictly in command order; while a commit is pending
// the session is blocked() and keeps unprocessed input (at most one read's
// worth: the glue stops reading) until on_commit() resumes it, which is what
// keeps pipelined replies in order.
//
// States: connected -> (EHLO/HELO) ready -> (MAIL) mail -> (RCPT) rcpt ->
// (DATA) data -> committing -> ready ... ; (STARTTLS) tls_handshake ->
// connected; (AUTH) auth -> auth_checking -> ready; quitting/closed are
// final.
//
// Submission limits (docs/shaping.md "Submission limits"): the counts live
// in the shaping store, which may answer later (Redis), so asking is one
// more blocked state, answered by on_limit():
//   ready -(MAIL of a login, messages_per_login set)-> mail_limit: take one
//     of "login:<login>"; allowed -> mail (250), denied -> ready (450 4.7.1);
//   auth -(credentials, auth_failures_per_client set, client not trusted)->
//     auth_limit: peek "authfail:<address>"; allowed -> auth_checking (the
//     password check), denied -> ready (454 4.7.0, no check). Each failed
//     check then takes one of "authfail:<address>".
// Both use burst = the rate's count: a whole period's worth at once, then
// one per interval. Unauthenticated sessions are never counted. Every change goes through one
// function, enter(), which reports it to SessionHost::state_changed() for
// the debug log. Which command is allowed in which state, and the ESMTP
// extensions (EHLO keywords, MAIL/RCPT parameters, verbs), are one table in
// smtp_commands.cpp.
//
// STARTTLS safety (the CVE-2011-0411 class): once the STARTTLS line is
// parsed, the rest of that input is dropped and nothing is read as a command
// until on_tls_started(); the host feeds only decrypted bytes after that.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/aliases.hpp"
#include "mail/headers.hpp"
#include "mta/auth/sasl.hpp"
#include "mta/proto/command.hpp"
#include "mta/proto/data_reader.hpp"
#include "mta/proto/line_reader.hpp"
#include "mta/proto/reply.hpp"
#include "queue/envelope.hpp"
#include "shaping/rate.hpp"

namespace sluice::mta {

enum class Mode { relay, submission, submissions };

struct SessionConfig {
  std::string hostname = "localhost";
  Mode mode = Mode::relay;
  bool trusted = false;          // client address is in relay.trusted_networks
  std::string client_address;    // "127.0.0.1"
  uint64_t max_message_size = 35ull << 20;
  uint32_t max_recipients = 1000;
  uint32_t max_hops = 100;       // more Received fields: 554 5.4.6 at the end of DATA
  std::chrono::milliseconds command_timeout = std::chrono::minutes(5);
  std::chrono::milliseconds data_timeout = std::chrono::minutes(10);
  int max_errors = 10;           // errors before "421 4.7.0 Too many errors"
  bool tls_offered = false;      // a certificate is loaded: STARTTLS when not in TLS
  bool in_tls = false;           // TLS is up from the start (submissions, port 465)
  std::string tls_info;          // with in_tls: "TLSv1.3 with cipher ... (256/256 bits)"
  bool auth_offered = false;     // a users file is loaded
  // limits.min_free_space: MAIL FROM gets "452 4.3.1" while the spool's file
  // system has less free space than this plus the declared SIZE (0: off).
  uint64_t min_free_space = 0;
  int max_auth_failures = 3;     // failed AUTH attempts before "421 4.7.0"
  // [aliases] (conf/aliases.hpp): RCPT to a local name (no domain, hostname,
  // localhost) is replaced by its entry's addresses, or refused with
  // "550 5.1.1" when it has none; postmaster (with an entry to go to) is
  // accepted from any client.
  // Null: local names are not special (only unit tests of other rules).
  std::shared_ptr<const aliases::Table> aliases;
  // [limits] submission limits, counted through SessionHost::check_limit();
  // unlimited (the default) turns each off. Trusted clients are exempt from
  // auth_failures_per_client.
  shaping::Rate messages_per_login;
  shaping::Rate auth_failures_per_client;
};

class SessionHost {
 public:
  virtual ~SessionHost() = default;
  virtual void send(std::string_view bytes) = 0;
  // Close the connection once everything sent so far has been written.
  virtual void close() = 0;
  virtual int64_t now_us() = 0;
  // Start storing a new message that came as `trace` describes (the
  // Received field is the intake's to write; trace.id is left empty);
  // returns its queue id.
  virtual std::string begin_message(const mail::Trace& trace) = 0;
  // Content in stored form: dot-stuffing undone, CRLF line ends.
  virtual void message_data(std::string_view content) = 0;
  // Once per message, between its header section and its body (or at its
  // end when it has no empty line): which of the fields a submission server
  // adds were there, and the envelope sender (for a missing From).
  virtual void end_of_headers(const mail::Present& have, std::string_view sender) = 0;
  // Asynchronous: the host later calls Session::on_commit(ok, committed).
  virtual void commit_message(queue::Envelope env) = 0;
  virtual void abort_message() = 0;
  // STARTTLS was accepted: once the "220" is written, start the TLS handshake.
  // Whatever the client sent after the STARTTLS line has been discarded.
  // The host later calls on_tls_started() or closes the connection.
  virtual void start_tls() = 0;
  // Check a login and password off the event loop; the host later calls
  // Session::on_auth_result(). The host must wipe the password after use.
  virtual void check_password(auth::Credentials creds) = 0;
  // The shaping store (shaping/store.hpp) for the submission limits: take
  // one event of `key` (take) or ask what taking would answer (peek).
  // The host calls Session::on_limit() with the answer, at once or later,
  // and not at all once the connection has closed. Meanwhile the session is
  // blocked. Only called when a SessionConfig rate is set.
  virtual void check_limit(const std::string& /*key*/, shaping::Rate /*rate*/,
                           uint32_t /*burst*/, bool /*take*/) {}
  // Take one event of `key`; nobody waits for the answer.
  virtual void count_limit(const std::string& /*key*/, shaping::Rate /*rate*/,
                           uint32_t /*burst*/) {}
  // May the login that authenticated on this connection use this MAIL FROM?
  virtual bool sender_allowed(std::string_view login, std::string_view sender) = 0;
  // Free bytes on the spool's file system (a cached figure is fine; it is
  // measured afresh when it is below `low_water`). Asked at MAIL FROM when
  // SessionConfig::min_free_space is set.
  virtual uint64_t spool_free_space(uint64_t /*low_water*/) { return UINT64_MAX; }
  // For the log only: a refused command, and a message the intake committed
  // (delivery already has it), as committed (its size, its Message-ID).
  virtual void rejected(std::string_view what, const proto::Reply& reply) = 0;
  // A refusal the administrator should see, logged as a warning: RCPT to a
  // local name without an [aliases] entry. Default: as rejected().
  virtual void rejected_warning(std::string_view what, const proto::Reply& reply) {
    rejected(what, reply);
  }
  virtual void accepted(const queue::Envelope& env) = 0;
  // Every state change, `from -> to` (Session::to_string names), for the
  // debug log. Must not call back into the session.
  virtual void state_changed(std::string_view /*from*/, std::string_view /*to*/) {}
};

class Session {
 public:
  enum class State {
    connected, ready, mail, rcpt, data, committing, tls_handshake, auth, auth_checking,
    mail_limit, auth_limit, quitting, closed
  };

  Session(SessionConfig cfg, SessionHost& host);

  void start();
  void feed(std::string_view bytes);
  // The message is durable (ok; `committed` is its envelope as stored) or
  // could not be stored (451).
  void on_commit(bool ok, const queue::Envelope& committed);
  void on_timeout();
  // The TLS handshake after STARTTLS finished; `info` as SessionConfig::tls_info.
  // The dialogue restarts (RFC 3207 §4.2): the client must EHLO again.
  void on_tls_started(std::string info);
  // Result of SessionHost::check_password().
  void on_auth_result(bool ok, const std::string& login);
  // check_password() could not be done now (too many checks queued): 454.
  void on_auth_temporary();
  // The shaping store's answer to SessionHost::check_limit().
  void on_limit(const shaping::Admission& a);
  const std::string& auth_login() const { return auth_login_; }
  const std::string& helo() const { return helo_; }  // the EHLO/HELO name, "" before one
  // Ask the client to go away ("421 4.3.2"), e.g. at shutdown. A message in
  // DATA or being committed is finished first.
  void shutdown();

  State state() const { return state_; }
  bool blocked() const {
    return state_ == State::committing || state_ == State::auth_checking ||
           state_ == State::mail_limit || state_ == State::auth_limit;
  }
  bool closed() const { return state_ == State::quitting || state_ == State::closed; }
  std::chrono::milliseconds timeout() const;

  static std::string_view to_string(State s);

  // The command table (smtp_commands.cpp), for tests and docs: whether `verb`
  // may be used in state `s` (otherwise it gets its row's refusal), and the
  // registered ESMTP extensions' names in EHLO order.
  static bool allowed(proto::Verb verb, State s);
  static std::vector<std::string_view> extensions();

 private:
  void process();
  void handle_line(std::string_view line);
  void reply(const proto::Reply& r);
  // Counts towards max_errors; `warn`: reported through rejected_warning().
  void error(std::string_view what, const proto::Reply& r, bool warn = false);
  void reset_transaction();
  void finish_data();
  void close_with(const proto::Reply& r);
  mail::Trace trace() const;  // for begin_message
  mail::Present present() const;  // for end_of_headers
  void auth_step(auth::Step step);
  bool auth_allowed() const;
  void check_password(auth::Credentials creds);  // after the client's failure count, if any
  void mail_admitted(const shaping::Admission& a);
  void auth_admitted(const shaping::Admission& a);
  std::string retry_in(const shaping::Admission& a);  // "36 s"
  void enter(State next);  // the one place state_ changes

  struct Commands;  // smtp_commands.cpp: the command table, the extensions and their handlers

  SessionConfig cfg_;
  SessionHost& host_;
  State state_ = State::connected;
  proto::LineReader lines_;
  proto::DataReader data_;
  std::string pending_;     // input kept while blocked
  std::string out_;         // decoded content, reused between feeds
  int errors_ = 0;
  bool esmtp_ = false;
  bool shutting_down_ = false;
  std::string helo_;
  queue::Envelope env_;     // transaction being built
  uint32_t rejected_rcpts_ = 0;
  uint32_t overshoot_ = 0;  // RCPTs refused with 452 for max_recipients in this transaction
  static constexpr uint32_t kRecipientOvershoot = 1000;
  bool in_tls_ = false;
  std::string tls_info_;
  auth::SaslServer sasl_;
  std::string auth_login_;  // empty until AUTH succeeded
  int auth_failures_ = 0;
  // auth_limit: the credentials waiting for the failure count (wiped on reset).
  std::optional<auth::Credentials> limit_creds_;
};

}  // namespace sluice::mta
