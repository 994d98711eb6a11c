// sts_policies.cpp — see sts_policies.hpp.
#include "mta/sts_policies.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "conf/log.hpp"
#include "mta/uv/guard.hpp"
#include "sts/http.hpp"

namespace sluice::mta {

namespace {

constexpr std::string_view kTmpSuffix = ".tmp";

bool write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    s.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::expected<std::string, std::string> read_small(int fd, size_t cap) {
  std::string out;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(std::string(std::strerror(errno)));
    }
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > cap) return std::unexpected(std::string("file too big"));
  }
}

}  // namespace

std::optional<std::string> sts_policy_domain(std::string_view domain) {
  if (domain.ends_with('.')) domain.remove_suffix(1);
  std::string d(domain);
  for (char& c : d)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  if (!sts::is_host_name(d)) return std::nullopt;
  return d;
}

std::expected<std::unique_ptr<StsPolicies>, std::string> StsPolicies::open(uv_loop_t* loop, Options options) {
  auto dir = safe::make_dirs(options.dir, 0700);
  if (!dir) return std::unexpected(dir.error());
  std::unique_ptr<StsPolicies> p(new StsPolicies(loop, std::move(options), std::move(*dir)));
  p->load();
  return p;
}

StsPolicies::StsPolicies(uv_loop_t* loop, Options options, safe::Dir dir)
    : loop_(loop), options_(std::move(options)), dir_(std::move(dir)),
      fetcher_(loop, options_.tls, {options_.port, options_.fetch_timeout}),
      alive_(std::make_shared<bool>(true)) {}

StsPolicies::~StsPolicies() { *alive_ = false; }

int64_t StsPolicies::now() const {
  if (options_.clock) return options_.clock();
  return static_cast<int64_t>(std::time(nullptr));
}

void StsPolicies::load() {
  const int fd = ::openat(dir_.fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    log::warning("mta-sts: cannot read the cache directory {}: {}", dir_.path, std::strerror(errno));
    return;
  }
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  ::closedir(d);
  const int64_t t = now();
  for (const auto& name : names) {
    if (name.ends_with(kTmpSuffix)) {  // an interrupted write
      ::unlinkat(dir_.fd.get(), name.c_str(), 0);
      continue;
    }
    auto f = safe::open_file_at(dir_, name, O_RDONLY);
    if (!f) {
      log::warning("mta-sts: cache file {} ignored: {}", dir_.child(log::sanitize(name)), f.error());
      continue;
    }
    auto text = read_small(f->get(), sts::kMaxCacheFile);
    auto c = text ? sts::decode(*text) : std::unexpected(text.error());
    if (c && c->domain != name) c = std::unexpected(std::string("named for another domain"));
    if (!c) {
      log::warning("mta-sts: cache file {} ignored: {}", dir_.child(log::sanitize(name)), c.error());
      continue;
    }
    if (!sts::valid(*c, t)) {
      ::unlinkat(dir_.fd.get(), name.c_str(), 0);
      continue;
    }
    domains_[c->domain].entry = std::move(*c);
  }
}

std::optional<sts::Policy> StsPolicies::in_force(Domain& d) {
  if (d.entry && sts::valid(*d.entry, now())) return d.entry->policy;
  return std::nullopt;
}

std::optional<sts::Policy> StsPolicies::current(std::string_view domain_in) {
  auto domain = sts_policy_domain(domain_in);
  if (!domain || closed_) return std::nullopt;
  auto it = domains_.find(*domain);
  if (it == domains_.end()) {
    if (domains_.size() >= kMaxDomains) prune();
    it = domains_.emplace(*domain, Domain{}).first;
  }
  Domain& d = it->second;
  const int64_t t = now();
  if (!d.busy && (!d.last_check || t >= *d.last_check + kTxtCheckInterval || t < *d.last_check))
    check(*domain);
  return in_force(d);
}

void StsPolicies::recheck(std::string_view domain_in, std::function<void(std::optional<sts::Policy>)> cb) {
  auto domain = sts_policy_domain(domain_in);
  if (!domain || closed_) {
    post([cb = std::move(cb)] { cb(std::nullopt); });
    return;
  }
  Domain& d = domains_[*domain];
  d.waiters.push_back(std::move(cb));
  if (!d.busy) check(*domain);
}

void StsPolicies::check(const std::string& domain) {
  Domain& d = domains_[domain];
  d.busy = true;
  d.last_check = now();
  dns::Resolver* r = options_.resolver ? options_.resolver() : nullptr;
  if (!r) {
    post([this, domain, alive = alive_] {
      if (*alive) done_checking(domain);
    });
    return;
  }
  r->resolve_txt("_mta-sts." + domain, [this, domain, alive = alive_](dns::TxtResult res) {
    if (*alive) on_txt(domain, std::move(res));
  });
}

void StsPolicies::on_txt(const std::string& domain, dns::TxtResult r) {
  auto it = domains_.find(domain);
  if (it == domains_.end() || closed_) return;
  Domain& d = it->second;
  if (r.status != dns::Status::ok) {  // no record or a DNS failure: keep what is cached
    log::debug("mta-sts: domain={} no TXT record: {}", domain, log::sanitize(r.reason));
    done_checking(domain);
    return;
  }
  auto id = sts::parse_txt(r.records);
  if (!id) {
    if (id.error().error != sts::TxtError::none_published)
      log::info("mta-sts: domain={} TXT record unusable: {}", domain, log::sanitize(id.error().reason));
    done_checking(domain);
    return;
  }
  const int64_t t = now();
  if (d.entry && !sts::needs_refresh(*d.entry, *id, t)) {
    done_checking(domain);
    return;
  }
  if (!sts::fetch_allowed(d.last_fetch, *id, t)) {
    log::debug("mta-sts: domain={} id={} fetched less than {} s ago; not again yet", domain, *id,
               sts::kFetchInterval);
    done_checking(domain);
    return;
  }
  dns::Resolver* res = options_.resolver ? options_.resolver() : nullptr;
  d.last_fetch = sts::FetchAttempt{*id, t};
  if (!res ||
      fetcher_.fetch(*res, domain, [this, domain, id = *id](StsFetchResult fr) {
        on_fetched(domain, id, std::move(fr));
      }) == 0) {
    on_fetched(domain, *id, std::unexpected(std::string("no resolver")));
  }
}

void StsPolicies::on_fetched(const std::string& domain, const std::string& id, StsFetchResult r) {
  auto it = domains_.find(domain);
  if (it == domains_.end()) return;
  Domain& d = it->second;
  if (!r) {
    log::info("mta-sts: domain={} fetch failed: {}", domain, log::sanitize(r.error()));
  } else {
    sts::CachedPolicy c{domain, id, std::move(*r), now()};
    log::info("mta-sts: domain={} id={} mode={} max_age={}", domain, id, sts::mode_name(c.policy.mode),
              c.policy.max_age);
    store(c);
    d.entry = std::move(c);
  }
  done_checking(domain);
}

void StsPolicies::done_checking(const std::string& domain) {
  auto it = domains_.find(domain);
  if (it == domains_.end()) return;
  Domain& d = it->second;
  d.busy = false;
  if (d.entry && !sts::valid(*d.entry, now())) {
    remove_file(domain);
    d.entry.reset();
  }
  auto waiters = std::move(d.waiters);
  d.waiters.clear();
  const auto policy = in_force(d);
  for (auto& w : waiters) w(policy);  // may call back into the store
}

void StsPolicies::store(const sts::CachedPolicy& c) {
  const std::string tmp = c.domain + std::string(kTmpSuffix);
  auto fail = [&](std::string_view what) {
    log::warning("mta-sts: cannot write {}: {}: {}", dir_.child(c.domain), what, std::strerror(errno));
    ::unlinkat(dir_.fd.get(), tmp.c_str(), 0);
  };
  auto f = safe::open_file_at(dir_, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (!f) {
    log::warning("mta-sts: cannot write {}: {}", dir_.child(c.domain), f.error());
    return;
  }
  if (!write_all(f->get(), sts::encode(c))) return fail("write");
  if (::fsync(f->get()) != 0) return fail("fsync");
  f->reset();
  if (::renameat(dir_.fd.get(), tmp.c_str(), dir_.fd.get(), c.domain.c_str()) != 0) return fail("rename");
  if (::fsync(dir_.fd.get()) != 0) log::warning("mta-sts: fsync of {}: {}", dir_.path, std::strerror(errno));
}

void StsPolicies::remove_file(const std::string& domain) {
  if (::unlinkat(dir_.fd.get(), domain.c_str(), 0) == 0) ::fsync(dir_.fd.get());
}

// Forgets domains with no policy and no check running, checked long enough
// ago that forgetting them changes nothing but the next check's time.
void StsPolicies::prune() {
  const int64_t t = now();
  std::erase_if(domains_, [&](const auto& kv) {
    const Domain& d = kv.second;
    return !d.entry && !d.busy && d.waiters.empty() &&
           (!d.last_fetch || t >= d.last_fetch->at + sts::kFetchInterval);
  });
}

const sts::CachedPolicy* StsPolicies::cached(std::string_view domain) const {
  auto it = domains_.find(domain);
  return it != domains_.end() && it->second.entry ? &*it->second.entry : nullptr;
}

bool StsPolicies::checking(std::string_view domain) const {
  auto it = domains_.find(domain);
  return it != domains_.end() && it->second.busy;
}

void StsPolicies::post(std::function<void()> f) {
  posted_.push_back(std::move(f));
  if (!post_timer_) {
    if (post_timer_.init(loop_, uv_timer_init) != 0) return;
    post_timer_->data = this;
  }
  uv_timer_start(post_timer_.get(), &StsPolicies::on_post, 0, 0);
}

void StsPolicies::on_post(uv_timer_t* t) {
  uv::guard("sts policies post", [&] {
    auto* self = static_cast<StsPolicies*>(t->data);
    auto fs = std::move(self->posted_);
    self->posted_.clear();
    for (auto& f : fs) f();  // may destroy the store: touch nothing after
  });
}

void StsPolicies::close(std::function<void()> done) {
  closed_ = true;
  fetcher_.cancel_all();
  // Checks waiting for DNS end here (their answers will be ignored); who
  // waits on one gets the policy in memory.
  std::vector<std::pair<std::function<void(std::optional<sts::Policy>)>, std::optional<sts::Policy>>> calls;
  for (auto& [name, d] : domains_) {
    d.busy = false;
    for (auto& w : d.waiters) calls.emplace_back(std::move(w), in_force(d));
    d.waiters.clear();
  }
  post([this, calls = std::move(calls), done = std::move(done)]() mutable {
    for (auto& [w, p] : calls) w(std::move(p));
    post_timer_.close();
    if (done) done();
  });
}

}  // namespace sluice::mta
