#include <catch2/catch.hpp>

#include "http/message.hpp"
#include "http/url.hpp"

using namespace sluice::http;

TEST_CASE("parse_url") {
  auto u = parse_url("https://Hooks.Example.com/mail?x=1");
  REQUIRE(u);
  CHECK(u->tls);
  CHECK(u->host == "hooks.example.com");
  CHECK(u->port == 443);
  CHECK(u->target == "/mail?x=1");
  u = parse_url("http://127.0.0.1:8080");
  REQUIRE(u);
  CHECK(!u->tls);
  CHECK(u->port == 8080);
  CHECK(u->target == "/");
  u = parse_url("https://[::1]:9443/h");
  REQUIRE(u);
  CHECK(u->host == "::1");
  CHECK(u->str() == "https://[::1]:9443/h");
  CHECK(!parse_url("ftp://x/"));
  CHECK(!parse_url("https://user:pw@x/"));
  CHECK(!parse_url("https://x:0/"));
  CHECK(!parse_url("https://x:70000/"));
  CHECK(!parse_url("https:///p"));
  CHECK(!parse_url("https://x/#f"));
  CHECK(!parse_url("https://x y/"));
  CHECK(!parse_url("https://ex_ample/"));
}

TEST_CASE("request headers are found whatever their case") {
  Request r;
  r.headers = {{"Content-Type", "application/json"}, {"X-A", "1"}, {"x-a", "2"}};
  CHECK(r.header("content-type") == "application/json");
  CHECK(r.header("X-A") == "1");
  CHECK(!r.header("X-B"));
  CHECK(reason_phrase(415) == "Unsupported Media Type");
}
