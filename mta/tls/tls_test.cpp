// tls_test.cpp — TlsContext, TlsStream and make_self_signed.
//
// Server and client streams are pumped against each other entirely in
// memory (pump()), with the certificates make_self_signed() writes into a
// temporary directory. The last test runs a real peer, `openssl s_client`,
// against a server stream over loopback TCP (skipped without the binary).
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

extern char** environ;

namespace {

using namespace sluice::tls;

constexpr const char* kHost = "mail.example.test";
constexpr const char* kOtherHost = "other.example.test";

struct Files {
  std::string dir;
  std::string cert, key;              // for kHost, in new subdirectories
  std::string other_cert, other_key;  // for kOtherHost
};

// Made once per run (RSA key generation takes a moment); removed at exit.
const Files& files() {
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

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::shared_ptr<TlsContext> server_ctx(const std::string& cert = files().cert,
                                       const std::string& key = files().key) {
  auto c = TlsContext::server(cert, key);
  INFO((c ? std::string() : c.error()));
  REQUIRE(c);
  return *c;
}

std::shared_ptr<TlsContext> client_ctx(bool verify = false, const std::string& ca = files().cert) {
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

Side server_side(std::shared_ptr<TlsContext> ctx) {
  auto s = TlsStream::server(ctx);
  REQUIRE(s);
  return Side{std::move(*s)};
}

Side client_side(std::shared_ptr<TlsContext> ctx, std::string_view host = kHost) {
  auto s = TlsStream::client(ctx, host);
  INFO((s ? std::string() : s.error()));
  REQUIRE(s);
  Side side{std::move(*s)};
  side.step();  // the ClientHello
  return side;
}

// Moves `from`'s pending ciphertext to `to`, in pieces of `rng`-chosen
// sizes up to max_piece (whole when max_piece is 0), processing after each.
bool transfer(Side& from, Side& to, std::mt19937* rng = nullptr, size_t max_piece = 0) {
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

void pump(Side& a, Side& b, std::mt19937* rng = nullptr, size_t max_piece = 0) {
  for (int round = 0; round < 10000; ++round) {
    bool moved = transfer(a, b, rng, max_piece);
    moved = transfer(b, a, rng, max_piece) || moved;
    if (!moved) return;
  }
  FAIL("the streams keep talking");
}

std::string random_bytes(std::mt19937& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

bssl::UniquePtr<X509> read_cert(const std::string& path) {
  std::string pem = slurp(path);
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), pem.size()));
  return bssl::UniquePtr<X509>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

}  // namespace

TEST_CASE("make_self_signed writes a private key 0600 and a certificate for the host", "[tls][cert]") {
  const Files& f = files();
  CHECK(mode_of(f.key) == 0600);
  CHECK(mode_of(f.cert) == 0644);
  CHECK(mode_of(f.dir + "/etc") == 0755);
  CHECK(mode_of(f.dir + "/etc/tls") == 0755);
  CHECK(mode_of(f.dir + "/etc/private") == 0755);
  CHECK(slurp(f.key).starts_with("-----BEGIN PRIVATE KEY-----\n"));
  CHECK(slurp(f.cert).starts_with("-----BEGIN CERTIFICATE-----\n"));

  auto cert = read_cert(f.cert);
  REQUIRE(cert);
  CHECK(X509_check_host(cert.get(), kHost, std::strlen(kHost), 0, nullptr) == 1);
  CHECK(X509_check_host(cert.get(), kOtherHost, std::strlen(kOtherHost), 0, nullptr) != 1);
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof cn);
  CHECK(std::string(cn) == kHost);
  // Self-signed: issuer = subject, and its own key verifies the signature.
  CHECK(X509_NAME_cmp(X509_get_subject_name(cert.get()), X509_get_issuer_name(cert.get())) == 0);
  bssl::UniquePtr<EVP_PKEY> pub(X509_get_pubkey(cert.get()));
  CHECK(X509_verify(cert.get(), pub.get()) == 1);
  CHECK(EVP_PKEY_id(pub.get()) == EVP_PKEY_RSA);
  CHECK(EVP_PKEY_bits(pub.get()) == 2048);
  // Ten years.
  int days = 0, secs = 0;
  REQUIRE(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert.get()), X509_get0_notAfter(cert.get())));
  CHECK(days == 3650);
  CHECK(X509_cmp_current_time(X509_get0_notBefore(cert.get())) < 0);

  SECTION("refuses what is not a host name") {
    for (const char* bad : {"", "bad host", "-x.example", "a..b", "x/y", "\xc3\xa9.example"}) {
      auto r = make_self_signed(f.dir + "/bad/c.pem", f.dir + "/bad/k.pem", bad);
      INFO(bad);
      REQUIRE_FALSE(r);
      CHECK(r.error().find("not a host name") != std::string::npos);
    }
    CHECK_FALSE(std::filesystem::exists(f.dir + "/bad"));
  }
  SECTION("never overwrites an existing file nor follows a planted link") {
    std::string c = f.dir + "/again/c.pem", k = f.dir + "/again/k.pem";
    REQUIRE(make_self_signed(c, k, "a.example"));
    std::string first = slurp(c);
    auto again = make_self_signed(c, k, "a.example");
    REQUIRE_FALSE(again);
    CHECK(again.error().find("exists already") != std::string::npos);
    CHECK(slurp(c) == first);
    CHECK(mode_of(k) == 0600);
    CHECK(TlsContext::server(c, k));
    std::string victim = f.dir + "/again/victim";
    spit(victim, "root only");
    std::string lk = f.dir + "/again/link-k.pem";
    REQUIRE(::symlink(victim.c_str(), lk.c_str()) == 0);
    REQUIRE_FALSE(make_self_signed(f.dir + "/again/link-c.pem", lk, "a.example"));
    CHECK(slurp(victim) == "root only");
    REQUIRE(::symlink((f.dir + "/again/nowhere").c_str(), (f.dir + "/again/dangling.pem").c_str()) == 0);
    REQUIRE_FALSE(make_self_signed(f.dir + "/again/c2.pem", f.dir + "/again/dangling.pem", "a.example"));
    CHECK_FALSE(std::filesystem::exists(f.dir + "/again/nowhere"));
  }
  SECTION("a private key with a second hard link is refused") {
    std::string c = f.dir + "/links/c.pem", k = f.dir + "/links/k.pem";
    REQUIRE(make_self_signed(c, k, "a.example"));
    REQUIRE(::link(k.c_str(), (f.dir + "/links/k2.pem").c_str()) == 0);
    auto ctx = TlsContext::server(c, k);
    REQUIRE_FALSE(ctx);
    CHECK(ctx.error().find("2 hard links") != std::string::npos);
  }
  SECTION("reports a directory it cannot create") {
    spit(f.dir + "/plainfile", "x");
    auto r = make_self_signed(f.dir + "/plainfile/c.pem", f.dir + "/plainfile/k.pem", "a.example");
    REQUIRE_FALSE(r);
    CHECK(r.error().find("not a directory") != std::string::npos);
  }
}

TEST_CASE("TlsContext::server loads a chain and checks the key", "[tls][context]") {
  const Files& f = files();

  SECTION("matching pair") {
    auto ctx = server_ctx();
    CHECK(ctx->role() == Role::server);
    CHECK(ctx->describe().find("subject=CN=mail.example.test") != std::string::npos);
    CHECK(ctx->describe().find("intermediates=0") != std::string::npos);
  }
  SECTION("a key that is not the certificate's is refused") {
    auto c = TlsContext::server(f.cert, f.other_key);
    REQUIRE_FALSE(c);
    CHECK(c.error().find("does not belong") != std::string::npos);
  }
  SECTION("intermediates first is refused with a hint") {
    std::string chain = f.dir + "/misordered.pem";
    spit(chain, slurp(f.other_cert) + slurp(f.cert));
    auto c = TlsContext::server(chain, f.key);
    REQUIRE_FALSE(c);
    CHECK(c.error().find("must come first") != std::string::npos);
  }
  SECTION("missing files name the file") {
    auto c = TlsContext::server(f.dir + "/nope.pem", f.key);
    REQUIRE_FALSE(c);
    CHECK(c.error().find("/nope.pem") != std::string::npos);
    CHECK(c.error().find("No such file") != std::string::npos);
    auto k = TlsContext::server(f.cert, f.dir + "/nokey.pem");
    REQUIRE_FALSE(k);
    CHECK(k.error().find("/nokey.pem") != std::string::npos);
  }
  SECTION("files without PEM content") {
    std::string junk = f.dir + "/junk.pem";
    spit(junk, "hello\n");
    auto c = TlsContext::server(junk, f.key);
    REQUIRE_FALSE(c);
    CHECK(c.error().find("no certificate in") != std::string::npos);
    auto k = TlsContext::server(f.cert, f.cert);  // a certificate as the key
    REQUIRE_FALSE(k);
    CHECK(k.error().find("no usable private key") != std::string::npos);
  }
  SECTION("a corrupt intermediate is an error, not silently dropped") {
    std::string chain = f.dir + "/corrupt.pem";
    spit(chain, slurp(f.cert) + "-----BEGIN CERTIFICATE-----\nAAAA!!!\n-----END CERTIFICATE-----\n");
    auto c = TlsContext::server(chain, f.key);
    REQUIRE_FALSE(c);
    CHECK(c.error().find("bad certificate #2") != std::string::npos);
  }
  SECTION("key and certificate in one file") {
    std::string both = f.dir + "/both.pem";
    spit(both, slurp(f.cert) + slurp(f.key));
    CHECK(TlsContext::server(both, both));
  }
  SECTION("the whole chain is sent") {
    std::string chain = f.dir + "/chain.pem";
    spit(chain, slurp(f.cert) + slurp(f.other_cert));
    auto ctx = server_ctx(chain, f.key);
    CHECK(ctx->describe().find("intermediates=1") != std::string::npos);
    Side s = server_side(ctx);
    Side c = client_side(client_ctx());
    pump(c, s);
    REQUIRE(c.s->handshake_done());
    const STACK_OF(CRYPTO_BUFFER)* certs = SSL_get0_peer_certificates(c.s->native());
    REQUIRE(certs != nullptr);
    CHECK(sk_CRYPTO_BUFFER_num(certs) == 2);
  }
  SECTION("streams refuse a context of the other role") {
    auto s = TlsStream::server(client_ctx());
    REQUIRE_FALSE(s);
    auto c = TlsStream::client(server_ctx(), kHost);
    REQUIRE_FALSE(c);
  }
}

TEST_CASE("an ECDSA chain made by openssl: root -> intermediate -> server", "[tls][chain][openssl]") {
  if (::access("/usr/bin/openssl", X_OK) != 0) {
    WARN("no /usr/bin/openssl; skipped");
    return;
  }
  const std::string d = files().dir + "/pki";
  std::filesystem::create_directories(d);
  spit(d + "/ca.ext", "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
  spit(d + "/leaf.ext",
       "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
       "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:ec.example.test\n");
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  const std::string script = fmt::format(
      "cd {0} && "
      "openssl req -x509 {1} -subj /CN=Test-Root -days 2 -keyout root.key -out root.pem && "
      "openssl req {1} -subj /CN=Test-Intermediate -keyout int.key -out int.csr && "
      "openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -set_serial 2 -days 2 "
      "-extfile ca.ext -out int.pem && "
      "openssl req {1} -subj /CN=ec.example.test -keyout leaf.key -out leaf.csr && "
      "openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -set_serial 3 -days 2 "
      "-extfile leaf.ext -out leaf.pem && "
      "openssl ec -in leaf.key -out leaf.sec1.key && "
      "cat leaf.pem int.pem > fullchain.pem",
      d, ec);
  static const int made = std::system(("(" + script + ") >/dev/null 2>&1").c_str());  // once per run
  REQUIRE(made == 0);
  REQUIRE(slurp(d + "/leaf.sec1.key").starts_with("-----BEGIN EC PRIVATE KEY-----"));

  auto sctx = server_ctx(d + "/fullchain.pem", d + "/leaf.key");
  CHECK(sctx->describe().find("intermediates=1") != std::string::npos);
  CHECK(TlsContext::server(d + "/fullchain.pem", d + "/leaf.sec1.key"));  // SEC1 as well as PKCS#8

  SECTION("a client trusting only the root verifies through the intermediate") {
    Side s = server_side(sctx);
    Side c = client_side(client_ctx(true, d + "/root.pem"), "ec.example.test");
    pump(c, s);
    REQUIRE(c.error.empty());
    CHECK(c.s->peer_verified());
  }
  SECTION("TLS 1.2 with an ECDSA key") {
    auto cc = client_ctx(true, d + "/root.pem");
    REQUIRE(SSL_CTX_set_max_proto_version(cc->native(), TLS1_2_VERSION));
    Side s = server_side(sctx);
    Side c = client_side(cc, "ec.example.test");
    pump(c, s);
    REQUIRE(c.error.empty());
    CHECK(s.s->cipher() == "ECDHE-ECDSA-AES128-GCM-SHA256");
  }
  SECTION("without the intermediate in the file clients cannot verify") {
    Side s = server_side(server_ctx(d + "/leaf.pem", d + "/leaf.key"));
    Side c = client_side(client_ctx(true, d + "/root.pem"), "ec.example.test");
    pump(c, s);
    CHECK(c.error == "certificate verify failed: unable to get local issuer certificate");
  }
}

// A relayhost given as an address ([192.0.2.1]:587) is verified against the
// certificate's IP entries, without SNI; a name against its DNS entries.
TEST_CASE("client verification of an address against IP entries", "[tls][verify][openssl]") {
  if (::access("/usr/bin/openssl", X_OK) != 0) {
    WARN("no /usr/bin/openssl; skipped");
    return;
  }
  const std::string d = files().dir + "/ip-pki";
  std::filesystem::create_directories(d);
  spit(d + "/ca.ext", "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
  spit(d + "/leaf.ext",
       "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
       "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:relay.example.test,IP:127.0.0.1,IP:::1\n");
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  const std::string script = fmt::format(
      "cd {0} && "
      "openssl req -x509 {1} -subj /CN=Test-Root -days 2 -addext basicConstraints=critical,CA:TRUE "
      "-keyout root.key -out root.pem && "
      "openssl req {1} -subj /CN=relay.example.test -keyout leaf.key -out leaf.csr && "
      "openssl x509 -req -in leaf.csr -CA root.pem -CAkey root.key -set_serial 7 -days 2 "
      "-extfile leaf.ext -out leaf.pem",
      d, ec);
  static const int made = std::system(("(" + script + ") >/dev/null 2>&1").c_str());  // once per run
  REQUIRE(made == 0);
  auto sctx = server_ctx(d + "/leaf.pem", d + "/leaf.key");
  auto cctx = client_ctx(true, d + "/root.pem");
  auto sni = [](const Side& s) {
    const char* n = SSL_get_servername(s.s->native(), TLSEXT_NAMETYPE_host_name);
    return n ? std::string(n) : std::string("(none)");
  };

  SECTION("IPv4 entry") {
    Side s = server_side(sctx);
    Side c = client_side(cctx, "127.0.0.1");
    pump(c, s);
    REQUIRE(c.error.empty());
    CHECK(c.s->peer_verified());
    CHECK(sni(s) == "(none)");  // SNI carries DNS names only (RFC 6066 §3)
  }
  SECTION("IPv6 entry") {
    Side s = server_side(sctx);
    Side c = client_side(cctx, "::1");
    pump(c, s);
    REQUIRE(c.error.empty());
    CHECK(c.s->peer_verified());
  }
  SECTION("another address is refused, although the DNS name is in the certificate") {
    Side s = server_side(sctx);
    Side c = client_side(cctx, "127.0.0.2");
    pump(c, s);
    CHECK(c.error == "certificate verify failed: IP address mismatch");
    CHECK(c.s->certificate_refused() == "IP address mismatch");
  }
  SECTION("the DNS name (relayhost_tls_name) verifies, with SNI") {
    Side s = server_side(sctx);
    Side c = client_side(cctx, "relay.example.test");
    pump(c, s);
    REQUIRE(c.error.empty());
    CHECK(c.s->peer_verified());
    CHECK(sni(s) == "relay.example.test");
  }
  SECTION("an address written as a name does not match a DNS entry") {
    Side s = server_side(server_ctx());  // the self-signed one: DNS entry only
    Side c = client_side(client_ctx(true), "127.0.0.1");
    pump(c, s);
    CHECK(c.s->certificate_refused() == "IP address mismatch");
  }
}

TEST_CASE("TLS 1.3 handshake and data both ways", "[tls][stream]") {
  Side s = server_side(server_ctx());
  Side c = client_side(client_ctx());
  CHECK(s.s->version().empty());
  CHECK(s.s->cipher().empty());
  CHECK(s.s->cipher_bits() == 0);
  pump(c, s);
  INFO(s.error << " / " << c.error);
  REQUIRE(s.error.empty());
  REQUIRE(c.error.empty());
  CHECK(s.completions == 1);
  CHECK(c.completions == 1);
  CHECK(s.s->handshake_done());
  CHECK(c.s->handshake_done());
  CHECK(s.s->version() == "TLSv1.3");
  CHECK(c.s->version() == "TLSv1.3");
  CHECK(s.s->cipher().starts_with("TLS_"));
  CHECK(s.s->cipher() == c.s->cipher());
  CHECK((s.s->cipher_bits() == 128 || s.s->cipher_bits() == 256));

  c.s->write_plaintext("EHLO client.example\r\n");
  pump(c, s);
  CHECK(s.plain == "EHLO client.example\r\n");
  s.s->write_plaintext("250-mail.example.test\r\n");
  s.s->write_plaintext("250 SIZE 1000\r\n");
  pump(c, s);
  CHECK(c.plain == "250-mail.example.test\r\n250 SIZE 1000\r\n");
  CHECK(s.completions == 1);  // reported once only
  CHECK(s.closes == 0);
  CHECK_FALSE(s.s->failed());
  CHECK(s.s->pending_ciphertext_bytes() == 0);

  SECTION("take_ciphertext appends to what the caller has") {
    std::string out = "X";
    s.s->write_plaintext("hello");
    CHECK(s.s->take_ciphertext(out));
    CHECK(out.size() > 6);
    CHECK(out[0] == 'X');
    CHECK_FALSE(s.s->take_ciphertext(out));
  }
}

TEST_CASE("one megabyte each way in random pieces", "[tls][stream]") {
  std::mt19937 rng(42);
  Side s = server_side(server_ctx());
  Side c = client_side(client_ctx());
  pump(c, s, &rng, 700);
  REQUIRE(s.s->handshake_done());

  std::string up = random_bytes(rng, 1 << 20), down = random_bytes(rng, 1 << 20);
  for (size_t i = 0; i < up.size();) {
    size_t n = std::min(up.size() - i, std::uniform_int_distribution<size_t>(1, 40000)(rng));
    c.s->write_plaintext(std::string_view(up).substr(i, n));
    s.s->write_plaintext(std::string_view(down).substr(i, n));
    i += n;
    if (rng() % 4 == 0) pump(c, s, &rng, 70000);
  }
  pump(c, s, &rng, 70000);
  REQUIRE(s.error.empty());
  REQUIRE(c.error.empty());
  CHECK(s.plain.size() == up.size());
  CHECK(s.plain == up);
  CHECK(c.plain == down);
}

TEST_CASE("plaintext written before the handshake completes is sent after it", "[tls][stream]") {
  Side s = server_side(server_ctx());
  Side c = client_side(client_ctx());
  s.s->write_plaintext("220 mail.example.test ESMTP\r\n");  // implicit TLS: the greeting
  CHECK(s.s->pending_ciphertext_bytes() == 0);
  c.s->write_plaintext("EHLO early\r\n");
  pump(c, s);
  REQUIRE(s.s->handshake_done());
  CHECK(s.plain == "EHLO early\r\n");
  CHECK(c.plain == "220 mail.example.test ESMTP\r\n");
}

TEST_CASE("a TLS 1.2 client gets an ECDHE AEAD suite", "[tls][stream]") {
  auto cc = client_ctx();
  REQUIRE(SSL_CTX_set_max_proto_version(cc->native(), TLS1_2_VERSION));
  Side s = server_side(server_ctx());
  Side c = client_side(cc);
  pump(c, s);
  REQUIRE(s.error.empty());
  CHECK(s.s->version() == "TLSv1.2");
  CHECK(c.s->version() == "TLSv1.2");
  CHECK(s.s->cipher() == "ECDHE-RSA-AES128-GCM-SHA256");
  CHECK(s.s->cipher_bits() == 128);

  c.s->write_plaintext("QUIT\r\n");
  pump(c, s);
  CHECK(s.plain == "QUIT\r\n");

  SECTION("a client that offers only CBC suites gets no shared cipher") {
    auto cbc = client_ctx();
    REQUIRE(SSL_CTX_set_max_proto_version(cbc->native(), TLS1_2_VERSION));
    REQUIRE(SSL_CTX_set_strict_cipher_list(cbc->native(), "ECDHE-RSA-AES128-SHA:AES128-SHA"));
    Side s2 = server_side(server_ctx());
    Side c2 = client_side(cbc);
    pump(c2, s2);
    CHECK(s2.error == "no shared cipher");
    CHECK(c2.error == "alert from peer: handshake failure");
  }
  SECTION("CHACHA20-POLY1305 when the client prefers it") {
    auto cha = client_ctx();
    REQUIRE(SSL_CTX_set_max_proto_version(cha->native(), TLS1_2_VERSION));
    REQUIRE(SSL_CTX_set_strict_cipher_list(cha->native(), "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256"));
    Side s2 = server_side(server_ctx());
    Side c2 = client_side(cha);
    pump(c2, s2);
    CHECK(s2.s->cipher() == "ECDHE-RSA-CHACHA20-POLY1305");
    CHECK(s2.s->cipher_bits() == 256);
  }
}

TEST_CASE("a TLS 1.1 client is refused", "[tls][stream]") {
  auto old = client_ctx();
  REQUIRE(SSL_CTX_set_min_proto_version(old->native(), TLS1_1_VERSION));
  REQUIRE(SSL_CTX_set_max_proto_version(old->native(), TLS1_1_VERSION));
  REQUIRE(SSL_CTX_set_cipher_list(old->native(), "ALL"));
  Side s = server_side(server_ctx());
  Side c = client_side(old);
  pump(c, s);
  CHECK(s.error == "unsupported protocol");
  CHECK(c.error == "alert from peer: protocol version");
  CHECK_FALSE(s.s->handshake_done());
  CHECK(s.s->failed());
  CHECK(s.s->error() == "unsupported protocol");
  // It stays failed; writes are dropped; nothing more to send.
  std::string more;
  auto again = s.s->process(more);
  REQUIRE_FALSE(again);
  CHECK(again.error() == "unsupported protocol");
  s.s->write_plaintext("250 ok\r\n");
  CHECK(s.s->pending_ciphertext_bytes() == 0);
  CHECK(more.empty());
}

TEST_CASE("garbage instead of a ClientHello is a clean error", "[tls][stream]") {
  auto ctx = server_ctx();
  auto try_bytes = [&](std::string_view bytes) {
    auto s = TlsStream::server(ctx);
    REQUIRE(s);
    std::string plain;
    (*s)->feed_ciphertext(bytes);
    auto r = (*s)->process(plain);
    std::string err = r ? std::string() : r.error();
    if (r) {  // waiting for more: an EOF must end it with an error
      (*s)->feed_eof();
      auto r2 = (*s)->process(plain);
      REQUIRE_FALSE(r2);
      err = r2.error();
    }
    CHECK(plain.empty());
    CHECK_FALSE((*s)->handshake_done());
    CHECK((*s)->failed());
    std::string alert;
    (*s)->take_ciphertext(alert);  // an alert, or nothing
    CHECK(alert.size() < 64);
    return err;
  };

  CHECK(try_bytes("EHLO client.example\r\n") == "wrong version number");
  CHECK(try_bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n") == "http request");
  CHECK(try_bytes("POST /x HTTP/1.1\r\n\r\n") == "http request");
  CHECK(try_bytes("") == "connection closed during handshake");
  CHECK(try_bytes(std::string("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", 10)) != "");

  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    std::string junk = random_bytes(rng, std::uniform_int_distribution<size_t>(1, 3000)(rng));
    CHECK_FALSE(try_bytes(junk).empty());
  }

  // A real ClientHello with bytes flipped or cut short.
  Side c = client_side(client_ctx());
  std::string hello;
  REQUIRE(c.s->take_ciphertext(hello));
  for (int i = 0; i < 500; ++i) {
    std::string m = hello;
    int flips = std::uniform_int_distribution<int>(1, 8)(rng);
    for (int k = 0; k < flips; ++k) {
      m[std::uniform_int_distribution<size_t>(0, m.size() - 1)(rng)] = static_cast<char>(rng());
    }
    if (i % 5 == 0) m.resize(std::uniform_int_distribution<size_t>(0, m.size())(rng));
    auto s = TlsStream::server(ctx);
    REQUIRE(s);
    std::string plain;
    (*s)->feed_ciphertext(m);
    (void)(*s)->process(plain);  // any outcome but a crash
    (*s)->feed_eof();
    auto r = (*s)->process(plain);
    CHECK_FALSE(r);  // no Finished ever came: never a completed handshake
    CHECK(plain.empty());
  }
}

TEST_CASE("client verification with the self-signed certificate as CA", "[tls][verify]") {
  auto sctx = server_ctx();

  SECTION("right host name") {
    Side s = server_side(sctx);
    Side c = client_side(client_ctx(true), kHost);
    pump(c, s);
    REQUIRE(c.error.empty());
    CHECK(c.s->peer_verified());
    CHECK(c.s->verify_error().empty());
    CHECK_FALSE(s.s->peer_verified());  // servers do not ask for certificates
  }
  SECTION("trailing dot from DNS") {
    Side s = server_side(sctx);
    Side c = client_side(client_ctx(true), "mail.example.test.");
    pump(c, s);
    REQUIRE(c.error.empty());
    CHECK(c.s->peer_verified());
  }
  SECTION("wrong host name fails the handshake") {
    Side s = server_side(sctx);
    Side c = client_side(client_ctx(true), "wrong.example.test");
    pump(c, s);
    CHECK(c.error == "certificate verify failed: Hostname mismatch");
    CHECK(c.s->certificate_refused() == "Hostname mismatch");
    CHECK(s.error.starts_with("alert from peer: "));
    CHECK_FALSE(c.s->handshake_done());
    CHECK_FALSE(s.s->handshake_done());
  }
  SECTION("without verify_peer a mismatch is only reported") {
    Side s = server_side(sctx);
    Side c = client_side(client_ctx(false), "wrong.example.test");
    pump(c, s);
    REQUIRE(c.error.empty());
    CHECK(c.s->handshake_done());
    CHECK_FALSE(c.s->peer_verified());
    CHECK(c.s->verify_error() == "Hostname mismatch");
    CHECK(c.s->certificate_refused().empty());  // not refused: reported
  }
  SECTION("an IP address is matched as an address") {
    Side s = server_side(sctx);
    Side c = client_side(client_ctx(false), "127.0.0.1");
    pump(c, s);
    REQUIRE(c.error.empty());
    CHECK_FALSE(c.s->peer_verified());
    CHECK(c.s->verify_error() == "IP address mismatch");
  }
  SECTION("an untrusted certificate") {
    auto cc = TlsContext::client(true, files().other_cert);
    REQUIRE(cc);
    Side s = server_side(sctx);
    Side c = client_side(*cc, kHost);
    pump(c, s);
    CHECK(c.error.starts_with("certificate verify failed: "));
    CHECK(c.error.find("self signed") != std::string::npos);
    CHECK(c.s->certificate_refused() == "self signed certificate");
  }
  SECTION("the system CA store does not know it") {
    if (!std::filesystem::exists("/etc/ssl/certs/ca-certificates.crt")) {
      WARN("no system CA store; skipped");
      return;
    }
    auto cc = TlsContext::client(true, "");
    REQUIRE(cc);
    CHECK((*cc)->describe().find("/etc/ssl/certs/ca-certificates.crt") != std::string::npos);
    Side s = server_side(sctx);
    Side c = client_side(*cc, kHost);
    pump(c, s);
    CHECK(c.error.starts_with("certificate verify failed: "));
  }
  SECTION("a verifying client needs a host name") {
    auto c = TlsStream::client(client_ctx(true), "");
    REQUIRE_FALSE(c);
    CHECK(TlsStream::client(client_ctx(false), ""));
  }
  SECTION("a named CA file that cannot be read is an error") {
    auto cc = TlsContext::client(false, files().dir + "/no-ca.pem");
    REQUIRE_FALSE(cc);
    CHECK(cc.error().find("no-ca.pem") != std::string::npos);
  }
}

TEST_CASE("close_notify and EOF", "[tls][close]") {
  auto sctx = server_ctx();
  Side s = server_side(sctx);
  Side c = client_side(client_ctx());
  pump(c, s);
  REQUIRE(s.s->handshake_done());

  SECTION("client closes, then server") {
    c.s->write_plaintext("QUIT\r\n");
    c.s->close_notify();
    c.s->write_plaintext("dropped after close_notify");
    pump(c, s);
    CHECK(s.plain == "QUIT\r\n");
    CHECK(s.closes == 1);
    CHECK(s.s->peer_closed());
    CHECK(s.s->peer_close_notify());
    s.s->write_plaintext("221 2.0.0 Bye\r\n");
    s.s->close_notify();
    pump(c, s);
    CHECK(c.plain == "221 2.0.0 Bye\r\n");
    CHECK(c.closes == 1);
    CHECK(c.s->peer_close_notify());
    CHECK(s.error.empty());
    CHECK(c.error.empty());
    // Nothing is reported twice.
    std::string more;
    auto r = s.s->process(more);
    REQUIRE(r);
    CHECK_FALSE(r->peer_closed);
  }
  SECTION("a bare EOF after the handshake is a close, not an error") {
    s.s->feed_eof();
    s.step();
    CHECK(s.error.empty());
    CHECK(s.closes == 1);
    CHECK(s.s->peer_closed());
    CHECK_FALSE(s.s->peer_close_notify());
  }
  SECTION("EOF in the middle of a record") {
    c.s->write_plaintext("EHLO x\r\n");
    std::string bytes;
    REQUIRE(c.s->take_ciphertext(bytes));
    s.s->feed_ciphertext(std::string_view(bytes).substr(0, bytes.size() - 3));
    s.step();
    s.s->feed_eof();
    s.step();
    CHECK(s.plain.empty());
    CHECK(s.s->peer_closed());
  }
  SECTION("EOF during the handshake is an error") {
    Side s2 = server_side(sctx);
    Side c2 = client_side(client_ctx());
    transfer(c2, s2);  // ClientHello only
    s2.s->feed_eof();
    s2.step();
    CHECK(s2.error == "connection closed during handshake");
  }
}

TEST_CASE("a new context serves new connections while old ones keep theirs", "[tls][reload]") {
  auto first = server_ctx();
  Side s1 = server_side(first);
  Side c1 = client_side(client_ctx(false), kHost);
  pump(c1, s1);
  REQUIRE(c1.s->peer_verified());

  // "SIGHUP": the daemon replaces its context and drops its own reference.
  std::weak_ptr<TlsContext> watch = first;
  first = server_ctx(files().other_cert, files().other_key);
  CHECK_FALSE(watch.expired());  // the open connection holds it

  Side s2 = server_side(first);
  Side c2 = client_side(client_ctx(false, files().other_cert), kOtherHost);
  pump(c2, s2);
  REQUIRE(c2.error.empty());
  CHECK(c2.s->peer_verified());  // the new certificate

  c1.s->write_plaintext("still here\r\n");
  pump(c1, s1);
  CHECK(s1.plain == "still here\r\n");
  s1 = Side{};
  CHECK(watch.expired());
}

TEST_CASE("session resumption with tickets", "[tls][resume]") {
  auto sctx = server_ctx();
  struct Case {
    uint16_t version;
    bool tickets;
  };
  for (Case k : {Case{TLS1_2_VERSION, true}, Case{TLS1_2_VERSION, false}, Case{TLS1_3_VERSION, true}}) {
    INFO("version " << k.version << " tickets " << k.tickets);
    auto cc = client_ctx();
    REQUIRE(SSL_CTX_set_max_proto_version(cc->native(), k.version));
    if (!k.tickets) SSL_CTX_set_options(cc->native(), SSL_OP_NO_TICKET);  // the session cache
    static bssl::UniquePtr<SSL_SESSION> saved;
    saved.reset();
    SSL_CTX_set_session_cache_mode(cc->native(), SSL_SESS_CACHE_CLIENT);
    SSL_CTX_sess_set_new_cb(cc->native(), [](SSL*, SSL_SESSION* sess) {
      saved.reset(sess);
      return 1;
    });
    {
      Side s = server_side(sctx);
      Side c = client_side(cc);
      pump(c, s);
      // TLS 1.3 tickets follow the handshake, with the server's first write.
      s.s->write_plaintext("220 ready\r\n");
      pump(c, s);
      CHECK(c.plain == "220 ready\r\n");
      REQUIRE(saved);
      CHECK_FALSE(SSL_session_reused(c.s->native()));
    }
    Side s = server_side(sctx);
    auto cs = TlsStream::client(cc, kHost);
    REQUIRE(cs);
    REQUIRE(SSL_set_session((*cs)->native(), saved.get()));
    Side c{std::move(*cs)};
    c.step();
    pump(c, s);
    REQUIRE(c.error.empty());
    CHECK(SSL_session_reused(c.s->native()));
    CHECK(SSL_session_reused(s.s->native()));
    saved.reset();
  }
}

// ---------------------------------------------------------------------------
// A real peer: openssl s_client over loopback TCP.

namespace {

struct SClientRun {
  std::string output;        // s_client's stdout and stderr
  std::string server_plain;  // what the server stream received
  std::string server_error;
  std::string version, cipher;
};

SClientRun run_s_client(std::shared_ptr<TlsContext> sctx, const std::vector<std::string>& extra) {
  using Clock = std::chrono::steady_clock;
  ::signal(SIGPIPE, SIG_IGN);
  SClientRun run;

  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(lfd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(lfd, 1) == 0);
  socklen_t alen = sizeof addr;
  REQUIRE(::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen) == 0);
  int port = ntohs(addr.sin_port);

  int in_pipe[2], out_pipe[2];
  REQUIRE(::pipe2(in_pipe, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(out_pipe, O_CLOEXEC) == 0);
  std::vector<std::string> args = {"openssl", "s_client", "-connect", fmt::format("127.0.0.1:{}", port),
                                   "-servername", kHost, "-verify_hostname", kHost,
                                   "-CAfile", files().cert, "-verify_return_error", "-brief"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 2);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, "openssl", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  REQUIRE(rc == 0);
  REQUIRE(::write(in_pipe[1], "PING\r\n", 6) == 6);

  auto deadline = Clock::now() + std::chrono::seconds(15);
  auto ms_left = [&] {
    auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::max<long>(0, d));
  };

  pollfd lp{lfd, POLLIN, 0};
  int fd = -1;
  if (::poll(&lp, 1, ms_left()) == 1) fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  ::close(lfd);

  if (fd >= 0) {
    auto s = TlsStream::server(sctx);
    REQUIRE(s);
    TlsStream& tls = **s;
    bool replied = false;
    auto flush = [&] {
      std::string out;
      tls.take_ciphertext(out);
      std::string_view v = out;
      while (!v.empty()) {
        ssize_t n = ::send(fd, v.data(), v.size(), MSG_NOSIGNAL);
        if (n <= 0) return;
        v.remove_prefix(static_cast<size_t>(n));
      }
    };
    while (ms_left() > 0) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, ms_left()) != 1) break;
      char buf[65536];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        tls.feed_ciphertext(std::string_view(buf, static_cast<size_t>(n)));
      } else {
        tls.feed_eof();
      }
      auto r = tls.process(run.server_plain);
      if (r && r->handshake_completed) {
        run.version = tls.version();
        run.cipher = tls.cipher();
      }
      if (!r) run.server_error = r.error();
      if (!replied && run.server_plain.find("PING\r\n") != std::string::npos) {
        tls.write_plaintext("PONG\r\n");
        tls.close_notify();
        replied = true;
      }
      flush();
      if (!r || replied || n <= 0) break;
    }
    ::close(fd);
  }
  ::close(in_pipe[1]);

  for (;;) {
    pollfd p{out_pipe[0], POLLIN, 0};
    if (::poll(&p, 1, ms_left()) != 1) break;
    char buf[4096];
    ssize_t n = ::read(out_pipe[0], buf, sizeof buf);
    if (n <= 0) break;
    run.output.append(buf, static_cast<size_t>(n));
  }
  ::close(out_pipe[0]);
  if (ms_left() == 0) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return run;
}

}  // namespace

TEST_CASE("openssl s_client as a real peer", "[tls][openssl]") {
  if (::access("/usr/bin/openssl", X_OK) != 0) {
    WARN("no /usr/bin/openssl; skipped");
    return;
  }
  auto sctx = server_ctx();

  SECTION("TLS 1.3") {
    SClientRun r = run_s_client(sctx, {});
    INFO(r.output);
    CHECK(r.server_error.empty());
    CHECK(r.server_plain == "PING\r\n");
    CHECK(r.version == "TLSv1.3");
    CHECK(r.output.find("PONG") != std::string::npos);
    CHECK(r.output.find("Verification: OK") != std::string::npos);
    CHECK(r.output.find("Protocol version: TLSv1.3") != std::string::npos);
  }
  SECTION("TLS 1.2") {
    SClientRun r = run_s_client(sctx, {"-tls1_2"});
    INFO(r.output);
    CHECK(r.server_error.empty());
    CHECK(r.version == "TLSv1.2");
    CHECK(r.cipher.starts_with("ECDHE-RSA-"));
    CHECK(r.output.find("PONG") != std::string::npos);
  }
  SECTION("TLS 1.1 is refused") {
    SClientRun r = run_s_client(sctx, {"-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"});
    INFO(r.output);
    CHECK(r.server_error == "unsupported protocol");
    CHECK(r.output.find("PONG") == std::string::npos);
  }
}
