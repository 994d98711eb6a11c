// tls_reports.cpp — see tls_reports.hpp.
#include "mta/tls_reports.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "conf/log.hpp"
#include "mail/headers.hpp"
#include "tlsrpt/record.hpp"
#include "tlsrpt/report.hpp"

namespace sluice::mta {
namespace {

constexpr int64_t kTxtTtl = 3600;        // a domain's _smtp._tls answer is kept an hour
constexpr int64_t kTxtRetry = 300;       // after a temporary failure, ask again in 5 minutes

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  while (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

// Writes `data` to dir/name through a temporary file, fsync, rename and an
// fsync of the directory.
std::expected<void, std::string> write_atomically(const std::string& dir, const std::string& name,
                                                  const std::string& data) {
  const std::string path = dir + "/" + name, tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return std::unexpected(fmt::format("{}: {}", tmp, std::strerror(errno)));
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return std::unexpected(fmt::format("{}: {}", tmp, std::strerror(err)));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return std::unexpected(fmt::format("{}: {}", tmp, std::strerror(err)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return std::unexpected(fmt::format("{}: {}", path, std::strerror(errno)));
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

}  // namespace

TlsReports::TlsReports(uv_loop_t* loop, Intake& intake, ResolverFn resolver, Clock clock)
    : loop_(loop), intake_(intake), resolver_(std::move(resolver)), clock_(std::move(clock)) {}

TlsReports::~TlsReports() = default;

int64_t TlsReports::now_s() const { return clock_ ? clock_() : static_cast<int64_t>(std::time(nullptr)); }

std::string TlsReports::path_of(int64_t day) const { return tlsrpt::day_name(day) + ".json"; }

std::expected<void, std::string> TlsReports::start(const conf::Config& config) {
  reload(config);
  dir_ = config.spool_dir + "/tlsrpt";
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST)
    return std::unexpected(fmt::format("{}: {}", dir_, std::strerror(errno)));
  DIR* d = ::opendir(dir_.c_str());
  if (!d) return std::unexpected(fmt::format("{}: {}", dir_, std::strerror(errno)));
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (!name.ends_with(".json")) continue;
    std::string path = dir_ + "/" + name;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      log::error("tls-reports: cannot read {}: {}", path, std::strerror(errno));
      continue;
    }
    std::string text;
    char buf[16384];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    auto day = tlsrpt::decode_day(text);
    if (!day) {
      log::error("tls-reports: {} is not a day of counts ({}); left alone", path, day.error());
      continue;
    }
    if (path_of(day->day) != name) {
      log::error("tls-reports: {} holds the counts of {}; left alone", path, tlsrpt::day_name(day->day));
      continue;
    }
    tlsrpt::Day& into = days_[day->day];
    into.day = day->day;
    tlsrpt::merge(into, *day);
  }
  ::closedir(d);
  if (!days_.empty()) log::info("tls-reports: {} days of counts loaded from {}", days_.size(), dir_);
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  uv_timer_start(
      timer_, [](uv_timer_t* t) { static_cast<TlsReports*>(t->data)->tick(); }, 1000, 1000);
  uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
  return {};
}

void TlsReports::reload(const conf::Config& config) {
  cfg_ = config.tls_reports;
  hostname_ = config.hostname;
}

void TlsReports::stop() {
  flush();
  stopped_ = true;
  if (timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
}

void TlsReports::record(TlsSession s) {
  if (!cfg_.enabled) return;
  std::string name = lower(s.policy_domain);
  if (name.empty() || name.front() == '[') return;  // address literals publish nothing
  s.policy_domain = name;
  auto [it, fresh] = domains_.try_emplace(name);
  Domain& d = it->second;
  // After stop() the resolver may be closed: no lookups, known domains only.
  if ((fresh || now_s() >= d.expires_s) && !d.asking && !stopped_) ask(name);
  switch (d.state) {
    case Domain::State::publishes:
      count(s, d.rua);
      break;
    case Domain::State::none:
      break;
    case Domain::State::unknown:
      if (d.pending.size() < kMaxPending) d.pending.push_back(std::move(s));
      break;
  }
}

void TlsReports::ask(const std::string& domain) {
  dns::Resolver* r = resolver_ ? resolver_() : nullptr;
  if (!r) return;
  domains_[domain].asking = true;
  std::weak_ptr<bool> alive = alive_;
  r->resolve_txt("_smtp._tls." + domain, [this, alive, domain](dns::TxtResult res) {
    if (alive.expired()) return;
    answer(domain, std::move(res));
  });
}

void TlsReports::answer(const std::string& domain, dns::TxtResult r) {
  auto it = domains_.find(domain);
  if (it == domains_.end()) return;
  Domain& d = it->second;
  d.asking = false;
  const Domain::State before = d.state;
  const auto before_rua = d.rua;
  if (r.status == dns::Status::ok) {
    auto rec = tlsrpt::parse_txt(r.records);
    d.expires_s = now_s() + kTxtTtl;
    if (rec) {
      d.state = Domain::State::publishes;
      d.rua = rec->mailto;
    } else {
      d.state = Domain::State::none;
      d.rua.clear();
      if (rec.error().error != tlsrpt::TxtError::none_published)
        log::info("tls-reports: _smtp._tls.{} not used: {}", domain, rec.error().reason);
    }
  } else if (r.status == dns::Status::temporary) {
    d.expires_s = now_s() + kTxtRetry;
    if (d.state == Domain::State::unknown) d.state = Domain::State::none;
  } else {
    d.expires_s = now_s() + kTxtTtl;
    d.state = Domain::State::none;
    d.rua.clear();
  }
  if (d.state != before || d.rua != before_rua) {
    if (d.state == Domain::State::publishes)
      log::info("tls-reports: {} publishes _smtp._tls, reports to {}", domain, log::sanitize(join(d.rua)));
    else if (before == Domain::State::publishes)
      log::info("tls-reports: {} no longer publishes _smtp._tls", domain);
  }
  auto pending = std::move(d.pending);
  d.pending.clear();
  if (d.state == Domain::State::publishes)
    for (const auto& s : pending) count(s, d.rua);
}

void TlsReports::count(const TlsSession& s, const std::vector<std::string>& rua) {
  tlsrpt::Session t;
  t.policy_domain = s.policy_domain;
  t.policy.type = s.type;
  t.policy.strings = s.policy_strings;
  t.policy.mx = s.mx_patterns;
  if (s.failure)
    t.failure = tlsrpt::FailureKey{*s.failure, s.sending_ip, s.receiving_mx, s.receiving_ip, s.failure_reason};
  const int64_t day = tlsrpt::day_of(now_s());
  tlsrpt::Day& d = days_[day];
  d.day = day;
  tlsrpt::add(d, t, rua);
  dirty_.insert(day);
}

void TlsReports::tick() {
  flush();
  if (!cfg_.enabled || cfg_.contact.empty()) return;
  const int64_t today = tlsrpt::day_of(now_s());
  std::vector<int64_t> ended;
  for (const auto& [day, d] : days_)
    if (day < today && !sending_.contains(day)) ended.push_back(day);
  for (int64_t day : ended) send_day(day);
}

void TlsReports::flush() {
  if (dir_.empty()) return;
  for (int64_t day : dirty_) {
    const std::string name = path_of(day);
    auto it = days_.find(day);
    if (it == days_.end() || it->second.domains.empty()) {
      if (sending_.contains(day)) continue;  // deleted once its reports are in the spool
      if (::unlink((dir_ + "/" + name).c_str()) != 0 && errno != ENOENT)
        log::error("tls-reports: cannot remove {}/{}: {}", dir_, name, std::strerror(errno));
      continue;
    }
    if (auto ok = write_atomically(dir_, name, tlsrpt::encode_day(it->second)); !ok)
      log::error("tls-reports: cannot write the counts: {}", ok.error());
  }
  dirty_.clear();
}

std::expected<std::size_t, std::string> TlsReports::send_now(bool include_today) {
  if (!cfg_.enabled) return std::unexpected(std::string("[tls_reports] enabled is false"));
  if (cfg_.contact.empty()) return std::unexpected(std::string("[tls_reports] contact is not set"));
  const int64_t today = tlsrpt::day_of(now_s());
  std::vector<int64_t> due;
  for (const auto& [day, d] : days_)
    if ((day < today || (include_today && day == today)) && !sending_.contains(day)) due.push_back(day);
  std::size_t n = 0;
  for (int64_t day : due) n += send_day(day);
  return n;
}

std::size_t TlsReports::send_day(int64_t day) {
  auto node = days_.extract(day);
  if (node.empty()) return 0;
  tlsrpt::Day d = std::move(node.mapped());
  const int64_t now = now_s();
  const std::string contact = cfg_.contact;
  const std::string submitter = lower(contact.substr(contact.rfind('@') + 1));
  const int64_t start = day * 86400;
  const int64_t end = std::min(now, start + 86399);
  std::size_t sent = 0;
  std::weak_ptr<bool> alive = alive_;
  for (auto& [domain, counts] : d.domains) {
    if (counts.rua.empty() || counts.policies.empty()) continue;
    mail::Trace trace;
    trace.by = hostname_;
    trace.unix_us = now * 1000000;
    trace.local_uid = static_cast<uint32_t>(::getuid());
    auto m = intake_.begin(Intake::Source::local, trace);
    const std::string id = m->id();
    tlsrpt::ReportMeta meta;
    meta.organization = cfg_.organization.empty() ? hostname_ : cfg_.organization;
    meta.contact = contact;
    meta.report_id = fmt::format("{}.{}.{}@{}", tlsrpt::day_name(day), domain, id, submitter);
    meta.start_s = start;
    meta.end_s = end;
    auto gz = tlsrpt::gzip(tlsrpt::report_json(meta, domain, counts));
    if (!gz) {
      log::error("tls-reports: report for {} not made: {}", domain, gz.error());
      continue;
    }
    tlsrpt::MessageParts p;
    p.from = contact;
    p.to = counts.rua;
    p.submitter = submitter;
    p.policy_domain = domain;
    p.report_id = meta.report_id;
    p.date = mail::rfc5322_date(now * 1000000);
    p.message_id = fmt::format("<{}.tlsrpt@{}>", id, hostname_);
    p.boundary = fmt::format("=_tlsrpt_{}_{}", id, ++serial_);
    p.start_s = start;
    p.end_s = end;
    p.organization = meta.organization;
    p.gz = std::move(*gz);
    m->append(tlsrpt::report_message(p));
    m->end_of_headers(mail::Present{true, true, true}, "");
    queue::Envelope env;
    env.arrival_us = now * 1000000;
    env.sender.clear();  // the null sender: see tls_reports.hpp
    for (const auto& a : counts.rua) {
      queue::Recipient r;
      r.address = a;
      env.recipients.push_back(std::move(r));
    }
    env.body = queue::BodyType::seven_bit;
    env.message_id = p.message_id.substr(1, p.message_id.size() - 2);
    report_ids_.insert(id);
    ++sending_[day];
    ++sent;
    log::info("{}: tls report for {} ({}) to {}", id, domain, tlsrpt::day_name(day), log::sanitize(join(counts.rua)));
    tlsrpt::Day back;
    back.day = day;
    back.domains[domain] = counts;
    intake_.commit(std::move(m), std::move(env),
                   [this, alive, day, back = std::move(back)](bool ok, const queue::Envelope& committed) {
                     if (alive.expired()) return;
                     if (!ok) {
                       log::error("{}: could not store the tls report; counts kept", committed.id);
                       tlsrpt::Day& into = days_[day];
                       into.day = day;
                       tlsrpt::merge(into, back);
                     }
                     if (--sending_[day] == 0) sending_.erase(day);
                     dirty_.insert(day);
                     if (stopped_) flush();
                   });
  }
  if (sent == 0) dirty_.insert(day);  // nothing to report: the file goes
  return sent;
}

std::vector<tlsrpt::Day> TlsReports::days() const {
  std::vector<tlsrpt::Day> out;
  for (const auto& [day, d] : days_) out.push_back(d);
  return out;
}

}  // namespace sluice::mta
