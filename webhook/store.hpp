// store.hpp — one webhook's durable queue of events: a directory of segment
// files and an ack file in the format of webhook/record.hpp (docs/spool.md,
// "Webhooks").
//
//  - append() writes a group of encoded records to the current segment with
//    one write and one fdatasync; only then are they in end(). A new
//    segment (every Options::segment_size octets, and at each open, so a
//    torn tail left by a crash is never appended to) is made with O_EXCL
//    and the directory fsynced.
//  - read() returns the records from a position on, with the position
//    after each. A damaged or torn record ends its segment: the rest of
//    that segment is skipped and named in ReadResult::skipped.
//  - ack() records durably (temporary file, fsync, rename, fsync of the
//    directory) that everything before a position was delivered, then
//    deletes the segments wholly before it.
//  - open() finds the segments and the ack; segments before the ack are
//    deleted. Files are opened through conf/safe_file (no links followed,
//    one link only); the caller runs with the daemon user's identity, so
//    what is made is the user's.
//
// Blocking file I/O: called from one thread at a time (the daemon calls it
// from libuv's thread pool, one job at a time; mta/webhooks.cpp). Errors come
// back as values naming the file; nothing here logs.
#pragma once

#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "conf/safe_file.hpp"
#include "webhook/record.hpp"

namespace sluice::webhook {

class Store {
 public:
  struct Options {
    uint64_t segment_size = 8 * 1024 * 1024;
  };
  struct Item {
    int64_t stored_s = 0;
    std::string payload;
    Position end;  // just after this record
  };
  struct ReadResult {
    std::vector<Item> items;
    Position next;                      // where the next read starts
    std::vector<std::string> skipped;   // damaged segment tails passed over, one line each
  };

  // `name` is made under `parent` (mode 0700) when missing.
  static std::expected<std::unique_ptr<Store>, std::string> open(const safe::Dir& parent,
                                                                 const std::string& name, Options options);
  // The same with the default options.
  static std::expected<std::unique_ptr<Store>, std::string> open(const safe::Dir& parent,
                                                                 const std::string& name) {
    return open(parent, name, Options{});
  }
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return dir_.path; }
  Position acked() const { return acked_; }
  Position end() const { return end_; }
  // Octets of the segments from the ack on (records not yet delivered).
  uint64_t stored_bytes() const;

  std::expected<void, std::string> append(std::span<const std::string> records);
  ReadResult read(Position from, size_t max_events, size_t max_bytes);
  std::expected<void, std::string> ack(Position p);

 private:
  Store(safe::Dir dir, Options options) : dir_(std::move(dir)), options_(options) {}
  std::expected<void, std::string> load();
  std::expected<void, std::string> new_segment();
  Position next_segment_after(uint64_t seq) const;

  safe::Dir dir_;
  Options options_;
  std::map<uint64_t, uint64_t> segments_;  // seq -> size (as far as known)
  safe::Fd cur_;                           // the segment appended to (end_.seq), if made
  Position end_;
  Position acked_;
};

}  // namespace sluice::webhook
