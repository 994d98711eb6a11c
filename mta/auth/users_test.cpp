// users_test.cpp — the users file, password checks with real crypt(3) hashes
// made at test time, and the sender policy.
#include <catch2/catch.hpp>

#include <crypt.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mta/auth/users.hpp"

using namespace sluice::auth;
using namespace std::string_literals;

namespace {

// A hash of password made with this system's libcrypt: prefix "$y$", "$2b$",
// "$6$"...; count 0 = the method's default cost.
std::string make_hash(const char* prefix, unsigned long count, const std::string& password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  REQUIRE(crypt_gensalt_rn(prefix, count, nullptr, 0, setting, sizeof setting) != nullptr);
  auto data = std::make_unique<crypt_data>();
  const char* h = crypt_rn(password.c_str(), setting, data.get(), sizeof *data);
  REQUIRE(h != nullptr);
  return h;
}

// Hashes are slow to make; make each kind once.
const std::string& yescrypt_hash() {
  static const std::string h = make_hash("$y$", 0, "yes-secret");
  return h;
}
const std::string& bcrypt_hash() {
  static const std::string h = make_hash("$2b$", 5, "bcrypt-secret");
  return h;
}
const std::string& sha512_hash() {
  static const std::string h = make_hash("$6$", 0, "sha-secret");
  return h;
}

std::shared_ptr<const UserDb> parse_ok(const std::string& text) {
  auto db = UserDb::parse(text, "users");
  INFO((db ? std::string() : db.error()));
  REQUIRE(db.has_value());
  return *db;
}

std::string parse_error(const std::string& text) {
  auto db = UserDb::parse(text, "/etc/sluice/users");
  REQUIRE_FALSE(db.has_value());
  return db.error();
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sluice-users-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string write(const std::string& name, const std::string& text, mode_t mode) {
    const std::string p = path + "/" + name;
    std::ofstream(p) << text;
    chmod(p.c_str(), mode);
    return p;
  }
};

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// ---- parsing ----

TEST_CASE("users file: a good file with comments, blanks, whitespace and sender lists") {
  const std::string text =
      "# Sluice users\n"
      "\n"
      "alice@example.com:" + yescrypt_hash() + "\n"
      "   # indented comment\n"
      "  bob  :  " + bcrypt_hash() + "  :  bob@example.com , @Example.ORG,Bob.Smith@Example.NET  \r\n"
      "\t\n"
      "app:" + sha512_hash() + ":@example.com,\n"
      "carol:" + yescrypt_hash() + ":\n"
      "dave:" + yescrypt_hash();  // no final newline
  auto db = parse_ok(text);
  REQUIRE(db->size() == 5);
  CHECK(db->warnings().empty());

  const User* alice = db->find("alice@example.com");
  REQUIRE(alice != nullptr);
  CHECK(alice->login == "alice@example.com");
  CHECK(alice->hash == yescrypt_hash());
  CHECK_FALSE(alice->has_sender_list);
  CHECK(alice->line == 3);

  const User* bob = db->find("bob");
  REQUIRE(bob != nullptr);
  CHECK(bob->hash == bcrypt_hash());
  CHECK(bob->line == 5);
  CHECK(bob->has_sender_list);
  CHECK(bob->sender_addresses == std::vector<std::string>{"bob@example.com", "bob.smith@example.net"});
  CHECK(bob->sender_domains == std::vector<std::string>{"example.org"});

  const User* app = db->find("app");
  REQUIRE(app != nullptr);
  CHECK(app->sender_domains == std::vector<std::string>{"example.com"});
  CHECK(app->sender_addresses.empty());

  const User* carol = db->find("carol");  // empty third field = none
  REQUIRE(carol != nullptr);
  CHECK_FALSE(carol->has_sender_list);
  CHECK(db->find("dave") != nullptr);
  CHECK(db->find("dave")->line == 9);
}

TEST_CASE("users file: logins match ignoring ASCII case") {
  auto db = parse_ok("Alice@Example.com:" + yescrypt_hash() + "\n");
  const User* u = db->find("alice@example.COM");
  REQUIRE(u != nullptr);
  CHECK(u->login == "Alice@Example.com");  // the file's spelling
  CHECK(db->find("alice@example.co") == nullptr);
  CHECK(db->find("") == nullptr);
}

TEST_CASE("users file: empty and comment-only files have no accounts") {
  CHECK(parse_ok("")->size() == 0);
  CHECK(parse_ok("# nobody yet\n\n")->size() == 0);
}

TEST_CASE("users file: each kind of error names the file and the line") {
  const std::string y = yescrypt_hash();
  struct Case {
    std::string text;
    std::string expect;  // a substring of the error
  };
  const Case cases[] = {
      {"alice\n", "/etc/sluice/users:1: expected login:hash[:senders]"},
      {"# c\n:" + y + "\n", "/etc/sluice/users:2: empty login"},
      {"\n\nbob smith:" + y + "\n", "/etc/sluice/users:3: login \"bob smith\" contains a space"},
      {"bob:\n", "/etc/sluice/users:1: login \"bob\": empty password hash"},
      {"bob:*\n", "/etc/sluice/users:1: login \"bob\": the password hash is not one crypt(3) recognises"},
      {"bob:!" + y + "\n", "/etc/sluice/users:1: login \"bob\": the password hash is not one"},
      {"bob:$6$saltsalt$\n", "/etc/sluice/users:1: login \"bob\": the password hash is incomplete"},
      {"bob:hunter2\n", "/etc/sluice/users:1: login \"bob\": the password hash field does not hold"},
      {"bob:$y$j9T$r5.F8vNaSE10HDgZJhzf60\n", "1: login \"bob\": the password hash is incomplete"},
      {"bob:$apr1$x$y\n", "1: login \"bob\": the password hash is not one crypt(3) recognises"},
      {"bob:" + y.substr(0, y.size() - 1) + "\n", "1: login \"bob\": the password hash is incomplete"},
      {"bob:" + bcrypt_hash().substr(0, 40) + "\n", "1: login \"bob\": the password hash is incomplete"},
      {"bob:" + y + ":a@b.c:d@e.f\n", "/etc/sluice/users:1: too many ':' separators"},
      {"bob:" + y + ":bob\n", "/etc/sluice/users:1: sender entry \"bob\" is neither an address"},
      {"bob:" + y + ":bob@\n", "sender entry \"bob@\" is neither"},
      {"bob:" + y + ":@\n", "/etc/sluice/users:1: sender entry \"@\" is not a valid @domain"},
      {"bob:" + y + ":@a@b\n", "sender entry \"@a@b\" is not a valid @domain"},
      {"bob:" + y + ":a b@c.d\n", "sender entry \"a b@c.d\" is neither"},
      {"bob:" + y + "\nx:" + y + "\nBOB:" + y + "\n",
       "/etc/sluice/users:3: duplicate login \"BOB\" (first on line 1)"},
      {"b\0b:"s + y + "\n", "/etc/sluice/users:1: NUL character in line"},
      {std::string(256, 'l') + ":" + y + "\n", "/etc/sluice/users:1: login longer than 255 octets"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    const std::string e = parse_error(c.text);
    CHECK_THAT(e, Catch::Contains(c.expect));
    // The hash is never repeated in a message.
    CHECK(e.find(y.substr(8)) == std::string::npos);
  }
}

TEST_CASE("users file: every error is reported, and one bad line fails the whole file") {
  const std::string y = yescrypt_hash();
  const std::string e = parse_error("good:" + y + "\nbad\n# fine\nalso bad:*\ngood2:" + y + "\n");
  CHECK_THAT(e, Catch::Contains("/etc/sluice/users:2: expected"));
  CHECK_THAT(e, Catch::Contains("/etc/sluice/users:4: login \"also bad\""));
  CHECK(std::count(e.begin(), e.end(), '\n') == 1);  // two lines
}

TEST_CASE("users file: legacy hash methods load with a warning") {
  const std::string md5 = make_hash("$1$", 0, "old");
  const std::string des = make_hash("", 0, "older");
  auto db = parse_ok("# old\nold:" + md5 + "\ndes:" + des + "\n");
  REQUIRE(db->warnings().size() == 2);
  CHECK_THAT(db->warnings()[0], Catch::Contains("users:2: login \"old\": legacy password hash method $1$"));
  CHECK_THAT(db->warnings()[1], Catch::Contains("users:3: login \"des\": legacy password hash method (DES)"));
  CHECK(db->verify(db->find("old"), "old"));
  CHECK(db->verify(db->find("des"), "older"));
}

TEST_CASE("users file: load() from disk") {
  TempDir dir;
  const std::string text = "alice@example.com:" + yescrypt_hash() + "\n";

  const std::string good = dir.write("users", text, 0640);
  auto db = UserDb::load(good);
  REQUIRE(db.has_value());
  CHECK((*db)->size() == 1);
  CHECK((*db)->warnings().empty());

  const std::string open = dir.write("users-open", text, 0644);
  auto db2 = UserDb::load(open);
  REQUIRE(db2.has_value());
  REQUIRE((*db2)->warnings().size() == 1);
  CHECK_THAT((*db2)->warnings()[0], Catch::Contains("other users can read"));

  auto missing = UserDb::load(dir.path + "/nope");
  REQUIRE_FALSE(missing.has_value());
  CHECK_THAT(missing.error(), Catch::Contains(dir.path + "/nope: cannot open"));

  auto directory = UserDb::load(dir.path);
  REQUIRE_FALSE(directory.has_value());
  CHECK_THAT(directory.error(), Catch::Contains("not a regular file"));

  const std::string bad = dir.write("users-bad", text + "oops\n", 0600);
  auto db3 = UserDb::load(bad);
  REQUIRE_FALSE(db3.has_value());
  CHECK(db3.error() == bad + ":2: expected login:hash[:senders]");
}

// ---- passwords ----

TEST_CASE("verify: yescrypt, bcrypt and sha512-crypt, right and wrong passwords") {
  const std::string text = "y:" + yescrypt_hash() + "\nb:" + bcrypt_hash() + "\ns:" + sha512_hash() + "\n";
  auto db = parse_ok(text);
  const User* y = db->find("y");
  const User* b = db->find("b");
  const User* s = db->find("s");
  REQUIRE(y);
  REQUIRE(b);
  REQUIRE(s);

  CHECK(db->verify(y, "yes-secret"));
  CHECK(db->verify(b, "bcrypt-secret"));
  CHECK(db->verify(s, "sha-secret"));

  CHECK_FALSE(db->verify(y, "yes-secreT"));
  CHECK_FALSE(db->verify(y, "yes-secret "));
  CHECK_FALSE(db->verify(y, "bcrypt-secret"));
  CHECK_FALSE(db->verify(b, "yes-secret"));
  CHECK_FALSE(db->verify(s, "sha-secre"));
  CHECK_FALSE(db->verify(y, ""));
  CHECK_FALSE(db->verify(y, "yes-secret\0"s));  // crypt would only see what is before a NUL
  CHECK_FALSE(db->verify(y, "yes-secret\0x"s));

  // Unknown logins are false even with a password some account has.
  CHECK_FALSE(db->verify(nullptr, "yes-secret"));
  CHECK_FALSE(db->verify(nullptr, "bcrypt-secret"));
  CHECK_FALSE(db->verify(nullptr, "nothing"));

  CHECK(verify_hash(sha512_hash(), "sha-secret"));
  CHECK_FALSE(verify_hash(sha512_hash(), "sha-secreu"));
  CHECK_FALSE(verify_hash("*", "x"));
  CHECK_FALSE(verify_hash("", "x"));
}

TEST_CASE("verify: unknown logins hash against the most expensive entry of the file") {
  // Issue 11: the dummy used to be the most common method's, so a login
  // with an expensive hash failed visibly slower than an unknown one.
  const std::string sha_a = make_hash("$6$", 0, "a");
  const std::string sha_b = make_hash("$6$", 0, "b");
  const std::string sha_c = make_hash("$6$", 0, "c");
  const std::string bcrypt10 = make_hash("$2b$", 10, "expensive");  // ~50 ms, 20x sha512crypt
  auto db = parse_ok("a:" + sha_a + "\nb:" + sha_b + "\nexpensive:" + bcrypt10 + "\nc:" + sha_c + "\n");
  CHECK(db->dummy_setting() == bcrypt10);

  // Within one method, the cost parameter decides.
  const std::string cheap_rounds = make_hash("$6$", 1000, "cheap");
  const std::string dear_rounds = make_hash("$6$", 400000, "dear");
  auto rounds = parse_ok("c1:" + cheap_rounds + "\nd:" + dear_rounds + "\nc2:" + sha_a + "\n");
  CHECK(rounds->dummy_setting() == dear_rounds);

  // One method and cost: its first entry, no timing needed.
  const std::string y2 = make_hash("$y$", 0, "other");
  auto same = parse_ok("y1:" + yescrypt_hash() + "\ny2:" + y2 + "\n");
  CHECK(same->dummy_setting() == yescrypt_hash());

  auto empty = parse_ok("");
  CHECK(empty->dummy_setting().starts_with("$y$"));
  CHECK_FALSE(empty->verify(nullptr, "anything"));
}

TEST_CASE("verify: an unknown login costs at least the most expensive wrong password") {
  const std::string bcrypt10 = make_hash("$2b$", 10, "expensive");
  auto db = parse_ok("cheap1:" + sha512_hash() + "\ncheap2:" + make_hash("$6$", 0, "x") +
                     "\nboss:" + bcrypt10 + "\n");
  const User* boss = db->find("boss");
  REQUIRE(boss);
  double wrong = 1e9, unknown = 1e9;
  for (int i = 0; i < 3; ++i) {
    wrong = std::min(wrong, seconds_of([&] { CHECK_FALSE(db->verify(boss, "wrong")); }));
    unknown = std::min(unknown, seconds_of([&] { CHECK_FALSE(db->verify(db->find("mallory"), "wrong")); }));
  }
  INFO("wrong password on bcrypt " << wrong * 1e3 << " ms, unknown login " << unknown * 1e3 << " ms");
  CHECK(unknown * 3 > wrong);  // against sha512crypt it would be ~1/20
}

TEST_CASE("verify: an unknown login costs about as much as a wrong password") {
  auto db = parse_ok("alice:" + yescrypt_hash() + "\n");
  const User* alice = db->find("alice");
  REQUIRE(alice);
  // Warm up, then take the best of a few runs of each (the minimum is the
  // least disturbed by other processes).
  (void)db->verify(alice, "wrong");
  double wrong = 1e9, unknown = 1e9;
  for (int i = 0; i < 5; ++i) {
    wrong = std::min(wrong, seconds_of([&] { CHECK_FALSE(db->verify(alice, "wrong")); }));
    unknown = std::min(unknown, seconds_of([&] { CHECK_FALSE(db->verify(db->find("mallory"), "wrong")); }));
  }
  INFO("wrong password " << wrong * 1e3 << " ms, unknown login " << unknown * 1e3 << " ms");
  CHECK(unknown < wrong * 3);
  CHECK(wrong < unknown * 3);
}

// ---- sender policy ----

TEST_CASE("may_send_as: with a sender list") {
  auto db = parse_ok("bob:" + yescrypt_hash() +
                     ":bob@example.com, Sales@Example.NET, @example.org\n");
  const User& bob = *db->find("bob");
  const std::pair<std::string, bool> table[] = {
      {"bob@example.com", true},
      {"BOB@EXAMPLE.COM", true},       // case ignored in both parts, as Postfix
      {"sales@example.net", true},
      {"anyone@example.org", true},    // @domain
      {"x@EXAMPLE.ORG", true},
      {"x@sub.example.org", false},    // not subdomains
      {"x@example.org.evil", false},
      {"bob@example.co", false},
      {"bob2@example.com", false},
      {"bob", false},                  // the login itself is not implied
      {"", false},                     // null sender: the session's business
      {"@example.org", false},
      {"example.org", false},
  };
  for (const auto& [from, allowed] : table) {
    CAPTURE(from);
    CHECK(may_send_as(bob, from) == allowed);
  }
}

TEST_CASE("may_send_as: without a list, an address login sends as itself only") {
  auto db = parse_ok("Alice@Example.com:" + yescrypt_hash() + "\napp:" + yescrypt_hash() + "\n");
  const User& alice = *db->find("alice@example.com");
  CHECK(may_send_as(alice, "Alice@Example.com"));
  CHECK(may_send_as(alice, "alice@example.com"));
  CHECK_FALSE(may_send_as(alice, "alice2@example.com"));
  CHECK_FALSE(may_send_as(alice, "other@example.com"));
  CHECK_FALSE(may_send_as(alice, ""));

  // A login that is not an address may send as nobody.
  const User& app = *db->find("app");
  CHECK_FALSE(may_send_as(app, "app"));
  CHECK_FALSE(may_send_as(app, "app@example.com"));
}
