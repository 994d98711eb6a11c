// spool_impl.hpp — private to queue/spool*.cpp: the Spool's shared state
// (Spool::Impl) and the small types its parts pass between them.
//
// The spool is split along its seams, all members of one Impl:
//   spool.cpp          the public Spool API, Incoming, reading, open()
//   spool_writer.cpp   the writer thread: batches, writev, group commit,
//                      the index updates after a sync (finish())
//   spool_reclaim.cpp  deleting unneeded segment files and compaction
//   spool_recovery.cpp reading the segments back at open()
// Threads: the writer's state is touched by open() before the writer
// starts, then by the writer thread alone; the index (idx_mu), the read
// descriptors (fd_mu), the queue (q_mu) and the free-space figure
// (space_mu) are shared. Format and rules: docs/spool.md. Nothing logs.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "conf/safe_file.hpp"
#include "queue/record.hpp"
#include "queue/spool.hpp"

namespace sluice::queue::spool_detail {

namespace rec = record;

constexpr uint64_t kNoSeq = ~uint64_t(0);
// The segment being written is deleted when nothing in it is needed only
// from this size on: below it, a quiet server would create and delete a
// file (and sync the directory) for every message.
constexpr uint64_t kReclaimCurrentMin = 1u << 20;
// Compaction: a sealed segment is copied out when its live data is at most
// 1/kCompactRatio of its size; at most kCompactBudget bytes per round, one
// round at most every kCompactInterval.
constexpr uint64_t kCompactRatio = 4;
constexpr uint64_t kCompactBudget = 16u << 20;
constexpr std::chrono::milliseconds kCompactInterval{1000};

using safe::Fd;

inline std::string sys_error(std::string_view what, const std::string& path, int err) {
  std::string s(what);
  s += ' ';
  s += path;
  s += ": ";
  s += std::error_code(err, std::generic_category()).message();
  return s;
}

inline uint64_t id_value(std::string_view id) { return queue_id_value(id); }

inline int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline std::string segment_name(uint64_t seq) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, seq >>= 4) s[size_t(i)] = kHex[seq & 0xF];
  return s + ".seg";
}

// Where a piece of a message's content lies: `length` bytes at `offset` of
// segment `seq` (the content of one CHUNK record).
struct Extent {
  uint64_t seq = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Whether one of `extents` lies in segment `seq`.
inline bool occupies(const std::vector<Extent>& extents, uint64_t seq) {
  return std::any_of(extents.begin(), extents.end(), [seq](const Extent& e) { return e.seq == seq; });
}

// Calls f once for every segment a message occupies: those of its extents
// and that of its COMMIT record (unless kNoSeq). The extents are in content
// order: CHUNKs in increasing segment order, but a HEAD (written last,
// served first) may come first from a later segment.
template <class F>
void for_each_segment(const std::vector<Extent>& extents, uint64_t commit_seq, F f) {
  uint64_t last = kNoSeq;
  const uint64_t head = extents.empty() ? kNoSeq : extents.front().seq;
  for (size_t i = 0; i < extents.size(); ++i) {
    const uint64_t s = extents[i].seq;
    if (s == last || (i > 0 && s == head)) continue;
    f(last = s);
  }
  if (commit_seq != kNoSeq && !occupies(extents, commit_seq)) f(commit_seq);
}

// A committed, live message.
struct Entry {
  Envelope env;
  std::vector<Extent> extents;
  uint64_t commit_seq = 0;
  // Segments holding earlier COMMITs of it (updates, compaction), perhaps
  // deleted since: its DONE must outlive those still there.
  std::vector<uint64_t> old_commits;
};

// A message's COMMIT moved from segment `old_seq` to `new_seq` (an update,
// a compaction copy): `old_commits` remembers the old one, once.
inline void add_old_commit(std::vector<uint64_t>& old_commits, uint64_t old_seq, uint64_t new_seq) {
  if (old_seq != new_seq &&
      std::find(old_commits.begin(), old_commits.end(), old_seq) == old_commits.end())
    old_commits.push_back(old_seq);
}

// A message whose chunks are being written (writer thread only).
struct Pending {
  std::vector<Extent> extents;
  bool failed = false;  // a write or sync failed since its first chunk: its commit fails
};

// One unit of work for the writer.
struct Item {
  enum class Kind : uint8_t {
    chunk,   // bytes = CHUNK record
    head,    // bytes = HEAD record (content in front of the CHUNKs), just before its commit
    commit,  // bytes = COMMIT record, env and done set
    update,  // bytes = COMMIT record without content for a live message, env and done set
    done,    // bytes = DONE record, done set
    abort,   // nothing to write: forget the pending chunks of `id`
    reject,  // nothing to write: done(false)
  };
  Kind kind = Kind::chunk;
  bool ok = false;
  uint64_t id = 0;
  std::string bytes;
  Envelope env;
  Spool::CommitDone done;
  uint64_t seq = 0;     // where the writer put it
  uint64_t offset = 0;
  int64_t handed_ns = 0;  // commit: when commit() handed it over (steady clock), for the metrics
  bool tomb = false;    // a DONE holding its segment (seg_tombs) until finished
};

}  // namespace sluice::queue::spool_detail

namespace sluice::queue {

using namespace spool_detail;  // only spool*.cpp include this header

struct Spool::Impl {
  class IncomingImpl;

  Options opt;
  std::string seg_path;
  Fd lock_fd;
  Fd dir_fd;  // segments/, for openat, unlinkat and fsync
  QueueIdGenerator ids;
  std::vector<std::string> warnings;

  // Handed-over records, guarded by q_mu. DONE records are *lazy*: they do
  // not wake the writer, which takes them with the next other record or at
  // q_lazy_deadline, whichever comes first.
  std::mutex q_mu;
  std::condition_variable q_cv;
  std::vector<Item> queue;
  bool q_urgent = false;         // the queue holds a record that is not lazy
  bool q_lazy = false;           // the queue holds a lazy record, since q_lazy_deadline - delay
  std::chrono::steady_clock::time_point q_lazy_deadline;
  bool writer_sleeping = false;  // waiting with no deadline at all
  bool stopping = false;

  std::atomic<uint64_t> pending_bytes{0};
  std::atomic<uint64_t> n_commits{0};
  std::atomic<uint64_t> n_updates{0};
  std::atomic<uint64_t> n_syncs{0};
  std::atomic<uint64_t> n_bytes{0};
  std::atomic<uint64_t> n_deleted{0};
  std::atomic<uint64_t> n_compacted{0};

  // free_space(): the last measurement and the bytes appended by then.
  mutable std::mutex space_mu;
  mutable int64_t space_at_ns = 0;  // steady clock; 0: never
  mutable uint64_t space_free = 0;
  mutable uint64_t space_bytes = 0;

  // Live messages by numeric id; written by the writer after a sync.
  mutable std::mutex idx_mu;
  std::map<uint64_t, Entry> index;

  // Read-only descriptors for read_body, by segment; entries below
  // first_seq are gone (reclaimed).
  mutable std::mutex fd_mu;
  mutable std::map<uint64_t, std::shared_ptr<Fd>> read_fds;
  uint64_t first_seq = 0;

  // The writer's state: touched by open() before the thread starts, then by
  // the writer thread alone.
  std::thread writer;
  Fd cur_fd;
  uint64_t cur_seq = 0;
  uint64_t cur_size = 0;     // bytes placed in the current segment (written or in iov)
  uint64_t cur_records = 0;
  bool cur_dirty = false;    // written since its last fdatasync
  bool dir_dirty = false;    // a segment was created since the last directory fsync
  uint64_t batch_seq = kNoSeq;
  uint64_t batch_start = 0;
  uint64_t next_seq = 1;
  std::map<uint64_t, uint64_t> seg_refs;  // every segment file, oldest first -> messages using it
  // Reclamation across segments (writer only; see reclaim()):
  // seg_tombs[D]: DONE records in D that must stay — one per other segment
  // still holding a COMMIT of their message — plus DONEs in D not yet
  // finished; seg_waiters[S]: the D counting S, one entry per count.
  std::unordered_map<uint64_t, uint64_t> seg_tombs;
  std::unordered_map<uint64_t, std::vector<uint64_t>> seg_waiters;
  std::unordered_map<uint64_t, uint64_t> seg_size;  // bytes in each sealed segment file
  std::vector<uint64_t> unlinked;                   // unlinked, directory not yet synced
  // Segments recovery found damaged or with a bad header: deleted only once
  // every older segment is gone (as before issue 11), so that an
  // administrator has time to copy them away.
  std::unordered_set<uint64_t> damaged;
  std::chrono::steady_clock::time_point next_compact;
  std::unordered_map<uint64_t, Pending> pending;
  std::vector<iovec> iov;
  // Within one batch: ids whose liveness the batch's earlier records change
  // (true: committed, false: removed), for checking updates against.
  std::unordered_map<uint64_t, bool> batch_live;
  // DONE records written but not yet synced, with the callbacks handed over
  // after them (kept in order), their ids, and when they must be synced.
  std::vector<Item> unsynced;
  std::unordered_set<uint64_t> unsynced_ids;
  std::chrono::steady_clock::time_point unsynced_deadline;
  std::chrono::steady_clock::time_point batch_deadline;  // of the batch's lazy records

  void enqueue(Item* items, size_t n, bool lazy = false);
  void run();
  void process(std::vector<Item>& batch);
  bool place(Item& it);
  bool flush();
  bool rotate();
  bool sync();
  void sync_unsynced();
  void fail(std::vector<Item>& batch);
  void finish(std::vector<Item>& batch, bool ok);
  void reclaim();
  void forget_segment(uint64_t seq);
  void add_tombs(uint64_t done_seq, const std::vector<uint64_t>& old_commits, uint64_t commit_seq);
  void compact();
  void pin(uint64_t seq) { ++seg_refs[seq]; }
  void unpin(uint64_t seq) {
    auto it = seg_refs.find(seq);
    if (it != seg_refs.end() && it->second > 0) --it->second;
  }

  std::expected<void, std::string> recover();
  std::expected<std::shared_ptr<Fd>, std::string> read_fd(uint64_t seq) const;
};

}  // namespace sluice::queue
