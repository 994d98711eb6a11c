// signing.cpp — see signing.hpp.
#include "mta/signing.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace sluice::mta {

namespace {

constexpr size_t kMaxKeyFile = 64 * 1024;

// The key file's text, if the file may hold a key by the rules of signing.hpp.
std::expected<std::string, std::string> read_key_file(const std::string& path, Signing::Reader reader) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return std::unexpected(fmt::format("cannot open: {}", std::strerror(errno)));
  struct stat st;
  auto fail = [fd](std::string why) {
    ::close(fd);
    return std::unexpected(std::move(why));
  };
  if (::fstat(fd, &st) != 0) return fail(fmt::format("cannot stat: {}", std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) return fail("not a regular file");
  const unsigned mode = st.st_mode & 07777;
  if (st.st_uid != 0 && st.st_uid != reader.uid)
    return fail(fmt::format("belongs to uid {}, not to root or the daemon's account (uid {}); "
                            "chown root {}", st.st_uid, reader.uid, path));
  if (mode & 0007)
    return fail(fmt::format("mode {:04o} lets every account read or change the key; chmod 0640 {}", mode, path));
  if ((mode & 0060) && st.st_gid != reader.gid)
    return fail(fmt::format("mode {:04o} lets group {} read or change the key, which is not the daemon's "
                            "group ({}); chgrp {} {} or chmod 0600", mode, st.st_gid, reader.gid, reader.gid, path));
  if (st.st_size > static_cast<off_t>(kMaxKeyFile)) return fail("larger than 64 KiB: not a key");
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(fmt::format("cannot read: {}", std::strerror(errno)));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  text.resize(got);
  return text;
}

}  // namespace

Signing::Signing(std::vector<Signer> signers) : signers_(std::move(signers)) {
  for (Signer& s : signers_) {
    s.names.clear();
    if (s.table.headers.empty()) {
      auto d = dkim::default_headers();
      s.names.assign(d.begin(), d.end());
    } else {
      for (const std::string& h : s.table.headers) s.names.emplace_back(h);
    }
  }
}

std::expected<std::shared_ptr<const Signing>, std::vector<std::string>> Signing::load(
    const std::vector<conf::Dkim>& tables, Reader reader) {
  std::vector<Signer> signers;
  std::vector<std::string> problems;
  for (const conf::Dkim& t : tables) {
    auto text = read_key_file(t.private_key, reader);
    if (!text) {
      problems.push_back(fmt::format("{}: private_key {}: {}", t.describe(), t.private_key, text.error()));
      continue;
    }
    auto key = dkim::Key::from_pem(*text);
    if (!key) {
      problems.push_back(fmt::format("{}: private_key {}: {}", t.describe(), t.private_key, key.error()));
      continue;
    }
    signers.push_back(Signer{t, std::move(*key), {}});
  }
  if (!problems.empty()) return std::unexpected(std::move(problems));
  return std::make_shared<const Signing>(std::move(signers));
}

std::vector<const Signing::Signer*> Signing::for_domain(std::string_view domain) const {
  size_t best = 0;
  for (const Signer& s : signers_)
    if (s.table.covers(domain)) best = std::max(best, s.table.domain.size());
  std::vector<const Signer*> out;
  if (best == 0) return out;
  for (const Signer& s : signers_)
    if (s.table.domain.size() == best && s.table.covers(domain)) out.push_back(&s);
  return out;
}

SignPlan plan(std::shared_ptr<const Signing> signing, dkim::Scan& scan, const FromRule& rule) {
  SignPlan p;
  p.signing = std::move(signing);
  if (!p.signing || p.signing->empty()) return p;
  if (scan.too_large()) {
    p.why_not = fmt::format("header section over {} bytes", dkim::kMaxHeaderSection);
    return p;
  }
  auto from = dkim::author(scan.fields());
  if (!from) {
    p.why_not = from.error();
    return p;
  }
  p.author = *from;
  auto signers = p.signing->for_domain(std::string_view(p.author).substr(p.author.rfind('@') + 1));
  if (signers.empty()) return p;  // not our domain: nothing to say
  if (rule && !rule(p.author)) {
    p.why_not = fmt::format("the login may not use From <{}>", p.author);
    return p;
  }
  p.signers = std::move(signers);
  return p;
}

Signatures sign(const SignPlan& plan, dkim::Scan& scan, int64_t now_s) {
  Signatures out;
  if (plan.signers.empty()) return out;
  const std::vector<std::string>& fields = scan.fields();
  const std::string body_hash = scan.body_hash();
  for (const Signing::Signer* s : plan.signers) {
    const std::string who = fmt::format("d={} s={} a={}", s->table.domain, s->table.selector,
                                        dkim::to_string(s->key.algorithm()));
    bool present = false;
    for (size_t i = 0; i < fields.size() && !present; ++i)
      present = dkim::verifies(fields, i, body_hash, s->key, s->table.domain, s->table.selector);
    if (present) {
      out.already.push_back(who);
      continue;
    }
    dkim::Request r{s->table.domain, s->table.selector, now_s, dkim::header_list(fields, s->names), body_hash};
    auto field = dkim::sign(r, s->key, fields);
    if (!field) {
      out.failures.push_back(fmt::format("{}: {}", who, field.error()));
      continue;
    }
    out.fields += *field;
    out.signed_by.push_back(who);
  }
  return out;
}

}  // namespace sluice::mta
