// signing_test.cpp — mta/signing.hpp: the key-file rules (modes, owners,
// groups, links), which tables sign a From domain (the longest match), and
// plan()'s reasons not to sign.
#include "mta/signing.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

using sluice::mta::FromRule;
using sluice::mta::Signing;
namespace dkim = sluice::dkim;

namespace {

// RFC 8463 Appendix A's Ed25519 key, as PKCS#8 PEM.
constexpr std::string_view kEdPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";

struct Dir {
  std::string path;
  Dir() {
    char tmpl[] = "/tmp/sluice-signing-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~Dir() { std::filesystem::remove_all(path); }
  std::string key(const std::string& name, mode_t mode, std::string_view text = kEdPem) {
    const std::string p = path + "/" + name;
    std::ofstream(p) << text;
    REQUIRE(::chmod(p.c_str(), mode) == 0);
    return p;
  }
};

sluice::conf::Dkim table(std::string domain, std::string selector, std::string key = "/k", size_t index = 1) {
  sluice::conf::Dkim t;
  t.domain = std::move(domain);
  t.selector = std::move(selector);
  t.private_key = std::move(key);
  t.index = index;
  return t;
}

std::shared_ptr<const Signing> signing_for(std::initializer_list<std::pair<const char*, const char*>> tables) {
  std::vector<Signing::Signer> signers;
  size_t i = 0;
  for (auto [domain, selector] : tables) {
    auto k = dkim::Key::from_pem(kEdPem);
    REQUIRE(k);
    signers.push_back(Signing::Signer{table(domain, selector, "/k", ++i), std::move(*k), {}});
  }
  return std::make_shared<const Signing>(std::move(signers));
}

const Signing::Reader kMe{::geteuid(), ::getegid()};

}  // namespace

TEST_CASE("key files: the daemon's or root's, not readable by other accounts") {
  Dir d;
  auto load = [&](const std::string& path, Signing::Reader r = kMe) {
    return Signing::load({table("example.com", "s1", path, 2)}, r);
  };
  CHECK(load(d.key("ok0600", 0600)));
  CHECK(load(d.key("ok0640", 0640)));  // the group is the daemon's own

  auto problem = [&](const std::string& path, Signing::Reader r = kMe) {
    auto s = load(path, r);
    REQUIRE_FALSE(s);
    REQUIRE(s.error().size() == 1);
    return s.error()[0];
  };
  const std::string world = d.key("world", 0644);
  CHECK(problem(world) == "[[dkim]] 2 (example.com, selector s1): private_key " + world +
                              ": mode 0644 lets every account read or change the key; chmod 0640 " + world);
  CHECK_THAT(problem(d.key("otherw", 0602)), Catch::Contains("mode 0602 lets every account"));
  // Group-readable, but the group is not the daemon's.
  const std::string grp = d.key("group", 0640);
  CHECK_THAT(problem(grp, {kMe.uid, kMe.gid + 1}),
             Catch::Contains("mode 0640 lets group " + std::to_string(kMe.gid) + " read or change the key"));
  // Owned by another account.
  if (::geteuid() == 0) {
    const std::string other = d.key("other", 0600);
    REQUIRE(::chown(other.c_str(), 12345, 0) == 0);
    CHECK_THAT(problem(other), Catch::Contains("belongs to uid 12345, not to root or the daemon's account"));
  } else {
    CHECK_THAT(problem(d.key("mine", 0600), {kMe.uid + 1, kMe.gid}),
               Catch::Contains("belongs to uid " + std::to_string(kMe.uid)));
  }
  // Never through a link; not a directory; a PEM that is no key.
  const std::string link = d.path + "/link";
  REQUIRE(::symlink(d.key("target", 0600).c_str(), link.c_str()) == 0);
  CHECK_THAT(problem(link), Catch::Contains("cannot open: Too many levels of symbolic links"));
  CHECK_THAT(problem(d.path), Catch::Contains("not a regular file"));
  CHECK_THAT(problem(d.key("garbage", 0600, "hello\n")), Catch::Contains("not a PEM private key"));
  CHECK_THAT(problem(d.path + "/missing"), Catch::Contains("cannot open: No such file or directory"));

  // Every bad table is named, and none of the good ones is loaded then.
  auto two = Signing::load({table("example.com", "s1", world, 1), table("example.org", "s2", grp, 2)},
                           {kMe.uid, kMe.gid + 1});
  REQUIRE_FALSE(two);
  CHECK(two.error().size() == 2);
}

TEST_CASE("which tables sign a From domain: its own, else the nearest parent's") {
  auto s = signing_for({{"example.com", "a"}, {"example.com", "b"}, {"shop.example.com", "c"}, {"example.org", "d"}});
  auto selectors = [&](std::string_view domain) {
    std::string out;
    for (const auto* signer : s->for_domain(domain)) out += signer->table.selector;
    return out;
  };
  CHECK(selectors("example.com") == "ab");
  CHECK(selectors("news.example.com") == "ab");
  CHECK(selectors("a.b.example.com") == "ab");
  CHECK(selectors("shop.example.com") == "c");
  CHECK(selectors("x.shop.example.com") == "c");
  CHECK(selectors("badexample.com") == "");
  CHECK(selectors("example.net") == "");
  CHECK(selectors("com") == "");
}

TEST_CASE("plan: who signs, and why not") {
  auto s = signing_for({{"example.com", "a"}});
  auto run = [&](std::string_view message, FromRule rule = {}) {
    dkim::Scan scan;
    scan.feed(message);
    return sluice::mta::plan(s, scan, rule);
  };
  auto p = run("From: Ann <ann@Example.COM>\r\n\r\nhi\r\n");
  CHECK(p.signers.size() == 1);
  CHECK(p.author == "ann@example.com");
  CHECK(p.why_not.empty());

  p = run("From: ann@example.net\r\n\r\nhi\r\n");  // not ours: nothing to say
  CHECK(p.signers.empty());
  CHECK(p.why_not.empty());

  p = run("Subject: no from\r\n\r\nhi\r\n");
  CHECK(p.signers.empty());
  CHECK(p.why_not == "no From field");

  FromRule only_bob = [](std::string_view a) { return a == "bob@example.com"; };
  p = run("From: ann@example.com\r\n\r\nhi\r\n", only_bob);
  CHECK(p.signers.empty());
  CHECK(p.why_not == "the login may not use From <ann@example.com>");
  CHECK(run("From: bob@example.com\r\n\r\nhi\r\n", only_bob).signers.size() == 1);

  // Nothing configured: nothing looked at.
  dkim::Scan scan;
  scan.feed("From: ann@example.com\r\n\r\n");
  CHECK(sluice::mta::plan(nullptr, scan, {}).signers.empty());
}
