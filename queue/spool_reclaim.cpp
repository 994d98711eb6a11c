// spool_reclaim.cpp — giving disk space back (writer thread only): reclaim()
// deletes every segment file nothing needs any more (no live or pending
// content or envelope, no DONE still hiding a COMMIT elsewhere), add_tombs()
// records which DONE must outlive which COMMIT, and compact() copies the
// live messages of sparse sealed segments into the current one. Rules:
// docs/spool.md, "Reclamation".
#include <fcntl.h>
#include <unistd.h>

#include "queue/spool_impl.hpp"

namespace sluice::queue {

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
      // A HEAD stays a HEAD (first in content order, so first in the copy).
      if (!fd || got != it.bytes.size() || !r ||
          (r->type != rec::Type::chunk && r->type != rec::Type::head) ||
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

}  // namespace sluice::queue
