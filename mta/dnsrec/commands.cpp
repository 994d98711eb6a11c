// commands.cpp — see commands.hpp. The glue around records.* and lookup.*:
// the configuration, the key files (read with dkim::Key::from_pem; a new
// one written with O_EXCL through conf/safe_file), the machine's addresses
// (getifaddrs), and the output.
#include "mta/dnsrec/commands.hpp"

#include <fcntl.h>
#include <grp.h>
#include <ifaddrs.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "conf/config.hpp"
#include "conf/safe_file.hpp"
#include "dkim/dkim.hpp"
#include "mta/dnsrec/lookup.hpp"
#include "mta/dnsrec/records.hpp"

namespace sluice::dnsrec {

namespace {

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

std::string group_name(gid_t gid) {
  if (const group* g = ::getgrgid(gid)) return g->gr_name;
  return std::to_string(gid);
}

std::string user_name(uid_t uid) {
  if (const passwd* p = ::getpwuid(uid)) return p->pw_name;
  return std::to_string(uid);
}

// A domain or selector from the command line: lower case, no trailing dot.
std::optional<std::string> name_arg(std::string_view what, std::string value, std::ostream& err) {
  value = lower(std::move(value));
  if (what == "--domain" && value.ends_with('.')) value.pop_back();
  if (auto why = conf::check_domain_name(value)) {
    err << fmt::format("sluicectl: {} {}\n", what, *why);
    return std::nullopt;
  }
  return value;
}

// Private key text is wiped before its memory is given back, on every path.
struct Wiped {
  std::string text;
  ~Wiped() { ::explicit_bzero(text.data(), text.size()); }
};

std::string key_kind(dkim::Algorithm a) { return a == dkim::Algorithm::rsa_sha256 ? "rsa" : "ed25519"; }

// The group the daemon's user reads its keys through, when we can give it:
// as root, with a readable configuration naming an existing account.
std::optional<gid_t> daemon_group(const std::string& config_path, std::ostream& err) {
  if (::geteuid() != 0) return std::nullopt;
  auto cfg = conf::load_file(config_path);
  if (!cfg) {
    err << fmt::format("sluicectl: cannot read {} for the daemon's user ({}); the key file stays "
                       "root:root: give it sluiced's group yourself (chgrp)\n",
                       config_path, cfg.error().front().str(config_path));
    return std::nullopt;
  }
  auto account = conf::lookup_user(*cfg);
  if (!account) {
    err << fmt::format("sluicectl: {}; the key file stays root:root\n", account.error().str(config_path));
    return std::nullopt;
  }
  return account->gid;
}

std::expected<std::string, std::string> read_file(const std::string& path) {
  auto fd = safe::open_admin_file(path);
  if (!fd) return std::unexpected(fd.error());
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd->get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::unexpected(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (1u << 20)) return std::unexpected(path + ": larger than 1 MiB, not a key");
  }
  return text;
}

std::vector<net::IpAddress> machine_addresses(std::ostream& err) {
  std::vector<net::IpAddress> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    err << fmt::format("sluicectl: cannot list this machine's addresses ({}); give them with --ip\n",
                       std::strerror(errno));
    return out;
  }
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    auto ip = net::IpAddress::from_sockaddr(i->ifa_addr);
    if (ip && is_global(*ip) && std::find(out.begin(), out.end(), *ip) == out.end()) out.push_back(*ip);
  }
  ::freeifaddrs(list);
  return out;
}

}  // namespace

int keygen(const KeygenArgs& args, std::ostream& out, std::ostream& err) {
  auto domain = name_arg("--domain", args.domain, err);
  auto selector = name_arg("--selector", args.selector, err);
  if (!domain || !selector) return kExitUsage;
  const auto algorithm = args.type == "ed25519" ? dkim::Algorithm::ed25519_sha256 : dkim::Algorithm::rsa_sha256;
  std::filesystem::path path =
      args.out.empty() ? fmt::format("/etc/sluice/dkim/{}.{}.key", *domain, *selector) : args.out;
  path = std::filesystem::absolute(path).lexically_normal();
  const std::string file = path.filename().string(), dir_path = path.parent_path().string();
  if (file.empty()) {
    err << fmt::format("sluicectl: --out {}: names a directory, not a file\n", args.out);
    return kExitUsage;
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    err << fmt::format("sluicectl: {} already exists; a key is never overwritten (the signatures made "
                       "with it would stop verifying): choose a new selector, or remove the file first\n",
                       path.string());
    return kExitFailed;
  }
  const std::optional<gid_t> gid = daemon_group(args.config_path, err);

  auto key = dkim::Key::generate(algorithm, args.bits);
  if (!key) {
    err << "sluicectl: " << key.error() << "\n";
    return algorithm == dkim::Algorithm::rsa_sha256 ? kExitUsage : kExitFailed;
  }
  Wiped pem;
  if (auto text = key->private_pem()) {
    pem.text = std::move(*text);
  } else {
    err << "sluicectl: " << text.error() << "\n";
    return kExitFailed;
  }
  // A directory made here is 0750 with the daemon's group, so that the
  // daemon can reach the key and nobody else can list the keys.
  const safe::Owner owner{static_cast<uid_t>(-1), gid.value_or(static_cast<gid_t>(-1))};
  auto dir = safe::make_dirs(dir_path, 0750, owner);
  if (!dir) {
    err << "sluicectl: " << dir.error() << "\n";
    return kExitFailed;
  }
  auto fd = safe::open_file_at(*dir, file, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (!fd) {
    err << "sluicectl: " << fd.error() << "\n";
    return kExitFailed;
  }
  auto fail = [&](std::string why) {
    ::unlinkat(dir->fd.get(), file.c_str(), 0);
    err << "sluicectl: " << why << "\n";
    return kExitFailed;
  };
  if (auto r = safe::set_owner_mode(fd->get(), path.string(), owner, 0640); !r) return fail(r.error());
  for (size_t done = 0; done < pem.text.size();) {
    ssize_t n = ::write(fd->get(), pem.text.data() + done, pem.text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(fmt::format("{}: cannot write: {}", path.string(), std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd->get()) != 0) return fail(fmt::format("{}: cannot fsync: {}", path.string(), std::strerror(errno)));
  ::fstat(fd->get(), &st);

  const std::string kind = algorithm == dkim::Algorithm::rsa_sha256 ? fmt::format("RSA {} bits", args.bits) : "Ed25519";
  const DkimKey k{*domain, *selector, key_kind(algorithm), key->public_record()};
  out << fmt::format("; wrote {}: {}, mode {:04o}, owner {}:{}\n", path.string(), kind, st.st_mode & 07777,
                     user_name(st.st_uid), group_name(st.st_gid));
  out << "; publish this TXT record (sluicectl dns-records prints it too):\n";
  out << zone_line(dkim_record(k)) << "\n\n";
  out << "# then add this table to the configuration and reload sluiced (systemctl reload sluice):\n";
  out << fmt::format("[[dkim]]\ndomain = \"{}\"\nselector = \"{}\"\nprivate_key = \"{}\"\n", *domain, *selector,
                     path.string());
  return kExitOk;
}

int dns_records(const DnsRecordsArgs& args, std::ostream& out, std::ostream& err) {
  auto cfg = conf::load_file(args.config_path);
  if (!cfg) {
    for (const auto& p : cfg.error()) err << p.str(args.config_path) << "\n";
    err << fmt::format("sluicectl: cannot read the configuration {}\n", args.config_path);
    return kExitFailed;
  }
  Inputs in;
  in.hostname = cfg->hostname;
  for (const std::string& d : args.domains) {
    auto name = name_arg("--domain", d, err);
    if (!name) return kExitUsage;
    if (std::find(in.domains.begin(), in.domains.end(), *name) == in.domains.end()) in.domains.push_back(*name);
  }
  if (args.domains.empty())
    for (const conf::Dkim& d : cfg->dkim)
      if (std::find(in.domains.begin(), in.domains.end(), d.domain) == in.domains.end()) in.domains.push_back(d.domain);
  if (in.domains.empty()) {
    err << fmt::format("sluicectl: no sending domain: {} has no [[dkim]] table; make a key with "
                       "`sluicectl dkim keygen --domain DOMAIN --selector SELECTOR` and add the table it "
                       "prints, or name the domains with --domain\n", args.config_path);
    return kExitUsage;
  }
  for (const conf::Dkim& d : cfg->dkim) {
    const bool used = std::any_of(in.domains.begin(), in.domains.end(), [&](const std::string& dom) {
      return d.covers(dom);
    });
    if (!used) continue;
    auto pem = read_file(d.private_key);
    std::expected<dkim::Key, std::string> key = std::unexpected(pem ? std::string() : pem.error());
    if (pem) {
      Wiped text{std::move(*pem)};
      key = dkim::Key::from_pem(text.text);
    }
    if (!key) {
      err << fmt::format("sluicectl: {} ({}): {}\n", d.private_key, d.describe(), key.error());
      return kExitFailed;
    }
    in.keys.push_back({d.domain, d.selector, key_kind(key->algorithm()), key->public_record()});
  }
  for (const std::string& text : args.ips) {
    auto ip = net::IpAddress::parse(text);
    if (!ip) {
      err << fmt::format("sluicectl: --ip {}: not an IPv4 or IPv6 address\n", text);
      return kExitUsage;
    }
    if (std::find(in.addresses.begin(), in.addresses.end(), *ip) == in.addresses.end()) in.addresses.push_back(*ip);
  }
  if (args.ips.empty()) in.addresses = machine_addresses(err);

  std::vector<Block> blocks = build(in);
  if (!args.check) {
    out << (args.json ? render_json(blocks) + "\n" : render_zone(blocks));
    return kExitOk;
  }
  dns::Options options;
  options.servers = cfg->dns.servers;
  if (auto r = check(blocks, in.hostname, std::move(options)); !r) {
    err << "sluicectl: " << r.error() << "\n";
    return kExitFailed;
  }
  out << (args.json ? render_json(blocks) + "\n" : render_check(blocks));
  return all_ok(blocks) ? kExitOk : kExitNotRight;
}

}  // namespace sluice::dnsrec
