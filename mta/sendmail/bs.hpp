// bs.hpp — `sluice-sendmail -bs`: SMTP on standard input and output, the
// default of Symfony Mailer and Laravel (docs/sendmail.md). Pure: the
// program's I/O is behind BsIo; exe/sluice-sendmail.cpp supplies it.
//
// The dialogue is the server's own mta::Session — its command table,
// replies, limits and [aliases] handling — configured as a trusted relay
// client with neither STARTTLS nor AUTH. BsDialogue is its SessionHost:
// message content is kept in memory (the session's DataReader holds it to
// the size limit), and each commit becomes one maildrop file, built exactly
// as a plain sluice-sendmail submission builds it (submit.hpp:
// smtp_maildrop(): Date, From and Message-ID added when missing, the same
// checks), written through BsIo::drop() (write_maildrop: fsynced, renamed,
// the rename made durable). The "250 ... queued as NAME" follows only once
// drop() has returned; a failure is "451 4.3.0" and the client may retry.
// Several messages, RSET and the rest work as on the relay port.
//
// The maildrop file carries the message's envelope only; who sent it is
// the file's owner, as for every sluice-sendmail submission, so MAIL FROM
// is taken as freely as -f is.
//
// Size: the session advertises and enforces SIZE = limits.max_message_size
// minus kHeaderReserve, the most the added header fields can take, so a
// message the session accepted always fits the limit the daemon checks.
//
// Synchronous and single-threaded: feed() returns once every commit its
// input caused has been written and answered. End of input in the middle of
// DATA (the client died) writes nothing: a file exists only for a message
// whose end was received and answered with 250.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "mta/sendmail/maildrop_io.hpp"
#include "mta/sendmail/message.hpp"
#include "mta/sendmail/submit.hpp"
#include "mta/smtp_session.hpp"

namespace sluice::sendmail {

// Room kept below limits.max_message_size for the fields smtp_maildrop()
// adds: Date (under 40 octets), From (an address of at most 254), Message-ID
// (under 70 plus the host name, at most 255).
inline constexpr uint64_t kHeaderReserve = 1024;

class BsIo {
 public:
  virtual ~BsIo() = default;
  // To standard output, in order. A failure is the program's to notice.
  virtual void write(std::string_view bytes) = 0;
  // Writes `file` durably as a new maildrop file; its name, or why not.
  virtual std::expected<std::string, IoError> drop(std::string_view file) = 0;
  // For a new message: now, the pid, fresh randomness (Context::stamp).
  virtual Stamp stamp() = 0;
  virtual int64_t now_us() = 0;
  // One line for standard error (a message that could not be queued).
  virtual void report(std::string_view line) = 0;
};

// The session's settings for -bs, from the configuration's values.
mta::SessionConfig bs_session_config(std::string hostname, uint64_t max_message_size,
                                     uint32_t max_recipients,
                                     std::shared_ptr<const aliases::Table> table);

class BsDialogue final : private mta::SessionHost {
 public:
  // `context`: login, size limit and host name as for a plain submission;
  // its stamp is replaced by BsIo::stamp() for each message.
  BsDialogue(mta::SessionConfig cfg, Context context, BsIo& io);

  void start();                     // the 220 greeting
  void feed(std::string_view bytes);
  void end_of_input();              // standard input closed
  void on_timeout();                // nothing came for timeout()
  std::chrono::milliseconds timeout() const { return session_.timeout(); }
  // QUIT was answered, the session ended (421), or the input ended.
  bool done() const { return done_; }
  uint32_t queued() const { return queued_; }

 private:
  void run_commits();

  // SessionHost
  void send(std::string_view bytes) override { io_.write(bytes); }
  void close() override { done_ = true; }
  int64_t now_us() override { return io_.now_us(); }
  std::string begin_message(const mail::Trace&) override;
  void message_data(std::string_view content) override { content_.append(content); }
  void end_of_headers(const mail::Present&, std::string_view) override {}
  void commit_message(queue::Envelope env) override { pending_ = std::move(env); }
  void abort_message() override { content_.clear(); }
  void start_tls() override {}                          // never offered
  void check_password(auth::Credentials) override {}    // never offered
  bool sender_allowed(std::string_view, std::string_view) override { return true; }
  void rejected(std::string_view, const proto::Reply&) override {}
  void accepted(const queue::Envelope&) override { ++queued_; }

  Context context_;
  BsIo& io_;
  mta::Session session_;
  std::string content_;
  std::optional<queue::Envelope> pending_;  // a commit to run after the session returns
  bool done_ = false;
  uint32_t queued_ = 0;
};

}  // namespace sluice::sendmail
