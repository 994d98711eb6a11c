// spool_writer.cpp — the spool's writer thread: takes every queued record at
// once, places it in the current segment (rotating when full), appends the
// batch with one writev, runs one fdatasync when a COMMIT or update is in it,
// then updates the index (finish()) and only then runs the callbacks. DONE
// records are lazy: they do not wake the writer, and once written without a
// COMMIT they wait (in `unsynced`) for the next flush, at most
// Options::done_sync_delay. A failed write or sync fails the batch's commits
// and moves on to a fresh segment (fail()). Writer thread only, apart from
// enqueue(). Rules: docs/spool.md. It records each commit's time to
// durability and each sync's batch size in the metrics
// (obs/sluice_metrics.hpp: relaxed atomic adds).
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include "obs/sluice_metrics.hpp"
#include "queue/spool_impl.hpp"

namespace sluice::queue {
namespace {

constexpr size_t kIovMax = IOV_MAX;

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(size_t(n));
  }
  return true;
}

}  // namespace

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
  uint64_t durable = 0;  // commits and updates this batch's sync makes durable (metrics)
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
      case Item::Kind::head: {  // written after the CHUNKs, content in front of them
        Pending& p = pending[it.id];
        if (p.failed) break;
        if (!place(it)) {
          ok = false;
          break;
        }
        Extent e{it.seq, it.offset + rec::kPrefixSize, it.bytes.size() - rec::kPrefixSize};
        if (!occupies(p.extents, e.seq)) pin(e.seq);
        p.extents.insert(p.extents.begin(), e);
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
        ++durable;
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
        ++durable;
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
    obs::sluice_metrics().record_fsync_batch(durable);
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
    if (it.kind == Item::Kind::chunk || it.kind == Item::Kind::head) pending[it.id].failed = true;
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
  int64_t now_ns = 0;  // for the commit time metric: read once per batch
  {
    std::lock_guard lk(idx_mu);
    for (Item& it : batch) {
      switch (it.kind) {
        case Item::Kind::chunk:
        case Item::Kind::head:
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
          if (!occupies(extents, it.seq)) pin(it.seq);
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
          if (it.handed_ns != 0) {  // a new message (compaction's copies have none)
            if (now_ns == 0) now_ns = steady_ns();
            obs::sluice_metrics().record_spool_commit_us(uint64_t(std::max<int64_t>(now_ns - it.handed_ns, 0)) / 1000);
          }
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

}  // namespace sluice::queue
