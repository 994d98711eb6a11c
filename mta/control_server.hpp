// control_server.hpp — the control socket on the daemon's libuv loop (the
// glue): a Unix stream socket that sluicectl talks to (docs/control.md).
//
// listen() makes the socket: it creates the parent directory when missing,
// refuses to start when another daemon answers on the path, removes a stale
// socket left by a crash (never a file that is not a socket), binds, sets
// mode 0660 and, when a user and group are given (sluiced started as root),
// chowns the socket (and a directory it created) to them.
//
// Each accepted client is checked with SO_PEERCRED: root, the daemon's own
// effective uid, or a user whose primary or supplementary groups (the user
// database, getpwuid_r + getgrouplist) include the socket's group may use it;
// anyone else gets one permission_denied response and is closed. So do
// clients beyond max_clients (busy). A client then sends request lines; each
// is handed to the dispatcher (mta/control/dispatcher.hpp) and its response
// written back in order. A line longer than the limit gets a line_too_long
// response and the connection is closed (there is no way to find the next
// request). While a client's unsent output exceeds a limit its further
// requests wait (a client that pipelines "list" and never reads cannot make
// the daemon buffer without bound). A client idle for idle_timeout is closed.
//
// Every change a request makes is logged as "ID: held by uid 0 (control)".
//
// Memory rules (STYLE.md): a client is a uv::StreamConnection (mta/uv/stream.hpp):
// it frees itself once its pipe's and timer's close callbacks ran, and the
// responses of one event leave in one write; the listener is a uv::Handle.
// Single-threaded: every method runs on the loop thread.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <string>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mta/control/admin.hpp"
#include "mta/control/protocol.hpp"
#include "mta/uv/handle.hpp"

namespace sluice::mta {

struct ControlOptions {
  // Owner of the socket when sluiced runs as root (the configuration's
  // `user` and its primary group); -1 leaves it as created.
  uid_t owner = static_cast<uid_t>(-1);
  gid_t group = static_cast<gid_t>(-1);
  size_t max_clients = 16;
  std::chrono::milliseconds idle_timeout{60'000};
  size_t max_line = control::kMaxRequestLine;
  // Stop running a client's requests while this much of its output is unsent.
  size_t max_unsent = 1024 * 1024;
};

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
};

// Who may use the socket: uid 0, `self_euid`, or a peer whose primary gid or
// one of `peer_groups` is `socket_gid`. Pure.
bool peer_allowed(const PeerCred& peer, uid_t self_euid, gid_t socket_gid,
                  const std::vector<gid_t>& peer_groups);
// The groups of the user `uid` in the user database (primary first), empty
// when the uid has no entry. Reads /etc/passwd and /etc/group (NSS).
std::vector<gid_t> groups_of_user(uid_t uid);

class ControlServer {
 public:
  ControlServer(uv_loop_t* loop, std::string path, control::QueueAdmin& admin,
                ControlOptions options = {});
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // The error names the path and what went wrong; another daemon's socket
  // and files that are not sockets are left alone.
  std::expected<void, std::string> listen();
  // Stops listening, closes every client, removes the socket file (only the
  // one listen() made), and calls `done` once every client is freed (at once
  // when none is open). Call once, also after a failed listen(). Destroying
  // the server without close(), or before `done` ran, closes what is open
  // and drops `done`; either way the handles' memory is freed in their close
  // callbacks, so the loop must run on before it is closed.
  void close(std::function<void()> done);

  const std::string& path() const { return path_; }
  size_t clients() const { return clients_.size(); }

 private:
  class Client;
  friend class Client;

  static void on_connection(uv_stream_t* s, int status);
  void accept_one();
  void forget(Client& c);         // the client began closing
  void client_closed(Client& c);  // a closing client is freed
  void check_closed();

  uv_loop_t* loop_;
  std::string path_;
  control::QueueAdmin& admin_;
  ControlOptions opt_;
  uv::Handle<uv_pipe_t> listener_;
  std::unique_ptr<char[]> readbuf_;  // every client's reads (loop thread)
  bool created_file_ = false;     // we bound path_: unlink it at close
  ino_t inode_ = 0;               // of our socket file, to never unlink another's
  gid_t socket_gid_ = static_cast<gid_t>(-1);
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Client*> clients_;
  std::unordered_set<Client*> closing_clients_;  // closing, not yet freed
  bool closing_ = false;
  std::function<void()> done_;
};

}  // namespace sluice::mta
