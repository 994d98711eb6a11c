// outbound.hpp — one outgoing SMTP connection: the TCP socket, the client
// TLS stream (after STARTTLS, or from the start on relayhost port 465), the
// content streamed from the spool, driving one client::ClientSession.
//
// An Outbound decides nothing about mail: it reports events to its
// OutboundHost (Delivery) — ready for a transaction, a transaction done, the
// connection failed, closed — with what happened at its host translated into
// queue/policy's vocabulary (queue::HostReport); Delivery feeds that to the
// job's queue::DeliveryAttempt and tells the connection what to do next (start a
// transaction, quit, wait idle). It carries one job at a time and may carry
// several in turn.
//
// It is a uv::StreamConnection (mta/uv/stream.hpp), which owns the socket,
// the timer (connect, then the session's timeouts), the writes and the TLS
// pump: whatever the session sends while one event is handled leaves in one
// uv_write at the end of the event (after_event), so e.g. the content and
// the final dot leave in one write. The content is read from the spool a
// piece at a time while less than kBodyQueued bytes wait unsent, and handed
// on with write_bulk() (under TLS encrypted at once, no extra copy); each
// finished write reads on.
//
// Memory: created with new by Delivery; it deletes itself (the stream
// connection's rule) once its socket and timer are closed and no write is
// in flight. OutboundHost::on_closed() is the last call to the host, made
// when closing starts: after it the host must forget the pointer.
// Single-threaded: everything runs on the loop.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "conf/config.hpp"
#include "mta/client/client_session.hpp"
#include "mta/uv/stream.hpp"
#include "dns/result.hpp"
#include "queue/attempt.hpp"
#include "queue/tls_level.hpp"
#include "sts/policy.hpp"
#include "queue/spool.hpp"
#include "obs/sluice_metrics.hpp"

namespace sluice::mta {

class Outbound;

// With a relayhost every message goes to it, under delivery.relayhost_tls
// (resolved by conf: "verify" when credentials are set); else delivery.tls.
conf::DeliveryTls outbound_tls(const conf::Delivery& dc);

// What every outgoing connection of one Delivery shares. Loop thread only.
class OutboundShared {
 public:
  OutboundShared(uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool)
      : loop(loop), config(std::move(config)), spool(spool) {}
  ~OutboundShared();  // wipes the relayhost password
  OutboundShared(const OutboundShared&) = delete;
  OutboundShared& operator=(const OutboundShared&) = delete;

  uv_loop_t* const loop;
  // The delivery settings for new connections; a reload replaces them
  // (Delivery::reload), and a connection keeps those it was opened with.
  std::shared_ptr<const conf::Config> config;
  queue::Spool& spool;
  std::shared_ptr<const tls::TlsContext> tls;  // null: no client TLS
  std::string relay_login, relay_password;     // relayhost AUTH, when set

  std::span<char> read_buffer();  // every connection's socket reads
  std::span<char> body_buffer();  // content read from the spool, one piece at a time

 private:
  std::unique_ptr<char[]> read_buf_;
  std::unique_ptr<char[]> body_buf_;
};

// What one connection's session must be protected by, decided by Delivery
// per target (docs/transport-security.md): the configuration (delivery.tls,
// or relayhost_tls), or what the destination publishes.
struct Protection {
  enum class Rule : uint8_t {
    configured,     // delivery.tls / relayhost_tls
    mta_sts,        // an enforced MTA-STS policy lists this MX: TLS verified for its name
    dane,           // usable TLSA records: TLS authenticated by them (RFC 7672 §2.2)
    dane_unusable,  // TLSA records, none usable: TLS required, not authenticated
  };
  Rule rule = Rule::configured;
  std::vector<dns::TlsaRecord> tlsa;  // dane: the host's DNSSEC-validated records
  // The destination's MTA-STS policy (enforce or testing), for TLS-RPT;
  // null when it has none.
  std::shared_ptr<const sts::Policy> sts;
  // A REQUIRETLS message: the certificate must verify (PKIX for the host's
  // name) even where the rule alone would not demand it.
  bool verify = false;
};
std::string_view to_string(Protection::Rule r);  // "configured", "mta-sts", "dane", "dane (unusable TLSA)"

// The events of an Outbound. `job` is the serial given to take_job(); the
// connection no longer carries it when these are called.
class OutboundHost {
 public:
  virtual ~OutboundHost() = default;
  // The connection is ready and its job has no transaction yet: call
  // Outbound::start() with it (else the connection says QUIT).
  virtual void on_ready(Outbound& o, uint64_t job) = 0;
  // The job's transaction ended and the connection is ready again (or the
  // message is too big for this server: report.failure is too_big). Give it
  // another job (take_job() + start()), park it, or quit() it.
  virtual void on_transaction_done(Outbound& o, uint64_t job, queue::HostReport report) = 0;
  // The connection failed, or closes, while it carries a job: what is known
  // (results of a transaction that ended, and the failure).
  virtual void on_failed(Outbound& o, uint64_t job, queue::HostReport report) = 0;
  // The connection is closing (after on_failed() if it had a job): forget it.
  virtual void on_closed(Outbound& o) = 0;
};

class Outbound final : public uv::StreamConnection, public client::ClientHost {
 public:
  // `destination` is the job's (a domain or the relayhost), for the idle cache.
  Outbound(OutboundShared& shared, OutboundHost& host, uint64_t id, queue::Target target, uint16_t port,
           std::string destination, Protection protection = {});
  Outbound(const Outbound&) = delete;
  Outbound& operator=(const Outbound&) = delete;

  uint64_t id() const { return id_; }
  const std::string& host() const { return host_; }    // "mx.example.com[192.0.2.1]"
  const queue::Target& target() const { return target_; }
  const std::string& relay() const { return relay_; }  // "mx.example.com[192.0.2.1]:25"
  const std::string& destination() const { return destination_; }
  // How the session is protected so far (none until a handshake completes).
  queue::TlsLevel tls_level() const { return tls_level_; }
  // After the handshake: the certificate verified (PKIX, or DANE matched).
  bool peer_verified() const { return peer_verified_; }
  const Protection& protection() const { return protection_; }
  bool has_job() const { return job_ != 0; }
  uint64_t job() const { return job_; }
  uint64_t transactions() const { return transactions_; }  // started on this connection
  // Ready, not closing, and not too old (Postfix's smtp_connection_reuse_time_limit).
  bool reusable() const;

  // Opens the TCP connection (30 s connect timeout).
  void connect();
  // The job this connection carries from now on (`serial` not 0): its
  // message is read from the spool when the transaction needs the content.
  void take_job(uint64_t serial, std::string message_id, uint64_t size);
  // Starts the job's transaction: from inside one of the host's callbacks.
  void start(client::Transaction t);
  // The same from outside an event (a job taken from the idle cache).
  void start_now(client::Transaction t);
  // Says QUIT (when ready) or aborts what is in flight; from inside a callback.
  void quit();
  // Shutdown or eviction, from outside an event: abort whatever is in flight.
  void abort();
  // Parked in the idle cache (since now); idle_since() is 0 while busy.
  void park();
  uint64_t idle_since() const { return idle_since_; }
  // Whether the session runs in TLS now (TLS-RPT counting, t15b).
  bool in_tls() const { return tls() != nullptr; }

  // --- client::ClientHost ---------------------------------------------------
  void send(std::string_view bytes) override;
  void start_tls() override;
  void need_body() override;
  void transaction_done(client::TransactionResult result) override;
  void connection_failed(client::ConnectionFailure f) override;
  void idle() override;
  void close() override;

 private:
  ~Outbound() override;  // only by the stream connection, once everything is closed

  // --- uv::StreamConnection ----------------------------------------------------
  void on_connect(int status) override;
  void on_bytes(std::string_view bytes) override;
  void on_end(int status) override;
  void on_written() override;
  void on_timer() override;
  void on_closing() override;  // reports the job and forgets the host
  void after_event() override;

  void read_tls(std::string_view ciphertext);
  void count_tls(obs::TlsOutcome outcome);
  void local_failure(queue::policy::SessionFailure what, std::string detail);
  void close_now();  // a close this connection decides (not a failed write)
  void pump_body();
  // What happened at this host, in queue/policy's terms; clears it.
  queue::HostReport take_report();
  queue::policy::SessionEvent event_of(const client::ConnectionFailure& f) const;

  OutboundShared& shared_;
  OutboundHost& owner_;
  uint64_t id_;
  queue::Target target_;
  uint16_t port_;
  std::string destination_;
  Protection protection_;
  queue::TlsLevel tls_level_ = queue::TlsLevel::none;
  bool peer_verified_ = false;
  bool tls_counted_ = false;  // this connection's handshake is in the metrics (once)
  // The settings this connection was opened with (OutboundShared's at the time).
  std::shared_ptr<const conf::Config> config_;
  std::shared_ptr<const tls::TlsContext> tls_ctx_;
  std::string host_;   // "mx.example.com[192.0.2.1]"
  std::string relay_;  // ... ":25"
  std::unique_ptr<client::ClientSession> session_;
  // The job carried: its serial (0: none), message and content size.
  uint64_t job_ = 0;
  std::string message_id_;
  uint64_t size_ = 0;
  std::optional<client::TransactionResult> result_;
  std::optional<client::ConnectionFailure> failure_;
  std::optional<queue::policy::SessionEvent> local_event_;
  std::string connect_error_;
  std::string tls_fail_;
  std::string plain_;          // decrypted by one read (keeps its capacity)
  uint64_t body_off_ = 0;      // next content byte to read from the spool
  bool body_active_ = false;   // streaming the content
  uint64_t connected_at_ = 0;  // uv_now() when the connection came up
  uint64_t idle_since_ = 0;    // uv_now() when parked; 0 while busy
  uint64_t transactions_ = 0;  // started on this connection
  uint64_t body_seq_ = 0;
  bool implicit_tls_ = false;
  bool connected_ = false;
  bool closed_by_us_ = false;  // see close_now()
  bool close_requested_ = false;
  bool tx_started_ = false;
  bool greeting_noted_ = false;  // a greeting naming our hostname was logged
};

}  // namespace sluice::mta
