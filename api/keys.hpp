// keys.hpp — the API keys of [http] api_keys_file (docs/http-api.md, "Keys"):
//
//   # comment
//   name:sha256-hex-of-key[:sender, sender, ...]      sender = address | @domain
//
// The file holds no secret: each key is the SHA-256 of the random string a
// client sends as "Authorization: Bearer KEY". find() hashes the bearer and
// compares it with every entry in constant time (CRYPTO_memcmp, and no early
// exit), so neither the answer's time nor its content says how close a
// guess was. The sender list is the users file's (mta/auth/user.hpp,
// may_send_as, reused): with a list, the "from" must be a listed address or
// in a listed @domain; without one, a key whose name is an address may send
// as that address only, any other key as nobody.
//
// KeyDb::parse/load read the whole file and return either the database or
// every problem, one per line, "PATH:LINE: ..." — never half a file, so a
// failed reload keeps the keys in force. Names are 1 to 64 characters of
// [A-Za-z0-9._@+-] (they appear in logs and Received fields), unique
// ignoring case. A loaded KeyDb is immutable (shared_ptr<const KeyDb>).
// Pure apart from load() reading the file; links BoringSSL's libcrypto.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mta/auth/user.hpp"

namespace sluice::api {

using Digest = std::array<uint8_t, 32>;

struct ApiKey {
  std::string name;
  Digest hash{};
  auth::User senders;  // login = name; has_sender_list / sender_addresses / sender_domains
  size_t line = 0;
};

class KeyDb {
 public:
  static std::expected<std::shared_ptr<const KeyDb>, std::string> parse(std::string_view text,
                                                                        std::string_view name);
  static std::expected<std::shared_ptr<const KeyDb>, std::string> load(const std::string& path);

  // The key whose hash is SHA-256(bearer), or nullptr.
  const ApiKey* find(std::string_view bearer) const;
  const ApiKey* by_name(std::string_view name) const;  // ASCII case ignored
  bool may_send_as(const ApiKey& key, std::string_view from) const {
    return auth::may_send_as(key.senders, from);
  }
  const std::vector<ApiKey>& keys() const { return keys_; }

 private:
  std::vector<ApiKey> keys_;
};

Digest sha256(std::string_view data);
std::string hex(const Digest& d);  // lower-case
bool valid_key_name(std::string_view name);
// The sender list as the file writes it ("a@b.example, @c.example"); the
// problem with an entry otherwise.
std::expected<auth::User, std::string> parse_senders(std::string_view list);

// A new key: "sluice_" and 43 base64url characters of 32 random bytes
// (RAND_bytes). The prefix lets secret scanners recognise a leaked key.
std::string new_key();

}  // namespace sluice::api
