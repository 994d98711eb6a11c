// pickup.hpp — takes the messages local programs dropped into the maildrop.
//
// sluice-sendmail never talks to the daemon: it writes each message as one
// file into <spool_dir>/maildrop (format in docs/sendmail.md), fsynced and
// renamed into place, and exits. Pickup moves those files into the spool:
// at start (mail dropped while the daemon was down), whenever the directory
// changes (a uv_fs_event_t, inotify), and once a minute in case an event was
// missed. Each file is read, checked (envelope addresses with the SMTP
// grammar, the size limit), given a Received header naming the submitting
// uid — taken from the file's owner, never from its content — committed to
// the spool like an SMTP message, and only unlinked once that commit is
// durable. A crash between the commit and the unlink picks the file up again
// at the next start: a duplicate, never a loss (docs/spool.md). A file that
// can never be accepted is moved to <spool_dir>/corrupt/ with a log line
// (a second hard link of some other file is only unlinked, never moved).
//
// Threads: the directory scan and the files' work (reading, spool appends,
// waiting for the commit) run on libuv's thread pool, one scan at a time;
// results come back to the loop in the after-work callback, which logs them
// and hands each envelope to `committed` (delivery). Every other method runs
// on the loop.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "mta/uv/handle.hpp"
#include "queue/envelope.hpp"
#include "queue/spool.hpp"

namespace sluice::mta {

// The group whose members (sluice-sendmail, setgid) may write the maildrop.
inline constexpr const char* kMaildropGroup = "sluicedrop";

class Pickup {
 public:
  using Committed = std::function<void(const queue::Envelope&)>;
  Pickup(uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool,
         Committed committed);
  ~Pickup();

  // Creates <spool_dir>/maildrop if needed and sets its owner and mode:
  // owner `uid`, group sluicedrop, mode 1730 when that group exists (any
  // user may drop through the setgid sluice-sendmail; nobody can read or
  // remove another's file), else owner only, mode 0700. Makes spool_dir
  // itself traversable (at least 0711). Runs before
  // privileges are dropped (only root may hand the directory to a group the
  // daemon is not in), so it goes through conf/safe_file: no link is
  // followed, owner and mode are set on the open descriptor, and an existing
  // maildrop that is not `uid`'s is an error, never re-owned.
  std::expected<void, std::string> prepare(uid_t uid);
  // Starts watching and picks up what is waiting. Call after delivery has
  // loaded the spool: every pickup is handed to `committed` at once.
  void start();
  void reload(std::shared_ptr<const conf::Config> config) { config_ = std::move(config); }
  // Stops watching; `done` runs once a scan under way has finished and every
  // handle is closed. Call before the spool closes.
  void close(std::function<void()> done);

  uint64_t picked_up() const { return picked_up_; }

  struct Result {
    std::string file;
    bool ok = false;          // committed (and the file unlinked)
    bool retry = false;       // left in place for the next scan
    std::string error;        // why not
    uid_t uid = 0;
    queue::Envelope env;      // when ok
    bool discarded = false;   // a hard link: the name was removed, not set aside
  };

 private:
  struct Scan;
  void scan();
  void after_scan(std::vector<Result> results);
  void maybe_done();

  uv_loop_t* loop_;
  std::shared_ptr<const conf::Config> config_;
  queue::Spool& spool_;
  Committed committed_;
  std::string dir_;
  uv::Handle<uv_fs_event_t> watch_;
  uv::Handle<uv_timer_t> timer_;
  bool watching_ = false;
  bool scanning_ = false;
  bool rescan_ = false;
  bool closing_ = false;
  bool low_space_logged_ = false;  // the reserve warning, once until a file goes through
  int open_handles_ = 0;
  uint64_t picked_up_ = 0;
  std::function<void()> done_;
};

}  // namespace sluice::mta
