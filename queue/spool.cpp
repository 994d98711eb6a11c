// spool.cpp — the segment log: writer thread with group commit, the index of
// live messages, reading, recovery and reclamation of segment files.
//
// Format, durability and recovery rules: docs/spool.md. In short: producers
// build finished records (header, id, body, CRC) and queue them; the writer
// takes all queued records at once, appends them with writev, fdatasyncs once
// when a COMMIT is among them, updates the index and only then runs the
// callbacks. DONE records are lazy: they do not wake the writer (they wait in
// the queue for the next other record), and once written without a COMMIT
// they wait (in `unsynced`) for the next flush; either way at most
// Options::done_sync_delay after they were handed over.
// Segments are deleted in any order once nothing in them is needed
// (reclaim(): live content, live envelopes, and DONE records that still hide
// a COMMIT in another segment); sparse sealed segments are compacted
// (compact(): their live messages copied to the current segment).
// Failures come back as done(false) or open() errors; nothing here logs.
#include "queue/spool.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "conf/safe_file.hpp"
#include "queue/record.hpp"

namespace sluice::queue {
namespace {

namespace rec = record;

constexpr size_t kReadPiece = 64 * 1024;     // read_body hands out at most this much at once
constexpr size_t kMaxChunkSize = 64u << 20;  // Options::chunk_size limit
constexpr size_t kIovMax = IOV_MAX;
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
// free_space(): how long a measurement is trusted.
constexpr int64_t kSpaceRefreshNs = 1'000'000'000;
constexpr int64_t kSpaceLowRefreshNs = 100'000'000;

using safe::Fd;

std::string sys_error(std::string_view what, const std::string& path, int err) {
  std::string s(what);
  s += ' ';
  s += path;
  s += ": ";
  s += std::error_code(err, std::generic_category()).message();
  return s;
}

uint64_t id_value(std::string_view id) { return queue_id_value(id); }

std::string segment_name(uint64_t seq) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, seq >>= 4) s[size_t(i)] = kHex[seq & 0xF];
  return s + ".seg";
}

std::optional<uint64_t> parse_segment_name(std::string_view name) {
  if (name.size() != 20 || !name.ends_with(".seg")) return std::nullopt;
  for (char c : name.substr(0, 16))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  return id_value(name.substr(0, 16));
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(size_t(n));
  }
  return true;
}

// Where a piece of a message's content lies: `length` bytes at `offset` of
// segment `seq` (the content of one CHUNK record).
struct Extent {
  uint64_t seq = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Calls f once for every segment a message occupies: those of its extents
// (in increasing order) and that of its COMMIT record (unless kNoSeq).
template <class F>
void for_each_segment(const std::vector<Extent>& extents, uint64_t commit_seq, F f) {
  uint64_t last = kNoSeq;
  for (const Extent& e : extents)
    if (e.seq != last) f(last = e.seq);
  if (commit_seq != kNoSeq && commit_seq != last) f(commit_seq);
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
void add_old_commit(std::vector<uint64_t>& old_commits, uint64_t old_seq, uint64_t new_seq) {
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
  bool tomb = false;    // a DONE holding its segment (seg_tombs) until finished
};

}  // namespace

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

// ---------------------------------------------------------------------------
// Incoming: buffers content into CHUNK records of chunk_size content bytes.
// The buffer starts with room for the record header and the id, so a full
// buffer is sealed in place and moved to the writer without a copy.

class Spool::Impl::IncomingImpl final : public Spool::Incoming {
 public:
  explicit IncomingImpl(Impl& s) : s_(s), id_(s.ids.next()), num_(id_value(id_)) { start_buffer(); }

  ~IncomingImpl() override {
    if (committed_ || !sent_chunk_) return;  // nothing of it reached the writer
    Item it;
    it.kind = Item::Kind::abort;
    it.id = num_;
    s_.enqueue(&it, 1);
  }

  const std::string& id() const override { return id_; }
  uint64_t size() const override { return size_; }

  void append(std::string_view bytes) override {
    if (committed_) std::abort();  // API misuse: content after commit()
    const size_t chunk = s_.opt.chunk_size;
    while (!bytes.empty()) {
      size_t take = std::min(chunk - (buf_.size() - rec::kPrefixSize), bytes.size());
      buf_.append(bytes.data(), take);
      size_ += take;
      bytes.remove_prefix(take);
      if (buf_.size() - rec::kPrefixSize == chunk) send_chunk();
    }
  }

  void commit(Envelope env, CommitDone done) override {
    if (committed_) std::abort();  // API misuse: commit() twice
    committed_ = true;
    env.id = id_;
    env.size = size_;
    Item items[2];
    size_t n = 0;
    if (buf_.size() > rec::kPrefixSize) {
      rec::seal(rec::Type::chunk, buf_.data(), buf_.size() - rec::kHeaderSize);
      items[n].kind = Item::Kind::chunk;
      items[n].id = num_;
      items[n++].bytes = std::move(buf_);
    }
    Item& c = items[n++];
    c.kind = Item::Kind::commit;
    c.id = num_;
    c.bytes.reserve(rec::kPrefixSize + 256);
    c.bytes.append(rec::kHeaderSize, '\0');
    c.bytes.append(id_);
    encode_append(env, c.bytes);
    rec::seal(rec::Type::commit, c.bytes.data(), c.bytes.size() - rec::kHeaderSize);
    c.env = std::move(env);
    c.done = std::move(done);
    s_.enqueue(items, n);
  }

 private:
  void start_buffer() {
    buf_ = std::string();
    // Small messages are the common case: grow to a full chunk only once
    // the message has shown it needs one.
    size_t first = sent_chunk_ ? s_.opt.chunk_size : std::min<size_t>(s_.opt.chunk_size, 4096);
    buf_.reserve(rec::kPrefixSize + first);
    buf_.append(rec::kHeaderSize, '\0');
    buf_.append(id_);
  }

  void send_chunk() {
    rec::seal(rec::Type::chunk, buf_.data(), buf_.size() - rec::kHeaderSize);
    Item it;
    it.kind = Item::Kind::chunk;
    it.id = num_;
    it.bytes = std::move(buf_);
    sent_chunk_ = true;
    s_.enqueue(&it, 1);
    start_buffer();
  }

  Impl& s_;
  std::string id_;
  uint64_t num_;
  std::string buf_;  // header space + id + content not yet handed over
  uint64_t size_ = 0;
  bool sent_chunk_ = false;
  bool committed_ = false;
};

// ---------------------------------------------------------------------------
// The writer.

void Spool::Impl::enqueue(Item* items, size_t n, bool lazy) {
  uint64_t bytes = 0;
  for (size_t i = 0; i < n; ++i) bytes += items[i].bytes.size();
  pending_bytes.fetch_add(bytes, std::memory_order_relaxed);
  bool wake = false;
  {
    std::lock_guard lk(q_mu);
    if (!lazy) {
      wake = !q_urgent;  // the writer sleeps only while nothing urgent waits
      q_urgent = true;
    } else if (!q_lazy) {
      q_lazy = true;
      q_lazy_deadline = std::chrono::steady_clock::now() + opt.done_sync_delay;
      wake = writer_sleeping;  // it must learn the deadline
    }
    for (size_t i = 0; i < n; ++i) queue.push_back(std::move(items[i]));
  }
  if (wake) q_cv.notify_one();
}

void Spool::Impl::run() {
  // Signals are the event loop's business, never the writer's.
  sigset_t all;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
  ::pthread_setname_np(::pthread_self(), "spool-writer");  // for top -H, perf and the tests
  using Clock = std::chrono::steady_clock;
  std::vector<Item> batch;
  for (;;) {
    bool lazy_due = false;  // took only lazy records, because their time had come
    {
      std::unique_lock lk(q_mu);
      // Sleep until something urgent comes, or lazy records (queued, or
      // written and waiting for a sync) reach their deadline.
      for (;;) {
        if (stopping || q_urgent) break;
        auto deadline = Clock::time_point::max();
        if (q_lazy) deadline = q_lazy_deadline;
        if (!unsynced.empty()) deadline = std::min(deadline, unsynced_deadline);
        if (deadline == Clock::time_point::max()) {
          writer_sleeping = true;
          q_cv.wait(lk);
          writer_sleeping = false;
          continue;
        }
        if (Clock::now() >= deadline) break;
        q_cv.wait_until(lk, deadline);
      }
      if (queue.empty()) {
        if (!unsynced.empty()) {
          lk.unlock();
          sync_unsynced();  // nothing came to flush them in time (or stopping)
          continue;
        }
        if (stopping) break;  // everything is written and synced
        continue;
      }
      lazy_due = !q_urgent;
      batch_deadline = q_lazy ? q_lazy_deadline : Clock::now() + opt.done_sync_delay;
      batch.swap(queue);  // both vectors keep their capacity
      q_urgent = q_lazy = false;
    }
    process(batch);
    batch.clear();
    if (lazy_due && !unsynced.empty()) sync_unsynced();  // they waited long enough
    if (const auto now = Clock::now(); now >= next_compact) {
      next_compact = now + kCompactInterval;
      compact();
    }
  }
}

// Assigns the record its place in the current segment (rotating first if
// the segment is full) and queues it for writev.
bool Spool::Impl::place(Item& it) {
  if (!cur_fd || (cur_records > 0 && cur_size >= opt.segment_size)) {
    if (!flush() || !rotate()) return false;
  }
  it.seq = cur_seq;
  it.offset = cur_size;
  cur_size += it.bytes.size();
  ++cur_records;
  iov.push_back({it.bytes.data(), it.bytes.size()});
  if (iov.size() == kIovMax) return flush();
  return true;
}

bool Spool::Impl::flush() {
  size_t i = 0;
  while (i < iov.size()) {
    ssize_t n = ::writev(cur_fd.get(), iov.data() + i, int(std::min(iov.size() - i, kIovMax)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    n_bytes.fetch_add(uint64_t(n), std::memory_order_relaxed);
    cur_dirty = true;
    size_t left = size_t(n);
    while (left > 0) {  // skip what was written, also the part of a short write
      if (left >= iov[i].iov_len) {
        left -= iov[i].iov_len;
        ++i;
      } else {
        iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + left;
        iov[i].iov_len -= left;
        left = 0;
      }
    }
  }
  iov.clear();
  return true;
}

// Closes the current segment (synced, so that the extents of messages still
// being written stay valid) and starts a new one.
bool Spool::Impl::rotate() {
  if (cur_fd) {
    if (cur_dirty) {
      if (::fdatasync(cur_fd.get()) != 0) return false;
      n_syncs.fetch_add(1, std::memory_order_relaxed);
      cur_dirty = false;
    }
    cur_fd.reset();
    seg_size[cur_seq] = cur_size;
  }
  uint64_t seq = next_seq++;
  std::string name = segment_name(seq);
  Fd fd(::openat(dir_fd.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return false;
  dir_dirty = true;
  if (!write_all(fd.get(), rec::kSegmentMagic)) {
    // Leave no half-made file behind; if it cannot go, reclamation removes it later.
    if (::unlinkat(dir_fd.get(), name.c_str(), 0) != 0) seg_refs.emplace(seq, 0);
    return false;
  }
  seg_refs.emplace(seq, 0);
  cur_fd = std::move(fd);
  cur_seq = seq;
  cur_size = rec::kSegmentMagic.size();
  cur_records = 0;
  cur_dirty = true;
  return true;
}

bool Spool::Impl::sync() {
  if (::fdatasync(cur_fd.get()) != 0) return false;
  n_syncs.fetch_add(1, std::memory_order_relaxed);
  cur_dirty = false;
  if (dir_dirty) {
    if (::fsync(dir_fd.get()) != 0) return false;
    dir_dirty = false;
  }
  return true;
}

void Spool::Impl::process(std::vector<Item>& batch) {
  bool ok = true;
  bool need_sync = false;
  bool any_done = false;
  uint64_t bytes = 0;
  batch_seq = cur_fd ? cur_seq : kNoSeq;
  batch_start = cur_size;
  batch_live.clear();
  for (Item& it : batch) {
    bytes += it.bytes.size();
    if (!ok) continue;
    switch (it.kind) {
      case Item::Kind::chunk: {
        Pending& p = pending[it.id];
        if (p.failed) break;  // its commit fails anyway: spare the disk
        if (!place(it)) {
          ok = false;
          break;
        }
        Extent e{it.seq, it.offset + rec::kPrefixSize, it.bytes.size() - rec::kPrefixSize};
        if (p.extents.empty() || p.extents.back().seq != e.seq) pin(e.seq);
        p.extents.push_back(e);
        break;
      }
      case Item::Kind::commit: {
        auto pit = pending.find(it.id);
        if (pit != pending.end() && pit->second.failed) {
          batch_live[it.id] = false;
          break;
        }
        if (!place(it)) ok = false;
        batch_live[it.id] = true;
        need_sync = true;
        break;
      }
      case Item::Kind::update: {
        // Only the writer changes the index, so it may read it unlocked. A
        // DONE written in an earlier batch but not yet synced is still in the
        // index: it counts as removed.
        auto bl = batch_live.find(it.id);
        bool live = bl != batch_live.end()
                        ? bl->second
                        : index.contains(it.id) && !unsynced_ids.contains(it.id);
        if (!live) {  // never committed, or removed before this record: write nothing
          it.kind = Item::Kind::reject;
          break;
        }
        if (!place(it)) ok = false;
        need_sync = true;
        break;
      }
      case Item::Kind::done:
        if (!place(it)) {
          ok = false;
        } else {
          it.tomb = true;  // the segment must not go before the DONE is finished
          ++seg_tombs[it.seq];
        }
        batch_live[it.id] = false;
        any_done = true;
        if (opt.done_sync_delay.count() <= 0) need_sync = true;
        break;
      case Item::Kind::abort:
      case Item::Kind::reject:
        break;
    }
  }
  if (ok) ok = flush();
  if (ok && need_sync) ok = sync();
  pending_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  if (!ok) {
    // Whatever was written and not yet synced is unknown now, earlier DONEs too.
    fail(batch);
    finish(unsynced, false);
    unsynced.clear();
    unsynced_ids.clear();
    finish(batch, false);
    return;
  }
  if (need_sync) {
    // This flush covered the DONEs waiting from earlier batches: report them
    // first, they were handed over first.
    finish(unsynced, true);
    unsynced.clear();
    unsynced_ids.clear();
    finish(batch, true);
    return;
  }
  if (any_done || !unsynced.empty()) {
    // Not synced: the DONEs wait, and so does every later callback (rejected
    // updates and removes), to keep the callbacks in order.
    if (unsynced.empty()) unsynced_deadline = batch_deadline;
    for (Item& it : batch) {
      if (it.kind != Item::Kind::done && it.kind != Item::Kind::reject) continue;
      if (it.kind == Item::Kind::done) unsynced_ids.insert(it.id);
      unsynced.push_back(std::move(it));
      it.kind = Item::Kind::chunk;  // the moved-from slot: nothing left to do
      it.done = nullptr;
    }
  }
  finish(batch, true);
}

// The DONE records waiting since done_sync_delay: flush them on their own.
void Spool::Impl::sync_unsynced() {
  bool ok = !cur_fd || !cur_dirty || sync();
  if (!ok) {
    std::vector<Item> none;
    fail(none);
  }
  std::vector<Item> items = std::move(unsynced);
  unsynced.clear();
  unsynced_ids.clear();
  finish(items, ok);
}

// A write or sync failed: what the current segment holds beyond its last
// good sync is unknown. Every message still being written fails its commit,
// and the next record starts a new segment.
void Spool::Impl::fail(std::vector<Item>& batch) {
  iov.clear();
  for (auto& [id, p] : pending) p.failed = true;
  for (Item& it : batch)
    if (it.kind == Item::Kind::chunk) pending[it.id].failed = true;
  if (cur_fd) {
    // Best effort: take this batch's records back out, so that a commit
    // reported as failed does not come back after a restart.
    uint64_t keep = batch_seq == cur_seq ? batch_start : rec::kSegmentMagic.size();
    (void)!::ftruncate(cur_fd.get(), off_t(keep));
    cur_fd.reset();
    seg_size[cur_seq] = keep;
  }
  cur_dirty = false;
}

// After the batch is written (and synced when it had to be): update the
// index, delete segments freed by DONE records, then report. Callbacks run
// after the index lock is released.
void Spool::Impl::finish(std::vector<Item>& batch, bool ok) {
  bool any_done = false;
  {
    std::lock_guard lk(idx_mu);
    for (Item& it : batch) {
      switch (it.kind) {
        case Item::Kind::chunk:
          break;
        case Item::Kind::commit: {
          std::vector<Extent> extents;
          bool good = ok;
          if (auto pit = pending.find(it.id); pit != pending.end()) {
            good = good && !pit->second.failed;
            extents = std::move(pit->second.extents);
            pending.erase(pit);
          }
          it.ok = good;
          if (!good) {
            for_each_segment(extents, kNoSeq, [this](uint64_t s) { unpin(s); });
            break;
          }
          if (extents.empty() || extents.back().seq != it.seq) pin(it.seq);
          auto [pos, fresh] = index.try_emplace(it.id);
          std::vector<uint64_t> old_commits;
          if (!fresh) {
            for_each_segment(pos->second.extents, pos->second.commit_seq,
                             [this](uint64_t s) { unpin(s); });
            old_commits = std::move(pos->second.old_commits);
            old_commits.push_back(pos->second.commit_seq);
          }
          pos->second = Entry{std::move(it.env), std::move(extents), it.seq, std::move(old_commits)};
          n_commits.fetch_add(1, std::memory_order_relaxed);
          break;
        }
        case Item::Kind::update: {
          it.ok = ok;
          if (!ok) break;
          auto x = index.find(it.id);
          if (x == index.end()) {  // process() checked liveness in batch order
            it.ok = false;
            break;
          }
          Entry& e = x->second;
          // Pin the new COMMIT's segment before unpinning the old one's, so
          // that the content's segments never drop to zero in between.
          for_each_segment(e.extents, it.seq, [this](uint64_t s) { pin(s); });
          for_each_segment(e.extents, e.commit_seq, [this](uint64_t s) { unpin(s); });
          add_old_commit(e.old_commits, std::exchange(e.commit_seq, it.seq), it.seq);
          e.env = std::move(it.env);
          n_updates.fetch_add(1, std::memory_order_relaxed);
          any_done = true;  // the old COMMIT's segment may be free now
          break;
        }
        case Item::Kind::done:
          it.ok = ok;
          if (it.tomb) {
            it.tomb = false;
            if (auto t = seg_tombs.find(it.seq); t != seg_tombs.end() && t->second > 0) --t->second;
          }
          if (!ok) break;
          if (auto x = index.find(it.id); x != index.end()) {
            // The DONE must outlive every other segment with a COMMIT of it.
            add_tombs(it.seq, x->second.old_commits, x->second.commit_seq);
            for_each_segment(x->second.extents, x->second.commit_seq,
                             [this](uint64_t s) { unpin(s); });
            index.erase(x);
          }
          any_done = true;
          break;
        case Item::Kind::abort:
          if (auto pit = pending.find(it.id); pit != pending.end()) {
            for_each_segment(pit->second.extents, kNoSeq, [this](uint64_t s) { unpin(s); });
            pending.erase(pit);
          }
          break;
        case Item::Kind::reject:
          it.ok = false;
          break;
      }
    }
  }
  // Reclaim first: when a remove() is reported, the segments it freed are gone.
  if (any_done) reclaim();
  for (Item& it : batch)
    if (it.done) it.done(it.ok);
}

// Deletes every segment file that nothing needs any more, in any order: no
// live or pending message uses it (seg_refs), no DONE in it still hides a
// COMMIT in another segment file or waits to be finished (seg_tombs), and
// it is not the segment being written unless that holds kReclaimCurrentMin
// bytes. Files go in rounds: a round unlinks what is free now, one
// directory fsync makes those unlinks durable, and only then are the DONEs
// that waited for them released (they may free more files for the next
// round). So a DONE record is never gone from the disk while a COMMIT it
// hides could still be found after a crash.
void Spool::Impl::reclaim() {
  for (;;) {
    for (auto it = seg_refs.begin(); it != seg_refs.end();) {
      const uint64_t seq = it->first;
      const bool current = cur_fd && seq == cur_seq;
      auto t = seg_tombs.find(seq);
      if (it->second != 0 || (t != seg_tombs.end() && t->second != 0) ||
          (current && cur_size < kReclaimCurrentMin) ||
          (damaged.contains(seq) && it != seg_refs.begin())) {
        ++it;
        continue;
      }
      std::string name = segment_name(seq);
      if (::unlinkat(dir_fd.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
        ++it;
        continue;
      }
      if (current) {
        cur_fd.reset();  // the next record starts a new segment
        cur_dirty = false;
      }
      {
        std::lock_guard lk(fd_mu);
        read_fds.erase(seq);  // an open descriptor would keep the space
      }
      seg_size.erase(seq);
      damaged.erase(seq);
      if (t != seg_tombs.end()) seg_tombs.erase(t);
      it = seg_refs.erase(it);
      unlinked.push_back(seq);
      n_deleted.fetch_add(1, std::memory_order_relaxed);
    }
    if (unlinked.empty()) return;
    if (::fsync(dir_fd.get()) != 0) return;  // the waiters stay held; retried next time
    for (uint64_t seq : std::exchange(unlinked, {}))
      if (auto w = seg_waiters.find(seq); w != seg_waiters.end()) {
        for (uint64_t d : w->second)
          if (auto t = seg_tombs.find(d); t != seg_tombs.end() && t->second > 0) --t->second;
        seg_waiters.erase(w);
      }
  }
}

// A message is finished by a DONE record in segment `done_seq`: that
// segment must outlive every other segment file still holding a COMMIT of
// it — its current one (`commit_seq`, kNoSeq for none) and `old_commits` —
// or recovery would find the COMMIT without the DONE. Used by the writer
// and by recovery.
void Spool::Impl::add_tombs(uint64_t done_seq, const std::vector<uint64_t>& old_commits,
                            uint64_t commit_seq) {
  auto add = [&](uint64_t seq) {
    if (seq == done_seq) return;
    if (!seg_refs.contains(seq) && std::find(unlinked.begin(), unlinked.end(), seq) == unlinked.end())
      return;  // deleted for good
    seg_waiters[seq].push_back(done_seq);
    ++seg_tombs[done_seq];
  };
  for (uint64_t seq : old_commits) add(seq);
  add(commit_seq);
}

// Copies the live messages of sparse sealed segments (live data at most
// 1/kCompactRatio of the file) into the current segment: each message's
// CHUNK records as they are (their CRC checked again on the way) and a new
// COMMIT with its envelope; one sync for the round; then the index points at
// the copies and reclaim() deletes what is left unneeded. A crash before
// the sync leaves the old records in force (recovery ignores copied CHUNKs
// that no COMMIT claims, docs/spool.md). At most kCompactBudget bytes of
// content per round: the round delays the commits waiting behind it.
void Spool::Impl::compact() {
  bool sealed_in_use = false;
  for (const auto& [seq, refs] : seg_refs)
    if (refs > 0 && !(cur_fd && seq == cur_seq)) sealed_in_use = true;
  if (!sealed_in_use) return;

  std::unordered_map<uint64_t, uint64_t> live;  // bytes of live records
  for (const auto& [id, e] : index) {
    for (const Extent& x : e.extents) live[x.seq] += rec::kPrefixSize + x.length;
    live[e.commit_seq] += rec::kPrefixSize + 256;  // about an envelope
  }
  // Not worth a copy below this much dead space per segment.
  const uint64_t min_dead = std::min<uint64_t>(opt.segment_size / 4, kReclaimCurrentMin);
  std::unordered_set<uint64_t> busy;  // chunks of messages still being written
  for (const auto& [id, p] : pending)
    for (const Extent& x : p.extents) busy.insert(x.seq);
  std::unordered_set<uint64_t> sparse;
  for (const auto& [seq, refs] : seg_refs) {
    if (refs == 0 || (cur_fd && seq == cur_seq) || busy.contains(seq)) continue;
    auto size = seg_size.find(seq);
    if (size != seg_size.end() && live[seq] * kCompactRatio <= size->second &&
        size->second - std::min(size->second, live[seq]) >= min_dead)
      sparse.insert(seq);
  }
  if (sparse.empty()) return;

  std::vector<uint64_t> ids;
  uint64_t budget = 0;
  for (const auto& [id, e] : index) {
    if (budget >= kCompactBudget) break;
    if (unsynced_ids.contains(id)) continue;  // finished already
    bool in = sparse.contains(e.commit_seq);
    for (const Extent& x : e.extents) in = in || sparse.contains(x.seq);
    if (!in) continue;
    ids.push_back(id);
    budget += e.env.size;
  }

  struct Moved {
    uint64_t id;
    std::vector<Extent> extents;
    uint64_t commit_seq = 0;
  };
  std::vector<Moved> moved;
  batch_seq = cur_fd ? cur_seq : kNoSeq;
  batch_start = cur_size;
  bool ok = true;
  for (uint64_t id : ids) {
    const Entry& e = index.at(id);
    std::vector<Item> items;
    bool readable = true;
    for (const Extent& x : e.extents) {
      Item it;
      it.kind = Item::Kind::chunk;
      it.id = id;
      it.bytes.resize(size_t(rec::kPrefixSize + x.length));
      auto fd = read_fd(x.seq);
      size_t got = 0;
      while (fd && got < it.bytes.size()) {
        ssize_t n = ::pread((*fd)->get(), it.bytes.data() + got, it.bytes.size() - got,
                            off_t(x.offset - rec::kPrefixSize + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += size_t(n);
      }
      auto r = rec::parse(it.bytes);
      if (!fd || got != it.bytes.size() || !r || r->type != rec::Type::chunk ||
          r->size != it.bytes.size() || id_value(r->id) != id) {
        readable = false;  // leave it where it is
        break;
      }
      items.push_back(std::move(it));
    }
    if (!readable) continue;
    Item& c = items.emplace_back();
    c.kind = Item::Kind::commit;
    c.id = id;
    c.bytes.append(rec::kHeaderSize, '\0');
    c.bytes.append(e.env.id);
    encode_append(e.env, c.bytes);
    rec::seal(rec::Type::commit, c.bytes.data(), c.bytes.size() - rec::kHeaderSize);
    Moved m{id, {}, 0};
    for (Item& it : items) {
      if (!place(it)) {
        ok = false;
        break;
      }
      if (it.kind == Item::Kind::chunk)
        m.extents.push_back({it.seq, it.offset + rec::kPrefixSize, it.bytes.size() - rec::kPrefixSize});
      else
        m.commit_seq = it.seq;
    }
    if (ok) ok = flush();  // before `items` goes
    if (!ok) break;
    moved.push_back(std::move(m));
  }
  if (ok && !moved.empty()) ok = sync();
  if (!ok) {  // as a failed batch: the current segment's unsynced tail is unknown
    std::vector<Item> none;
    fail(none);
    finish(unsynced, false);
    unsynced.clear();
    unsynced_ids.clear();
    return;
  }
  {
    std::lock_guard lk(idx_mu);
    for (Moved& m : moved) {
      Entry& e = index.at(m.id);
      for_each_segment(m.extents, m.commit_seq, [this](uint64_t s) { pin(s); });
      for_each_segment(e.extents, e.commit_seq, [this](uint64_t s) { unpin(s); });
      e.extents = std::move(m.extents);
      add_old_commit(e.old_commits, std::exchange(e.commit_seq, m.commit_seq), m.commit_seq);
    }
  }
  n_compacted.fetch_add(moved.size(), std::memory_order_relaxed);
  reclaim();
}

// ---------------------------------------------------------------------------
// Recovery.

std::expected<void, std::string> Spool::Impl::recover() {
  std::vector<uint64_t> seqs;
  {
    DIR* d = ::opendir(seg_path.c_str());
    if (!d) return std::unexpected(sys_error("cannot read", seg_path, errno));
    while (dirent* e = ::readdir(d)) {
      std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      if (auto seq = parse_segment_name(name)) seqs.push_back(*seq);
      else warnings.push_back(seg_path + "/" + std::string(name) + ": unexpected file, ignored");
    }
    ::closedir(d);
  }
  std::sort(seqs.begin(), seqs.end());
  next_seq = seqs.empty() ? 1 : seqs.back() + 1;

  struct Found {
    std::vector<Extent> chunks;   // since its last COMMIT
    std::vector<Extent> extents;  // content of the live version
    Envelope env;
    uint64_t commit_seq = 0;
    std::vector<uint64_t> old_commits;  // segments of its earlier COMMITs
    bool live = false;
  };
  std::unordered_map<uint64_t, Found> found;

  for (size_t i = 0; i < seqs.size(); ++i) {
    const uint64_t seq = seqs[i];
    const bool last = i + 1 == seqs.size();
    const std::string name = segment_name(seq);
    const std::string path = seg_path + "/" + name;
    // Never through a link, never a file with a second name elsewhere: the
    // spool's account could have planted either (docs/security.md).
    Fd fd(::openat(dir_fd.get(), name.c_str(), (last ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd && errno == ELOOP) {
      warnings.push_back(path + ": a symbolic link, not a segment file; skipped (never followed)");
      continue;
    }
    if (!fd) return std::unexpected(sys_error("cannot open", path, errno));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return std::unexpected(sys_error("cannot stat", path, errno));
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
      warnings.push_back(path + ": not a regular file with one link; skipped");
      continue;
    }
    if (opt.owner != static_cast<uid_t>(-1) && st.st_uid != opt.owner)
      return std::unexpected(path + ": belongs to uid " + std::to_string(st.st_uid) + ", not uid " +
                             std::to_string(opt.owner));
    const size_t size = size_t(st.st_size);
    void* map = nullptr;
    if (size > 0) {
      map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
      if (map == MAP_FAILED) return std::unexpected(sys_error("cannot map", path, errno));
      ::madvise(map, size, MADV_SEQUENTIAL);
    }
    std::string_view data(static_cast<const char*>(map), map ? size : 0);
    const size_t magic = rec::kSegmentMagic.size();

    if (size < magic || data.substr(0, magic) != rec::kSegmentMagic) {
      bool torn_creation = last && size < magic && rec::kSegmentMagic.starts_with(data);
      if (map) ::munmap(map, size);
      if (torn_creation) {  // crashed while creating it: it never held a record
        if (::unlinkat(dir_fd.get(), name.c_str(), 0) != 0 || ::fsync(dir_fd.get()) != 0)
          return std::unexpected(sys_error("cannot remove", path, errno));
        continue;
      }
      warnings.push_back(path + ": not a segment file (bad header), skipped");
      seg_refs.emplace(seq, 0);
      damaged.insert(seq);
      seg_size[seq] = size;
      continue;
    }
    seg_refs.emplace(seq, 0);
    seg_size[seq] = size;

    size_t off = magic;
    std::optional<rec::Error> bad;
    while (off < size) {
      auto r = rec::parse(data.substr(off));
      if (!r) {
        bad = r.error();
        break;
      }
      uint64_t id = id_value(r->id);
      ids.observe(r->id);
      switch (r->type) {
        case rec::Type::chunk:
          if (!r->body.empty())
            found[id].chunks.push_back({seq, off + rec::kPrefixSize, r->body.size()});
          break;
        case rec::Type::commit: {
          auto env = decode_envelope(r->body);
          if (!env) {
            warnings.push_back(path + ": offset " + std::to_string(off) + ": message " +
                               std::string(r->id) + ": " + env.error() + "; record skipped");
            break;
          }
          Found& m = found[id];
          // A COMMIT takes, of the chunks written since the previous one,
          // the last ones whose lengths add up to exactly its size. A live
          // message with none such keeps its content and only takes the
          // envelope: an update (no chunks), or the stray start of a copy
          // cut short by a crash (compaction) before an update. A message
          // not yet live takes what there is (checked against its size
          // below).
          uint64_t sum = 0;
          size_t first = m.chunks.size();
          while (first > 0 && sum < env->size) sum += m.chunks[--first].length;
          if (sum == env->size && (!m.chunks.empty() || !m.live)) {
            m.extents.assign(m.chunks.begin() + ptrdiff_t(first), m.chunks.end());
          } else if (!m.live) {
            m.extents = std::move(m.chunks);
          }
          m.chunks.clear();
          if (m.live) add_old_commit(m.old_commits, m.commit_seq, seq);
          env->id = std::string(r->id);
          m.env = std::move(*env);
          m.commit_seq = seq;
          m.live = true;
          break;
        }
        case rec::Type::done:
          if (auto f = found.find(id); f != found.end()) {
            // Every segment read so far is in seg_refs: none is skipped.
            add_tombs(seq, f->second.old_commits, f->second.live ? f->second.commit_seq : kNoSeq);
            found.erase(f);
          }
          break;
      }
      off += r->size;
    }
    if (map) ::munmap(map, size);
    if (!bad) continue;
    std::string where = path + ": " + std::string(rec::to_string(*bad)) + " at offset " +
                        std::to_string(off) + "; ";
    if (!last) {
      warnings.push_back(where + "the remaining " + std::to_string(size - off) +
                         " bytes of this segment are ignored");
      damaged.insert(seq);
      continue;
    }
    // The end of the last segment: an append cut short by a crash.
    warnings.push_back(where + "cut off the torn tail (" + std::to_string(size - off) + " bytes)");
    if (::ftruncate(fd.get(), off_t(off)) != 0 || ::fsync(fd.get()) != 0)
      return std::unexpected(sys_error("cannot truncate", path, errno));
  }

  for (auto& [id, m] : found) {
    if (!m.live) continue;  // no COMMIT: an unfinished message
    uint64_t have = 0;
    for (const Extent& e : m.extents) have += e.length;
    if (have != m.env.size) {
      warnings.push_back("message " + m.env.id + ": content incomplete (" + std::to_string(have) +
                         " of " + std::to_string(m.env.size) + " bytes), not recovered");
      continue;
    }
    for_each_segment(m.extents, m.commit_seq, [this](uint64_t s) { pin(s); });
    index.emplace(id, Entry{std::move(m.env), std::move(m.extents), m.commit_seq, std::move(m.old_commits)});
  }
  reclaim();
  return {};
}

std::expected<std::shared_ptr<Fd>, std::string> Spool::Impl::read_fd(uint64_t seq) const {
  std::lock_guard lk(fd_mu);
  if (seq < first_seq) return std::unexpected(std::string("message removed while reading"));
  if (auto it = read_fds.find(seq); it != read_fds.end()) return it->second;
  std::string name = segment_name(seq);
  int fd = ::openat(dir_fd.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return std::unexpected(sys_error("cannot open", seg_path + "/" + name, errno));
  auto p = std::make_shared<Fd>(fd);
  read_fds.emplace(seq, p);
  return p;
}

// ---------------------------------------------------------------------------
// Spool.

Spool::Spool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Spool::~Spool() {
  if (!impl_ || !impl_->writer.joinable()) return;
  {
    std::lock_guard lk(impl_->q_mu);
    impl_->stopping = true;
  }
  impl_->q_cv.notify_one();
  impl_->writer.join();
}

std::expected<std::unique_ptr<Spool>, std::string> Spool::open(Options options) {
  if (options.dir.empty()) return std::unexpected(std::string("spool directory not set"));
  if (options.chunk_size == 0 || options.chunk_size > kMaxChunkSize)
    return std::unexpected("chunk_size must be between 1 and " + std::to_string(kMaxChunkSize));
  auto impl = std::make_unique<Impl>();
  impl->opt = std::move(options);
  // The tree, the lock and the segments are opened relative to checked
  // directory descriptors and never through a link (conf/safe_file.hpp).
  auto top = safe::make_dirs(impl->opt.dir, 0700);
  if (!top) return std::unexpected(top.error());
  auto segs = safe::make_dir_at(*top, "segments", 0700);
  if (!segs) return std::unexpected(segs.error());
  impl->seg_path = segs->dir.path;
  if (impl->opt.owner != static_cast<uid_t>(-1)) {
    if (auto r = safe::check_owner(top->fd.get(), top->path, impl->opt.owner); !r) return std::unexpected(r.error());
    if (auto r = safe::check_owner(segs->dir.fd.get(), segs->dir.path, impl->opt.owner); !r)
      return std::unexpected(r.error());
  }

  if (impl->opt.exclusive) {
    auto lock = safe::open_file_at(*top, "lock", O_RDWR | O_CREAT, 0600);
    if (!lock) return std::unexpected(lock.error());
    const std::string lock_path = top->child("lock");
    if (impl->opt.owner != static_cast<uid_t>(-1)) {
      if (auto r = safe::check_owner(lock->get(), lock_path, impl->opt.owner); !r) return std::unexpected(r.error());
    }
    impl->lock_fd = std::move(*lock);
    if (::flock(impl->lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        return std::unexpected("spool " + impl->opt.dir + " is in use by another process");
      return std::unexpected(sys_error("cannot lock", lock_path, errno));
    }
  }
  impl->dir_fd = std::move(segs->dir.fd);

  if (auto r = impl->recover(); !r) return std::unexpected(r.error());

  try {
    impl->writer = std::thread([p = impl.get()] { p->run(); });
  } catch (const std::system_error& e) {
    return std::unexpected(std::string("cannot start the spool writer: ") + e.what());
  }
  return std::unique_ptr<Spool>(new Spool(std::move(impl)));
}

std::unique_ptr<Spool::Incoming> Spool::begin() {
  return std::make_unique<Impl::IncomingImpl>(*impl_);
}

void Spool::update(Envelope env, CommitDone done) {
  Item it;
  it.done = std::move(done);
  it.kind = Item::Kind::reject;
  if (valid_queue_id(env.id)) {
    std::lock_guard lk(impl_->idx_mu);
    if (auto x = impl_->index.find(id_value(env.id)); x != impl_->index.end()) {
      env.size = x->second.env.size;  // recovery checks the content against it
      it.kind = Item::Kind::update;
    }
  }
  if (it.kind == Item::Kind::update) {
    it.id = id_value(env.id);
    it.bytes.reserve(rec::kPrefixSize + 256);
    it.bytes.append(rec::kHeaderSize, '\0');
    it.bytes.append(env.id);
    encode_append(env, it.bytes);
    rec::seal(rec::Type::commit, it.bytes.data(), it.bytes.size() - rec::kHeaderSize);
    it.env = std::move(env);
  }
  impl_->enqueue(&it, 1);
}

void Spool::remove(std::string_view id, CommitDone done) {
  Item it;
  it.done = std::move(done);
  if (!valid_queue_id(id)) {
    it.kind = Item::Kind::reject;
  } else {
    it.kind = Item::Kind::done;
    it.id = id_value(id);
    it.bytes = rec::make(rec::Type::done, id, {});
  }
  impl_->enqueue(&it, 1, impl_->opt.done_sync_delay.count() > 0);
}

std::vector<Envelope> Spool::messages() const {
  std::lock_guard lk(impl_->idx_mu);
  std::vector<Envelope> out;
  out.reserve(impl_->index.size());
  for (const auto& [id, e] : impl_->index) out.push_back(e.env);
  return out;
}

size_t Spool::message_count() const {
  std::lock_guard lk(impl_->idx_mu);
  return impl_->index.size();
}

std::expected<void, std::string> Spool::read_body(
    std::string_view id, const std::function<void(std::string_view)>& sink,
    uint64_t max_bytes) const {
  std::vector<Extent> extents;
  {
    std::lock_guard lk(impl_->idx_mu);
    auto it = valid_queue_id(id) ? impl_->index.find(id_value(id)) : impl_->index.end();
    if (it == impl_->index.end()) return std::unexpected("unknown message " + std::string(id));
    extents = it->second.extents;
  }
  for (size_t i = 0; i < extents.size(); ++i) {  // keep only the first max_bytes
    if (extents[i].length >= max_bytes) {
      extents[i].length = max_bytes;
      extents.resize(i + (max_bytes > 0 ? 1 : 0));
      break;
    }
    max_bytes -= extents[i].length;
  }
  uint64_t largest = 0;
  for (const Extent& e : extents) largest = std::max(largest, e.length);
  auto buf = std::make_unique_for_overwrite<char[]>(size_t(std::min<uint64_t>(largest, kReadPiece)));
  for (const Extent& e : extents) {
    auto fd = impl_->read_fd(e.seq);
    if (!fd) return std::unexpected(fd.error());
    uint64_t off = e.offset;
    uint64_t left = e.length;
    while (left > 0) {
      size_t want = size_t(std::min<uint64_t>(left, kReadPiece));
      size_t got = 0;
      while (got < want) {
        ssize_t n = ::pread((*fd)->get(), buf.get() + got, want - got, off_t(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0)
          return std::unexpected(sys_error("cannot read", impl_->seg_path + "/" + segment_name(e.seq), errno));
        if (n == 0)
          return std::unexpected(impl_->seg_path + "/" + segment_name(e.seq) + ": ends early");
        got += size_t(n);
      }
      sink(std::string_view(buf.get(), want));
      off += want;
      left -= want;
    }
  }
  return {};
}

std::expected<size_t, std::string> Spool::read_at(std::string_view id, uint64_t offset,
                                                  std::span<char> buf) const {
  // The pieces of [offset, offset + buf.size()) that the extents hold; a
  // piece is at most one extent, so a few at most.
  struct Piece {
    uint64_t seq, at, length;
  };
  Piece pieces[8];
  size_t n = 0;
  {
    std::lock_guard lk(impl_->idx_mu);
    auto it = valid_queue_id(id) ? impl_->index.find(id_value(id)) : impl_->index.end();
    if (it == impl_->index.end()) return std::unexpected("unknown message " + std::string(id));
    uint64_t pos = 0;  // content offset where extent e starts
    uint64_t want = buf.size();
    for (const Extent& e : it->second.extents) {
      if (want == 0 || n == std::size(pieces)) break;
      if (offset < pos + e.length) {
        uint64_t skip = offset > pos ? offset - pos : 0;
        uint64_t len = std::min(e.length - skip, want);
        pieces[n++] = Piece{e.seq, e.offset + skip, len};
        want -= len;
        offset += len;
      }
      pos += e.length;
    }
  }
  size_t got = 0;
  for (size_t i = 0; i < n; ++i) {
    auto fd = impl_->read_fd(pieces[i].seq);
    if (!fd) return std::unexpected(fd.error());
    size_t done = 0;
    while (done < pieces[i].length) {
      ssize_t r = ::pread((*fd)->get(), buf.data() + got + done, size_t(pieces[i].length) - done,
                          off_t(pieces[i].at + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        const int err = errno;
        const std::string path = impl_->seg_path + "/" + segment_name(pieces[i].seq);
        if (r < 0) return std::unexpected(sys_error("cannot read", path, err));
        return std::unexpected(path + ": ends early");
      }
      done += size_t(r);
    }
    got += done;
  }
  return got;
}

QueueIdGenerator& Spool::ids() { return impl_->ids; }

uint64_t Spool::pending_bytes() const {
  return impl_->pending_bytes.load(std::memory_order_relaxed);
}

Spool::Stats Spool::stats() const {
  return Stats{impl_->n_commits.load(std::memory_order_relaxed),
               impl_->n_updates.load(std::memory_order_relaxed),
               impl_->n_syncs.load(std::memory_order_relaxed),
               impl_->n_bytes.load(std::memory_order_relaxed),
               impl_->n_deleted.load(std::memory_order_relaxed),
               impl_->n_compacted.load(std::memory_order_relaxed)};
}

uint64_t Spool::free_space(uint64_t low_water) const {
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  const uint64_t appended = impl_->n_bytes.load(std::memory_order_relaxed);
  std::lock_guard lk(impl_->space_mu);
  auto estimate = [&] {
    const uint64_t since = appended - impl_->space_bytes;
    return impl_->space_free > since ? impl_->space_free - since : 0;
  };
  const int64_t age = now - impl_->space_at_ns;
  if (impl_->space_at_ns == 0 || age >= kSpaceRefreshNs ||
      (estimate() / 2 < low_water && age >= kSpaceLowRefreshNs)) {
    struct statvfs st;
    if (::fstatvfs(impl_->dir_fd.get(), &st) != 0) return UINT64_MAX;
    impl_->space_free = uint64_t(st.f_bavail) * uint64_t(st.f_frsize);
    impl_->space_bytes = appended;
    impl_->space_at_ns = now;
  }
  return estimate();
}

std::vector<std::string> Spool::recovery_warnings() const { return impl_->warnings; }

}  // namespace sluice::queue
