// key_command.cpp — see key_command.hpp.
#include "api/key_command.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include "api/keys.hpp"
#include "conf/config.hpp"
#include "conf/safe_file.hpp"

namespace sluice::api {

namespace {

constexpr int kOk = 0, kUsage = 2, kFailed = 3;

bool name_in(std::string_view text, std::string_view name) {
  const std::string want = auth::ascii_lower(name);
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || line.starts_with("#")) continue;
    std::string_view n = line.substr(0, colon);
    while (!n.empty() && (n.back() == ' ' || n.back() == '\t')) n.remove_suffix(1);
    if (auth::ascii_lower(n) == want) return true;
  }
  return false;
}

}  // namespace

int key_new(const KeyNewArgs& args, std::ostream& out, std::ostream& err) {
  if (args.name.find(':') != std::string::npos || !valid_key_name(args.name)) {
    err << "sluicectl: NAME must be 1 to 64 characters of A-Z a-z 0-9 . _ @ + - (no ':')\n";
    return kUsage;
  }
  std::string senders;
  if (!args.senders.empty()) {
    auto s = parse_senders(args.senders);
    if (!s) {
      err << "sluicectl: --senders: " << s.error() << "\n";
      return kUsage;
    }
    for (const auto& a : s->sender_addresses) senders += (senders.empty() ? "" : ",") + a;
    for (const auto& d : s->sender_domains) senders += (senders.empty() ? "@" : ",@") + d;
  }
  auto cfg = conf::load_file(args.config_path);
  if (!cfg) {
    for (const auto& p : cfg.error()) err << p.str(args.config_path) << "\n";
    err << fmt::format("sluicectl: cannot read the configuration {}\n", args.config_path);
    return kFailed;
  }
  const std::string path_text = cfg->http.api_keys_file;
  if (path_text.empty()) {
    err << fmt::format("sluicectl: {} sets no [http] api_keys_file; set it (e.g. "
                       "\"/etc/sluice/api-keys\") and run this again\n", args.config_path);
    return kFailed;
  }
  const std::filesystem::path path = std::filesystem::path(path_text).lexically_normal();
  const std::string file = path.filename().string();
  auto dir = safe::open_dir(path.parent_path().string());
  if (!dir) {
    err << "sluicectl: " << dir.error() << "\n";
    return kFailed;
  }
  std::optional<gid_t> gid;
  if (::geteuid() == 0) {
    if (auto account = conf::lookup_user(*cfg)) gid = account->gid;
    else err << fmt::format("sluicectl: {}; a new keys file stays root:root 0600\n", account.error().str(args.config_path));
  }
  struct stat st;
  const bool created = ::fstatat(dir->fd.get(), file.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0;
  auto fd = created ? safe::open_file_at(*dir, file, O_RDWR | O_APPEND | O_CREAT | O_EXCL, 0600)
                    : safe::open_file_at(*dir, file, O_RDWR | O_APPEND);
  if (!fd) {
    err << "sluicectl: " << fd.error() << "\n";
    return kFailed;
  }
  if (created && gid) {
    if (auto r = safe::set_owner_mode(fd->get(), path.string(), {static_cast<uid_t>(-1), *gid}, 0640); !r) {
      err << "sluicectl: " << r.error() << "\n";
      return kFailed;
    }
  }
  if (::flock(fd->get(), LOCK_EX) != 0) {
    err << fmt::format("sluicectl: {}: flock: {}\n", path.string(), std::strerror(errno));
    return kFailed;
  }
  std::string text;
  char buf[65536];
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(fd->get(), buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err << fmt::format("sluicectl: {}: read: {}\n", path.string(), std::strerror(errno));
      return kFailed;
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    at += n;
  }
  if (name_in(text, args.name)) {
    err << fmt::format("sluicectl: {} already has a key named {}; choose another name (or remove "
                       "that line first)\n", path.string(), args.name);
    return kFailed;
  }
  const std::string key = new_key();
  std::string line = (text.empty() || text.ends_with("\n")) ? "" : "\n";
  line += fmt::format("{}:{}{}{}\n", args.name, hex(sha256(key)), senders.empty() ? "" : ":", senders);
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(fd->get(), line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err << fmt::format("sluicectl: {}: write: {}\n", path.string(), std::strerror(errno));
      return kFailed;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd->get()) != 0) {
    err << fmt::format("sluicectl: {}: fsync: {}\n", path.string(), std::strerror(errno));
    return kFailed;
  }
  out << key << "\n";
  out.flush();
  err << fmt::format("sluicectl: API key {} added to {}; it is shown only now. Reload sluiced "
                     "(systemctl reload sluice) for it to take effect.\n", args.name, path.string());
  if (senders.empty() && !auth::is_address(args.name))
    err << fmt::format("sluicectl: note: without --senders the key {} may send as nobody (its name is "
                       "not an address); add a sender list to its line\n", args.name);
  return kOk;
}

}  // namespace sluice::api
