// keys.cpp — the API keys file (keys.hpp).
#include "api/keys.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sluice::api {

namespace {

constexpr size_t kMaxFile = 16u << 20;
constexpr size_t kMaxErrors = 50;
constexpr size_t kMaxName = 64;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) { return auth::ascii_lower(s); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool has_space_or_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f;
  });
}

}  // namespace

Digest sha256(std::string_view data) {
  Digest d{};
  SHA256(reinterpret_cast<const uint8_t*>(data.data()), data.size(), d.data());
  return d;
}

std::string hex(const Digest& d) {
  std::string out;
  out.reserve(64);
  for (uint8_t b : d) out += fmt::format("{:02x}", b);
  return out;
}

bool valid_key_name(std::string_view name) {
  return !name.empty() && name.size() <= kMaxName && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '@' || c == '+' || c == '-';
  });
}

std::expected<auth::User, std::string> parse_senders(std::string_view list) {
  auth::User u;
  while (true) {
    const size_t comma = list.find(',');
    const std::string_view entry = trim(list.substr(0, comma));
    if (!entry.empty()) {
      if (has_space_or_control(entry) || entry.size() > 256 || entry.find(':') != std::string_view::npos)
        return std::unexpected(fmt::format("sender entry \"{}\" has a space, ':' or control character, or is too long",
                                           entry.substr(0, 80)));
      if (entry.front() == '@') {
        const std::string_view domain = entry.substr(1);
        if (domain.empty() || domain.find('@') != std::string_view::npos)
          return std::unexpected(fmt::format("sender entry \"{}\" is not a valid @domain", entry));
        u.sender_domains.push_back(lower(domain));
      } else if (!auth::is_address(entry)) {
        return std::unexpected(
            fmt::format("sender entry \"{}\" is neither an address (local@domain) nor @domain", entry));
      } else {
        u.sender_addresses.push_back(lower(entry));
      }
    }
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  u.has_sender_list = !u.sender_addresses.empty() || !u.sender_domains.empty();
  return u;
}

std::expected<std::shared_ptr<const KeyDb>, std::string> KeyDb::parse(std::string_view text,
                                                                      std::string_view name) {
  auto db = std::shared_ptr<KeyDb>(new KeyDb());
  std::vector<std::string> errors;
  size_t line_no = 0;
  auto error = [&](std::string_view what) {
    if (errors.size() < kMaxErrors) errors.push_back(fmt::format("{}:{}: {}", name, line_no, what));
  };
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    const std::string_view line = trim(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty() || line.front() == '#') continue;
    const size_t c1 = line.find(':');
    if (c1 == std::string_view::npos) {
      error("expected name:sha256-hex[:senders]");
      continue;
    }
    const std::string_view key_name = trim(line.substr(0, c1));
    std::string_view rest = line.substr(c1 + 1);
    const size_t c2 = rest.find(':');
    const std::string_view digest = trim(rest.substr(0, c2));
    if (!valid_key_name(key_name)) {
      error("the name must be 1 to 64 characters of A-Z a-z 0-9 . _ @ + -");
      continue;
    }
    ApiKey k;
    k.name = std::string(key_name);
    k.line = line_no;
    bool ok = digest.size() == 64;
    for (size_t i = 0; ok && i < 32; ++i) {
      const int hi = hex_value(digest[2 * i]), lo = hex_value(digest[2 * i + 1]);
      if (hi < 0 || lo < 0) ok = false;
      else k.hash[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    if (!ok) {
      // Never print the field: it could be a key pasted by mistake.
      error(fmt::format("key \"{}\": the second field must be 64 hex digits (the SHA-256 of the key; "
                        "sluicectl api-key new writes it)", k.name));
      continue;
    }
    if (c2 != std::string_view::npos) {
      auto s = parse_senders(rest.substr(c2 + 1));
      if (!s) {
        error(fmt::format("key \"{}\": {}", k.name, s.error()));
        continue;
      }
      k.senders = std::move(*s);
    }
    k.senders.login = k.name;
    if (auto* dup = db->by_name(k.name)) {
      error(fmt::format("duplicate name \"{}\" (first on line {})", k.name, dup->line));
      continue;
    }
    if (std::any_of(db->keys_.begin(), db->keys_.end(), [&](const ApiKey& o) { return o.hash == k.hash; })) {
      error(fmt::format("key \"{}\": the same key hash as another line", k.name));
      continue;
    }
    db->keys_.push_back(std::move(k));
  }
  if (!errors.empty()) {
    std::string all;
    for (const auto& e : errors) all += (all.empty() ? "" : "\n") + e;
    return std::unexpected(std::move(all));
  }
  return std::shared_ptr<const KeyDb>(std::move(db));
}

std::expected<std::shared_ptr<const KeyDb>, std::string> KeyDb::load(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return std::unexpected(fmt::format("{}: {}", path, std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) > kMaxFile) {
    ::close(fd);
    return std::unexpected(fmt::format("{}: not a regular file of at most 16 MiB", path));
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return std::unexpected(fmt::format("{}: {}", path, std::strerror(e)));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxFile) break;
  }
  ::close(fd);
  return parse(text, path);
}

const ApiKey* KeyDb::find(std::string_view bearer) const {
  const Digest d = sha256(bearer);
  const ApiKey* found = nullptr;
  for (const auto& k : keys_) {
    // Every entry is compared: the time does not depend on which one matched.
    const bool same = CRYPTO_memcmp(k.hash.data(), d.data(), d.size()) == 0;
    if (same && found == nullptr) found = &k;
  }
  return found;
}

const ApiKey* KeyDb::by_name(std::string_view name) const {
  const std::string want = lower(name);
  for (const auto& k : keys_)
    if (lower(k.name) == want) return &k;
  return nullptr;
}

std::string new_key() {
  uint8_t raw[32];
  RAND_bytes(raw, sizeof raw);
  static constexpr std::string_view kUrl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out = "sluice_";
  uint32_t acc = 0;
  int bits = 0;
  for (uint8_t b : raw) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kUrl[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += kUrl[(acc << (6 - bits)) & 63];
  OPENSSL_cleanse(raw, sizeof raw);
  return out;
}

}  // namespace sluice::api
