// intake.hpp — the one road into the queue.
//
// Every message Sluice takes responsibility for enters here, whatever its
// source: an SMTP session (mta/server.cpp), the maildrop (mta/pickup.cpp),
// a bounce (mta/delivery.cpp), and the HTTP API (mta/http_api.cpp). The intake
//   1. starts a spool message and writes what Sluice adds in front of the
//      content: the Received trace field (mail::received) — not for a
//      bounce, which Sluice writes itself;
//   2. takes the content in stored form (CRLF lines, not dot-stuffed),
//      streamed in pieces, and at the end of the header section adds what a
//      submitted message lacks (RFC 6409 §8: Date, Message-ID; and From, from
//      the envelope sender) — for Source::submission always, for
//      Source::relay when `[relay] add_missing_headers` is on (the default;
//      applications on the local relay often send neither, and big receivers
//      refuse mail without a Message-ID);
//   3. signs (mta/signing.hpp): while the content streams by, a dkim::Scan
//      keeps its header fields and hashes its body; before the commit, the
//      [[dkim]] tables of the From domain sign it, and the DKIM-Signature
//      fields go in front of the content (Spool::Incoming::prepend, a HEAD
//      record), so the signature is stored with the message and retries
//      never sign again. From the loop the signing runs on libuv's thread
//      pool (an RSA signature costs about 0.4 ms); a commit made on another
//      thread (the maildrop's, already on the pool) signs right there. Not
//      for bounces, which are Sluice's own null-sender mail;
//   3b. notes a "TLS-Required: No" header field (mail::TlsRequiredScan) in
//      the envelope's tls_optional, unless MAIL had REQUIRETLS, which wins
//      (RFC 8689 §4.1; docs/transport-security.md "REQUIRETLS"); logged;
//   4. commits: the spool fills in the envelope's id and size and makes
//      content and envelope durable (group commit, queue/spool.hpp);
//   5. when the commit is durable, on the loop: hands the committed envelope
//      to delivery (deliver_to) exactly once, and only then tells the source
//      (its Done), which answers its client ("250 2.0.0 Ok: queued as").
// A failed commit is only told to the source (451 for SMTP; the maildrop
// file stays for the next scan).
//
// Threads: begin(), Message and commit() may be used from any thread, one
// thread per message (the maildrop's files are read and committed on
// libuv's thread pool); deliver and every Done run on the loop, through one
// uv::Inbox that the spool's writer thread posts to. A Done must look up
// whatever it needs by a weak reference (a connection id): the source may
// be gone when its commit completes; the message is delivered all the same.
// drain(done) (loop thread) waits for the signatures being made on the
// thread pool, whose messages hold spool Incomings: the daemon calls it
// before it destroys the spool. close() (loop thread, after the spool has
// stopped, so that nothing can be posted any more) runs what is left and
// closes the inbox.
#pragma once

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "dkim/message.hpp"
#include "mail/headers.hpp"
#include "mta/signing.hpp"
#include "mta/uv/inbox.hpp"
#include "queue/envelope.hpp"
#include "queue/spool.hpp"

namespace sluice::mta {

class Intake {
 public:
  enum class Source : uint8_t {
    relay,       // SMTP from a relay listener: trace field (+ missing fields, see above)
    submission,  // SMTP from an authenticated client (587/465): + missing Date/Message-ID/From
    local,       // the maildrop (sluice-sendmail added Date/Message-ID/From itself)
    bounce,      // a delivery status notification Sluice wrote: nothing added
  };

  // One message on its way in. Destroying it without commit() discards it.
  class Message {
   public:
    const std::string& id() const { return in_->id(); }
    // Content in stored form. The header section is whatever comes before
    // end_of_headers().
    void append(std::string_view content) {
      if (scan_) scan_->feed(content);
      if (tls_scan_ && tls_scan_->in_headers()) tls_scan_->feed(content);
      in_->append(content);
    }
    // An authenticated login's rule for the From address: a message whose
    // From it may not use is not signed (mta/signing.hpp).
    void from_rule(FromRule rule) { rule_ = std::move(rule); }
    // The header section is complete (the empty line is next, or the
    // message has no body). Call it once, before the body; what the sender's
    // fields were is the caller's knowledge (proto::DataReader tracks them);
    // `sender` is the envelope sender (for a missing From).
    void end_of_headers(const mail::Present& have, std::string_view sender);

   private:
    friend class Intake;
    Message(bool add_missing, mail::Trace trace, std::unique_ptr<queue::Spool::Incoming> in)
        : add_missing_(add_missing), trace_(std::move(trace)), in_(std::move(in)) {}
    bool add_missing_;
    mail::Trace trace_;
    std::unique_ptr<queue::Spool::Incoming> in_;
    std::string added_message_id_;  // the Message-ID end_of_headers() added
    std::shared_ptr<const Signing> signing_;  // the keys when it began; null: not signed
    std::unique_ptr<dkim::Scan> scan_;        // set with signing_
    // RFC 8689 §3 "TLS-Required: No" (not for bounces). Its own small scan:
    // scan_ exists only when signing is on.
    std::optional<mail::TlsRequiredScan> tls_scan_;
    FromRule rule_;
  };

  // On the loop, once per durable message: delivery takes it from here.
  using Deliver = std::function<void(const queue::Envelope&)>;
  // On the loop, after deliver: whether the message is durable, and the
  // envelope as committed (id, size; message_id when the intake added one).
  using Done = std::function<void(bool ok, const queue::Envelope& committed)>;

  Intake(uv_loop_t* loop, queue::Spool& spool);
  ~Intake();
  Intake(const Intake&) = delete;
  Intake& operator=(const Intake&) = delete;

  // Loop thread, before the first commit can complete.
  void deliver_to(Deliver deliver) { deliver_ = std::move(deliver); }
  // `[relay] add_missing_headers`; any thread (set at start and on reload).
  void add_missing_on_relay(bool on) { relay_adds_missing_.store(on, std::memory_order_relaxed); }
  // The [[dkim]] keys for messages begun from now on (null or empty: none);
  // any thread (set at start and on reload).
  void set_signing(std::shared_ptr<const Signing> s) { signing_.store(std::move(s)); }

  // Any thread. Allocates the queue id (trace.id is set to it) and writes
  // the Received field (Source::bounce: nothing).
  std::unique_ptr<Message> begin(Source source, mail::Trace trace);
  // Any thread. `env` describes the message; id, size and (when the intake
  // added one and env has none) message_id are filled in here.
  void commit(std::unique_ptr<Message> message, queue::Envelope env, Done done);

  // Commits handed to the spool whose Done has not run yet.
  uint64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

  // Loop thread: `done` runs (on the loop) once no signature is being made
  // on the thread pool; at once when none is.
  void drain(std::function<void()> done);
  // Loop thread, after the spool is gone; see above.
  void close() { inbox_.close(); }

 private:
  struct Committed {
    bool ok;
    queue::Envelope env;
    Done done;
  };
  struct SignJob;
  void finish(Committed c);
  // Signs on this thread (the work of a SignJob, or a commit off the loop).
  static Signatures sign_now(Message& m, const SignPlan& plan);
  static void log_signed(const std::string& id, const Signatures& s);
  void commit_now(std::unique_ptr<Message> message, queue::Envelope env, Done done);
  void job_done();

  uv_loop_t* loop_;
  std::thread::id loop_thread_;
  queue::Spool& spool_;
  Deliver deliver_;
  std::atomic<bool> relay_adds_missing_{true};
  std::atomic<uint64_t> in_flight_{0};
  std::atomic<std::shared_ptr<const Signing>> signing_;
  uint64_t jobs_ = 0;                     // SignJobs on the thread pool (loop thread)
  std::vector<std::function<void()>> drained_;
  uv::Inbox<Committed> inbox_;
};

}  // namespace sluice::mta
