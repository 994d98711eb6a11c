// aliases_test.cpp — conf/aliases.hpp as a table of cases, and the
// [aliases] section of the configuration file (parse, validation, keys named).
#include "conf/aliases.hpp"

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "conf/config_test_util.hpp"

using namespace sluice;
using Kind = aliases::Resolution::Kind;

using sluice::conf::test::kMinimal;

namespace {

const aliases::Table kTable = {
    {"root", {"admin@example.com"}},
    {"www-data", {"dev@example.com", "ops@example.org"}},
    {"postmaster.special", {"pm@example.com"}},
};

struct Case {
  std::string_view address;
  Kind kind;
  std::string_view entry;  // the entry used (alias only)
};

void check_cases(const aliases::Table& table, std::initializer_list<Case> cases) {
  for (const Case& c : cases) {
    INFO(c.address);
    auto r = aliases::resolve(table, "Mail.Example.NET", c.address);
    CHECK(r.kind == c.kind);
    if (c.kind == Kind::alias) {
      CHECK(r.entry == c.entry);
      REQUIRE(r.targets != nullptr);
      CHECK(*r.targets == table.at(std::string(c.entry)));
    } else {
      CHECK(r.targets == nullptr);
    }
  }
}

}  // namespace

TEST_CASE("aliases: which recipients are local, and where each goes") {
  check_cases(kTable, {
      // Local: no domain, hostname, localhost — any case.
      {"root", Kind::alias, "root"},
      {"root@mail.example.net", Kind::alias, "root"},
      {"ROOT@MAIL.EXAMPLE.NET", Kind::alias, "root"},
      {"Root@localhost", Kind::alias, "root"},
      {"root@LocalHost", Kind::alias, "root"},
      {"www-data@mail.example.net", Kind::alias, "www-data"},
      // postmaster goes where root goes; the bare RFC 5321 form too.
      {"postmaster", Kind::alias, "root"},
      {"Postmaster", Kind::alias, "root"},
      {"POSTMASTER@mail.example.net", Kind::alias, "root"},
      {"postmaster@localhost", Kind::alias, "root"},
      // Unknown local names.
      {"nobody", Kind::unknown, ""},
      {"nobody@mail.example.net", Kind::unknown, ""},
      {"\"root\"@mail.example.net", Kind::unknown, ""},
      // Not local: other domains, sub- and super-domains of hostname.
      {"root@example.com", Kind::not_local, ""},
      {"root@example.net", Kind::not_local, ""},
      {"root@x.mail.example.net", Kind::not_local, ""},
      {"root@mail.example.net.evil", Kind::not_local, ""},
      {"root@[127.0.0.1]", Kind::not_local, ""},
      {"\"a@mail.example.net\"@example.com", Kind::not_local, ""},
  });
}

TEST_CASE("aliases: postmaster's own entry wins over root's") {
  aliases::Table t = kTable;
  t["postmaster"] = {"abuse-desk@example.com"};
  check_cases(t, {{"postmaster", Kind::alias, "postmaster"},
                  {"root", Kind::alias, "root"}});
}

TEST_CASE("aliases: \"*\" catches every other local name, postmaster through root") {
  aliases::Table t = {{"*", {"catch@example.com"}}, {"backup", {"b@example.com"}}};
  check_cases(t, {{"anyone@localhost", Kind::alias, "*"},
                  {"root", Kind::alias, "*"},
                  {"postmaster", Kind::alias, "*"},
                  {"backup@mail.example.net", Kind::alias, "backup"},
                  {"anyone@example.com", Kind::not_local, ""}});
}

TEST_CASE("aliases: an empty table refuses every local name, postmaster included") {
  check_cases({}, {{"root", Kind::unknown, ""},
                   {"postmaster", Kind::unknown, ""},
                   {"bob@example.com", Kind::not_local, ""}});
  CHECK(aliases::root_warning({}).has_value());
  CHECK_FALSE(aliases::root_warning(kTable).has_value());
  CHECK_FALSE(aliases::root_warning({{"*", {"a@example.com"}}}).has_value());
}

TEST_CASE("aliases: the original recipient as a DSN ORCPT in xtext") {
  CHECK(aliases::orcpt("root@mail.example.net") == "rfc822;root@mail.example.net");
  CHECK(aliases::orcpt("a+b=c@x") == "rfc822;a+2Bb+3Dc@x");
  CHECK(aliases::orcpt("\"a b\"@x") == "rfc822;\"a+20b\"@x");
}

TEST_CASE("aliases: names and targets that cannot be used") {
  for (std::string_view ok : {"root", "www-data", "john.doe", "*", "a+b", "UPPER"}) {
    INFO(ok);
    CHECK_FALSE(aliases::check_name(ok).has_value());
  }
  using List = std::initializer_list<std::string_view>;
  for (std::string_view bad : List{"", "a b", "a@b", ".root", "root.", "a..b", "\"quoted\"", "r\xc3\xa9",
                               std::string_view("x\0y", 3)}) {
    INFO(bad);
    CHECK(aliases::check_name(bad).has_value());
  }
  CHECK(aliases::check_name(std::string(65, 'a')).has_value());

  const std::string_view host = "mail.example.net";
  for (std::string_view ok : {"admin@example.com", "a.b+c@sub.example.org", "x@[192.0.2.1]"}) {
    INFO(ok);
    CHECK_FALSE(aliases::check_target(ok, host).has_value());
  }
  for (std::string_view bad : List{"admin", "", "admin@", "@example.com", "<a@example.com>",
                               "a b@example.com", "root@mail.example.net", "root@MAIL.example.NET",
                               "x@localhost", "postmaster", "j\xc3\xb6rg@example.com",
                               "@relay:a@example.com"}) {
    INFO(bad);
    CHECK(aliases::check_target(bad, host).has_value());
  }
}

namespace {

std::string problems(std::string_view extra) {
  auto r = conf::parse(std::string(kMinimal) + std::string(extra), "t.toml");
  if (r) return "";
  std::string out;
  for (const auto& p : r.error()) out += p.str("t.toml") + "\n";
  return out;
}

}  // namespace

TEST_CASE("config: [aliases] read, names lower-cased, a single string allowed") {
  auto r = conf::parse(std::string(kMinimal) + R"([aliases]
Root = ["admin@example.com", "second@example.org"]
"www-data" = "dev@example.com"
"*" = ["catch@example.com"]
)");
  REQUIRE(r);
  const aliases::Table want = {{"root", {"admin@example.com", "second@example.org"}},
                               {"www-data", {"dev@example.com"}},
                               {"*", {"catch@example.com"}}};
  CHECK(r->aliases == want);
  auto none = conf::parse(kMinimal);
  REQUIRE(none);
  CHECK(none->aliases.empty());
}

TEST_CASE("config: [aliases] problems name the key and line") {
  CHECK(problems("[aliases]\nroot = [\"admin\"]\n") ==
        "t.toml:6: aliases.root[1]: \"admin\" is not an address (local@domain)\n");
  CHECK(problems("[aliases]\nroot = [\"root@MAIL.example.com\"]\n").find(
            "t.toml:6: aliases.root[1]: \"root@MAIL.example.com\" is itself local") == 0);
  CHECK(problems("[aliases]\nroot = [\"x@localhost\"]\n").find("is itself local") !=
        std::string::npos);
  CHECK(problems("[aliases]\nroot = []\n") ==
        "t.toml:6: aliases.root: needs at least one address\n");
  CHECK(problems("[aliases]\nroot = 3\n") ==
        "t.toml:6: aliases.root: expected an address or an array of addresses, got an integer\n");
  CHECK(problems("[aliases]\n\"a b\" = [\"x@example.com\"]\n").find("t.toml:6: aliases.a b: ") ==
        0);
  CHECK(problems("[aliases]\nroot = [\"a@example.com\"]\nROOT = [\"b@example.com\"]\n")
            .find("aliases.ROOT and aliases.root are the same name (names ignore case)") !=
        std::string::npos);
  CHECK(problems("[aliases]\nroot = [\"a@example.com\", \"a@example.com\"]\n") ==
        "t.toml:6: aliases.root[2]: \"a@example.com\" is listed twice\n");
  std::string many = "[aliases]\nroot = [";
  for (size_t i = 0; i <= aliases::kMaxTargets; ++i) many += fmt::format("\"u{}@example.com\",", i);
  many += "]\n";
  CHECK(problems(many) == "t.toml:6: aliases.root: at most 100 addresses per name\n");
  auto top = conf::parse("aliases = 1\n" + std::string(kMinimal), "t.toml");
  REQUIRE_FALSE(top);
  CHECK(top.error().at(0).str("t.toml") == "t.toml:1: aliases: expected a table, got an integer");
}
