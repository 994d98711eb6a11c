// dane_test.cpp — DANE matching (mta/tls/dane.hpp) against certificates the
// openssl CLI makes at test time: a root, an intermediate, a leaf, the leaf
// re-issued with the same key, and an unrelated leaf. The expected digests
// are computed by openssl too (openssl dgst over the DER certificate and the
// DER SubjectPublicKeyInfo), never by the code under test.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "mta/tls/dane.hpp"
#include "mta/tls/tls.hpp"

using namespace sluice;
using dns::TlsaRecord;
using tls::dane::Verdict;
using Bytes = std::vector<uint8_t>;
using Outcome = Verdict::Outcome;

namespace {

Bytes slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

// The PKI, made once per run in a temporary directory removed at exit.
struct Pki {
  std::string dir;
  ~Pki() {
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
  // name: root, int, leaf, renewed (leaf's key), other; what: der, spki,
  // der.sha256, der.sha512, spki.sha256, spki.sha512.
  Bytes get(const std::string& name, const std::string& what) const { return slurp(dir + "/" + name + "." + what); }
};

const Pki& pki() {
  static Pki p = [] {
    Pki p;
    char tmpl[] = "/tmp/sluice-dane-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    p.dir = tmpl;
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    std::string script = "set -e; cd " + p.dir + "; " +
        "printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign\\n' > ca.ext; "
        "openssl req -x509 " + ec + " -subj /CN=Dane-Root -days 2 -keyout root.key -out root.pem; "
        "openssl req " + ec + " -subj /CN=Dane-Int -keyout int.key -out int.csr; "
        "openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -set_serial 2 -days 2 -extfile ca.ext -out int.pem; "
        "openssl req " + ec + " -subj /CN=mx.example.test -keyout leaf.key -out leaf.csr; "
        "openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -set_serial 3 -days 2 -out leaf.pem; "
        "openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -set_serial 4 -days 3 -out renewed.pem; "
        "openssl req -x509 " + ec + " -subj /CN=other.example.test -days 2 -keyout other.key -out other.pem; "
        "for c in root int leaf renewed other; do "
        "  openssl x509 -in $c.pem -outform DER -out $c.der; "
        "  openssl x509 -in $c.pem -pubkey -noout | openssl pkey -pubin -outform DER -out $c.spki; "
        "  for w in der spki; do "
        "    openssl dgst -sha256 -binary -out $c.$w.sha256 $c.$w; "
        "    openssl dgst -sha512 -binary -out $c.$w.sha512 $c.$w; "
        "  done; "
        "done; "
        "cat leaf.pem int.pem > chain.pem";
    int rc = std::system(("(" + script + ") >/dev/null 2>&1").c_str());
    INFO("the openssl CLI failed to make the test certificates in " << p.dir);
    REQUIRE(rc == 0);
    return p;
  }();
  return p;
}

TlsaRecord rec(uint8_t usage, uint8_t selector, uint8_t matching, Bytes data) {
  return TlsaRecord{usage, selector, matching, std::move(data)};
}

// The record (usage, selector, matching) for certificate `name`.
TlsaRecord for_cert(uint8_t usage, uint8_t selector, uint8_t matching, const std::string& name) {
  static const char* what[2][3] = {{"der", "der.sha256", "der.sha512"}, {"spki", "spki.sha256", "spki.sha512"}};
  return rec(usage, selector, matching, pki().get(name, what[selector][matching]));
}

std::vector<Bytes> chain(std::initializer_list<const char*> names) {
  std::vector<Bytes> out;
  for (const char* n : names) out.push_back(pki().get(n, "der"));
  return out;
}

}  // namespace

TEST_CASE("usable TLSA records for SMTP", "[dane]") {
  const Bytes d32(32, 1), d64(64, 1), d5(5, 1);
  CHECK(tls::dane::usable(rec(3, 1, 1, d32)));
  CHECK(tls::dane::usable(rec(3, 0, 2, d64)));
  CHECK(tls::dane::usable(rec(2, 0, 0, d5)));
  CHECK(tls::dane::usable(rec(2, 1, 1, d32)));
  // PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (RFC 7672 §3.1.3).
  CHECK(!tls::dane::usable(rec(0, 1, 1, d32)));
  CHECK(!tls::dane::usable(rec(1, 1, 1, d32)));
  // Unknown numbers, digests of the wrong length.
  CHECK(!tls::dane::usable(rec(4, 1, 1, d32)));
  CHECK(!tls::dane::usable(rec(3, 2, 1, d32)));
  CHECK(!tls::dane::usable(rec(3, 1, 3, d32)));
  CHECK(!tls::dane::usable(rec(3, 1, 1, d64)));
  CHECK(!tls::dane::usable(rec(3, 1, 2, d32)));
  CHECK(!tls::dane::usable(rec(3, 1, 1, Bytes(31, 1))));
  CHECK(!tls::dane::usable(rec(3, 1, 0, {})));
}

TEST_CASE("DANE-EE matches the leaf only, names and dates ignored", "[dane]") {
  const auto peer = chain({"leaf", "int"});
  for (uint8_t selector : {0, 1}) {
    for (uint8_t matching : {0, 1, 2}) {
      INFO("selector " << int(selector) << " matching " << int(matching));
      std::vector<TlsaRecord> records{for_cert(3, selector, matching, "leaf")};
      Verdict v = tls::dane::match(records, peer);
      CHECK(v.outcome == Outcome::match);
      CHECK(v.usage == tls::dane::dane_ee);
      CHECK(v.certificates == std::vector<std::size_t>{0});
      CHECK(v.usable_records == 1);
      // The intermediate's record as DANE-EE: the leaf does not match it.
      std::vector<TlsaRecord> wrong{for_cert(3, selector, matching, "int")};
      CHECK(tls::dane::match(wrong, peer).outcome == Outcome::mismatch);
    }
  }
  CHECK(tls::dane::match(std::vector<TlsaRecord>{for_cert(3, 1, 1, "leaf")}, peer).reason ==
        "DANE-EE(3) SPKI SHA2-256 matched the leaf certificate");
  SECTION("a renewed certificate with the same key: SPKI still matches, the full certificate not") {
    const auto renewed = chain({"renewed", "int"});
    CHECK(tls::dane::match(std::vector<TlsaRecord>{for_cert(3, 1, 1, "leaf")}, renewed).outcome == Outcome::match);
    CHECK(tls::dane::match(std::vector<TlsaRecord>{for_cert(3, 0, 1, "leaf")}, renewed).outcome ==
          Outcome::mismatch);
  }
  SECTION("a self-signed leaf for another name matches its own record") {
    CHECK(tls::dane::match(std::vector<TlsaRecord>{for_cert(3, 1, 2, "other")}, chain({"other"})).outcome ==
          Outcome::match);
  }
}

TEST_CASE("DANE-TA matches a certificate of the chain and says which", "[dane]") {
  SECTION("the intermediate") {
    std::vector<TlsaRecord> records{for_cert(2, 0, 1, "int")};
    Verdict v = tls::dane::match(records, chain({"leaf", "int"}));
    CHECK(v.outcome == Outcome::match);
    CHECK(v.usage == tls::dane::dane_ta);
    CHECK(v.certificates == std::vector<std::size_t>{1});
    CHECK(v.reason == "DANE-TA(2) Cert SHA2-256 matched certificate 1 of the chain");
  }
  SECTION("the root, sent in the chain; several matching certificates all listed") {
    std::vector<TlsaRecord> records{for_cert(2, 1, 2, "root"), for_cert(2, 1, 0, "int")};
    Verdict v = tls::dane::match(records, chain({"leaf", "int", "root"}));
    CHECK(v.outcome == Outcome::match);
    CHECK(v.certificates == std::vector<std::size_t>{1, 2});
  }
  SECTION("a root the peer does not send cannot match") {
    std::vector<TlsaRecord> records{for_cert(2, 1, 1, "root")};
    Verdict v = tls::dane::match(records, chain({"leaf", "int"}));
    CHECK(v.outcome == Outcome::mismatch);
    CHECK(v.certificates.empty());
  }
  SECTION("DANE-EE is preferred when both match") {
    std::vector<TlsaRecord> records{for_cert(2, 0, 1, "int"), for_cert(3, 1, 1, "leaf")};
    Verdict v = tls::dane::match(records, chain({"leaf", "int"}));
    CHECK(v.usage == tls::dane::dane_ee);
    CHECK(v.certificates == std::vector<std::size_t>{0});
    CHECK(v.usable_records == 2);
  }
}

TEST_CASE("no usable records is not a mismatch", "[dane]") {
  const auto peer = chain({"leaf", "int"});
  Verdict none = tls::dane::match({}, peer);
  CHECK(none.outcome == Outcome::no_usable_records);
  CHECK(none.reason == "no TLSA records");
  // PKIX usages are unusable even when their data matches the leaf.
  std::vector<TlsaRecord> pkix{for_cert(1, 1, 1, "leaf"), for_cert(0, 0, 1, "int")};
  Verdict v = tls::dane::match(pkix, peer);
  CHECK(v.outcome == Outcome::no_usable_records);
  CHECK(v.reason == "no usable TLSA records");
  CHECK(v.usable_records == 0);
  // A SHA-256 digest published under matching type 2 (wrong length): unusable.
  Bytes digest = pki().get("leaf", "spki.sha256");
  CHECK(tls::dane::match(std::vector<TlsaRecord>{rec(3, 1, 2, digest)}, peer).outcome == Outcome::no_usable_records);
  // One usable record that does not match beside an unusable one that would.
  std::vector<TlsaRecord> mixed{for_cert(1, 1, 1, "leaf"), for_cert(3, 1, 1, "other")};
  Verdict m = tls::dane::match(mixed, peer);
  CHECK(m.outcome == Outcome::mismatch);
  CHECK(m.usable_records == 1);
  CHECK(m.reason == "1 usable TLSA record(s), none matched the certificate chain");
}

TEST_CASE("hostile chains", "[dane]") {
  std::vector<TlsaRecord> records{for_cert(3, 1, 1, "leaf"), for_cert(2, 1, 1, "int")};
  Verdict empty = tls::dane::match(records, {});
  CHECK(empty.outcome == Outcome::mismatch);
  CHECK(empty.reason == "no certificate presented");
  // Bytes that are not a certificate match no SPKI record, and do not crash.
  std::vector<Bytes> junk{Bytes{0x30, 0x03, 0x02, 0x01, 0x01}, Bytes{}, Bytes(100, 0x30)};
  CHECK(tls::dane::match(records, junk).outcome == Outcome::mismatch);
  // A leaf cut short: its SPKI cannot be read.
  Bytes cut = pki().get("leaf", "der");
  cut.resize(cut.size() - 10);
  CHECK(tls::dane::match(records, std::vector<Bytes>{cut}).outcome == Outcome::mismatch);
  // Trailing bytes after the certificate: not the certificate the record names.
  Bytes longer = pki().get("leaf", "der");
  longer.push_back(0);
  CHECK(tls::dane::match(records, std::vector<Bytes>{longer}).outcome == Outcome::mismatch);
}

// --- TlsStream::client_dane: the same records in a real handshake -------------

namespace {

struct Handshake {
  bool completed = false;
  bool verified = false;
  std::string error, refused, match;
};

// A server sending leaf + intermediate, and a DANE client for `host`.
Handshake dane_handshake(std::vector<TlsaRecord> records, const std::string& host) {
  auto server_ctx = tls::TlsContext::server(pki().dir + "/chain.pem", pki().dir + "/leaf.key");
  REQUIRE(server_ctx);
  auto client_ctx = tls::TlsContext::client(false, pki().dir + "/other.pem");  // trusts nothing here
  REQUIRE(client_ctx);
  auto server = tls::TlsStream::server(*server_ctx);
  auto client = tls::TlsStream::client_dane(*client_ctx, host, std::move(records));
  REQUIRE(server);
  REQUIRE(client);
  Handshake h;
  std::string plain, bytes;
  auto step = [&](tls::TlsStream& s) {
    auto r = s.process(plain);
    if (!r && h.error.empty() && &s == client->get()) h.error = r.error();
    if (r && r->handshake_completed && &s == client->get()) h.completed = true;
  };
  step(**client);
  for (int round = 0; round < 20; ++round) {
    bool moved = false;
    bytes.clear();
    if ((*client)->take_ciphertext(bytes)) {
      (*server)->feed_ciphertext(bytes);
      step(**server);
      moved = true;
    }
    bytes.clear();
    if ((*server)->take_ciphertext(bytes)) {
      (*client)->feed_ciphertext(bytes);
      step(**client);
      moved = true;
    }
    if (!moved) break;
  }
  h.verified = (*client)->peer_verified();
  h.refused = (*client)->certificate_refused();
  h.match = (*client)->dane_match();
  return h;
}

}  // namespace

TEST_CASE("client_dane: DANE-EE authenticates the leaf, whatever its name", "[dane][handshake]") {
  Handshake h = dane_handshake({for_cert(3, 1, 1, "leaf")}, "not-the-name.example.test");
  CHECK(h.completed);
  CHECK(h.error.empty());
  CHECK(h.verified);
  CHECK(h.match == "DANE-EE(3) SPKI SHA2-256 matched the leaf certificate");
  // The renewed leaf shares the key: the SPKI record still matches it.
  CHECK(dane_handshake({for_cert(3, 1, 1, "renewed")}, "mx.example.test").verified);
}

TEST_CASE("client_dane: a mismatch fails the handshake with DANE's reason", "[dane][handshake]") {
  Handshake h = dane_handshake({for_cert(3, 1, 1, "other"), for_cert(2, 0, 1, "root")}, "mx.example.test");
  CHECK_FALSE(h.completed);
  CHECK_FALSE(h.verified);
  CHECK(h.refused == "DANE: 2 usable TLSA record(s), none matched the certificate chain");
  CHECK(h.error == "certificate verify failed: " + h.refused);
}

TEST_CASE("client_dane: DANE-TA anchors the chain and checks the name", "[dane][handshake]") {
  Handshake ok = dane_handshake({for_cert(2, 1, 1, "int")}, "mx.example.test");
  CHECK(ok.completed);
  CHECK(ok.verified);
  CHECK_FALSE(ok.match.empty());
  Handshake wrong = dane_handshake({for_cert(2, 1, 1, "int")}, "other.example.test");
  CHECK_FALSE(wrong.completed);
  CHECK(wrong.refused.rfind("DANE: ", 0) == 0);
  CHECK(wrong.refused.find("Hostname mismatch") != std::string::npos);
}
