// log_test.cpp — unit tests for conf/log.{hpp,cpp}: sanitize(), levels and
// the shape of one written line (captured by redirecting stderr to a pipe).
#include "conf/log.hpp"

#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <string>

using namespace sluice;

TEST_CASE("sanitize escapes control characters and invalid UTF-8") {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"plain text", "plain text"},
      {"a\r\nb", "a\\x0d\\x0ab"},
      {std::string_view("nul\0x", 5), "nul\\x00x"},
      {"tab\there", "tab\\x09here"},
      {"del\x7f", "del\\x7f"},
      {"caf\xc3\xa9", "caf\xc3\xa9"},            // valid UTF-8 stays
      {"\xe2\x82\xac 5", "\xe2\x82\xac 5"},      // euro sign
      {"\xf0\x9f\x93\xa7", "\xf0\x9f\x93\xa7"},  // 4-byte character
      {"bad \xff", "bad \\xff"},                 // never valid
      {"cut \xc3", "cut \\xc3"},                 // truncated sequence
      {"over \xc0\xaf", "over \\xc0\\xaf"},      // overlong '/'
      {"surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80"},
      {"big \xf4\x90\x80\x80", "big \\xf4\\x90\\x80\\x80"},  // above U+10FFFF
  };
  for (auto [in, want] : cases) {
    INFO(std::string(in));
    CHECK(log::sanitize(in) == want);
  }
}

TEST_CASE("sanitize truncates without splitting a character or an escape") {
  CHECK(log::sanitize("abcdef", 6) == "abcdef");
  CHECK(log::sanitize("abcdefg", 6) == "abcdef...");
  CHECK(log::sanitize("abcde\x01", 6) == "abcde...");
  CHECK(log::sanitize("abcd\xc3\xa9", 5) == "abcd...");
  CHECK(log::sanitize(std::string(1000, 'x')).size() == 203);
}

TEST_CASE("levels and line format") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  int saved = dup(STDERR_FILENO);
  dup2(fds[1], STDERR_FILENO);

  log::set_program("sluice-test");
  log::set_min_level(log::Level::info);
  CHECK_FALSE(log::enabled(log::Level::debug));
  CHECK(log::enabled(log::Level::warning));
  log::debug("hidden {}", 1);
  log::info("{}: accept from=<{}> size={}", "Q1", "a@example.com", 42);
  log::error("two\nlines");
  log::set_min_level(log::Level::error);
  log::warning("dropped");

  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  log::set_min_level(log::Level::info);

  // "2026-11-26T13:56:01.123Z sluice-test[PID]: "
  INFO(out);
  const std::string_view shape = "dddd-dd-ddTdd:dd:dd.dddZ ";
  REQUIRE(out.size() > shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    INFO(i);
    if (shape[i] == 'd')
      CHECK(std::isdigit(static_cast<unsigned char>(out[i])));
    else
      CHECK(out[i] == shape[i]);
  }
  std::string prefix = "sluice-test[" + std::to_string(getpid()) + "]: info: ";
  CHECK(out.compare(shape.size(), prefix.size(), prefix) == 0);
  CHECK(out.find("hidden") == std::string::npos);
  CHECK(out.find("dropped") == std::string::npos);
  CHECK(out.find("info: Q1: accept from=<a@example.com> size=42\n") != std::string::npos);
  CHECK(out.find("error: two\\x0alines\n") != std::string::npos);
  CHECK(std::count(out.begin(), out.end(), '\n') == 2);
}

TEST_CASE("alerts are warnings counted by kind") {
  log::set_min_level(log::Level::error);  // keep the test's output quiet
  const uint64_t auth = log::alerts(log::Alert::relayhost_auth);
  const uint64_t tls = log::alerts(log::Alert::tls_verify);
  const uint64_t cfg = log::alerts(log::Alert::config);
  log::alert(log::Alert::relayhost_auth, "Q1: relayhost refused the login {}", "x");
  log::alert(log::Alert::relayhost_auth, "again");
  log::alert(log::Alert::config, "reload: bad");
  log::set_min_level(log::Level::info);
  CHECK(log::alerts(log::Alert::relayhost_auth) == auth + 2);
  CHECK(log::alerts(log::Alert::tls_verify) == tls);
  CHECK(log::alerts(log::Alert::config) == cfg + 1);
  CHECK(log::to_string(log::Alert::relayhost_auth) == "relayhost_auth");
  CHECK(log::to_string(log::Alert::tls_verify) == "tls_verify");
  CHECK(log::to_string(log::Alert::config) == "config");
}
