// users.hpp — the users file of [auth] users_file: who may log in, with which
// password, and which envelope senders each login may use. docs/users.md is
// the administrator's description of the format and the policy.
//
//   # comment
//   login:crypt-hash[:sender, sender, ...]      sender = address | @domain
//
// UserDb::load() reads and checks the whole file and returns either an
// immutable database or every problem found, one per line, each starting with
// "PATH:LINE: " — never a half-loaded file, so a failed reload (SIGHUP) keeps
// the database in use. It never puts a hash into a message. Warnings (legacy
// hash methods, a file other users can read) do not stop the load; the daemon
// logs them.
//
// Threads: a loaded UserDb is immutable and shared through
// std::shared_ptr<const UserDb>; find() and verify() may run on
// any thread at once. verify() is slow on purpose (a crypt(3) hash: a few ms
// to a few hundred ms): never call it on the loop thread — Verifier runs it on
// libuv's thread pool. A User* is valid as long as its UserDb is.
//
// Decisions (docs/users.md explains them to administrators):
// - Unknown logins are checked against the most expensive hash of the file
//   (each distinct method and cost is hashed once at load to find it).
// - Logins are matched ignoring ASCII case, as Dovecot's default does: phones
//   capitalise the first letter of a typed user name. Two lines whose logins
//   differ only in case are a duplicate.
// - An empty third field ("bob:HASH:") is the same as none.
// - The sender policy (may_send_as) is in user.hpp.
#pragma once

#include <cstddef>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mta/auth/user.hpp"

namespace sluice::auth {

class UserDb {
 public:
  // Read and check the file at path.
  static std::expected<std::shared_ptr<const UserDb>, std::string> load(const std::string& path);
  // Check text as if it were a file called name (for tests and --check).
  static std::expected<std::shared_ptr<const UserDb>, std::string> parse(std::string_view text,
                                                                         std::string_view name);

  // The account for login (ASCII case ignored), or nullptr.
  const User* find(std::string_view login) const;

  // Whether password is user's password. With user == nullptr (unknown
  // login) it hashes against the most expensive entry of this file (chosen
  // at load, see users.cpp) and returns false, so that an unknown login
  // costs at least what a wrong password on any account costs. Equal answer
  // times come from limits.auth_failure_delay, applied by the server glue.
  // Thread-safe; slow (see above).
  bool verify(const User* user, std::string_view password) const;

  size_t size() const { return users_.size(); }
  const std::vector<User>& users() const { return users_; }
  const std::vector<std::string>& warnings() const { return warnings_; }
  // The hash (or crypt setting) verify() uses for unknown logins: the entry
  // whose check took the most CPU time at load.
  const std::string& dummy_setting() const { return dummy_setting_; }

 private:
  UserDb() = default;
  static std::expected<std::shared_ptr<UserDb>, std::string> build(std::string_view text,
                                                                   std::string_view name);

  std::vector<User> users_;
  std::unordered_map<std::string, size_t> by_login_;  // lower-cased login -> users_ index
  std::string dummy_setting_;
  std::vector<std::string> warnings_;
};

// crypt(3) password against hash, with a private struct crypt_data per call
// (thread-safe) and a constant-time comparison. False for an empty password,
// one with a NUL (crypt would see only what comes before it) or one longer than
// kMaxPassword. The copies it makes are wiped.
bool verify_hash(std::string_view hash, std::string_view password);

}  // namespace sluice::auth
