// spool.hpp — the durable on-disk queue: a log of segment files with group commit.
//
// Every message is written as CHUNK records (its content, in pieces of at most
// Options::chunk_size) followed by one COMMIT record carrying its envelope,
// all appended to the current segment file under <spool_dir>/segments/. One
// writer thread owns the segment file descriptors: it takes whatever records
// are waiting, appends them with one writev, and if any COMMIT is among them
// runs one fdatasync for the whole batch (a directory fsync follows whenever a
// new segment file was created) before it reports those commits done. So many
// concurrent messages share one flush, and a commit is reported only once
// its content and envelope are on stable storage. DONE records (remove()) are
// group-committed more loosely: they neither wake the writer nor need a flush
// of their own. They go out with the next batch and are made durable by the
// next commit's flush, or, when none comes within Options::done_sync_delay,
// by one the writer makes for them. The format and the recovery rules are in
// docs/spool.md.
//
// Space: a segment file is deleted as soon as nothing in it is needed — no
// live message's content or envelope, and no DONE record whose message still
// has a COMMIT in another segment file (deleting that DONE first would bring
// the message back at recovery). The segment being written goes too once
// it holds nothing needed and at least kReclaimCurrentMin bytes. Sealed
// segments whose live data is at most a quarter of their size are compacted
// at most once a second: the writer copies their live messages (CHUNKs and a
// COMMIT) into the current segment, syncs, and then deletes them. So
// deleting or delivering mail gives its space back within seconds.
//
// Threads: begin()/Incoming are used from any one thread per message (the
// event loop); completion callbacks run on the writer thread, in the order
// the records were handed over, and must only hand the result over (e.g.
// uv_async_send): they must not throw nor call back into the Spool in a way
// that waits for the writer. Reading (read_body, messages), update() and
// remove() are thread-safe. Every Incoming must be destroyed before the Spool.
//
// Failures: open() returns an error string; a failed write or sync is
// reported as done(false) for every commit of that batch (the writer then
// moves on to a fresh segment file). queue/ never logs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "queue/envelope.hpp"
#include "queue/queue_id.hpp"

namespace sluice::queue {

class Spool {
 public:
  struct Options {
    std::string dir;                          // spool_dir
    uint64_t segment_size = 64ull << 20;      // rotate after this many bytes
    size_t chunk_size = 64 * 1024;            // content bytes per CHUNK record
    // Take an exclusive lock on <dir>/lock so that a second process cannot
    // open the same spool. Only tests turn it off.
    bool exclusive = true;
    // When set, the spool directory, segments/, the lock and every segment
    // must belong to this uid, or open() fails naming the file (the daemon
    // passes its own user: nothing is silently re-owned).
    uid_t owner = static_cast<uid_t>(-1);
    // How long a written DONE record may wait for a flush that a COMMIT
    // brings anyway before the writer flushes for it alone (0: at once).
    // Losing a DONE to a power failure only means a duplicate delivery.
    std::chrono::milliseconds done_sync_delay{50};
  };

  // Called once per commit on the writer thread: true when durable.
  using CommitDone = std::function<void(bool ok)>;

  class Incoming {
   public:
    virtual ~Incoming() = default;  // destroying without commit() discards the message
    virtual const std::string& id() const = 0;
    // Appends content (already in stored form: CRLF line ends, not dot-stuffed).
    virtual void append(std::string_view bytes) = 0;
    virtual uint64_t size() const = 0;
    // Puts `bytes` in front of the content (stored form too), however much
    // was appended already: what can only be written once the whole content
    // is known (a DKIM signature). Calls add up, each new one in front. The
    // bytes go to disk with the commit, as one HEAD record; size() counts
    // them, and read_body()/read_at() serve them first.
    virtual void prepend(std::string_view bytes) = 0;
    // Hands the envelope over; env.id and env.size are filled in here. May be
    // called once (append() or commit() after it abort the process); `done`
    // runs later on the writer thread.
    virtual void commit(Envelope env, CommitDone done) = 0;
  };

  // Creates the directory tree if needed, recovers every committed message
  // (a torn tail of the last segment is cut off), and starts the writer.
  static std::expected<std::unique_ptr<Spool>, std::string> open(Options options);
  ~Spool();  // drains pending writes, stops the writer thread

  std::unique_ptr<Incoming> begin();  // allocates the queue id

  // Marks a message finished: appends a DONE record (written with the next
  // batch, made durable by the next flush, both at the latest
  // Options::done_sync_delay later), then drops the message from the index;
  // `done` runs on the writer
  // thread, true once the DONE record is durable. Idempotent: an id that is
  // not (or no longer) live still gets its DONE record and true; an id that
  // is not a valid queue id gets false. Segment files it leaves without
  // anything live are deleted, in any order but never before a segment
  // holding a COMMIT of a message whose DONE they hold, before `done` runs
  // (docs/spool.md, "Reclamation").
  void remove(std::string_view id, CommitDone done);

  // Replaces the envelope of a live message (delivery state: recipient
  // statuses, attempts, next attempt, hold): appends a COMMIT record with
  // the new envelope and no content, group-committed like a commit; the
  // content stays where it is. env.id names the message; env.size is taken
  // from the live message (whatever the caller put there). `done` runs on
  // the writer thread: true once the record is durable and the index holds
  // the new envelope; false when the write or sync failed, or when the id is
  // not a live message when the writer reaches the record (never committed,
  // or removed by an earlier remove()) — then nothing is written. Updates of
  // one message are applied in the order they were handed over. A crash
  // before `done(true)` leaves the previous envelope (recovery keeps the last
  // intact COMMIT of each message).
  void update(Envelope env, CommitDone done);

  // The envelopes of all committed, live messages, ordered by queue id.
  std::vector<Envelope> messages() const;
  size_t message_count() const;
  // Streams a message's stored content to `sink` in pieces; error if unknown.
  // At most `max_bytes` are read (the first ones): a bounce needs only the
  // header section.
  std::expected<void, std::string> read_body(
      std::string_view id, const std::function<void(std::string_view)>& sink,
      uint64_t max_bytes = UINT64_MAX) const;
  // Copies up to buf.size() bytes of a message's stored content, from byte
  // `offset` on, into buf; returns how many (0 at or past the end). For
  // streaming the content out piece by piece without holding it whole.
  // Error if the message is unknown (or was removed while being read).
  std::expected<size_t, std::string> read_at(std::string_view id, uint64_t offset,
                                             std::span<char> buf) const;

  QueueIdGenerator& ids();

  // Bytes handed to the writer but not yet written; the SMTP glue stops
  // reading from clients while this is large.
  uint64_t pending_bytes() const;

  // Free space for unprivileged users on the spool's file system, in bytes
  // (statvfs f_bavail), for the free-space reserve (limits.min_free_space).
  // Cheap enough for every MAIL FROM: the figure is measured at most once a
  // second (fstatvfs costs ~12 µs) and, in between, lowered by the bytes the
  // writer appended since; below twice `low_water` it is measured again
  // after 100 ms. Thread-safe. UINT64_MAX when the file system cannot be
  // asked.
  uint64_t free_space(uint64_t low_water = 0) const;

  // Bytes in the segment files now, as the file system sees them (for the
  // sluice_spool_bytes metric): reads the segments directory, so it is for
  // a scrape, never per message. Thread-safe; 0 when it cannot be read.
  uint64_t disk_bytes() const;

  struct Stats {
    uint64_t commits = 0;    // messages committed
    uint64_t updates = 0;    // envelope updates made durable
    uint64_t syncs = 0;      // fdatasync calls (one per committing batch, one per rotation,
                             // one per done_sync_delay when only DONE records wait)
    uint64_t bytes = 0;      // bytes appended
    uint64_t segments_deleted = 0;
    uint64_t compacted = 0;  // messages copied out of sparse segments
  };
  Stats stats() const;

  // What open() had to repair or skip (torn tails cut off, corrupt records,
  // messages whose content was incomplete), one line each; empty after a
  // clean start. Never changes after open().
  std::vector<std::string> recovery_warnings() const;

  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

 private:
  struct Impl;
  explicit Spool(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::queue
