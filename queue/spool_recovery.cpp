// spool_recovery.cpp — open()'s reading of the segment files: every record is
// checked (CRC, envelope), each message's last intact COMMIT wins, a torn
// tail of the last segment is cut off, damaged segments are kept aside, and
// messages with incomplete content are dropped; each repair becomes one
// recovery warning. Runs before the writer starts. Rules: docs/spool.md,
// "Recovery".
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>

#include "queue/spool_impl.hpp"

namespace sluice::queue {
namespace {

std::optional<uint64_t> parse_segment_name(std::string_view name) {
  if (name.size() != 20 || !name.ends_with(".seg")) return std::nullopt;
  for (char c : name.substr(0, 16))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  return id_value(name.substr(0, 16));
}

}  // namespace

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
    Extent head;                  // its HEAD since its last COMMIT (length 0: none)
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
        case rec::Type::head:
          if (!r->body.empty()) found[id].head = {seq, off + rec::kPrefixSize, r->body.size()};
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
          // below). A HEAD since the previous COMMIT is content too, in
          // front of the chunks.
          const bool head = m.head.length > 0 && m.head.length <= env->size;
          const uint64_t want = env->size - (head ? m.head.length : 0);
          uint64_t sum = 0;
          size_t first = m.chunks.size();
          while (first > 0 && sum < want) sum += m.chunks[--first].length;
          if (sum == want && (!m.chunks.empty() || head || !m.live)) {
            m.extents.assign(m.chunks.begin() + ptrdiff_t(first), m.chunks.end());
            if (head) m.extents.insert(m.extents.begin(), m.head);
          } else if (!m.live) {
            m.extents = std::move(m.chunks);
            if (head) m.extents.insert(m.extents.begin(), m.head);
          }
          m.chunks.clear();
          m.head = Extent{};
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

}  // namespace sluice::queue
