// safe_file.cpp — see safe_file.hpp.
#include "conf/safe_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <string_view>
#include <optional>
#include <vector>

namespace sluice::safe {

namespace {

std::string fail(const std::string& path, std::string_view what, int err) {
  std::string s = path;
  s += ": ";
  s += what;
  if (err != 0) {
    s += ": ";
    s += std::strerror(err);
  }
  return s;
}

std::string join(const std::string& dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  if (dir.back() == '/') return dir + std::string(name);
  return dir + "/" + std::string(name);
}

// Why openat(..., O_NOFOLLOW) failed, in words: a planted link gets a
// message of its own.
std::string open_error(int dirfd, const std::string& path, std::string_view name, int err) {
  struct stat st;
  if ((err == ELOOP || err == ENOTDIR || err == ENXIO) &&
      ::fstatat(dirfd, std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode)) return fail(path, "is a symbolic link; refused (it is never followed)", 0);
    if (err == ENOTDIR) return fail(path, "is not a directory", 0);
    if (!S_ISREG(st.st_mode)) return fail(path, "is not a regular file; refused", 0);
  }
  return fail(path, "cannot open", err);
}

// A directory whose entries only root or we can change: its links are the
// administrator's (or ours).
bool trusted_dir(const struct stat& st) {
  return (st.st_uid == 0 || st.st_uid == ::geteuid()) && (st.st_mode & 022) == 0;
}

std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// A subdirectory, readable when we may read it, else an O_PATH descriptor
// (enough to look names up in it, fstat it and create in it): a directory
// of mode 0711 on the way must not stop the walk.
int open_sub(int dirfd, const std::string& name, int extra) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | extra);
  if (fd < 0 && errno == EACCES) fd = ::openat(dirfd, name.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC | extra);
  return fd;
}
int open_followed(int dirfd, const std::string& name) { return open_sub(dirfd, name, 0); }

// fsync of a directory we may not be able to read (then it cannot be
// fsynced by us, and is not ours): best effort for those.
bool sync_dir(int fd) {
  if (::fsync(fd) == 0) return true;
  if (errno != EBADF) return false;
  int rd = ::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rd < 0) return true;
  bool ok = ::fsync(rd) == 0;
  ::close(rd);
  return ok;
}

// Error unless the open `fd` is a regular file with exactly one link;
// `second_name` says what a second link means where it is checked.
std::expected<void, std::string> single_regular_file(int fd, const std::string& path,
                                                     std::string_view second_name) {
  auto st = stat_fd(fd, path);
  if (!st) return std::unexpected(st.error());
  if (!S_ISREG(st->st_mode)) return std::unexpected(fail(path, "is not a regular file; refused", 0));
  if (st->st_nlink != 1)
    return std::unexpected(fail(path, "has " + std::to_string(st->st_nlink) + " hard links; refused (" +
                                          std::string(second_name) + ")", 0));
  return {};
}

// `name` in `dir` is a symbolic link and `dir` is trusted (its links are the
// administrator's): the directory it leads to, followed. Empty otherwise.
std::optional<Fd> follow_trusted_link(const Dir& dir, const std::string& name) {
  struct stat dst, lst;
  if (::fstat(dir.fd.get(), &dst) != 0 || !trusted_dir(dst) ||
      ::fstatat(dir.fd.get(), name.c_str(), &lst, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISLNK(lst.st_mode))
    return std::nullopt;
  return Fd(open_followed(dir.fd.get(), name));
}

std::expected<Dir, std::string> walk(const std::string& path, bool create, mode_t mode, Owner owner) {
  if (path.empty()) return std::unexpected(std::string("empty directory path"));
  const bool absolute = path.front() == '/';
  Dir cur;
  cur.path = absolute ? "/" : ".";
  cur.fd.reset(::open(cur.path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!cur.fd) return std::unexpected(fail(cur.path, "cannot open", errno));
  const auto parts = components(path);
  std::string shown = absolute ? "" : ".";
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    shown = (i == 0 && absolute) ? "/" + part : join(shown, part);
    if (part == "..") return std::unexpected(fail(shown, "\"..\" is not allowed in this path", 0));
    if (part == ".") continue;
    if (create) {
      auto made = make_dir_at(cur, part, mode, owner);
      if (!made) {
        // A link in a trusted directory is the administrator's: follow it.
        auto followed = follow_trusted_link(cur, part);
        if (!followed) return std::unexpected(made.error());
        if (!*followed) return std::unexpected(fail(shown, "cannot open", errno));
        cur.fd = std::move(*followed);
        cur.path = shown;
        continue;
      }
      cur.fd = std::move(made->dir.fd);
      cur.path = shown;
      continue;
    }
    Fd next(open_sub(cur.fd.get(), part, O_NOFOLLOW));
    if (!next) {
      const int err = errno;
      auto followed = (err == ELOOP || err == ENOTDIR) ? follow_trusted_link(cur, part) : std::nullopt;
      if (!followed) {
        std::string why = open_error(cur.fd.get(), shown, part, err);
        if (err == ELOOP) why += " (in a directory another account can write)";
        return std::unexpected(why);
      }
      if (!*followed) return std::unexpected(fail(shown, "cannot open", errno));
      next = std::move(*followed);
    }
    cur.fd = std::move(next);
    cur.path = shown;
  }
  cur.path = path;
  return cur;
}

}  // namespace

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) reset(std::exchange(o.fd_, -1));
  return *this;
}

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string Dir::child(std::string_view name) const { return join(path, name); }

std::expected<Dir, std::string> open_dir(const std::string& path) { return walk(path, false, 0, {}); }

std::expected<Dir, std::string> make_dirs(const std::string& path, mode_t mode, Owner owner) {
  return walk(path, true, mode, owner);
}

std::expected<Dir, std::string> open_dir_at(const Dir& parent, std::string_view name) {
  Dir d;
  d.path = parent.child(name);
  d.fd.reset(open_sub(parent.fd.get(), std::string(name), O_NOFOLLOW));
  if (!d.fd) return std::unexpected(open_error(parent.fd.get(), d.path, name, errno));
  return d;
}

std::expected<MadeDir, std::string> make_dir_at(const Dir& parent, std::string_view name, mode_t mode,
                                                Owner owner) {
  const std::string n(name);
  bool created = ::mkdirat(parent.fd.get(), n.c_str(), 0700) == 0;
  if (!created && errno != EEXIST) return std::unexpected(fail(parent.child(name), "cannot create", errno));
  auto d = open_dir_at(parent, name);
  if (!d) return std::unexpected(d.error());
  if (created) {
    // Made 0700 and only then given away, so nobody else can enter it
    // before it has its owner and mode.
    if (auto r = set_owner_mode(d->fd.get(), d->path, owner, mode); !r) return std::unexpected(r.error());
    if (!sync_dir(parent.fd.get())) return std::unexpected(fail(parent.path, "cannot fsync", errno));
  }
  return MadeDir{std::move(*d), created};
}

std::expected<Fd, std::string> open_file_at(const Dir& parent, std::string_view name, int flags,
                                            mode_t mode) {
  const std::string path = parent.child(name);
  Fd fd(::openat(parent.fd.get(), std::string(name).c_str(), flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK,
                 mode));
  if (!fd) return std::unexpected(open_error(parent.fd.get(), path, name, errno));
  if (auto r = single_regular_file(fd.get(), path, "a link to another file"); !r)
    return std::unexpected(r.error());
  if (!(flags & O_NONBLOCK)) ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  return fd;
}

std::expected<Fd, std::string> open_admin_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return std::unexpected(fail(path, "cannot open", errno));
  if (auto r = single_regular_file(fd.get(), path, "copy it, do not hard-link it"); !r)
    return std::unexpected(r.error());
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  return fd;
}

std::expected<struct stat, std::string> stat_fd(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return std::unexpected(fail(path, "cannot stat", errno));
  return st;
}

std::expected<void, std::string> check_owner(int fd, const std::string& path, uid_t uid) {
  auto st = stat_fd(fd, path);
  if (!st) return std::unexpected(st.error());
  if (st->st_uid != uid)
    return std::unexpected(fail(path, "belongs to uid " + std::to_string(st->st_uid) + ", not uid " +
                                          std::to_string(uid), 0));
  return {};
}

std::expected<void, std::string> set_owner_mode(int fd, const std::string& path, Owner owner, mode_t mode) {
  if ((owner.uid != static_cast<uid_t>(-1) || owner.gid != static_cast<gid_t>(-1)) &&
      ::fchown(fd, owner.uid, owner.gid) != 0)
    return std::unexpected(fail(path, "cannot change its owner", errno));
  if (::fchmod(fd, mode) != 0) return std::unexpected(fail(path, "cannot change its mode", errno));
  return {};
}

std::expected<struct stat, std::string> own_socket_at(const Dir& dir, std::string_view name, Owner owner,
                                                      mode_t mode) {
  const std::string path = dir.child(name);
  // An O_PATH descriptor on the entry itself (never through a link): the
  // checks and the changes below all concern that one inode.
  Fd node(::openat(dir.fd.get(), std::string(name).c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!node) return std::unexpected(fail(path, "cannot open", errno));
  auto st = stat_fd(node.get(), path);
  if (!st) return std::unexpected(st.error());
  if (!S_ISSOCK(st->st_mode) || st->st_nlink != 1)
    return std::unexpected(fail(path, "is not a socket with one link; refused", 0));
  if ((owner.uid != static_cast<uid_t>(-1) || owner.gid != static_cast<gid_t>(-1)) &&
      ::fchownat(node.get(), "", owner.uid, owner.gid, AT_EMPTY_PATH) != 0)
    return std::unexpected(fail(path, "cannot change its owner", errno));
  // chmod through the descriptor's /proc link reaches exactly that inode.
  const std::string via = "/proc/self/fd/" + std::to_string(node.get());
  if (::chmod(via.c_str(), mode) != 0) return std::unexpected(fail(path, "cannot change its mode", errno));
  auto after = stat_fd(node.get(), path);
  if (!after) return std::unexpected(after.error());
  return *after;
}

std::expected<std::string, std::string> read_secret_line(const std::string& path, std::string_view key) {
  errno = 0;
  std::ifstream f(path);
  if (!f)
    return std::unexpected(
        fmt::format("{}: cannot read {}: {}", key, path, std::strerror(errno != 0 ? errno : EIO)));
  std::string line;
  std::getline(f, line);
  const size_t b = line.find_first_not_of(" \t\r");
  const size_t e = line.find_last_not_of(" \t\r");
  std::string secret = b == std::string::npos ? std::string() : line.substr(b, e - b + 1);
  std::fill(line.begin(), line.end(), '\0');
  if (secret.empty()) return std::unexpected(fmt::format("{}: {} is empty", key, path));
  return secret;
}

}  // namespace sluice::safe
