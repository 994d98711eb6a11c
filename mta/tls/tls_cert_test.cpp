// tls_cert_test.cpp — make_self_signed (modes, names, never overwriting),
// TlsContext loading chains and keys, chains made by openssl, and the
// client's verification of a peer by name and by address.
#include "mta/tls/tls_test_util.hpp"

using namespace tls_test;

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
