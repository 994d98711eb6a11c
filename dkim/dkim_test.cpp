// dkim_test.cpp — canonicalisation by the RFC 6376 rules, the RFC 8463
// Appendix A vector (Ed25519, deterministic, so the signature itself is
// compared), and signatures that python3-dkim (dkimpy) verifies.
#include <catch2/catch.hpp>

#include <openssl/base64.h>
#include <openssl/curve25519.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "dkim/dkim.hpp"
#include "dkim/test_util.hpp"

using namespace sluice::dkim;

using dkim_test::run;

namespace {

std::vector<uint8_t> unbase64(std::string_view s) {
  size_t n = 0;
  REQUIRE(EVP_DecodedLength(&n, s.size()));
  std::vector<uint8_t> out(n);
  REQUIRE(EVP_DecodeBase64(out.data(), &n, out.size(), reinterpret_cast<const uint8_t*>(s.data()),
                           s.size()));
  out.resize(n);
  return out;
}

std::string body_hash(std::string_view body, size_t piece = 0) {
  BodyHash h;
  if (piece == 0) {
    h.feed(body);
  } else {
    for (size_t i = 0; i < body.size(); i += piece) h.feed(body.substr(i, piece));
  }
  return h.finish_base64();
}

// RFC 8463 Appendix A.
const std::vector<std::string> kFields = {
    "From: Joe SixPack <joe@football.example.com>\r\n",
    "To: Suzie Q <suzie@shopping.example.net>\r\n",
    "Subject: Is dinner ready?\r\n",
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n",
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n",
};
constexpr std::string_view kBody = "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";
constexpr std::string_view kSeed = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
constexpr std::string_view kPublic = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
constexpr std::string_view kBodyHash = "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=";
constexpr std::string_view kSignatureField =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=\r\n";
constexpr std::string_view kSignature =
    "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";


}  // namespace

TEST_CASE("relaxed header canonicalisation (RFC 6376 §3.4.2)") {
  CHECK(relaxed_header("Subject: Is dinner ready?\r\n") == "subject:Is dinner ready?\r\n");
  CHECK(relaxed_header("SUBJECT \t:  a \t b  \r\n\t c \r\n") == "subject:a b c\r\n");
  CHECK(relaxed_header("X-Empty:\r\n") == "x-empty:\r\n");
  CHECK(relaxed_header("X-Folded:\r\n value\r\n") == "x-folded:value\r\n");
  // A colon inside the value is text: the WSP after it stays (one SP).
  CHECK(relaxed_header("H: from : to :\r\n subject\r\n") == "h:from : to : subject\r\n");
  // 8-bit octets pass unchanged; only the name is lower-cased.
  CHECK(relaxed_header("Subject: Gr\xc3\xbc\xc3\x9f" "E\r\n") == "subject:Gr\xc3\xbc\xc3\x9f" "E\r\n");
}

TEST_CASE("relaxed body canonicalisation (RFC 6376 §3.4.4), in pieces of any size") {
  // RFC 6376 §3.4.5's example body: " C \r\nD \t E\r\n\r\n\r\n" -> " C\r\nD E\r\n".
  const std::string want = body_hash(" C\r\nD E\r\n");
  for (size_t piece : {0, 1, 2, 3, 7})
    CHECK(body_hash(" C \r\nD \t E\r\n\r\n\r\n", piece) == want);
  CHECK(body_hash("") == body_hash("\r\n\r\n"));  // empty body: the empty string
  CHECK(body_hash("") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");  // SHA-256("")
  CHECK(body_hash("last line") == body_hash("last line\r\n"));
  CHECK(body_hash("a\r\n \r\n\t\r\nb\r\n") == body_hash("a\r\n\r\n\r\nb\r\n"));
  for (size_t piece : {0, 1, 5}) CHECK(body_hash(kBody, piece) == kBodyHash);
}

TEST_CASE("RFC 8463 Appendix A: the Ed25519 signature, exactly") {
  auto key = Key::ed25519_seed(unbase64(kSeed));
  REQUIRE(key);
  CHECK(key->algorithm() == Algorithm::ed25519_sha256);
  CHECK(key->public_record() == kPublic);
  const std::vector<std::string> names = {"from", "to",   "subject", "date",
                                          "message-id", "from", "subject", "date"};
  const std::string data = signing_input(kFields, names, kSignatureField);
  auto sig = key->sign(data);
  REQUIRE(sig);
  const auto want = unbase64(kSignature);
  CHECK(std::string(want.begin(), want.end()) == *sig);
}

TEST_CASE("header_list: each field present, and the forgeable ones once more") {
  const std::vector<std::string> fields = {"From: a@x\r\n", "To: b@y\r\n", "To: c@y\r\n",
                                           "Received: x\r\n", "subject: s\r\n"};
  const std::vector<std::string> h = header_list(fields, default_headers());
  CHECK(h == std::vector<std::string>{"From", "From", "Reply-To", "Subject", "Subject", "Date",
                                      "To", "To", "To", "Cc", "Content-Type"});
}

TEST_CASE("signatures python3-dkim verifies: RSA and Ed25519, one body hash; a changed body fails") {
  const std::string dir = [] {
    char tmpl[] = "/tmp/sluice-dkim-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    return std::string(tmpl);
  }();
  run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + dir + "/rsa.pem 2>&1");
  run("openssl genpkey -algorithm ED25519 -out " + dir + "/ed.pem 2>&1");
  auto read = [](const std::string& p) {
    std::ifstream f(p);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  auto rsa = Key::from_pem(read(dir + "/rsa.pem"));
  auto ed = Key::from_pem(read(dir + "/ed.pem"));
  REQUIRE(rsa);
  REQUIRE(ed);
  CHECK(rsa->algorithm() == Algorithm::rsa_sha256);

  const std::string header =
      "From: Joe <joe@example.com>\r\nTo: Suzie <suzie@example.net>\r\n"
      "Subject:   Dinner \t ready?\r\n\tfolded\r\nDate: Fri, 11 Jul 2003 21:00:37 -0700\r\n"
      "Message-ID: <1@example.com>\r\n";
  const std::string body = "Hi.  \r\n\r\nA line with trailing space \t\r\n\r\n\r\n";
  const std::vector<std::string> fields = split_fields(header + "\r\n");
  REQUIRE(fields.size() == 5);
  BodyHash bh;
  bh.feed(body);
  Request r;
  r.domain = "example.com";
  r.timestamp = 1764900000;
  r.headers = header_list(fields, default_headers());
  r.body_hash = bh.finish_base64();
  r.selector = "rsa1";
  auto s1 = sign(r, *rsa, fields);
  r.selector = "ed1";
  auto s2 = sign(r, *ed, fields);
  REQUIRE(s1);
  REQUIRE(s2);
  const std::string message = *s2 + *s1 + header + "\r\n" + body;
  std::ofstream(dir + "/msg.eml", std::ios::binary) << message;
  std::ofstream(dir + "/tampered.eml", std::ios::binary) << message + "P.S. added\r\n";
  std::ofstream(dir + "/keys.txt")
      << "rsa1._domainkey.example.com. v=DKIM1; k=rsa; p=" << rsa->public_record() << "\n"
      << "ed1._domainkey.example.com. v=DKIM1; k=ed25519; p=" << ed->public_record() << "\n";
  // dkimpy checks every signature (verify(idx=N)) against a stubbed DNS.
  const std::string script =
      "import dkim,sys\n"
      "recs=dict(l.split(' ',1) for l in open(sys.argv[1]+'/keys.txt').read().splitlines())\n"
      "dns=lambda name,timeout=5: recs.get(name.decode()).encode()\n"
      "for f in ('msg','tampered'):\n"
      "  m=open(sys.argv[1]+'/'+f+'.eml','rb').read()\n"
      "  d=dkim.DKIM(m)\n"
      "  def ok(i):\n"
      "    try: return d.verify(idx=i,dnsfunc=dns)\n"
      "    except dkim.ValidationError: return False\n"
      "  print(f, ok(0), ok(1))\n";
  std::ofstream(dir + "/verify.py") << script;
  const std::string out = run("/usr/bin/python3 " + dir + "/verify.py " + dir + " 2>&1");
  CHECK(out == "msg True True\ntampered False False\n");
  run("rm -rf " + dir);
}
