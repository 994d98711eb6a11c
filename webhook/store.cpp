// store.cpp — see store.hpp.
#include "webhook/store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace sluice::webhook {

namespace {

constexpr std::string_view kAck = "ack";
constexpr std::string_view kAckTmp = "ack.tmp";

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string errno_text(std::string_view path, std::string_view what) {
  return fmt::format("{}: {}: {}", path, what, std::strerror(errno));
}

}  // namespace

std::expected<std::unique_ptr<Store>, std::string> Store::open(const safe::Dir& parent, const std::string& name,
                                                               Options options) {
  auto made = safe::make_dir_at(parent, name, 0700);
  if (!made) return std::unexpected(made.error());
  std::unique_ptr<Store> s(new Store(std::move(made->dir), options));
  if (auto ok = s->load(); !ok) return std::unexpected(ok.error());
  return s;
}

Store::~Store() = default;

std::expected<void, std::string> Store::load() {
  const int dup = ::dup(dir_.fd.get());
  if (dup < 0) return std::unexpected(errno_text(dir_.path, "dup"));
  DIR* d = ::fdopendir(dup);
  if (!d) {
    ::close(dup);
    return std::unexpected(errno_text(dir_.path, "cannot list"));
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);

  bool have_ack = false;
  for (const auto& name : names) {
    if (name == kAckTmp) {  // an ack write cut short: the old ack stands
      ::unlinkat(dir_.fd.get(), name.c_str(), 0);
    } else if (name == kAck) {
      auto f = safe::open_file_at(dir_, name, O_RDONLY);
      if (!f) return std::unexpected(f.error());
      char buf[64];
      const ssize_t n = ::read(f->get(), buf, sizeof buf);
      if (n < 0) return std::unexpected(errno_text(dir_.child(name), "read"));
      auto p = decode_ack(std::string_view(buf, static_cast<size_t>(n)));
      if (!p) return std::unexpected(fmt::format("{}: not an ack record (delete it to send the queue again)",
                                                 dir_.child(name)));
      acked_ = *p;
      have_ack = true;
    } else if (auto seq = parse_segment_name(name)) {
      auto f = safe::open_file_at(dir_, name, O_RDONLY);
      if (!f) return std::unexpected(f.error());
      auto st = safe::stat_fd(f->get(), dir_.child(name));
      if (!st) return std::unexpected(st.error());
      segments_[*seq] = static_cast<uint64_t>(st->st_size);
    }
  }
  (void)have_ack;
  // Segments wholly delivered (an ack written, the deletion cut short).
  for (auto it = segments_.begin(); it != segments_.end() && it->first < acked_.seq;) {
    ::unlinkat(dir_.fd.get(), segment_name(it->first).c_str(), 0);
    it = segments_.erase(it);
  }
  // Appends go to a new segment, after every existing one and the ack.
  uint64_t next = acked_.seq + 1;
  if (!segments_.empty()) next = std::max(next, segments_.rbegin()->first + 1);
  end_ = {next, 0};
  return {};
}

uint64_t Store::stored_bytes() const {
  uint64_t total = 0;
  for (const auto& [seq, size] : segments_) {
    if (seq < acked_.seq) continue;
    total += seq == acked_.seq ? size - std::min(size, acked_.offset) : size;
  }
  return total;
}

std::expected<void, std::string> Store::new_segment() {
  const std::string name = segment_name(end_.seq);
  auto f = safe::open_file_at(dir_, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0600);
  if (!f) return std::unexpected(f.error());
  if (::fsync(dir_.fd.get()) != 0) return std::unexpected(errno_text(dir_.path, "fsync"));
  cur_ = std::move(*f);
  segments_[end_.seq] = 0;
  return {};
}

std::expected<void, std::string> Store::append(std::span<const std::string> records) {
  if (records.empty()) return {};
  if (cur_ && end_.offset >= options_.segment_size) {
    cur_.reset();
    end_ = {end_.seq + 1, 0};
  }
  if (!cur_)
    if (auto ok = new_segment(); !ok) {
      end_ = {end_.seq + 1, 0};  // never this name again: it may exist
      return ok;
    }
  std::string bytes;
  size_t total = 0;
  for (const auto& r : records) total += r.size();
  bytes.reserve(total);
  for (const auto& r : records) bytes += r;
  const std::string path = dir_.child(segment_name(end_.seq));
  auto failed = [&](std::string_view what) {
    std::string why = errno_text(path, what);
    // What was written may be torn: the segment is closed, a reader skips
    // a damaged tail, and the next append starts a new one.
    if (auto st = safe::stat_fd(cur_.get(), path)) segments_[end_.seq] = static_cast<uint64_t>(st->st_size);
    cur_.reset();
    end_ = {end_.seq + 1, 0};
    return std::unexpected(std::move(why));
  };
  if (!write_all(cur_.get(), bytes)) return failed("write");
  if (::fdatasync(cur_.get()) != 0) return failed("fdatasync");
  end_.offset += bytes.size();
  segments_[end_.seq] = end_.offset;
  return {};
}

Position Store::next_segment_after(uint64_t seq) const {
  auto it = segments_.upper_bound(seq);
  if (it == segments_.end() || it->first >= end_.seq) return {end_.seq, 0};
  return {it->first, 0};
}

Store::ReadResult Store::read(Position from, size_t max_events, size_t max_bytes) {
  ReadResult r;
  Position p = from;
  size_t bytes = 0;
  std::string buf;
  while (p < end_ && r.items.size() < max_events && bytes < max_bytes) {
    auto seg = segments_.find(p.seq);
    if (seg == segments_.end()) {
      p = next_segment_after(p.seq);
      continue;
    }
    const uint64_t limit = p.seq == end_.seq ? end_.offset : seg->second;
    if (p.offset >= limit) {
      if (p.seq == end_.seq) break;
      p = next_segment_after(p.seq);
      continue;
    }
    const std::string name = segment_name(p.seq);
    auto skip_rest = [&](std::string_view why) {
      r.skipped.push_back(fmt::format("{}: from offset {}: {}", dir_.child(name), p.offset, why));
      p = p.seq == end_.seq ? end_ : next_segment_after(p.seq);
    };
    auto f = safe::open_file_at(dir_, name, O_RDONLY);
    if (!f) {
      skip_rest(f.error());
      continue;
    }
    // Enough for the records wanted, at least one whole record.
    const uint64_t want = std::min<uint64_t>(limit - p.offset,
                                             std::max<uint64_t>(max_bytes - bytes, kMaxPayload) + 64);
    buf.resize(want);
    ssize_t n;
    do n = ::pread(f->get(), buf.data(), want, static_cast<off_t>(p.offset));
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
      skip_rest(n < 0 ? errno_text(dir_.child(name), "read") : "shorter than expected");
      continue;
    }
    std::string_view in(buf.data(), static_cast<size_t>(n));
    bool progressed = false;
    while (!in.empty() && r.items.size() < max_events && bytes < max_bytes) {
      const Decoded d = decode_record(in);
      if (d.status == Decoded::Status::ok) {
        p.offset += d.size;
        r.items.push_back({d.record.stored_s, std::string(d.record.payload), p});
        bytes += d.record.payload.size();
        in.remove_prefix(d.size);
        progressed = true;
        continue;
      }
      if (d.status == Decoded::Status::incomplete && p.offset + in.size() < limit && progressed)
        break;  // the rest of this record is beyond what was read: read on
      skip_rest(d.status == Decoded::Status::incomplete ? std::string_view("a record cut short")
                                                        : d.reason);
      break;
    }
  }
  r.next = p;
  return r;
}

std::expected<void, std::string> Store::ack(Position p) {
  auto f = safe::open_file_at(dir_, kAckTmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (!f) return std::unexpected(f.error());
  const std::string tmp_path = dir_.child(kAckTmp);
  if (!write_all(f->get(), encode_ack(p))) return std::unexpected(errno_text(tmp_path, "write"));
  if (::fdatasync(f->get()) != 0) return std::unexpected(errno_text(tmp_path, "fdatasync"));
  f->reset();
  if (::renameat(dir_.fd.get(), std::string(kAckTmp).c_str(), dir_.fd.get(), std::string(kAck).c_str()) != 0)
    return std::unexpected(errno_text(tmp_path, "rename"));
  if (::fsync(dir_.fd.get()) != 0) return std::unexpected(errno_text(dir_.path, "fsync"));
  acked_ = p;
  for (auto it = segments_.begin(); it != segments_.end() && it->first < p.seq;) {
    if (it->first == end_.seq) break;
    ::unlinkat(dir_.fd.get(), segment_name(it->first).c_str(), 0);
    it = segments_.erase(it);
  }
  return {};
}

}  // namespace sluice::webhook
