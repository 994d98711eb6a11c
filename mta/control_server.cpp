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
#include "mta/uv_util.hpp"

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

// One control client: its pipe, idle timer, unparsed input and writes in
// flight. Deleted in the close callback of its second handle.
class ControlServer::Client {
 public:
  Client(ControlServer& server, uint64_t id) : server_(server), id_(id) {
    uv_pipe_init(server.loop_, &pipe_, 0);
    uv_timer_init(server.loop_, &timer_);
    pipe_.data = this;
    timer_.data = this;
  }

  uint64_t id() const { return id_; }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&pipe_); }
  int fd() const {
    uv_os_fd_t fd = -1;
    uv_fileno(reinterpret_cast<const uv_handle_t*>(&pipe_), &fd);
    return fd;
  }

  void start(const PeerCred& peer) {
    peer_ = peer;
    log::debug("control: client {} connected uid={} pid={}", id_, peer.uid, peer.pid);
    after();
  }

  // One error response, then close.
  void refuse(const control::Error& e) {
    send(control::error_response(e));
    close_after_write_ = true;
    after();
  }

  void begin_close() {
    if (closing_) return;
    closing_ = true;
    server_.forget(*this);
    uv_timer_stop(&timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_close);
    uv_close(reinterpret_cast<uv_handle_t*>(&pipe_), on_close);
    log::debug("control: client {} closed uid={} requests={}", id_, peer_.uid, requests_);
  }

 private:
  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* c = static_cast<Client*>(h->data);
    if (!c->readbuf_) c->readbuf_ = std::make_unique<char[]>(kReadBufferSize);
    *buf = uv_buf_init(c->readbuf_.get(), kReadBufferSize);
  }

  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* c = static_cast<Client*>(s->data);
    if (n == 0 || c->closing_) return;
    if (n == UV_EOF) {  // the client sent everything: answer it, then close
      c->eof_ = true;
      c->reading_ = false;  // libuv stopped reading
      c->pump();
      return;
    }
    if (n < 0) {
      c->begin_close();
      return;
    }
    c->in_.append(buf->base, size_t(n));
    c->pump();
  }

  static void on_write(void* ctx, int status) {
    auto* c = static_cast<Client*>(ctx);
    --c->writes_;
    if (c->closing_) return;
    if (status < 0) {
      c->begin_close();
      return;
    }
    c->pump();
  }

  static void on_timer(uv_timer_t* t) {
    auto* c = static_cast<Client*>(t->data);
    log::debug("control: client {} idle for {} ms; closing", c->id_,
               c->server_.opt_.idle_timeout.count());
    c->begin_close();
  }

  static void on_close(uv_handle_t* h) {
    auto* c = static_cast<Client*>(h->data);
    if (++c->closed_handles_ < 2) return;
    ControlServer& server = c->server_;
    delete c;
    server.client_closed();
  }

  size_t unsent() const { return uv_stream_get_write_queue_size(
      reinterpret_cast<const uv_stream_t*>(&pipe_)); }

  // Runs the complete request lines waiting in in_ while the output is not
  // backed up, then decides about reading, closing and the timer.
  void pump() {
    if (closing_) return;
    const size_t max_line = server_.opt_.max_line;
    while (!close_after_write_ && unsent() < server_.opt_.max_unsent) {
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
      if (closing_) return;
    }
    // Drop what has been run (once per pump, not once per line).
    in_.erase(0, pos_);
    scanned_ = scanned_ > pos_ ? scanned_ - pos_ : 0;
    pos_ = 0;
    if (eof_ && in_.empty()) close_after_write_ = true;
    after();
  }

  void too_long() {
    log::info("control: client {} uid={}: request longer than {} bytes; closing", id_, peer_.uid,
              server_.opt_.max_line);
    send(control::error_response(
        {control::ErrorCode::line_too_long,
         fmt::format("request longer than {} bytes", server_.opt_.max_line), {}}));
    in_.clear();
    pos_ = scanned_ = 0;
    close_after_write_ = true;
  }

  void handle(std::string_view line) {
    ++requests_;
    control::Outcome out = control::handle_request(line, server_.admin_);
    for (const auto& change : out.changes)
      log::info("{} by uid {} (control)", log::sanitize(change), peer_.uid);
    send(std::move(out.response));
  }

  void send(std::string response) {
    response += '\n';
    if (write_owned(stream(), std::move(response), on_write, this) < 0) {
      begin_close();
      return;
    }
    ++writes_;
  }

  void after() {
    if (closing_) return;
    if (close_after_write_) {
      if (reading_) {
        uv_read_stop(stream());
        reading_ = false;
      }
      if (writes_ == 0) {
        begin_close();
        return;
      }
    } else {
      const bool want = !eof_ && unsent() < server_.opt_.max_unsent;
      if (want && !reading_) {
        uv_read_start(stream(), on_alloc, on_read);
        reading_ = true;
      } else if (!want && reading_) {
        uv_read_stop(stream());
        reading_ = false;
      }
    }
    uv_timer_start(&timer_, on_timer, uint64_t(server_.opt_.idle_timeout.count()), 0);
  }

  ControlServer& server_;
  uint64_t id_;
  uv_pipe_t pipe_;
  uv_timer_t timer_;
  PeerCred peer_;
  std::unique_ptr<char[]> readbuf_;
  std::string in_;        // bytes received; in_[pos_, end) not yet run as requests
  size_t pos_ = 0;
  size_t scanned_ = 0;    // in_[pos_, scanned_) holds no newline
  int writes_ = 0;
  int closed_handles_ = 0;
  uint64_t requests_ = 0;
  bool reading_ = false;
  bool eof_ = false;
  bool close_after_write_ = false;
  bool closing_ = false;
};

ControlServer::ControlServer(uv_loop_t* loop, std::string path, control::QueueAdmin& admin,
                             ControlOptions options)
    : loop_(loop), path_(std::move(path)), admin_(admin), opt_(options) {}

ControlServer::~ControlServer() {
  if (listener_open_ || !clients_.empty() || closing_clients_ > 0) {
    // Freeing handles the loop still knows about would corrupt it.
    log::error("control: ControlServer destroyed before close() finished");
    std::abort();
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

  uv_pipe_init(loop_, &listener_, 0);
  listener_.data = this;
  listener_open_ = true;
  if (int rc = uv_pipe_bind(&listener_, path_.c_str()); rc < 0)
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
  if (int rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 64, on_connection); rc < 0)
    return std::unexpected(fmt::format("control socket {}: listen: {}", path_, uv_strerror(rc)));
  log::info("control: listening on {} (mode 0660, uid {}, gid {})", path_, st.st_uid, st.st_gid);
  return {};
}

void ControlServer::on_connection(uv_stream_t* s, int status) {
  auto* self = static_cast<ControlServer*>(s->data);
  if (status < 0) {
    log::warning("control: accept failed: {}", uv_strerror(status));
    return;
  }
  self->accept_one();
}

void ControlServer::accept_one() {
  auto* c = new Client(*this, next_id_++);
  clients_.emplace(c->id(), c);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&listener_), c->stream()) < 0) {
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
  ++closing_clients_;
}

void ControlServer::client_closed() {
  --closing_clients_;
  check_closed();
}

void ControlServer::on_listener_closed(uv_handle_t* h) {
  auto* self = static_cast<ControlServer*>(h->data);
  self->listener_open_ = false;
  self->check_closed();
}

void ControlServer::close(std::function<void()> done) {
  closing_ = true;
  done_ = std::move(done);
  if (listener_open_ && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener_)))
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), on_listener_closed);
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
  if (!closing_ || listener_open_ || !clients_.empty() || closing_clients_ > 0 || !done_) return;
  auto done = std::move(done_);
  done_ = nullptr;
  done();
}

}  // namespace sluice::mta
