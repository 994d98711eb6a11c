// pkey.hpp — internal to dkim/: what a Key holds, for the files that
// implement Key's members (dkim.cpp, keygen.cpp): an owned EVP_PKEY, and
// BoringSSL's error queue as a message.
#pragma once

#include <openssl/err.h>
#include <openssl/evp.h>

#include <fmt/format.h>

#include <string>
#include <string_view>

#include "dkim/dkim.hpp"

namespace sluice::dkim {

struct Key::Pkey {
  EVP_PKEY* p = nullptr;
  ~Pkey() { EVP_PKEY_free(p); }
};

// "WHAT: the library's reason" (the oldest queued error), the queue emptied.
inline std::string crypto_error(std::string_view what) {
  const uint32_t e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return std::string(what);
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return fmt::format("{}: {}", what, buf);
}

}  // namespace sluice::dkim
