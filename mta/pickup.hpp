// pickup.hpp — takes the messages local programs dropped into the maildrop.
//
// sluice-sendmail never talks to the daemon: it writes each message as one
// file into <spool_dir>/maildrop (format in docs/sendmail.md), fsynced and
// renamed into place, and exits. Pickup moves those files into the spool:
// at start (mail dropped while the daemon was down), whenever the directory
// changes (a uv_fs_event_t, inotify), and once a minute in case an event was
// missed. Each file is read, checked (envelope addresses with the SMTP
// grammar, the size limit) and committed through the intake (mta/intake.hpp)
// like an SMTP message — the intake writes the Received field naming the
// submitting uid, taken from the file's owner, never from its content, and
// hands the message to delivery — and the file is only unlinked once that
// commit is durable. A crash between the commit and the unlink picks the
// file up again at the next start: a duplicate, never a loss
// (docs/spool.md). A file that can never be accepted is moved to
// <spool_dir>/corrupt/ with a log line (a second hard link of some other
// file is only unlinked, never moved).
//
// Threads: one piece of work at a time runs on libuv's thread pool: it
// removes the files whose commits became durable, then scans — reads and
// checks each file and hands it to the intake without waiting for the
// commit, so the files of one scan share the spool's group commit and no
// pool thread ever blocks on a commit. The commits' answers arrive on the
// loop (committed()), which logs the accept and queues the file's removal.
// A file between its commit and its removal is in busy_ (under busy_mu_,
// the only state the pool thread shares), so no scan takes it twice.
// Every other method runs on the loop.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "conf/config.hpp"
#include "mta/intake.hpp"
#include "mta/uv/handle.hpp"
#include "queue/envelope.hpp"
#include "queue/spool.hpp"

namespace sluice::mta {

// The group whose members (sluice-sendmail, setgid) may write the maildrop.
inline constexpr const char* kMaildropGroup = "sluicedrop";

class Pickup {
 public:
  Pickup(uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool,
         Intake& intake);
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
  // loaded the spool (the intake hands every pickup to it).
  void start();
  void reload(std::shared_ptr<const conf::Config> config) { config_ = std::move(config); }
  // Stops watching; `done` runs once the work under way has finished, every
  // commit handed to the intake has been answered and its file removed, and
  // every handle is closed. Call before the spool closes.
  void close(std::function<void()> done);

  uint64_t picked_up() const { return picked_up_; }

  // A file a piece of work could not take or remove, for the log (a file
  // handed to the intake is logged when its commit is answered).
  struct Result {
    std::string file;
    bool retry = false;       // left in place for the next scan
    std::string error;        // why not
    uid_t uid = 0;
    bool discarded = false;   // a hard link: the name was removed, not set aside
    bool unlink_failed = false;  // committed, but the file could not be removed
  };

 private:
  struct Work;
  void scan();  // asks for a scan (now, or after the work under way)
  void work();  // starts the next piece of work, if any is due and none runs
  bool scan_dir(Work& w);  // thread pool; true when it removed a name
  void after_work(Work& w);
  void committed(const std::string& name, uid_t uid, bool ok, const queue::Envelope& env);
  void maybe_done();

  uv_loop_t* loop_;
  std::shared_ptr<const conf::Config> config_;
  queue::Spool& spool_;
  Intake& intake_;
  std::string dir_;
  uv::Handle<uv_fs_event_t> watch_;
  uv::Handle<uv_timer_t> timer_;
  bool watching_ = false;
  bool working_ = false;
  bool rescan_ = false;
  bool closing_ = false;
  bool low_space_logged_ = false;  // the reserve warning, once until a file goes through
  int open_handles_ = 0;
  uint64_t picked_up_ = 0;
  std::atomic<int> commits_{0};     // handed to the intake, not yet answered
  std::vector<std::string> unlink_;  // committed, to be removed by the next work
  std::mutex busy_mu_;
  std::unordered_set<std::string> busy_;  // between their commit and their removal
  std::function<void()> done_;
};

}  // namespace sluice::mta
