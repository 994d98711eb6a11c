// maildrop_io.cpp — see maildrop_io.hpp.
#include "mta/sendmail/maildrop_io.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "mta/sendmail/maildrop.hpp"

namespace sluice::sendmail {

namespace {

std::string errno_text(int e) { return std::strerror(e); }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// EFBIG: the caller's file size limit (RLIMIT_FSIZE, with SIGXFSZ ignored).
bool out_of_space(int e) { return e == ENOSPC || e == EDQUOT || e == EFBIG; }

// What the stop-signal handler must do, set by write_maildrop(): nothing
// written yet, a temporary file to remove (g_tmp_dir, g_tmp_name), or the
// message is queued. The name is filled in before the state says so.
enum : int { kNothing = 0, kTemporary = 1, kQueued = 2 };
volatile sig_atomic_t g_state = kNothing;
volatile sig_atomic_t g_tmp_dir = -1;
char g_tmp_name[256];

extern "C" void on_stop_signal(int) {
  // Async-signal-safe only: unlinkat and _exit.
  if (g_state == kQueued) ::_exit(EX_OK);
  if (g_state == kTemporary) ::unlinkat(g_tmp_dir, g_tmp_name, 0);
  ::_exit(EX_TEMPFAIL);
}

constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

// Holds the stop signals while alive (a pending one is delivered when it ends).
class HoldSignals {
 public:
  HoldSignals() {
    sigset_t set;
    ::sigemptyset(&set);
    for (int sig : kStopSignals) ::sigaddset(&set, sig);
    ::sigprocmask(SIG_BLOCK, &set, &old_);
  }
  ~HoldSignals() { ::sigprocmask(SIG_SETMASK, &old_, nullptr); }
  HoldSignals(const HoldSignals&) = delete;
  HoldSignals& operator=(const HoldSignals&) = delete;

 private:
  sigset_t old_;
};

std::string permission_hint(const std::string& dir) {
  return fmt::format(
      "permission denied writing to {}: sluice-sendmail must be installed setgid group "
      "sluicedrop (mode 2755, see docs/install.md); a -C option or SLUICE_CONFIG gives up "
      "that privilege for users other than root",
      dir);
}

// A failure while writing an existing file: out of space is temporary, the
// rest is an I/O error.
IoError write_error(std::string_view what, const std::string& path, int e) {
  if (out_of_space(e))
    return {EX_TEMPFAIL, fmt::format("cannot {} {}: {}; try again later", what, path, errno_text(e))};
  return {EX_IOERR, fmt::format("cannot {} {}: {}", what, path, errno_text(e))};
}

}  // namespace

std::expected<std::string, IoError> write_maildrop(const std::string& dir, std::string_view data) {
  // O_PATH needs only search permission: the group may not read mode 1730.
  Fd dfd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0) {
    const int e = errno;
    if (e == ENOENT)
      return std::unexpected(IoError{
          EX_UNAVAILABLE,
          fmt::format("the maildrop directory {} does not exist: has sluiced ever started?", dir)});
    if (e == EACCES || e == EPERM) return std::unexpected(IoError{EX_NOPERM, permission_hint(dir)});
    return std::unexpected(IoError{
        EX_UNAVAILABLE, fmt::format("cannot open the maildrop directory {}: {}", dir, errno_text(e))});
  }

  std::string name, tmp;
  int raw_fd = -1;
  {
    // The signal handler learns the name only once the file is ours: a
    // signal during creation must not remove another process's file.
    HoldSignals hold;
    for (int attempt = 0; attempt < 16; ++attempt) {
      name = maildrop_file_name(wall_clock_us(), static_cast<uint32_t>(::getpid()), random64());
      tmp = name + ".tmp";
      raw_fd = ::openat(dfd.get(), tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                        0644);
      if (raw_fd >= 0 || errno != EEXIST) break;
    }
    if (raw_fd >= 0 && tmp.size() < sizeof g_tmp_name) {
      std::memcpy(g_tmp_name, tmp.c_str(), tmp.size() + 1);
      g_tmp_dir = dfd.get();
      g_state = kTemporary;
    }
  }
  if (raw_fd < 0) {
    const int e = errno;
    const std::string path = dir + "/" + tmp;
    if (e == EACCES || e == EPERM) return std::unexpected(IoError{EX_NOPERM, permission_hint(dir)});
    if (out_of_space(e))
      return std::unexpected(IoError{
          EX_TEMPFAIL, fmt::format("cannot create {}: {}; try again later", path, errno_text(e))});
    return std::unexpected(
        IoError{EX_CANTCREAT, fmt::format("cannot create {}: {}", path, errno_text(e))});
  }
  Fd fd(raw_fd);
  const std::string tmp_path = dir + "/" + tmp;
  const std::string final_path = dir + "/" + name;
  auto fail_tmp = [&](std::string_view what, int e) {
    ::unlinkat(dfd.get(), tmp.c_str(), 0);
    g_state = kNothing;
    return std::unexpected(write_error(what, tmp_path, e));
  };

  for (size_t done = 0; done < data.size();) {
    const ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_tmp("write", errno);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail_tmp("fsync", errno);
  // From the rename on, a stop signal waits until the outcome is known.
  HoldSignals hold;
  if (::renameat(dfd.get(), tmp.c_str(), dfd.get(), name.c_str()) != 0)
    return fail_tmp("rename", errno);

  // The new name must survive a crash before we report success.
  int rc = -1, e = 0;
  if (Fd dir_read(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)); dir_read.get() >= 0) {
    rc = ::fsync(dir_read.get());
    e = errno;
  } else if (errno == EACCES) {
    rc = ::syncfs(fd.get());
    e = errno;
  } else {
    e = errno;
  }
  if (rc == 0 && ::close(fd.release()) != 0) {
    rc = -1;
    e = errno;
  }
  if (rc != 0) {
    ::unlinkat(dfd.get(), name.c_str(), 0);
    g_state = kNothing;
    return std::unexpected(write_error("sync", final_path, e));
  }
  g_state = kQueued;
  return name;
}

void install_cleanup_handlers() {
  g_state = kNothing;  // nothing written yet by this process
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  ::sigemptyset(&ign.sa_mask);
  ::sigaction(SIGXFSZ, &ign, nullptr);
  struct sigaction stop {};
  stop.sa_handler = on_stop_signal;
  ::sigemptyset(&stop.sa_mask);
  for (int sig : kStopSignals) ::sigaddset(&stop.sa_mask, sig);
  for (int sig : kStopSignals) ::sigaction(sig, &stop, nullptr);
}

bool running_setgid() { return ::getegid() != ::getgid(); }

std::expected<void, IoError> drop_setgid() {
  gid_t r = 0, e = 0, s = 0;
  if (::getresgid(&r, &e, &s) != 0)
    return std::unexpected(IoError{EX_OSERR, fmt::format("getresgid: {}", errno_text(errno))});
  if (e == r && s == r) return {};
  if (::setresgid(r, r, r) != 0)
    return std::unexpected(IoError{
        EX_OSERR, fmt::format("cannot give up the setgid privilege: {}", errno_text(errno))});
  gid_t r2 = 0, e2 = 0, s2 = 0;
  if (::getresgid(&r2, &e2, &s2) != 0 || r2 != r || e2 != r || s2 != r)
    return std::unexpected(IoError{EX_OSERR, "the setgid privilege is still held after setresgid"});
  return {};
}

bool ensure_standard_descriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    const int n = ::open("/dev/null", O_RDWR);
    if (n != fd) {
      if (n >= 0) ::close(n);
      return false;
    }
  }
  return true;
}

int64_t wall_clock_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

int32_t utc_offset_at(int64_t unix_seconds) {
  const time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm {};
  if (::localtime_r(&t, &tm) == nullptr) return 0;
  return static_cast<int32_t>(tm.tm_gmtoff);
}

uint64_t random64() {
  uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) == static_cast<ssize_t>(sizeof v)) return v;
  // splitmix64 over the clock and pid: unique enough together with the
  // time and pid that are in every name anyway.
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t z = (static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(ts.tv_sec) << 20) ^
               (static_cast<uint64_t>(::getpid()) << 40)) +
               0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::string login_name(uid_t uid) {
  long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(hint > 0 ? static_cast<size_t>(hint) : 4096);
  for (;;) {
    passwd pw{};
    passwd* found = nullptr;
    const int rc = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc == 0 && found != nullptr && found->pw_name != nullptr && found->pw_name[0] != '\0')
      return found->pw_name;
    return fmt::format("uid{}", uid);
  }
}

}  // namespace sluice::sendmail
