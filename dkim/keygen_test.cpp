// keygen_test.cpp — keys made by Key::generate: the size asked for, the
// public record's form, a PEM that from_pem and openssl read back to the
// same public key, and the sizes refused.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "dkim/dkim.hpp"
#include "dkim/test_util.hpp"

using namespace sluice::dkim;

using dkim_test::run;

namespace {


std::string temp_file(const std::string& text) {
  char tmpl[] = "/tmp/sluice-keygen-XXXXXX";
  const int fd = ::mkstemp(tmpl);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fd);
  return tmpl;
}

}  // namespace

TEST_CASE("generated RSA keys have the size asked for; the PEM reads back to the same key") {
  for (int bits : {1024, 2048, 3072}) {
    auto key = Key::generate(Algorithm::rsa_sha256, bits);
    REQUIRE(key);
    CHECK(key->algorithm() == Algorithm::rsa_sha256);
    auto pem = key->private_pem();
    REQUIRE(pem);
    CHECK(pem->starts_with("-----BEGIN PRIVATE KEY-----\n"));
    CHECK(pem->ends_with("\n-----END PRIVATE KEY-----\n"));
    auto again = Key::from_pem(*pem);
    REQUIRE(again);
    CHECK(again->public_record() == key->public_record());
    // openssl (not BoringSSL) agrees on the size and on the public key.
    const std::string path = temp_file(*pem);
    const std::string text = run("openssl pkey -in " + path + " -noout -text 2>&1");
    CHECK(text.find("(" + std::to_string(bits) + " bit") != std::string::npos);
    std::string der64 = run("openssl pkey -in " + path + " -pubout 2>&1 | grep -v -- -----");
    std::erase(der64, '\n');
    CHECK(der64 == key->public_record());
    ::unlink(path.c_str());
  }
}

TEST_CASE("two generated keys differ") {
  auto a = Key::generate(Algorithm::ed25519_sha256, 0);
  auto b = Key::generate(Algorithm::ed25519_sha256, 0);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->public_record() != b->public_record());
}

TEST_CASE("generated Ed25519 keys: a 44-character p=, PEM round trip, openssl reads it") {
  auto key = Key::generate(Algorithm::ed25519_sha256, 2048);  // bits ignored
  REQUIRE(key);
  CHECK(key->algorithm() == Algorithm::ed25519_sha256);
  const std::string p = key->public_record();
  CHECK(p.size() == 44);
  CHECK(p.back() == '=');
  auto pem = key->private_pem();
  REQUIRE(pem);
  auto again = Key::from_pem(*pem);
  REQUIRE(again);
  CHECK(again->public_record() == p);
  const std::string path = temp_file(*pem);
  CHECK(run("openssl pkey -in " + path + " -noout -text 2>&1").find("ED25519") != std::string::npos);
  ::unlink(path.c_str());
  // A generated key signs, and the signature is 64 octets (RFC 8032).
  auto sig = again->sign("data");
  REQUIRE(sig);
  CHECK(sig->size() == 64);
}

TEST_CASE("RSA sizes outside 1024..8192 or not a multiple of 128 are refused") {
  for (int bits : {0, 512, 1023, 2047, 2000, 8320, 16384}) {
    auto key = Key::generate(Algorithm::rsa_sha256, bits);
    INFO(bits);
    REQUIRE_FALSE(key);
    CHECK(key.error().find("1024 to 8192") != std::string::npos);
  }
}
