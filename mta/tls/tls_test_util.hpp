// tls_test_util.hpp — what the TLS tests share: the certificates
// make_self_signed() writes once per run into a temporary directory (removed
// at exit), server and client contexts, and Side: one end of a connection
// held in memory, pumped against the other (pump(), transfer()) with no
// socket. Only the tls_test sources include it; a step that must work fails
// the current test (REQUIRE).
#pragma once

#include "mta/tls/tls.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <openssl/base.h>
#if !defined(OPENSSL_IS_BORINGSSL)
#error "tls_test must see BoringSSL's headers, not the system OpenSSL's"
#endif
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/pool.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace tls_test {

using namespace sluice::tls;

inline constexpr const char* kHost = "mail.example.test";
inline constexpr const char* kOtherHost = "other.example.test";

struct Files {
  std::string dir;
  std::string cert, key;              // for kHost, in new subdirectories
  std::string other_cert, other_key;  // for kOtherHost
};

// Made once per run (RSA key generation takes a moment); removed at exit.
inline const Files& files() {
  static const Files f = [] {
    Files f;
    char tmpl[] = "/tmp/sluice-tls-test-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    f.dir = tmpl;
    f.cert = f.dir + "/etc/tls/fullchain.pem";
    f.key = f.dir + "/etc/private/privkey.pem";
    f.other_cert = f.dir + "/other/cert.pem";
    f.other_key = f.dir + "/other/key.pem";
    if (auto r = make_self_signed(f.cert, f.key, kHost); !r) throw std::runtime_error(r.error());
    if (auto r = make_self_signed(f.other_cert, f.other_key, kOtherHost); !r) throw std::runtime_error(r.error());
    return f;
  }();
  static const struct Remove {
    std::string dir;
    ~Remove() { std::filesystem::remove_all(dir); }
  } remove{f.dir};
  return f;
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void spit(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

inline std::shared_ptr<TlsContext> server_ctx(const std::string& cert = files().cert,
                                       const std::string& key = files().key) {
  auto c = TlsContext::server(cert, key);
  INFO((c ? std::string() : c.error()));
  REQUIRE(c);
  return *c;
}

inline std::shared_ptr<TlsContext> client_ctx(bool verify = false, const std::string& ca = files().cert) {
  auto c = TlsContext::client(verify, ca);
  INFO((c ? std::string() : c.error()));
  REQUIRE(c);
  return *c;
}

// One end of an in-memory connection and everything it has seen.
struct Side {
  std::unique_ptr<TlsStream> s;
  std::string plain;  // plaintext received
  std::string error;  // first error process() returned
  int completions = 0;
  int closes = 0;

  void step() {
    auto r = s->process(plain);
    if (!r) {
      if (error.empty()) error = r.error();
      return;
    }
    completions += r->handshake_completed;
    closes += r->peer_closed;
  }
};

inline Side server_side(std::shared_ptr<TlsContext> ctx) {
  auto s = TlsStream::server(ctx);
  REQUIRE(s);
  return Side{std::move(*s)};
}

inline Side client_side(std::shared_ptr<TlsContext> ctx, std::string_view host = kHost) {
  auto s = TlsStream::client(ctx, host);
  INFO((s ? std::string() : s.error()));
  REQUIRE(s);
  Side side{std::move(*s)};
  side.step();  // the ClientHello
  return side;
}

// Moves `from`'s pending ciphertext to `to`, in pieces of `rng`-chosen
// sizes up to max_piece (whole when max_piece is 0), processing after each.
inline bool transfer(Side& from, Side& to, std::mt19937* rng = nullptr, size_t max_piece = 0) {
  std::string bytes;
  if (!from.s->take_ciphertext(bytes)) return false;
  size_t i = 0;
  while (i < bytes.size()) {
    size_t n = bytes.size() - i;
    if (rng != nullptr && max_piece > 0) {
      n = std::min(n, std::uniform_int_distribution<size_t>(1, max_piece)(*rng));
    }
    to.s->feed_ciphertext(std::string_view(bytes).substr(i, n));
    to.step();
    i += n;
  }
  return true;
}

inline void pump(Side& a, Side& b, std::mt19937* rng = nullptr, size_t max_piece = 0) {
  for (int round = 0; round < 10000; ++round) {
    bool moved = transfer(a, b, rng, max_piece);
    moved = transfer(b, a, rng, max_piece) || moved;
    if (!moved) return;
  }
  FAIL("the streams keep talking");
}

inline std::string random_bytes(std::mt19937& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

inline bssl::UniquePtr<X509> read_cert(const std::string& path) {
  std::string pem = slurp(path);
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), pem.size()));
  return bssl::UniquePtr<X509>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

inline mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

}  // namespace tls_test
