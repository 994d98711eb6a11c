// pickup.cpp — see pickup.hpp.
#include "mta/pickup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "conf/log.hpp"
#include "conf/safe_file.hpp"
#include "mta/events.hpp"
#include "mta/proto/command.hpp"
#include "mta/sendmail/maildrop.hpp"
#include "mta/uv/guard.hpp"
#include "mta/uv_util.hpp"

namespace sluice::mta {

namespace {

constexpr uint64_t kRescanMs = 60'000;
// A .tmp file this old belongs to a sluice-sendmail that died mid-write
// (killed outright: any other ending removes its own file). An hour is far
// longer than any write takes, and short enough that a local user cannot
// keep the disk full with them (issue 11).
constexpr int64_t kStaleTmpSeconds = 3600;
constexpr std::string_view kStaleRemoved = "stale temporary file removed";
// Why a file waits while the spool's file system is below its reserve.
constexpr std::string_view kBelowReserve =
    "the spool's file system is below its free-space reserve (limits.min_free_space)";
// Envelope lines on top of the message (10,000 recipients of 256 octets).
constexpr uint64_t kEnvelopeAllowance = 4ull << 20;

std::string errno_text(int err) { return std::strerror(err); }

bool is_candidate(std::string_view name) { return sendmail::valid_maildrop_file_name(name); }

void fsync_path(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// The value of the first Message-ID header field, "" if none.
std::string find_message_id(std::string_view content) {
  size_t pos = 0;
  while (pos < content.size()) {
    size_t eol = content.find("\r\n", pos);
    if (eol == std::string_view::npos || eol == pos) break;  // end of the header section
    std::string_view line = content.substr(pos, eol - pos);
    constexpr std::string_view key = "message-id:";
    if (line.size() > key.size() &&
        std::equal(key.begin(), key.end(), line.begin(),
                   [](char a, char b) { return a == (b >= 'A' && b <= 'Z' ? b + 32 : b); })) {
      std::string_view v = line.substr(key.size());
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      return std::string(v.substr(0, 200));
    }
    pos = eol + 2;
  }
  return {};
}

struct Picked {
  bool ok = false;
  bool retry = false;
  bool discard = false;  // unlinked, not set aside: a second name of some other file
  std::string error;
  uid_t uid = 0;
  std::unique_ptr<Intake::Message> message;  // when ok: ready to commit
  queue::Envelope env;
};

// Reads and checks one maildrop file and, when it is good, starts its
// message in the intake. Runs on the thread pool.
Picked take_file(const std::string& dir, const std::string& name, const conf::Config& cfg,
                 queue::Spool& spool, Intake& intake) {
  Picked p;
  const std::string path = dir + "/" + name;
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    p.error = "cannot open: " + errno_text(errno);
    p.retry = errno != ELOOP;  // a symlink is never accepted
    return p;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    p.error = "cannot stat: " + errno_text(errno);
    p.retry = true;
    ::close(fd);
    return p;
  }
  p.uid = st.st_uid;
  if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
    ::close(fd);
    p.error = "not a regular file with one link";
    // A hard link to some other file (maybe root's): only this name goes,
    // the file itself is never moved, kept or re-owned.
    p.discard = S_ISREG(st.st_mode);
    return p;
  }
  const uint64_t cap = cfg.limits.max_message_size + kEnvelopeAllowance;
  if (static_cast<uint64_t>(st.st_size) > cap) {
    ::close(fd);
    p.error = fmt::format("file of {} bytes exceeds the message size limit", st.st_size);
    return p;
  }
  // As MAIL FROM with SIZE on SMTP: nothing is committed that would take
  // the file system below limits.min_free_space; the file waits.
  if (const uint64_t reserve = cfg.limits.min_free_space; reserve > 0) {
    const uint64_t need = reserve + static_cast<uint64_t>(st.st_size);
    if (spool.free_space(need) < need) {
      ::close(fd);
      p.error = std::string(kBelowReserve);
      p.retry = true;
      return p;
    }
  }
  std::string raw;
  raw.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < raw.size()) {
    ssize_t n = ::read(fd, raw.data() + got, raw.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  raw.resize(got);

  auto drop = sendmail::decode_maildrop(raw);
  if (!drop) {
    p.error = "malformed maildrop file: " + drop.error();
    return p;
  }
  queue::Envelope env;
  if (!drop->sender.empty()) {
    auto s = proto::parse_path("<" + drop->sender + ">", true);
    if (!s) {
      p.error = "bad sender address <" + log::sanitize(drop->sender) + ">";
      return p;
    }
    env.sender = s->str();
    env.smtputf8 = env.smtputf8 || s->utf8();
  }
  for (const auto& r : drop->recipients) {
    auto m = proto::parse_path("<" + r + ">", false);
    if (!m || m->domain.empty()) {
      p.error = "bad recipient address <" + log::sanitize(r) + ">";
      return p;
    }
    env.smtputf8 = env.smtputf8 || m->utf8();
    // sluice-sendmail expanded [aliases] already; a local name here was
    // written under another configuration. Never relayed to this host.
    auto local = aliases::resolve(cfg.aliases, cfg.hostname, m->str());
    if (local.kind == aliases::Resolution::Kind::unknown) {
      p.error = fmt::format("recipient <{}> is a local name without an [aliases] entry; add one "
                            "and move the file back into maildrop/",
                            log::sanitize(m->str()));
      return p;
    }
    auto add = [&env](std::string address, std::string orcpt) {
      for (const auto& x : env.recipients)
        if (x.address == address) return;  // an alias target named twice
      queue::Recipient rcpt;
      rcpt.address = std::move(address);
      rcpt.orcpt = std::move(orcpt);
      env.recipients.push_back(std::move(rcpt));
    };
    if (local.kind == aliases::Resolution::Kind::alias) {
      for (const std::string& t : *local.targets) add(t, m->utf8() ? "" : aliases::orcpt(m->str()));
    } else {
      add(m->str(), "");
    }
  }
  if (env.recipients.empty()) {
    p.error = "no recipients";
    return p;
  }
  // decode_maildrop() guarantees what the SMTP path does: CRLF lines of at
  // most 998 octets, no NUL, no bare CR or LF.
  const std::string& content = drop->message;
  if (content.size() > cfg.limits.max_message_size) {
    p.error = fmt::format("message of {} bytes exceeds limits.max_message_size", content.size());
    return p;
  }
  if (std::any_of(content.begin(), content.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }))
    env.body = queue::BodyType::eight_bit_mime;
  env.message_id = find_message_id(content);
  env.client_address = "local";

  env.arrival_us = wall_clock_us();
  mail::Trace trace;
  trace.by = cfg.hostname;
  trace.unix_us = env.arrival_us;
  trace.local_uid = static_cast<uint32_t>(p.uid);
  p.message = intake.begin(Intake::Source::local, std::move(trace));
  p.message->append(content);
  p.env = std::move(env);
  p.ok = true;
  return p;
}

// A file that can never be accepted goes to <spool_dir>/corrupt/ for the
// administrator; it is never silently dropped.
void set_aside(const std::string& spool_dir, const std::string& dir, const std::string& name) {
  const std::string corrupt = spool_dir + "/corrupt";
  ::mkdir(corrupt.c_str(), 0700);
  if (::rename((dir + "/" + name).c_str(), (corrupt + "/" + name).c_str()) != 0)
    ::unlink((dir + "/" + name).c_str());
  fsync_path(corrupt);
}

}  // namespace

// One piece of thread-pool work: first remove the files whose messages
// are durable, then (when asked) scan the directory.
struct Pickup::Work {
  uv_work_t req;
  Pickup* self;
  std::string dir;
  std::string spool_dir;
  std::shared_ptr<const conf::Config> config;
  std::vector<std::string> unlink;  // committed: remove these first
  bool scan = false;
  std::vector<Result> results;
};

Pickup::Pickup(uv_loop_t* loop, std::shared_ptr<const conf::Config> config, queue::Spool& spool,
               Intake& intake)
    : loop_(loop), config_(std::move(config)), spool_(spool), intake_(intake) {
  dir_ = config_->spool_dir + "/maildrop";
}

Pickup::~Pickup() = default;

std::expected<void, std::string> Pickup::prepare(uid_t uid) {
  // Root, before the drop. spool_dir is the user's, so "maildrop" could be
  // a planted link or be swapped at any moment (renameat2): it is made and
  // opened without following a link, and its owner and mode are set on that
  // open descriptor only (conf/safe_file.hpp).
  auto spool_dir = safe::open_dir(config_->spool_dir);
  if (!spool_dir) return std::unexpected(spool_dir.error());
  // Every user of sluice-sendmail must reach the maildrop: spool_dir is at
  // least 0711 (set on its descriptor).
  if (auto st = safe::stat_fd(spool_dir->fd.get(), spool_dir->path); st && (st->st_mode & 0111) != 0111)
    ::fchmod(spool_dir->fd.get(), (st->st_mode & 07777) | 0111);
  const bool root = geteuid() == 0;
  auto made = safe::make_dir_at(*spool_dir, "maildrop", 0700,
                                {root ? uid : static_cast<uid_t>(-1), static_cast<gid_t>(-1)});
  if (!made) return std::unexpected(made.error());
  const safe::Dir& md = made->dir;
  auto st = safe::stat_fd(md.fd.get(), md.path);
  if (!st) return std::unexpected(st.error());
  if (root && st->st_uid != uid)
    return std::unexpected(fmt::format("{}: belongs to uid {}, not the daemon's uid {}; fix: chown {} {}",
                                       md.path, st->st_uid, uid, uid, md.path));

  gid_t gid = static_cast<gid_t>(-1);
  std::vector<char> buf(16384);
  struct group gr, *found = nullptr;
  if (getgrnam_r(kMaildropGroup, &gr, buf.data(), buf.size(), &found) == 0 && found) gid = gr.gr_gid;
  bool shared = false;
  if (gid != static_cast<gid_t>(-1)) {
    if (::fchown(md.fd.get(), static_cast<uid_t>(-1), gid) == 0)
      shared = true;
    else
      log::warning("maildrop {}: cannot give it to group {}: {}", dir_, kMaildropGroup,
                   errno_text(errno));
  }
  if (::fchmod(md.fd.get(), shared ? 01730 : 0700) != 0)
    return std::unexpected(fmt::format("{}: cannot change its mode: {}", md.path, errno_text(errno)));
  if (shared)
    log::info("maildrop {}: open to group {} (sluice-sendmail)", dir_, kMaildropGroup);
  else
    log::info("maildrop {}: no group {}, so only the daemon's user and root can use "
              "sluice-sendmail (docs/sendmail.md)", dir_, kMaildropGroup);
  return {};
}

void Pickup::start() {
  if (closing_ || open_handles_ > 0) return;
  watch_.init(loop_, uv_fs_event_init);
  watch_->data = this;
  timer_.init(loop_, uv_timer_init);
  timer_->data = this;
  open_handles_ = 2;
  int rc = uv_fs_event_start(watch_.get(), [](uv_fs_event_t* h, const char*, int, int status) {
    uv::guard("maildrop watch", [&] {
      if (status == 0) static_cast<Pickup*>(h->data)->scan();
    });
  }, dir_.c_str(), 0);
  watching_ = rc == 0;
  if (!watching_)
    log::warning("maildrop {}: cannot watch it ({}); checking once a minute", dir_, uv_strerror(rc));
  uv_timer_start(timer_.get(), [](uv_timer_t* t) {
    uv::guard("maildrop timer", [t] { static_cast<Pickup*>(t->data)->scan(); });
  }, kRescanMs, kRescanMs);
  scan();
}

void Pickup::scan() {
  if (closing_) return;
  rescan_ = true;
  work();
}

void Pickup::work() {
  if (working_ || (!rescan_ && unlink_.empty())) return;
  working_ = true;
  auto* w = new Work{};
  w->req.data = w;
  w->self = this;
  w->dir = dir_;
  w->spool_dir = config_->spool_dir;
  w->config = config_;
  w->unlink = std::move(unlink_);
  unlink_.clear();
  w->scan = rescan_ && !closing_;
  rescan_ = false;
  uv_queue_work(
      loop_, &w->req,
      [](uv_work_t* req) {
        uv::guard("maildrop work", [req] {
          auto* w = static_cast<Work*>(req->data);
          bool removed = false;
          for (const auto& name : w->unlink) {
            if (::unlink((w->dir + "/" + name).c_str()) == 0) {
              removed = true;
            } else {
              Result r;
              r.file = name;
              r.error = "committed but could not remove the file: " + errno_text(errno);
              r.unlink_failed = true;
              w->results.push_back(std::move(r));
            }
          }
          if (w->scan) removed = w->self->scan_dir(*w) || removed;
          if (removed) fsync_path(w->dir);
        });
      },
      [](uv_work_t* req, int) {
        uv::guard("maildrop work done", [req] {
          std::unique_ptr<Work> w(static_cast<Work*>(req->data));
          w->self->after_work(*w);
        });
      });
}

// Thread pool. Lists the maildrop and takes each file that is not already
// on its way (busy_): a good one is committed through the intake, whose
// answer comes back to committed() on the loop; a bad one is set aside.
bool Pickup::scan_dir(Work& w) {
  DIR* d = ::opendir(w.dir.c_str());
  if (!d) return false;
  std::vector<std::string> names, stale;
  const time_t now = ::time(nullptr);
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (is_candidate(name)) {
      names.push_back(std::move(name));
    } else if (name.ends_with(".tmp") && name.front() != '.') {
      struct stat st;
      if (::fstatat(dirfd(d), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          now - st.st_mtime > kStaleTmpSeconds)
        stale.push_back(std::move(name));
    }
  }
  ::closedir(d);
  // Names begin with the drop time in hex: oldest first.
  std::sort(names.begin(), names.end());
  bool removed = false;
  for (const auto& name : names) {
    {
      std::lock_guard lock(busy_mu_);
      if (!busy_.insert(name).second) continue;  // committed, not yet removed
    }
    Picked p = take_file(w.dir, name, *w.config, spool_, intake_);
    if (p.ok) {
      commits_.fetch_add(1, std::memory_order_relaxed);
      intake_.commit(std::move(p.message), std::move(p.env),
                     [this, name, uid = p.uid](bool ok, const queue::Envelope& env) {
                       committed(name, uid, ok, env);
                     });
      continue;
    }
    {
      std::lock_guard lock(busy_mu_);
      busy_.erase(name);
    }
    if (!p.retry && p.discard) ::unlink((w.dir + "/" + name).c_str());
    else if (!p.retry) set_aside(w.spool_dir, w.dir, name);
    removed = removed || !p.retry;
    const bool below_reserve = p.retry && p.error == kBelowReserve;
    w.results.push_back(Result{name, p.retry, std::move(p.error), p.uid, p.discard});
    if (below_reserve) break;  // the rest waits too
  }
  for (const auto& name : stale) {
    ::unlink((w.dir + "/" + name).c_str());
    w.results.push_back(Result{name, false, std::string(kStaleRemoved), 0});
  }
  return removed || !stale.empty();
}

void Pickup::committed(const std::string& name, uid_t uid, bool ok, const queue::Envelope& env) {
  commits_.fetch_sub(1, std::memory_order_relaxed);
  if (ok) {
    ++picked_up_;
    low_space_logged_ = false;
    events::reception(env, "maildrop", {},
                      fmt::format("{}: accept maildrop={} uid={} from=<{}> size={} nrcpt={} msgid={}", env.id, name,
                                  uid, log::sanitize(env.sender), env.size, env.recipients.size(),
                                  env.message_id.empty() ? "-" : log::sanitize(env.message_id)));
    unlink_.push_back(name);  // busy_ until it is gone
    work();
  } else {
    log::warning("maildrop {}: the spool could not store it; trying again later", name);
    std::lock_guard lock(busy_mu_);
    busy_.erase(name);
  }
  maybe_done();
}

void Pickup::after_work(Work& w) {
  working_ = false;
  {
    std::lock_guard lock(busy_mu_);
    for (const auto& name : w.unlink) busy_.erase(name);
  }
  for (auto& r : w.results) {
    if (r.retry && r.error == kBelowReserve) {
      if (!low_space_logged_)  // once, until a file goes through again
        log::warning("maildrop {}: {}; waiting for space", r.file, r.error);
      low_space_logged_ = true;
    } else if (r.retry) {
      log::warning("maildrop {}: {}; trying again later", r.file, log::sanitize(r.error));
    } else if (r.error == kStaleRemoved) {
      log::warning("maildrop {}: removed a temporary file older than {} s (a sluice-sendmail "
                   "killed while writing)", r.file, kStaleTmpSeconds);
    } else if (r.discarded) {
      log::error("maildrop {}: uid={} {}; removed from the maildrop (the file it names was not touched)",
                 r.file, r.uid, log::sanitize(r.error));
    } else if (r.unlink_failed) {
      log::warning("maildrop {}: {}", r.file, r.error);
    } else {
      log::error("maildrop {}: uid={} {}; moved to {}/corrupt", r.file, r.uid, log::sanitize(r.error),
                 config_->spool_dir);
    }
  }
  work();  // files committed meanwhile, or a scan asked for meanwhile
  maybe_done();
}

void Pickup::close(std::function<void()> done) {
  done_ = std::move(done);
  if (closing_) return;
  closing_ = true;
  if (open_handles_ == 0) {
    maybe_done();
    return;
  }
  auto closed = [](void* p) {  // after the handle's memory is freed (uv::Handle)
    auto* self = static_cast<Pickup*>(p);
    --self->open_handles_;
    self->maybe_done();
  };
  watch_.close(closed, this);  // closing stops them
  timer_.close(closed, this);
}

void Pickup::maybe_done() {
  if (!closing_ || working_ || open_handles_ > 0 || commits_.load() > 0 || !unlink_.empty() || !done_)
    return;
  auto done = std::move(done_);
  done_ = nullptr;
  done();
}

}  // namespace sluice::mta
