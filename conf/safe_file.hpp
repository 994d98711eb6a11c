// safe_file.hpp — opening, creating and owning files where another account
// could have planted a link (Postfix's safe_open(), for Sluice's needs).
//
// The rule: never follow, chown or chmod by path what another account can
// write; open relative to a checked directory descriptor with O_NOFOLLOW,
// check with fstat, fchown/fchmod the descriptor, refuse files with two links.
//
// A `Dir` is an open directory descriptor with the path it was reached by
// (for messages only; nothing is ever looked up by that path again). Paths an
// administrator writes (spool_dir, the control socket, TLS files) are walked
// component by component: a symbolic link is followed only inside a
// directory that belongs to root (or to the caller) and that nobody else
// may write — the administrator's own links — never in one another account
// can write. Everything below such a path is opened with O_NOFOLLOW.
//
// Errors come back as std::expected with a message that names the path;
// nothing here logs (the callers do). No state; safe from any thread.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace sluice::safe {

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset(int fd = -1);
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

struct Dir {
  Fd fd;
  std::string path;
  std::string child(std::string_view name) const;  // path + "/" + name, for messages
};

// Who gets a file or directory; -1 leaves that id alone.
struct Owner {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
};

// Opens the existing directory `path` (walked as described above; the last
// component may not be a link unless its directory is trusted, like any other).
std::expected<Dir, std::string> open_dir(const std::string& path);
// The same, creating missing components with `mode` (whatever the umask),
// each one fsynced into its parent; `owner` is given to the directories it
// creates (fchown on their descriptors), never to existing ones.
std::expected<Dir, std::string> make_dirs(const std::string& path, mode_t mode, Owner owner = {});

// A subdirectory of `parent`, never through a link.
std::expected<Dir, std::string> open_dir_at(const Dir& parent, std::string_view name);
// The same, created when missing (mkdirat, then opened, then fchown to
// `owner` and fchmod to `mode` on its descriptor, and the parent fsynced).
// `created` says whether it was made now; an existing one is left as it is.
struct MadeDir {
  Dir dir;
  bool created = false;
};
std::expected<MadeDir, std::string> make_dir_at(const Dir& parent, std::string_view name, mode_t mode,
                                                Owner owner = {});

// A regular file in `parent` with exactly one link, never through a link:
// `flags` are open(2)'s (O_RDONLY, O_RDWR | O_CREAT, O_WRONLY | O_CREAT |
// O_EXCL ...); O_NOFOLLOW and O_CLOEXEC are added. A FIFO or device is
// refused without blocking. A file made now gets `mode` (umask applies).
std::expected<Fd, std::string> open_file_at(const Dir& parent, std::string_view name, int flags,
                                            mode_t mode = 0600);

// A file an administrator names (a certificate, a private key): links are
// followed (certbot's live/ directory is links into archive/), but the file
// itself must be a regular file with one link. Read-only.
std::expected<Fd, std::string> open_admin_file(const std::string& path);

// The first line of a secret file (a relayhost or Redis password), without
// surrounding blanks; an error naming `key` and the file when it cannot be
// read or the line is empty.
std::expected<std::string, std::string> read_secret_line(const std::string& path, std::string_view key);

// fstat of an open descriptor, with `path` in the message.
std::expected<struct stat, std::string> stat_fd(int fd, const std::string& path);
// Error unless the open file or directory belongs to `uid`.
std::expected<void, std::string> check_owner(int fd, const std::string& path, uid_t uid);
// fchown (when either id is set) then fchmod, on the descriptor.
std::expected<void, std::string> set_owner_mode(int fd, const std::string& path, Owner owner,
                                                mode_t mode);

// After bind(2) made the Unix socket `name` in `dir`: checks that the entry
// is a socket with one link and gives it `owner` and `mode` without
// following a link (fchownat/fchmodat relative to the directory; a socket's
// own descriptor cannot change the file). Returns its lstat.
std::expected<struct stat, std::string> own_socket_at(const Dir& dir, std::string_view name, Owner owner,
                                                      mode_t mode);

}  // namespace sluice::safe
