// users.cpp — parsing the users file, checking crypt(3) hashes and
// passwords.
//
// Hash checks at load time, so that a typo shows up in `sluiced --check` or
// in the reload log, not as a user who can never log in:
//   1. crypt_checksalt() (libxcrypt) must know the method: CRYPT_SALT_INVALID
//      and CRYPT_SALT_METHOD_DISABLED are errors, CRYPT_SALT_METHOD_LEGACY
//      (md5crypt, sha256crypt, DES, ...) is accepted with a warning.
//   2. crypt_checksalt() looks at the setting only, so "$6$salt$" or a hash cut
//      short by a bad paste passes it, and it takes nearly any text without a
//      '$' (a password typed into the hash field, say) for a legacy DES hash.
//      So for the methods in kShapes the part after the last '$' must have
//      its exact length and alphabet, and DES/BSDi hashes their exact length.
// Checking by hashing every entry would cost a hash per account per reload.
//
// The dummy hash for unknown logins: the entry that is the most expensive to
// check, so that an unknown login never answers sooner than a wrong password
// on any account. Entries are grouped by cost_key() (method and cost
// parameters: "$2b$12$", "$y$j9T$", "$6$rounds=100000$"); when the file has
// more than one group, one entry of each is hashed once at load and the one
// that took the most CPU time (CLOCK_THREAD_CPUTIME_ID, which other
// processes on the machine do not disturb) wins. Comparing parameters
// without hashing would need a cost model across methods (how many bcrypt
// rounds is one yescrypt block?); one hash per group, not per account, is
// cheap enough for a load.
#include "mta/auth/users.hpp"

#include <crypt.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <optional>

#include "mta/auth/sasl.hpp"
#include "mta/auth/secret.hpp"

namespace sluice::auth {

namespace {

constexpr size_t kMaxFileSize = 64u << 20;
constexpr size_t kMaxErrors = 50;
constexpr size_t kMaxAddress = 256;  // RFC 5321 path limit, minus the brackets

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

bool is_control(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) { return ascii_lower(s); }

bool has_space_or_control(std::string_view s) {
  for (char c : s) {
    if (is_space(c) || is_control(c)) return true;
  }
  return false;
}

bool is_crypt_alphabet(std::string_view s) {
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '/';
    if (!ok) return false;
  }
  return true;
}

// The shape of complete hashes of the usual methods: the prefix, and the
// length of what follows the last '$' (bcrypt has no '$' between salt and
// hash, so for it the whole length is checked).
struct Shape {
  std::string_view prefix;
  size_t tail;    // characters after the last '$'; 0 = see total
  size_t total;   // whole length; 0 = not checked
};
constexpr Shape kShapes[] = {
    {"$y$", 43, 0},  {"$gy$", 43, 0}, {"$7$", 43, 0},  {"$6$", 86, 0},  {"$5$", 43, 0},
    {"$1$", 22, 0},  {"$2b$", 0, 60}, {"$2a$", 0, 60}, {"$2y$", 0, 60},
};

// The method part of a hash ("$y$", "$2b$", "" for DES), for warnings.
std::string_view method_of(std::string_view hash) {
  if (hash.empty()) return hash;
  if (hash[0] != '$') return hash.substr(0, hash[0] == '_' ? 1 : 0);  // BSDi, DES
  const size_t end = hash.find('$', 1);
  return end == std::string_view::npos ? hash : hash.substr(0, end + 1);
}

// What decides the cost of checking a hash: its method and cost parameters,
// without salt and checksum. Two entries with the same key cost the same.
//   "$2b$12$..." -> "$2b$12$"          bcrypt: log2 of the rounds
//   "$y$j9T$..." -> "$y$j9T$"          yescrypt: N, r, p and flags
//   "$6$rounds=N$..." -> "$6$rounds=N$", "$6$salt$..." -> "$6$" (5000 rounds)
//   "$7$" + 11 characters              scrypt: N, r, p
//   "_CCCC..." -> "_CCCC"              BSDi DES: rounds
//   otherwise the method ("$1$", "" for DES)
std::string_view cost_key(std::string_view hash) {
  const auto up_to_dollar = [&](size_t from) {
    const size_t end = hash.find('$', from);
    return end == std::string_view::npos ? hash : hash.substr(0, end + 1);
  };
  if (hash.empty()) return hash;
  if (hash[0] == '_') return hash.substr(0, 5);
  if (hash[0] != '$') return {};
  if (hash.starts_with("$2")) return hash.substr(0, 7);
  if (hash.starts_with("$7$")) return hash.substr(0, 14);
  const std::string_view method = method_of(hash);
  if (method == "$y$" || method == "$gy$") return up_to_dollar(method.size());
  if ((method == "$5$" || method == "$6$") && hash.substr(method.size()).starts_with("rounds="))
    return up_to_dollar(method.size());
  return method;
}

// CPU time this thread spent checking one password against hash, in ns.
int64_t check_cost_ns(const std::string& hash) {
  const auto now = [] {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  };
  const int64_t start = now();
  (void)verify_hash(hash, "sluice-dummy-timing");
  return now() - start;
}

// nullopt: fine. Otherwise the problem (never containing the hash itself).
// legacy is set for methods libcrypt calls legacy.
std::optional<std::string> check_hash(const std::string& hash, bool& legacy) {
  legacy = false;
  if (hash.empty()) return "empty password hash";
  if (has_space_or_control(hash)) return "the password hash contains a space or control character";
  switch (crypt_checksalt(hash.c_str())) {
    case CRYPT_SALT_OK:
      break;
    case CRYPT_SALT_METHOD_LEGACY:
      legacy = true;
      break;
    case CRYPT_SALT_METHOD_DISABLED:
      return "the password hash uses a method this system's libcrypt has disabled";
    default:
      return "the password hash is not one crypt(3) recognises (make one with mkpasswd or "
             "openssl passwd -6)";
  }
  const std::string_view h = hash;
  if (h.front() != '$') {
    // Traditional DES (13 characters) or BSDi (_ and 19): libcrypt calls
    // almost any short text a DES hash, a password pasted by mistake too.
    const size_t want = h.front() == '_' ? 20 : 13;
    if (h.size() != want || !is_crypt_alphabet(h.substr(h.front() == '_' ? 1 : 0))) {
      return "the password hash field does not hold a crypt(3) hash (the password itself? "
             "make a hash with mkpasswd or openssl passwd -6)";
    }
    return std::nullopt;
  }
  for (const Shape& s : kShapes) {
    if (!h.starts_with(s.prefix)) continue;
    if (s.total != 0) {
      // $2b$NN$ + 53 characters of salt and hash.
      if (h.size() != s.total || !is_crypt_alphabet(h.substr(7))) {
        return "the password hash is incomplete or damaged (a bcrypt hash has 60 characters)";
      }
    } else {
      const size_t last = h.rfind('$');
      const std::string_view tail = h.substr(last + 1);
      if (last < s.prefix.size() || tail.size() != s.tail || !is_crypt_alphabet(tail)) {
        return "the password hash is incomplete or damaged (" + std::to_string(s.tail) +
               " characters expected after the last '$')";
      }
    }
    break;
  }
  return std::nullopt;
}

struct Parser {
  std::string_view name;
  std::vector<std::string> errors;
  size_t line_no = 0;

  void error(std::string_view what) {
    if (errors.size() < kMaxErrors) {
      std::string e(name);
      e += ':';
      e += std::to_string(line_no);
      e += ": ";
      e += what;
      errors.push_back(std::move(e));
    } else if (errors.size() == kMaxErrors) {
      errors.push_back(std::string(name) + ": too many errors, stopping here");
    }
  }
};

bool valid_domain_text(std::string_view d) {
  return !d.empty() && d.size() <= 255 && d.find('@') == std::string_view::npos &&
         !has_space_or_control(d);
}

// The sender list of one line into user; false after reporting a problem.
bool parse_senders(std::string_view field, User& user, Parser& p) {
  bool ok = true;
  while (true) {
    const size_t comma = field.find(',');
    const std::string_view entry = trim(field.substr(0, comma));
    if (!entry.empty()) {
      if (entry.front() == '@') {
        const std::string_view domain = entry.substr(1);
        if (!valid_domain_text(domain)) {
          p.error("sender entry \"" + std::string(entry) + "\" is not a valid @domain");
          ok = false;
        } else {
          user.sender_domains.push_back(lower(domain));
        }
      } else if (!is_address(entry) || entry.size() > kMaxAddress || has_space_or_control(entry)) {
        p.error("sender entry \"" + std::string(entry) +
                "\" is neither an address (local@domain) nor @domain");
        ok = false;
      } else {
        user.sender_addresses.push_back(lower(entry));
      }
    }
    if (comma == std::string_view::npos) break;
    field.remove_prefix(comma + 1);
  }
  user.has_sender_list = !user.sender_addresses.empty() || !user.sender_domains.empty();
  return ok;
}

}  // namespace

std::expected<std::shared_ptr<const UserDb>, std::string> UserDb::parse(std::string_view text,
                                                                        std::string_view name) {
  auto db = build(text, name);
  if (!db) return std::unexpected(std::move(db.error()));
  return std::shared_ptr<const UserDb>(std::move(*db));
}

std::expected<std::shared_ptr<UserDb>, std::string> UserDb::build(std::string_view text,
                                                                  std::string_view name) {
  std::shared_ptr<UserDb> db(new UserDb());
  Parser p{name, {}, 0};
  // cost_key -> first entry with it
  std::map<std::string, size_t, std::less<>> costs;

  while (!text.empty()) {
    ++p.line_no;
    const size_t nl = text.find('\n');
    const std::string_view raw = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);

    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') continue;
    if (line.find('\0') != std::string_view::npos) {
      p.error("NUL character in line");
      continue;
    }
    const size_t c1 = line.find(':');
    if (c1 == std::string_view::npos) {
      p.error("expected login:hash[:senders]");
      continue;
    }
    std::string_view rest = line.substr(c1 + 1);
    const size_t c2 = rest.find(':');
    const std::string_view login = trim(line.substr(0, c1));
    const std::string_view hash = trim(rest.substr(0, c2));
    std::optional<std::string_view> senders;
    if (c2 != std::string_view::npos) {
      senders = rest.substr(c2 + 1);
      if (senders->find(':') != std::string_view::npos) {
        p.error("too many ':' separators (expected login:hash[:senders])");
        continue;
      }
    }

    if (login.empty()) {
      p.error("empty login");
      continue;
    }
    if (login.size() > kMaxLogin) {
      p.error("login longer than " + std::to_string(kMaxLogin) + " octets");
      continue;
    }
    if (has_space_or_control(login)) {
      p.error("login \"" + std::string(login) + "\" contains a space or control character");
      continue;
    }

    User user;
    user.login = std::string(login);
    user.hash = std::string(hash);
    user.line = p.line_no;

    bool legacy = false;
    if (auto problem = check_hash(user.hash, legacy)) {
      p.error("login \"" + user.login + "\": " + *problem);
      continue;
    }
    if (legacy) {
      const std::string_view method = method_of(user.hash);
      db->warnings_.push_back(std::string(name) + ':' + std::to_string(p.line_no) + ": login \"" +
                              user.login + "\": legacy password hash method " +
                              std::string(method.empty() ? "(DES)" : method) +
                              "; replace it with a yescrypt hash (mkpasswd -m yescrypt)");
    }
    if (senders && !parse_senders(*senders, user, p)) continue;

    std::string key = lower(user.login);
    if (auto it = db->by_login_.find(key); it != db->by_login_.end()) {
      p.error("duplicate login \"" + user.login + "\" (first on line " +
              std::to_string(db->users_[it->second].line) + ")");
      continue;
    }
    const size_t index = db->users_.size();
    db->by_login_.emplace(std::move(key), index);
    costs.emplace(std::string(cost_key(user.hash)), index);
    db->users_.push_back(std::move(user));
  }

  if (!p.errors.empty()) {
    std::string all;
    for (const auto& e : p.errors) {
      if (!all.empty()) all += '\n';
      all += e;
    }
    return std::unexpected(std::move(all));
  }

  // Unknown logins are hashed against the most expensive entry (see the top
  // of this file).
  if (costs.size() == 1) {
    db->dummy_setting_ = db->users_[costs.begin()->second].hash;
  } else if (!costs.empty()) {
    int64_t worst = -1;
    for (const auto& [key, index] : costs) {
      const int64_t ns = check_cost_ns(db->users_[index].hash);
      if (ns > worst) {
        worst = ns;
        db->dummy_setting_ = db->users_[index].hash;
      }
    }
  } else {
    // No accounts: every login is unknown; still spend a default yescrypt.
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (crypt_gensalt_rn("$y$", 0, nullptr, 0, setting, sizeof setting) != nullptr) {
      db->dummy_setting_ = setting;
    } else {
      db->dummy_setting_ = "$y$j9T$SluiceNoUsersDummySalt";
    }
  }
  return db;
}

std::expected<std::shared_ptr<const UserDb>, std::string> UserDb::load(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return std::unexpected(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return std::unexpected(path + ": not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxFileSize) {
    ::close(fd);
    return std::unexpected(path + ": larger than 64 MiB");
  }
  std::string text;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      return std::unexpected(path + ": read error: " + std::strerror(e));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxFileSize) {
      ::close(fd);
      return std::unexpected(path + ": larger than 64 MiB");
    }
  }
  ::close(fd);

  auto db = build(text, path);
  if (!db) return std::unexpected(std::move(db.error()));
  if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
    (*db)->warnings_.push_back(path +
                               ": other users can read or write this file; make it readable by "
                               "the daemon only (chmod 640, owner root, group of the daemon user)");
  }
  return std::shared_ptr<const UserDb>(std::move(*db));
}

const User* UserDb::find(std::string_view login) const {
  const auto it = by_login_.find(lower(login));
  return it == by_login_.end() ? nullptr : &users_[it->second];
}

bool UserDb::verify(const User* user, std::string_view password) const {
  if (user == nullptr) {
    // Same work as for a known login; the result is thrown away (it could
    // even be true: the dummy is a real entry's hash).
    (void)verify_hash(dummy_setting_, password);
    return false;
  }
  return verify_hash(user->hash, password);
}

bool verify_hash(std::string_view hash, std::string_view password) {
  if (password.empty() || password.size() > kMaxPassword ||
      password.find('\0') != std::string_view::npos) {
    return false;
  }
  std::string phrase;  // NUL-terminated copy for crypt, wiped below
  reserve_secret(phrase, password.size() + 1);
  phrase.assign(password);
  const std::string setting(hash);
  // crypt_data is about 32 KiB: on the heap, not a thread pool thread's stack.
  // make_unique value-initialises it, and crypt_rn wants it zeroed at first use.
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_rn(phrase.c_str(), setting.c_str(), data.get(), sizeof *data);
  const bool ok = out != nullptr && out[0] != '*' && constant_time_equal(out, hash);
  secure_zero(data.get(), sizeof *data);
  wipe(phrase);
  return ok;
}

}  // namespace sluice::auth
