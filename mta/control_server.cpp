// control_server.cpp — see control_server.hpp.
#include "mta/control_server.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include "conf/log.hpp"
#include "conf/safe_file.hpp"
#include "mta/control/dispatcher.hpp"
#include "mta/events.hpp"
#include "mta/uv/guard.hpp"
#include "mta/uv/stream.hpp"

namespace sluice::mta {

namespace {

constexpr size_t kReadBufferSize = 64 * 1024;

std::string errno_text(int err) { return std::strerror(err); }

// Whether something accepts connections on the Unix socket `path`.
// connect() on a Unix socket answers at once: 0 or EAGAIN (backlog full) mean
// a live listener; ECONNREFUSED a stale file.
std::expected<bool, std::string> socket_is_live(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return std::unexpected("socket: " + errno_text(errno));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
  int err = errno;
  ::close(fd);
  if (rc == 0 || err == EAGAIN || err == EINPROGRESS) return true;
  if (err == ECONNREFUSED) return false;
  return std::unexpected(errno_text(err));
}

}  // namespace

bool peer_allowed(const PeerCred& peer, uid_t self_euid, gid_t socket_gid,
                  const std::vector<gid_t>& peer_groups) {
  if (peer.uid == 0 || peer.uid == self_euid) return true;
  if (socket_gid == static_cast<gid_t>(-1)) return false;
  if (peer.gid == socket_gid) return true;
  return std::find(peer_groups.begin(), peer_groups.end(), socket_gid) != peer_groups.end();
}

std::vector<gid_t> groups_of_user(uid_t uid) {
  long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(hint > 0 ? size_t(hint) : 16384);
  passwd pw{};
  passwd* found = nullptr;
  for (;;) {
    int rc = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0 || !found) return {};
    break;
  }
  std::vector<gid_t> groups(32);
  for (int attempt = 0; attempt < 8; ++attempt) {
    int n = int(groups.size());
    if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) >= 0) {
      groups.resize(size_t(n));
      return groups;
    }
    groups.resize(std::max(size_t(n), groups.size() * 2));
  }
  return {pw.pw_gid};
}

// One control client on a uv::StreamConnection (its pipe, idle timer,
// writes and delayed deletion): the unparsed input and the request loop.
// Told of the server through a pointer the server clears when it is
// destroyed first.
class ControlServer::Client final : public uv::StreamConnection {
 public:
  Client(ControlServer& server, uint64_t id)
      : StreamConnection(server.loop_, Kind::pipe, {server.readbuf_.get(), kReadBufferSize}),
        server_(&server),
        id_(id),
        opt_(server.opt_) {}

  uint64_t id() const { return id_; }
  int fd() const {
    uv_os_fd_t fd = -1;
    uv_fileno(reinterpret_cast<const uv_handle_t*>(stream()), &fd);
    return fd;
  }
  void detach() { server_ = nullptr; }  // the server is being destroyed

  void start(const PeerCred& peer) {
    peer_ = peer;
    log::debug("control: client {} connected uid={} pid={}", id_, peer.uid, peer.pid);
    after_event();
  }

  // One error response, then close.
  void refuse(const control::Error& e) {
    send(control::error_response(e));
    close_after_write_ = true;
    after_event();
  }

 private:
  ~Client() override {
    if (server_) server_->client_closed(*this);
  }

  void on_closing() override {
    if (server_) server_->forget(*this);
    log::debug("control: client {} closed uid={} requests={}", id_, peer_.uid, requests_);
  }

  void on_bytes(std::string_view bytes) override {
    in_.append(bytes);
    pump();
  }

  void on_end(int status) override {
    if (status != UV_EOF) {
      begin_close();
      return;
    }
    eof_ = true;  // the client sent everything: answer it, then close
    pump();
  }

  void on_written() override { pump(); }

  void on_timer() override {
    log::debug("control: client {} idle for {} ms; closing", id_, opt_.idle_timeout.count());
    begin_close();
  }

  // Runs the complete request lines waiting in in_ while the output is not
  // backed up (after_event() then decides about reading, closing and the timer).
  void pump() {
    const size_t max_line = opt_.max_line;
    while (!close_after_write_ && unsent() < opt_.max_unsent) {
      size_t nl = in_.find('\n', std::max(scanned_, pos_));
      if (nl == std::string::npos) {
        scanned_ = in_.size();
        if (in_.size() - pos_ > max_line) {
          too_long();
          break;
        }
        if (eof_ && pos_ < in_.size()) {  // a last request without its newline
          nl = in_.size();
          in_ += '\n';
        } else {
          break;
        }
      }
      if (nl - pos_ > max_line) {
        too_long();
        break;
      }
      std::string_view line(in_.data() + pos_, nl - pos_);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      pos_ = nl + 1;
      if (line.find_first_not_of(" \t") != std::string_view::npos) handle(line);
    }
    // Drop what has been run (once per pump, not once per line).
    in_.erase(0, pos_);
    scanned_ = scanned_ > pos_ ? scanned_ - pos_ : 0;
    pos_ = 0;
    if (eof_ && in_.empty()) close_after_write_ = true;
  }

  void too_long() {
    log::info("control: client {} uid={}: request longer than {} bytes; closing", id_, peer_.uid,
              opt_.max_line);
    send(control::error_response(
        {control::ErrorCode::line_too_long,
         fmt::format("request longer than {} bytes", opt_.max_line), {}}));
    in_.clear();
    pos_ = scanned_ = 0;
    close_after_write_ = true;
  }

  void handle(std::string_view line) {
    ++requests_;
    control::Outcome out = control::handle_request(line, server_->admin_);
    for (const auto& change : out.changes)
      events::admin(change, fmt::format("{} by uid {} (control)", log::sanitize(change), peer_.uid));
    send(out.response);
  }

  // Gathered: the responses of one event leave in one write.
  void send(std::string_view response) {
    write(response);
    write("\n");
  }

  void after_event() override {
    flush();
    if (closing()) return;
    if (close_after_write_) {
      read(false);
      if (writes_in_flight() == 0) {
        begin_close();
        return;
      }
    } else {
      read(!eof_ && unsent() < opt_.max_unsent);
    }
    arm_timer(uint64_t(opt_.idle_timeout.count()));
  }

  ControlServer* server_;  // null once the server is destroyed
  uint64_t id_;
  ControlOptions opt_;
  PeerCred peer_;
  std::string in_;        // bytes received; in_[pos_, end) not yet run as requests
  size_t pos_ = 0;
  size_t scanned_ = 0;    // in_[pos_, scanned_) holds no newline
  uint64_t requests_ = 0;
  bool eof_ = false;
  bool close_after_write_ = false;
};

ControlServer::ControlServer(uv_loop_t* loop, std::string path, control::QueueAdmin& admin,
                             ControlOptions options)
    : loop_(loop), path_(std::move(path)), admin_(admin), opt_(options) {}

// Clients still open or closing are told the server is gone; they close and
// free themselves as the loop runs on. The listener's Handle closes it.
ControlServer::~ControlServer() {
  std::vector<Client*> open;
  for (auto& [id, c] : clients_) open.push_back(c);
  for (Client* c : closing_clients_) c->detach();
  for (Client* c : open) {
    c->detach();
    c->begin_close();
  }
}

std::expected<void, std::string> ControlServer::listen() {
  namespace fs = std::filesystem;
  if (path_.empty() || path_.size() >= sizeof(sockaddr_un::sun_path))
    return std::unexpected(fmt::format("control socket {}: path empty or longer than {} bytes",
                                       path_, sizeof(sockaddr_un::sun_path) - 1));
  const bool chown_wanted = opt_.owner != static_cast<uid_t>(-1) || opt_.group != static_cast<gid_t>(-1);

  // The directory: made when missing, for the daemon's user and group
  // only; walked and opened without following a link another account
  // could have planted, and everything below is done relative to it
  // (conf/safe_file.hpp): root never chowns or chmods by path.
  fs::path dir = fs::path(path_).parent_path();
  const std::string name = fs::path(path_).filename().string();
  auto sdir = safe::make_dirs(dir.empty() ? "." : dir.string(), 0750,
                              chown_wanted ? safe::Owner{opt_.owner, opt_.group} : safe::Owner{});
  if (!sdir) return std::unexpected(fmt::format("control socket directory: {}", sdir.error()));

  // What is there already: a live daemon, a stale socket, or something else.
  struct stat st {};
  if (::fstatat(sdir->fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return std::unexpected(fmt::format("control socket {}: exists and is not a socket; not touching it", path_));
    auto live = socket_is_live(path_);
    if (!live) return std::unexpected(fmt::format("control socket {}: {}", path_, live.error()));
    if (*live)
      return std::unexpected(fmt::format(
          "control socket {}: another sluiced is running (it answers on the socket)", path_));
    if (::unlinkat(sdir->fd.get(), name.c_str(), 0) != 0 && errno != ENOENT)
      return std::unexpected(fmt::format("control socket {}: removing the stale socket: {}", path_,
                                         errno_text(errno)));
    log::info("control: removed the stale socket {}", path_);
  }

  listener_.init(loop_, uv_pipe_init, 0);
  listener_->data = this;
  if (int rc = uv_pipe_bind(listener_.get(), path_.c_str()); rc < 0)
    return std::unexpected(fmt::format("control socket {}: {}", path_, uv_strerror(rc)));
  created_file_ = true;
  // Mode and owner of the socket file: a socket's own descriptor cannot
  // change them, so they are set on an O_PATH descriptor of the entry,
  // opened without following a link relative to the checked directory.
  auto owned = safe::own_socket_at(*sdir, name,
                                   chown_wanted ? safe::Owner{opt_.owner, opt_.group} : safe::Owner{}, 0660);
  if (!owned) return std::unexpected(fmt::format("control socket: {}", owned.error()));
  st = *owned;
  inode_ = st.st_ino;
  socket_gid_ = st.st_gid;
  if (int rc = uv_listen(listener_.stream(), 64, on_connection); rc < 0)
    return std::unexpected(fmt::format("control socket {}: listen: {}", path_, uv_strerror(rc)));
  log::info("control: listening on {} (mode 0660, uid {}, gid {})", path_, st.st_uid, st.st_gid);
  return {};
}

void ControlServer::on_connection(uv_stream_t* s, int status) {
  uv::guard("control accept", [&] {
    auto* self = static_cast<ControlServer*>(s->data);
    if (status < 0) {
      log::warning("control: accept failed: {}", uv_strerror(status));
      return;
    }
    self->accept_one();
  });
}

void ControlServer::accept_one() {
  if (!readbuf_) readbuf_ = std::make_unique<char[]>(kReadBufferSize);  // shared by the clients
  auto* c = new Client(*this, next_id_++);
  clients_.emplace(c->id(), c);
  if (uv_accept(listener_.stream(), c->stream()) < 0) {
    c->begin_close();
    return;
  }
  if (closing_) {
    c->begin_close();
    return;
  }

  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(c->fd(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    log::warning("control: cannot identify a client: {}", errno_text(errno));
    c->refuse({control::ErrorCode::permission_denied, "cannot identify the client", {}});
    return;
  }
  PeerCred peer{cred.pid, cred.uid, cred.gid};
  const uid_t self = ::geteuid();
  // The user database is read only when the cheap checks fail.
  bool allowed = peer_allowed(peer, self, socket_gid_, {}) ||
                 peer_allowed(peer, self, socket_gid_, groups_of_user(peer.uid));
  if (!allowed) {
    log::warning("control: refused uid={} gid={} pid={}: not root, not uid {}, not in group {}",
                 peer.uid, peer.gid, peer.pid, self, socket_gid_);
    c->refuse({control::ErrorCode::permission_denied,
               fmt::format("uid {} may not use the control socket (root, uid {} or group {} only)",
                           peer.uid, self, socket_gid_),
               {}});
    return;
  }
  if (clients_.size() > opt_.max_clients) {
    log::warning("control: refused uid={} pid={}: {} control clients already", peer.uid, peer.pid,
                 opt_.max_clients);
    c->refuse({control::ErrorCode::busy,
               fmt::format("too many control clients ({}); try again", opt_.max_clients), {}});
    return;
  }
  c->start(peer);
}

void ControlServer::forget(Client& c) {
  clients_.erase(c.id());
  closing_clients_.insert(&c);
}

void ControlServer::client_closed(Client& c) {
  closing_clients_.erase(&c);
  check_closed();
}

void ControlServer::close(std::function<void()> done) {
  closing_ = true;
  done_ = std::move(done);
  listener_.close();  // freed in its close callback; nothing waits for it
  std::vector<Client*> all;
  all.reserve(clients_.size());
  for (auto& [id, c] : clients_) all.push_back(c);
  for (auto* c : all) c->begin_close();
  if (created_file_) {
    created_file_ = false;
    // Only our own socket: never one a newer daemon has made meanwhile.
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_ino == inode_ && S_ISSOCK(st.st_mode)) {
      if (::unlink(path_.c_str()) != 0)
        log::warning("control: removing {}: {}", path_, errno_text(errno));
    }
  }
  check_closed();
}

void ControlServer::check_closed() {
  if (!closing_ || !clients_.empty() || !closing_clients_.empty() || !done_) return;
  auto done = std::move(done_);
  done_ = nullptr;
  done();
}

}  // namespace sluice::mta
