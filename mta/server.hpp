// server.hpp — the SMTP listeners and connections on a libuv loop (the glue).
//
// Owns one uv_tcp_t per configured listener and one Connection per client.
// Each Connection feeds bytes into its Session (mta/smtp_session.hpp) and
// carries the session's actions out: writes, timers, spool calls, closing.
// Memory rules (STYLE.md): a Connection is a uv::StreamConnection
// (mta/uv/stream.hpp): it frees itself once the close callbacks of all its
// handles ran and no write is in flight, and the replies of one event leave
// in one write; the server's own handles are uv::Handles. A message goes into the queue through the
// intake (mta/intake.hpp); its commit's answer finds the connection by id,
// so a connection that went away in between is simply not found (the
// message is delivered all the same).
//
// TLS: a connection on a submissions listener handshakes first; after
// STARTTLS the "220" is written in plaintext, then a TlsStream is created and
// every later byte goes through it (the session already dropped whatever
// followed the STARTTLS line). Password checks run on libuv's thread pool
// (auth::Verifier); a connection cancels its check when it closes. A failed
// check is answered limits.auth_failure_delay after it began (a per-
// connection timer), a successful one at once.
//
// Submission limits ([limits] messages_per_login, auth_failures_per_client;
// docs/shaping.md): the session decides what to count, the connection asks
// the shaping store set with set_store(). The answer finds the connection by
// id, like a commit's, so one that closed in between is not touched.
//
// Fairness (docs/architecture.md): per client address, at most a few TLS
// handshakes and password checks at a time (ClientSlots; the others wait
// without being read from), and at most a few handshake steps per loop
// iteration (a uv_check_t renews the budget and runs the steps that waited).
//
// Single-threaded: every method runs on the loop thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "conf/config.hpp"
#include "mta/auth/verifier.hpp"
#include "mta/client_slots.hpp"
#include "mta/intake.hpp"
#include "mta/uv/handle.hpp"
#include "queue/spool.hpp"

namespace sluice::tls {
class TlsContext;
}
namespace sluice::auth {
class UserDb;
}
namespace sluice::shaping {
class Store;
}

namespace sluice::mta {

class Connection;

class Server {
 public:
  Server(uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool,
         Intake& intake);
  ~Server();

  // Binds and listens on every configured listener.
  std::expected<void, std::string> listen();
  // New connections use the new configuration (limits, trusted networks);
  // listeners are not re-bound.
  void reload(std::shared_ptr<const conf::Config> config);
  // The certificate for STARTTLS and implicit TLS (null: no TLS), and the
  // users for AUTH (null: AUTH not offered). Connections keep the ones in
  // force when they connected, so a reload never disturbs them.
  void set_tls(std::shared_ptr<const tls::TlsContext> ctx);
  void set_users(std::shared_ptr<const auth::UserDb> users);
  // The shaping store the submission limits count in (null: no limits).
  // Not owned: it must outlive the server's connections; it may be swapped
  // (answers to the old one still find their connection by id).
  void set_store(shaping::Store* store) { store_ = store; }
  // Stops accepting, asks every session to finish; `done` runs once the last
  // connection has closed.
  void shutdown(std::function<void()> done);
  // Closes what is left at once (after the shutdown grace period).
  void abort_all();
  // Closes the server's own handles; the loop can end afterwards.
  void close_handles();

  size_t connections() const { return conns_.size(); }
  uint64_t connections_total() const { return next_id_ - 1; }
  // Every listener bound and accepting (false before listen() and after
  // shutdown; GET /healthz asks).
  bool listening() const { return listening_; }

 private:
  friend class Connection;
  struct Listener {
    uv::Handle<uv_tcp_t> tcp;
    Server* server;
    conf::Listener cfg;
  };
  static void on_connection(uv_stream_t* s, int status);
  static void on_backlog(uv_timer_t* t);
  static void on_check(uv_check_t* h);
  // The handshake budget: true (and one step spent) if a step may run now.
  bool take_handshake_step();
  void defer_handshake(uint64_t conn);  // runs in a later on_check
  // A slot came free and `next` (if any) waits for it: start its work.
  void grant_handshake(std::optional<uint64_t> next, const std::string& client);
  void grant_auth(std::optional<uint64_t> next, const std::string& client);
  void wait_for_spool(uint64_t conn);  // the connection stopped reading for the spool
  void accept_from(Listener& l);
  void forget(Connection& c);                // connection is closing
  void check_drained();

  uv_loop_t* loop_;
  std::shared_ptr<const conf::Config> config_;
  queue::Spool& spool_;  // its backlog and free space; messages go through intake_
  Intake& intake_;
  std::shared_ptr<const tls::TlsContext> tls_;
  std::shared_ptr<const auth::UserDb> users_;
  shaping::Store* store_ = nullptr;
  auth::Verifier verifier_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unordered_map<uint64_t, Connection*> conns_;
  std::unordered_map<std::string, uint32_t> per_client_;
  std::unordered_set<uint64_t> backlogged_;  // connections waiting for the spool writer
  uv::Handle<uv_timer_t> backlog_timer_;     // polls the writer while any wait
  std::unique_ptr<char[]> readbuf_;          // shared by every connection's reads
  ClientSlots hs_slots_;                     // TLS handshakes per client address
  ClientSlots auth_slots_;                   // password checks per client address
  std::deque<uint64_t> hs_queue_;            // connections whose handshake step waits
  int hs_budget_;                            // handshake steps left in this iteration
  uv::Handle<uv_check_t> hs_check_;
  uv::Handle<uv_idle_t> hs_idle_;            // active while hs_queue_ is not empty
  bool backlog_waiting_ = false;
  uint64_t next_id_ = 1;
  bool shutting_down_ = false;
  bool listening_ = false;
  std::function<void()> drained_;
};

}  // namespace sluice::mta
