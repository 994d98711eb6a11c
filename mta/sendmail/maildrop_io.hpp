// maildrop_io.hpp — sluice-sendmail's system calls: writing a maildrop file
// durably, the setgid privilege, the standard descriptors, the clock and
// randomness. Everything here is synchronous and meant for the short-lived
// sluice-sendmail process (single-threaded).
//
// Failures come back as an IoError: an exit code from sysexits.h and one
// line for standard error (without the program name). See docs/sendmail.md
// for which condition gives which code.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace sluice::sendmail {

struct IoError {
  int exit_code;
  std::string message;
};

// Writes `data` as a new file in `maildrop_dir`: creates NAME.tmp (O_CREAT |
// O_EXCL | O_NOFOLLOW, mode 0644 under the caller's umask), writes, fsyncs,
// renames it to NAME (maildrop_file_name), and makes the rename durable
// (fsync of the directory when it can be opened for reading; otherwise, as
// with the usual mode 1730 where the group may not read it, syncfs() of the
// file system holding it). Returns NAME. On any failure after the file was
// created, the file (under either name) is removed before returning.
//   directory missing            EX_UNAVAILABLE
//   permission denied            EX_NOPERM (with a hint about sluicedrop)
//   no space / quota / file size limit (EFBIG; SIGXFSZ must be ignored,
//   see install_cleanup_handlers)  EX_TEMPFAIL
//   other creation failures      EX_CANTCREAT
//   write, fsync, rename errors  EX_IOERR
std::expected<std::string, IoError> write_maildrop(const std::string& maildrop_dir,
                                                   std::string_view data);

// For a process that writes maildrop files (sluice-sendmail): ignores
// SIGXFSZ, so that a file size limit (`ulimit -f`) makes write() fail with
// EFBIG (handled: the file is removed, EX_TEMPFAIL) instead of killing the
// process with the partial file left behind; and makes SIGINT, SIGTERM,
// SIGHUP and SIGQUIT remove the temporary file write_maildrop() is writing,
// if any, and exit with EX_TEMPFAIL. The handler is async-signal-safe: it
// only calls unlinkat() on a descriptor and a name prepared before the file
// was created, and _exit(). Once the file has its final name these signals
// are held until write_maildrop() returns, so the exit code never lies
// about whether the message was queued.
void install_cleanup_handlers();

// True when the effective group differs from the real one (setgid run).
bool running_setgid();
// Gives up the setgid privilege for good: real, effective and saved group
// ids all become the real group id; checked afterwards. No-op when not
// setgid. Returns an IoError (EX_OSERR) when the kernel refuses.
std::expected<void, IoError> drop_setgid();

// Makes sure descriptors 0, 1 and 2 are open (on /dev/null when they were
// closed), so that no file opened later can become standard output or error
// — a classic attack on set-id programs. False when that is impossible.
bool ensure_standard_descriptors();

int64_t wall_clock_us();
// The local time zone's offset from UTC at `unix_seconds`, in seconds.
int32_t utc_offset_at(int64_t unix_seconds);
// 64 bits from getrandom(); falls back to mixing the clock and pid when the
// kernel cannot provide them (only uniqueness is needed, not secrecy).
uint64_t random64();
// The real user's login name (getpwuid_r), or "uid<N>" when it has none.
std::string login_name(uid_t uid);

}  // namespace sluice::sendmail
