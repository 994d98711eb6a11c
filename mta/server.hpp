// server.hpp — the SMTP listeners and connections on a libuv loop (the glue).
//
// Owns one uv_tcp_t per configured listener and one Connection per client.
// Each Connection feeds bytes into its Session (mta/smtp_session.hpp) and
// carries the session's actions out: writes, timers, spool calls, closing.
// Memory rules (STYLE.md): a Connection is deleted only after the close
// callbacks of all its handles ran; write requests own their buffers and are
// freed in the write callback; spool commit results arrive on the spool's
// writer thread and are handed to the loop through a uv_async_t, keyed by
// connection id, so a connection that went away in between is simply not found.
//
// TLS: a connection on a submissions listener handshakes first; after
// STARTTLS the "220" is written in plaintext, then a TlsStream is created and
// every later byte goes through it (the session already dropped whatever
// followed the STARTTLS line). Password checks run on libuv's thread pool
// (auth::Verifier); a connection cancels its check when it closes.
//
// Single-threaded: every method runs on the loop thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "conf/config.hpp"
#include "mta/auth/verifier.hpp"
#include "queue/spool.hpp"

namespace sluice::tls {
class TlsContext;
}
namespace sluice::auth {
class UserDb;
}

namespace sluice::mta {

class Connection;

class Server {
 public:
  Server(uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool);
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
  // Called on the loop for every message whose commit is durable (after the
  // client got its 250): delivery takes it from there.
  void on_committed(std::function<void(const queue::Envelope&)> cb) { committed_ = std::move(cb); }
  // Stops accepting, asks every session to finish; `done` runs once the last
  // connection has closed.
  void shutdown(std::function<void()> done);
  // Closes what is left at once (after the shutdown grace period).
  void abort_all();
  // Closes the server's own handles; the loop can end afterwards. Call after
  // the spool has stopped (no more commit results can arrive).
  void close_handles();

  size_t connections() const { return conns_.size(); }
  uint64_t connections_total() const { return next_id_ - 1; }

 private:
  friend class Connection;
  struct Listener {
    uv_tcp_t tcp;
    Server* server;
    conf::Listener cfg;
  };
  struct CommitResult {
    uint64_t conn;
    bool ok;
  };

  static void on_connection(uv_stream_t* s, int status);
  static void on_async(uv_async_t* a);
  static void on_backlog(uv_timer_t* t);
  void wait_for_spool(uint64_t conn);  // the connection stopped reading for the spool
  void accept_from(Listener& l);
  void post_commit(uint64_t conn, bool ok);  // any thread
  void forget(Connection& c);                // connection is closing
  void check_drained();

  uv_loop_t* loop_;
  std::shared_ptr<const conf::Config> config_;
  queue::Spool& spool_;
  std::shared_ptr<const tls::TlsContext> tls_;
  std::shared_ptr<const auth::UserDb> users_;
  auth::Verifier verifier_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unordered_map<uint64_t, Connection*> conns_;
  std::unordered_map<std::string, uint32_t> per_client_;
  std::unordered_set<uint64_t> backlogged_;  // connections waiting for the spool writer
  uv_timer_t backlog_timer_;                 // polls the writer while any wait
  std::unique_ptr<char[]> readbuf_;          // shared by every connection's reads
  bool backlog_waiting_ = false;
  uint64_t next_id_ = 1;
  uv_async_t async_;
  std::mutex results_mu_;
  std::vector<CommitResult> results_;
  bool shutting_down_ = false;
  std::function<void()> drained_;
  std::function<void(const queue::Envelope&)> committed_;
};

}  // namespace sluice::mta
