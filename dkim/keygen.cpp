// keygen.cpp — new DKIM keys and their PKCS#8 PEM (dkim.hpp: Key::generate,
// Key::private_pem), for `sluicectl dkim keygen`. On BoringSSL: RSA with
// RSA_generate_key_ex (e = 65537), Ed25519 from ED25519_keypair's seed.
// Pure apart from the system's randomness; the caller writes the file.
#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/curve25519.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/rsa.h>

#include <fmt/format.h>

#include <array>

#include "dkim/pkey.hpp"

namespace sluice::dkim {

std::expected<Key, std::string> Key::generate(Algorithm a, int bits) {
  auto k = std::make_unique<Pkey>();
  if (a == Algorithm::ed25519_sha256) {
    std::array<uint8_t, 32> pub{};
    std::array<uint8_t, 64> priv{};  // the seed, then the public key
    ED25519_keypair(pub.data(), priv.data());
    k->p = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, priv.data(), 32);
    OPENSSL_cleanse(priv.data(), priv.size());
    if (k->p == nullptr) return std::unexpected(crypto_error("Ed25519 key"));
    return Key(std::move(k), a);
  }
  // BoringSSL rounds other sizes down to a multiple of 128 bits; refusing
  // them keeps "--bits N" meaning N. 8192 already takes seconds to make.
  if (bits < 1024 || bits > 8192 || bits % 128 != 0)
    return std::unexpected(fmt::format(
        "an RSA key of {} bits cannot be made: from 1024 to 8192 bits in steps of 128 "
        "(2048 is the usual size, RFC 8301)", bits));
  bssl::UniquePtr<RSA> rsa(RSA_new());
  bssl::UniquePtr<BIGNUM> e(BN_new());
  if (!rsa || !e || !BN_set_word(e.get(), RSA_F4) ||
      !RSA_generate_key_ex(rsa.get(), bits, e.get(), nullptr))
    return std::unexpected(crypto_error("RSA key generation"));
  k->p = EVP_PKEY_new();
  if (k->p == nullptr || !EVP_PKEY_assign_RSA(k->p, rsa.get()))
    return std::unexpected(crypto_error("RSA key"));
  rsa.release();  // owned by the EVP_PKEY now
  return Key(std::move(k), a);
}

std::expected<std::string, std::string> Key::private_pem() const {
  bssl::ScopedCBB cbb;
  uint8_t* der = nullptr;
  size_t len = 0;
  if (!CBB_init(cbb.get(), 0) || !EVP_marshal_private_key(cbb.get(), pkey_->p) ||
      !CBB_finish(cbb.get(), &der, &len))
    return std::unexpected(crypto_error("PKCS#8 encoding"));
  // RFC 7468 §10: base64 in lines of 64 characters (48 octets each).
  std::string pem = "-----BEGIN PRIVATE KEY-----\n";
  std::array<uint8_t, 65> line{};
  for (size_t i = 0; i < len; i += 48) {
    const size_t n = EVP_EncodeBlock(line.data(), der + i, std::min<size_t>(48, len - i));
    pem.append(reinterpret_cast<const char*>(line.data()), n);
    pem += '\n';
  }
  pem += "-----END PRIVATE KEY-----\n";
  OPENSSL_cleanse(line.data(), line.size());
  OPENSSL_cleanse(der, len);
  OPENSSL_free(der);
  return pem;
}

}  // namespace sluice::dkim
