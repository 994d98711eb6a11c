// config_hint_test.cpp — the hint for a key written under the wrong table
// (conf/config_hint.cpp table_hint), and its list of keys against the shipped
// example conf/sluice.toml, so a new key cannot be left out of it.
#include <catch2/catch.hpp>

#include <fstream>
#include <string>

#include "conf/config.hpp"
#include "conf/config_test_util.hpp"

using namespace sluice::conf;

using sluice::conf::test::kMinimal;

namespace {

std::string problem_for(std::string_view text, std::string_view key) {
  auto r = parse(text, "test.toml");
  REQUIRE_FALSE(r.has_value());
  for (const auto& p : r.error())
    if (p.key == key) return p.str("test.toml");
  FAIL("no problem for " << key);
  return "";
}

}  // namespace

TEST_CASE("a key under the wrong table says which table it belongs in") {
  std::string text(kMinimal);
  text += "[dns]\nrelayhost = \"[smtp.example.net]:587\"\n";
  CHECK(problem_for(text, "dns.relayhost") ==
        "test.toml:6: dns.relayhost: unknown key; it belongs in [delivery]");

  text = std::string(kMinimal) + "[delivery]\nhostname = \"x.example\"\n";
  CHECK(problem_for(text, "delivery.hostname").ends_with(
      "unknown key; it belongs at the top of the file, before any [table]"));

  text = std::string(kMinimal) + "[tls]\nmax_connections = 5\n";
  CHECK(problem_for(text, "tls.max_connections").ends_with(
      "unknown key; it belongs in [limits] or in [delivery]"));

  text = std::string(kMinimal) + "users_file = \"/etc/sluice/users\"\n";  // inside [[listener]]
  CHECK(problem_for(text, "listener[1].users_file").ends_with("unknown key; it belongs in [auth]"));

  // A typo keeps its suggestion; a name no table has gets no hint.
  text = std::string(kMinimal) + "[dns]\nserver = [\"127.0.0.1\"]\n";
  CHECK(problem_for(text, "dns.server").ends_with("unknown key (did you mean \"servers\"?)"));
  text = std::string(kMinimal) + "[dns]\nfrobnicate = 1\n";
  CHECK(problem_for(text, "dns.frobnicate").ends_with(": unknown key"));
}

TEST_CASE("table_hint knows every key of the shipped example") {
  std::ifstream f(SLUICE_SOURCE_DIR "/conf/sluice.toml");
  REQUIRE(f);
  std::string line, table;
  int keys = 0;
  while (std::getline(f, line)) {
    if (line.starts_with("[[")) {
      table = line.substr(2, line.find("]]") - 2);
      continue;
    }
    if (line.starts_with("[")) {
      table = line.substr(1, line.find(']') - 1);
      continue;
    }
    const size_t eq = line.find(" = ");
    if (line.empty() || line[0] == '#' || line[0] == ' ' || eq == std::string::npos) continue;
    const std::string name = line.substr(0, eq);
    // Seen from any other table, the key is said to belong in this one.
    const std::string elsewhere = table == "dns" ? "tls." + name : "dns." + name;
    const std::string home = table.empty() ? "at the top of the file"
                             : table == "listener" ? "in a [[listener]] block"
                                                   : "in [" + table + "]";
    INFO(table << "." << name);
    auto hint = table_hint(elsewhere);
    REQUIRE(hint);
    CHECK(hint->find(home) != std::string::npos);
    ++keys;
  }
  CHECK(keys > 30);
}
