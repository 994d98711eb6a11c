// sasl_test.cpp — base64 and the PLAIN/LOGIN server dialogues.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <variant>

#include "mta/auth/sasl.hpp"

using namespace sluice::auth;
using namespace std::string_literals;
using namespace std::string_view_literals;
using sluice::proto::Reply;

namespace {

std::string b64(std::string_view s) { return base64_encode(s); }

const Challenge& as_challenge(const Step& s) {
  REQUIRE(std::holds_alternative<Challenge>(s));
  return std::get<Challenge>(s);
}
const Credentials& as_credentials(const Step& s) {
  REQUIRE(std::holds_alternative<Credentials>(s));
  return std::get<Credentials>(s);
}
const Reply& as_reply(const Step& s) {
  REQUIRE(std::holds_alternative<Reply>(s));
  return std::get<Reply>(s);
}
// "501 5.5.2" from a failed step, and the password never in the reply.
std::string code_of(const Step& s) {
  const Reply& r = as_reply(s);
  CHECK(r.wire().find("secret") == std::string::npos);
  return std::to_string(r.code) + " " + r.enhanced;
}

}  // namespace

// ---- base64 ----

TEST_CASE("base64: RFC 4648 §10 test vectors, both ways") {
  const std::pair<std::string_view, std::string_view> vectors[] = {
      {"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
      {"Username:", "VXNlcm5hbWU6"}, {"Password:", "UGFzc3dvcmQ6"},
  };
  for (const auto& [plain, text] : vectors) {
    CAPTURE(plain);
    CHECK(base64_encode(plain) == text);
    auto d = base64_decode(text);
    REQUIRE(d.has_value());
    CHECK(*d == plain);
  }
}

TEST_CASE("base64: binary data and NULs round-trip") {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  CHECK(base64_encode("\0a\0b"s) == "AGEAYg==");
  CHECK(base64_decode("AGEAYg==").value() == "\0a\0b"s);
  CHECK(base64_decode(base64_encode(all)).value() == all);
  CHECK(base64_encode("\xff\xfe\xfd"s) == "//79");

  std::mt19937 rng(12345);
  for (int n = 0; n < 200; ++n) {
    std::string s(static_cast<size_t>(n), '\0');
    for (char& c : s) c = static_cast<char>(rng());
    const std::string e = base64_encode(s);
    CHECK(e.size() == (s.size() + 2) / 3 * 4);
    CHECK(base64_decode(e).value() == s);
  }
}

TEST_CASE("base64: strict decoding refuses everything else") {
  const std::pair<std::string_view, Base64Error> bad[] = {
      {"Z", Base64Error::bad_length},
      {"Zg", Base64Error::bad_length},
      {"Zg=", Base64Error::bad_length},
      {"Zm9vY", Base64Error::bad_length},
      {"Zm9v\r\n", Base64Error::bad_length},
      {"Zm9 ", Base64Error::bad_character},       // whitespace is not skipped
      {" Zm9", Base64Error::bad_character},
      {"Zm\r\n", Base64Error::bad_character},
      {"Zm9v\tZg=", Base64Error::bad_character},
      {"Zm9vYmFy Zg==", Base64Error::bad_length},  // the length is checked first
      {"Zm9vYmFy Zg=", Base64Error::bad_character},
      {"ab-_", Base64Error::bad_character},       // base64url alphabet
      {"Zm9v!A==", Base64Error::bad_character},
      {"Zg\0="sv, Base64Error::bad_character},
      {"\xc3\xa9Zg", Base64Error::bad_character},
      {"Zg=a", Base64Error::bad_padding},         // data after padding
      {"Z===", Base64Error::bad_padding},         // too much padding
      {"====", Base64Error::bad_padding},
      {"Zg==Zg==", Base64Error::bad_padding},     // padding before the end
      {"Zm9=", Base64Error::bad_padding},         // non-zero bits under '=' ("Zm8=" is right)
      {"Zh==", Base64Error::bad_padding},         // non-zero bits under '==' ("Zg==")
      {"Zm9vYmF=", Base64Error::bad_padding},
  };
  for (const auto& [text, err] : bad) {
    CAPTURE(text);
    auto d = base64_decode(text);
    REQUIRE_FALSE(d.has_value());
    CHECK(d.error() == err);
    CHECK_FALSE(to_string(d.error()).empty());
  }
}

// ---- mechanisms ----

TEST_CASE("SASL: mechanism names are case-insensitive; others are 504 5.5.4") {
  CHECK(parse_mechanism("PLAIN") == Mechanism::plain);
  CHECK(parse_mechanism("plain") == Mechanism::plain);
  CHECK(parse_mechanism("Login") == Mechanism::login);
  CHECK_FALSE(parse_mechanism("CRAM-MD5").has_value());
  CHECK_FALSE(parse_mechanism("PLAINX").has_value());
  CHECK(kMechanisms == "PLAIN LOGIN");

  SaslServer s;
  CHECK(code_of(s.start("CRAM-MD5", std::nullopt)) == "504 5.5.4");
  CHECK_FALSE(s.active());
  CHECK(code_of(s.start("XOAUTH2", "dGVzdA=="sv)) == "504 5.5.4");
  CHECK(code_of(s.start("", std::nullopt)) == "504 5.5.4");
}

// ---- PLAIN ----

TEST_CASE("SASL PLAIN: initial response") {
  SaslServer s;
  Step st = s.start("PLAIN", b64("\0alice\0secret"s));
  const Credentials& c = as_credentials(st);
  CHECK(c.authzid.empty());
  CHECK(c.login == "alice");
  CHECK(c.password == "secret");
  CHECK(c.mechanism == Mechanism::plain);
  CHECK_FALSE(s.active());
}

TEST_CASE("SASL PLAIN: empty challenge, then the response") {
  SaslServer s;
  Step st = s.start("plain", std::nullopt);
  CHECK(as_challenge(st).text.empty());
  CHECK(as_challenge(st).wire() == "334 \r\n");  // the space stays (RFC 4954 continue-req)
  CHECK(s.active());
  Step st2 = s.step(b64("\0bob@example.org\0secret pass"s));
  const Credentials& c = as_credentials(st2);
  CHECK(c.login == "bob@example.org");
  CHECK(c.password == "secret pass");
  CHECK_FALSE(s.active());
  // A second exchange on the same object.
  CHECK(as_credentials(s.start("PLAIN", b64("\0carol\0pw"s))).login == "carol");
}

TEST_CASE("SASL PLAIN: authzid equal to the login is accepted, any other refused") {
  SaslServer s;
  Step ok = s.start("PLAIN", b64("alice\0alice\0secret"s));
  CHECK(as_credentials(ok).authzid == "alice");
  CHECK(as_credentials(ok).login == "alice");

  CHECK(code_of(s.start("PLAIN", b64("root\0alice\0secret"s))) == "535 5.7.8");
  CHECK(code_of(s.start("PLAIN", b64("Alice\0alice\0secret"s))) == "535 5.7.8");  // byte for byte
  CHECK_FALSE(s.active());
  // Also when sent after the empty challenge.
  REQUIRE(std::holds_alternative<Challenge>(s.start("PLAIN", std::nullopt)));
  CHECK(code_of(s.step(b64("root\0alice\0secret"s))) == "535 5.7.8");
  CHECK_FALSE(s.active());
}

TEST_CASE("SASL PLAIN: '=' is an empty initial response, which PLAIN cannot use") {
  SaslServer s;
  CHECK(code_of(s.start("PLAIN", "="sv)) == "501 5.5.2");
  CHECK_FALSE(s.active());
}

TEST_CASE("SASL PLAIN: malformed messages are 501 5.5.2") {
  const std::string bad[] = {
      "alice secret",         // no NUL
      "\0alice"s,             // one NUL
      "\0alice\0secret\0"s,   // three NULs
      "\0\0secret"s,          // empty login
      "\0alice\0"s,           // empty password
      "alice\0\0secret"s,     // empty login, with authzid
      ""s,
  };
  for (const auto& m : bad) {
    CAPTURE(m);
    SaslServer s;
    CHECK(code_of(s.start("PLAIN", b64(m))) == "501 5.5.2");
    CHECK_FALSE(s.active());
    REQUIRE(std::holds_alternative<Challenge>(s.start("PLAIN", std::nullopt)));
    CHECK(code_of(s.step(b64(m))) == "501 5.5.2");
    CHECK_FALSE(s.active());
  }
}

TEST_CASE("SASL PLAIN: '*' cancels with 501 5.7.0") {
  SaslServer s;
  REQUIRE(std::holds_alternative<Challenge>(s.start("PLAIN", std::nullopt)));
  const Step st = s.step("*");
  CHECK(code_of(st) == "501 5.7.0");
  CHECK(as_reply(st).text() == "Authentication cancelled");
  CHECK_FALSE(s.active());
}

TEST_CASE("SASL PLAIN: bad base64 is 501 5.5.2, in the initial response or a step") {
  SaslServer s;
  CHECK(code_of(s.start("PLAIN", "AGFsaWNlAHNlY3JldA"sv)) == "501 5.5.2");  // no padding
  CHECK(code_of(s.start("PLAIN", "*"sv)) == "501 5.5.2");  // '*' cancels only as a response
  REQUIRE(std::holds_alternative<Challenge>(s.start("PLAIN", std::nullopt)));
  CHECK(code_of(s.step("AGFsaWNl AHNlY3JldA==")) == "501 5.5.2");
  CHECK_FALSE(s.active());
  REQUIRE(std::holds_alternative<Challenge>(s.start("PLAIN", std::nullopt)));
  CHECK(code_of(s.step("=")) == "501 5.5.2");  // "=" is only for initial responses
}

TEST_CASE("SASL PLAIN: field bounds") {
  SaslServer s;
  const std::string login255(kMaxLogin, 'l');
  const std::string pw1024(kMaxPassword, 'p');
  Step ok = s.start("PLAIN", b64(login255 + '\0' + login255 + '\0' + pw1024));
  CHECK(as_credentials(ok).login == login255);
  CHECK(as_credentials(ok).password == pw1024);

  CHECK(code_of(s.start("PLAIN", b64("\0"s + login255 + "l" + '\0' + "secret"))) == "500 5.5.6");
  CHECK(code_of(s.start("PLAIN", b64("\0alice\0"s + pw1024 + "p"))) == "500 5.5.6");
  CHECK(code_of(s.start("PLAIN", b64(std::string(300, 'a') + "\0alice\0secret"s))) == "500 5.5.6");
  // Longer than any acceptable response: refused without decoding.
  CHECK(code_of(s.start("PLAIN", std::string(kMaxResponse + 4, 'A'))) == "500 5.5.6");
  REQUIRE(std::holds_alternative<Challenge>(s.start("PLAIN", std::nullopt)));
  CHECK(code_of(s.step(std::string(kMaxResponse + 4, 'A'))) == "500 5.5.6");
  CHECK_FALSE(s.active());
}

// ---- LOGIN ----

TEST_CASE("SASL LOGIN: the two-challenge dialogue") {
  SaslServer s;
  Step c1 = s.start("LOGIN", std::nullopt);
  CHECK(as_challenge(c1).text == "VXNlcm5hbWU6");
  CHECK(as_challenge(c1).wire() == "334 VXNlcm5hbWU6\r\n");
  CHECK(s.active());
  Step c2 = s.step(b64("alice@example.com"));
  CHECK(as_challenge(c2).text == "UGFzc3dvcmQ6");
  CHECK(s.active());
  Step done = s.step(b64("secret"));
  const Credentials& c = as_credentials(done);
  CHECK(c.authzid.empty());
  CHECK(c.login == "alice@example.com");
  CHECK(c.password == "secret");
  CHECK(c.mechanism == Mechanism::login);
  CHECK_FALSE(s.active());
}

TEST_CASE("SASL LOGIN: an initial response is the user name") {
  SaslServer s;
  Step c = s.start("login", b64("alice"));
  CHECK(as_challenge(c).text == "UGFzc3dvcmQ6");
  Step done = s.step(b64("secret"));
  CHECK(as_credentials(done).login == "alice");
  CHECK(as_credentials(done).password == "secret");
  // "=" is an empty user name.
  CHECK(code_of(s.start("LOGIN", "="sv)) == "501 5.5.2");
  CHECK_FALSE(s.active());
}

TEST_CASE("SASL LOGIN: '*' cancels at either challenge") {
  SaslServer s;
  REQUIRE(std::holds_alternative<Challenge>(s.start("LOGIN", std::nullopt)));
  CHECK(code_of(s.step("*")) == "501 5.7.0");
  CHECK_FALSE(s.active());

  REQUIRE(std::holds_alternative<Challenge>(s.start("LOGIN", std::nullopt)));
  REQUIRE(std::holds_alternative<Challenge>(s.step(b64("alice"))));
  CHECK(code_of(s.step("*")) == "501 5.7.0");
  CHECK_FALSE(s.active());
}

TEST_CASE("SASL LOGIN: bad base64, empty and NUL-bearing fields, bounds") {
  SaslServer s;
  REQUIRE(std::holds_alternative<Challenge>(s.start("LOGIN", std::nullopt)));
  CHECK(code_of(s.step("YWxpY2U")) == "501 5.5.2");
  CHECK_FALSE(s.active());

  REQUIRE(std::holds_alternative<Challenge>(s.start("LOGIN", std::nullopt)));
  CHECK(code_of(s.step("")) == "501 5.5.2");  // empty user name

  REQUIRE(std::holds_alternative<Challenge>(s.start("LOGIN", std::nullopt)));
  CHECK(code_of(s.step(b64("al\0ice"s))) == "501 5.5.2");

  REQUIRE(std::holds_alternative<Challenge>(s.start("LOGIN", std::nullopt)));
  REQUIRE(std::holds_alternative<Challenge>(s.step(b64("alice"))));
  CHECK(code_of(s.step("")) == "501 5.5.2");  // empty password

  REQUIRE(std::holds_alternative<Challenge>(s.start("LOGIN", b64("alice"))));
  CHECK(code_of(s.step(b64("secret\0more"s))) == "501 5.5.2");  // crypt would stop at the NUL

  REQUIRE(std::holds_alternative<Challenge>(s.start("LOGIN", b64("alice"))));
  CHECK(code_of(s.step("c2VjcmV0!")) == "501 5.5.2");
  CHECK_FALSE(s.active());

  CHECK(code_of(s.start("LOGIN", b64(std::string(kMaxLogin + 1, 'a')))) == "500 5.5.6");
  REQUIRE(std::holds_alternative<Challenge>(s.start("LOGIN", b64("alice"))));
  CHECK(code_of(s.step(b64(std::string(kMaxPassword + 1, 'p')))) == "500 5.5.6");
  REQUIRE(std::holds_alternative<Challenge>(s.start("LOGIN", b64("alice"))));
  CHECK(as_credentials(s.step(b64(std::string(kMaxPassword, 'p')))).password.size() == kMaxPassword);
}

// ---- around the exchange ----

TEST_CASE("SASL: start_command splits the AUTH argument") {
  SaslServer s;
  CHECK(as_challenge(s.start_command("PLAIN")).text.empty());
  CHECK(as_challenge(s.start_command("LOGIN")).text == "VXNlcm5hbWU6");
  CHECK(as_credentials(s.start_command("plain  " + b64("\0a\0secret"s))).login == "a");
  CHECK(as_challenge(s.start_command("LOGIN\t" + b64("alice") + " ")).text == "UGFzc3dvcmQ6");
  CHECK(code_of(s.start_command("PLAIN abc def")) == "501 5.5.4");
  CHECK(code_of(s.start_command("")) == "501 5.5.4");
  CHECK(code_of(s.start_command("  ")) == "501 5.5.4");
  CHECK(code_of(s.start_command("GSSAPI")) == "504 5.5.4");
  CHECK_FALSE(s.active());
}

TEST_CASE("SASL: a new start abandons the old exchange; step while idle is 503") {
  SaslServer s;
  CHECK(code_of(s.step(b64("alice"))) == "503 5.5.1");
  REQUIRE(std::holds_alternative<Challenge>(s.start("LOGIN", b64("alice"))));
  Step c = s.start("PLAIN", b64("\0bob\0secret"s));
  CHECK(as_credentials(c).login == "bob");
  REQUIRE(std::holds_alternative<Challenge>(s.start("LOGIN", b64("alice"))));
  s.reset();
  CHECK_FALSE(s.active());
  CHECK(code_of(s.step(b64("secret"))) == "503 5.5.1");
}

TEST_CASE("SASL: Credentials move and wipe") {
  SaslServer s;
  Step st = s.start("PLAIN", b64("\0alice\0a long secret password here"s));
  Credentials c = std::move(std::get<Credentials>(st));
  CHECK(std::get<Credentials>(st).password.empty());  // moved-from is wiped
  CHECK(c.password == "a long secret password here");
  Credentials d;
  d = std::move(c);
  CHECK(c.password.empty());
  CHECK(d.login == "alice");
}

TEST_CASE("SASL: replies for the session") {
  CHECK(reply_success().wire() == "235 2.7.0 Authentication successful\r\n");
  CHECK(reply_failed().wire() == "535 5.7.8 Authentication credentials invalid\r\n");
  CHECK(reply_temporary().wire() == "454 4.7.0 Temporary authentication failure\r\n");
  CHECK(reply_line_too_long().wire() == "500 5.5.6 Authentication exchange line is too long\r\n");
}
