// settings_test.cpp — mx_matches and check_reply_pattern.
#include <catch2/catch.hpp>

#include "shaping/settings.hpp"

using namespace sluice::shaping;

TEST_CASE("mx_matches: equal, or *.d at any depth below d") {
  CHECK(mx_matches("mx.example.com", "mx.example.com"));
  CHECK_FALSE(mx_matches("mx.example.com", "mx2.example.com"));
  CHECK(mx_matches("*.google.com", "aspmx.l.google.com"));
  CHECK(mx_matches("*.google.com", "alt1.aspmx.l.google.com"));
  CHECK(mx_matches("*.google.com", "x.google.com"));
  CHECK_FALSE(mx_matches("*.google.com", "google.com"));
  CHECK_FALSE(mx_matches("*.google.com", "notgoogle.com"));
  CHECK_FALSE(mx_matches("*.google.com", "google.com.evil.org"));
  CHECK_FALSE(mx_matches("*.google.com", ".google.com"));
  // Case is compared as given: callers lower-case both.
  CHECK_FALSE(mx_matches("*.google.com", "ASPMX.L.GOOGLE.COM"));
  CHECK_FALSE(mx_matches("mx.example.com", "MX.example.com"));
}

TEST_CASE("check_reply_pattern: substrings pass, regexes must compile") {
  CHECK_FALSE(check_reply_pattern("4.7.28").has_value());
  CHECK_FALSE(check_reply_pattern("/^421 .*try again/").has_value());
  CHECK_FALSE(check_reply_pattern("/").has_value());  // a one-character substring
  CHECK(check_reply_pattern("").has_value());
  CHECK(check_reply_pattern("//").has_value());
  auto bad = check_reply_pattern("/4.7.(28/");
  REQUIRE(bad.has_value());
  CHECK(bad->find("/4.7.(28/") != std::string::npos);
  CHECK(check_reply_pattern("/[a-/").has_value());
}
