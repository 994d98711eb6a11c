// user_test.cpp — the sender policy on hand-made accounts (pure: this test
// links sluice_sasl only, as the session will). users_test.cpp checks the
// same rules on accounts read from a users file.
#include <catch2/catch.hpp>

#include <string>
#include <utility>

#include "mta/auth/user.hpp"

using namespace sluice::auth;

TEST_CASE("may_send_as: listed addresses and domains (stored lower-cased)") {
  User u;
  u.login = "webshop";
  u.has_sender_list = true;
  u.sender_addresses = {"orders@example.com"};
  u.sender_domains = {"shop.example.com"};
  const std::pair<std::string, bool> table[] = {
      {"orders@example.com", true},
      {"Orders@Example.COM", true},
      {"x@shop.example.com", true},
      {"x@SHOP.example.com", true},
      {"x@mail.shop.example.com", false},
      {"x@example.com", false},
      {"webshop", false},
      {"webshop@example.com", false},
      {"", false},
      {"@shop.example.com", false},
      {"orders@", false},
  };
  for (const auto& [from, allowed] : table) {
    CAPTURE(from);
    CHECK(may_send_as(u, from) == allowed);
  }
}

TEST_CASE("may_send_as: no list") {
  User addr;
  addr.login = "Alice@Example.com";
  CHECK(may_send_as(addr, "alice@example.com"));
  CHECK(may_send_as(addr, "ALICE@EXAMPLE.COM"));
  CHECK_FALSE(may_send_as(addr, "alice@example.org"));
  CHECK_FALSE(may_send_as(addr, ""));

  User plain;
  plain.login = "alice";
  CHECK_FALSE(may_send_as(plain, "alice"));
  CHECK_FALSE(may_send_as(plain, "alice@example.com"));
}

TEST_CASE("is_address and ascii_lower") {
  CHECK(is_address("a@b"));
  CHECK(is_address("\"a@b\"@c.d"));
  CHECK_FALSE(is_address("a@"));
  CHECK_FALSE(is_address("@b"));
  CHECK_FALSE(is_address("ab"));
  CHECK_FALSE(is_address(""));
  CHECK(ascii_lower("AbC@Ex\xc3\x89.com") == "abc@ex\xc3\x89.com");
}
