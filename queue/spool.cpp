// spool.cpp — the Spool's public side: open(), Incoming (content into CHUNK
// records, the COMMIT with the envelope), update() and remove() handing
// records to the writer, and reading (the index, read_body, read_at, the
// per-segment read descriptors, free space).
//
// Format, durability and recovery rules: docs/spool.md. In short: producers
// build finished records (header, id, body, CRC) and queue them; the writer
// (spool_writer.cpp) takes all queued records at once, appends them with
// writev, fdatasyncs once when a COMMIT is among them, updates the index and
// only then runs the callbacks. Segments are deleted and compacted by
// spool_reclaim.cpp, read back at open() by spool_recovery.cpp; the shared
// state is Spool::Impl (spool_impl.hpp).
// Failures come back as done(false) or open() errors; nothing here logs.
#include "queue/spool.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <memory>

#include "queue/spool_impl.hpp"

namespace sluice::queue {
namespace {

constexpr size_t kReadPiece = 64 * 1024;     // read_body hands out at most this much at once
constexpr size_t kMaxChunkSize = 64u << 20;  // Options::chunk_size limit
// free_space(): how long a measurement is trusted.
constexpr int64_t kSpaceRefreshNs = 1'000'000'000;
constexpr int64_t kSpaceLowRefreshNs = 100'000'000;

}  // namespace

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

  void prepend(std::string_view bytes) override {
    if (committed_) std::abort();  // API misuse: content after commit()
    head_.insert(0, bytes);
    size_ += bytes.size();
  }

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
    Item items[3];
    size_t n = 0;
    if (buf_.size() > rec::kPrefixSize) {
      rec::seal(rec::Type::chunk, buf_.data(), buf_.size() - rec::kHeaderSize);
      items[n].kind = Item::Kind::chunk;
      items[n].id = num_;
      items[n++].bytes = std::move(buf_);
    }
    if (!head_.empty()) {
      Item& h = items[n++];
      h.kind = Item::Kind::head;
      h.id = num_;
      h.bytes.reserve(rec::kPrefixSize + head_.size());
      h.bytes.append(rec::kHeaderSize, '\0');
      h.bytes.append(id_);
      h.bytes.append(head_);
      rec::seal(rec::Type::head, h.bytes.data(), h.bytes.size() - rec::kHeaderSize);
    }
    Item& c = items[n++];
    c.kind = Item::Kind::commit;
    c.id = num_;
    c.handed_ns = steady_ns();
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
  std::string head_;  // prepend()ed content, sent as a HEAD record at commit
  uint64_t size_ = 0;
  bool sent_chunk_ = false;
  bool committed_ = false;
};

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

uint64_t Spool::disk_bytes() const {
  // A descriptor of its own: readdir moves the position of the one it reads.
  const int fd = ::openat(impl_->dir_fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return 0;
  DIR* dir = ::fdopendir(fd);
  if (!dir) {
    ::close(fd);
    return 0;
  }
  uint64_t total = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (!std::string_view(e->d_name).ends_with(".seg")) continue;
    struct stat st;
    if (::fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
      total += uint64_t(st.st_size);
  }
  ::closedir(dir);
  return total;
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
