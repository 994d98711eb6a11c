// secret_test.cpp — wipe, secure_zero, reserve_secret, constant_time_equal.
#include <catch2/catch.hpp>

#include <string>

#include "mta/auth/secret.hpp"

using namespace sluice::auth;

TEST_CASE("secure_zero zeroes the bytes") {
  char buf[16];
  for (char& c : buf) c = 'x';
  secure_zero(buf, sizeof buf);
  for (char c : buf) CHECK(c == 0);
  secure_zero(nullptr, 0);  // harmless
}

TEST_CASE("wipe zeroes the whole buffer, not just the used part") {
  std::string s;
  reserve_secret(s, 40);
  s = "correct horse battery staple and more";  // fits the reserved buffer
  const char* p = s.data();
  const size_t cap = s.capacity();
  s.resize(4);  // the rest of the password stays in the buffer past size()
  wipe(s);
  CHECK(s.empty());
  CHECK(s.data() == p);  // same buffer, not freed
  // Look at the raw buffer (capacity + 1 bytes are allocated).
  for (size_t i = 0; i < cap; ++i) CHECK(p[i] == 0);
}

TEST_CASE("wipe of a short (inline) string and of a moved-from one") {
  std::string a = "hunter2";
  std::string b = std::move(a);  // a's inline buffer may still hold the bytes
  const char* p = a.data();
  const size_t cap = a.capacity();
  wipe(a);
  for (size_t i = 0; i < cap; ++i) CHECK(p[i] == 0);
  CHECK(b == "hunter2");
  wipe(b);
  CHECK(b.empty());
}

TEST_CASE("reserve_secret puts even short secrets on the heap, so moves hand over the buffer") {
  std::string s;
  reserve_secret(s, 3);
  s = "pw!";
  const char* p = s.data();
  std::string t = std::move(s);
  CHECK(t.data() == p);  // the buffer moved, no copy left in s
  CHECK(t == "pw!");
}

TEST_CASE("constant_time_equal") {
  CHECK(constant_time_equal("", ""));
  CHECK(constant_time_equal("abc", "abc"));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "ab"));
  CHECK_FALSE(constant_time_equal("ab", "abc"));
  CHECK_FALSE(constant_time_equal("", "a"));
  CHECK(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
  CHECK_FALSE(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}
