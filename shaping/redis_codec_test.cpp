// redis_codec_test.cpp — the [cluster] redis URL and the stored Override.
#include <catch2/catch.hpp>

#include "shaping/redis_codec.hpp"

using namespace sluice::shaping;

TEST_CASE("parse_redis_url reads TCP addresses and Unix sockets") {
  auto a = parse_redis_url("redis://127.0.0.1:6380");
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 6380);
  CHECK(!a->unix_socket());
  CHECK(a->str() == "redis://127.0.0.1:6380");

  auto b = parse_redis_url("redis://10.0.0.5/");
  REQUIRE(b);
  CHECK(b->port == 6379);

  auto c = parse_redis_url("redis://[::1]:7000");
  REQUIRE(c);
  CHECK(c->host == "::1");
  CHECK(c->port == 7000);
  CHECK(c->str() == "redis://[::1]:7000");

  auto d = parse_redis_url("unix:/run/redis/redis.sock");
  REQUIRE(d);
  CHECK(d->unix_socket());
  CHECK(d->path == "/run/redis/redis.sock");
  CHECK(d->str() == "unix:/run/redis/redis.sock");
  CHECK(parse_redis_url("unix:///run/r.sock")->path == "/run/r.sock");
  // Found by fuzz_redis_url: a path with leading slashes written back and read again.
  for (std::string_view url : {"unix://///run/r.sock", "unix:////x", "unix:/x"}) {
    auto e = parse_redis_url(url);
    REQUIRE(e);
    auto again = parse_redis_url(e->str());
    REQUIRE(again);
    CHECK(again->path == e->path);
  }
}

TEST_CASE("parse_redis_url refuses a password, names and junk") {
  auto pw = parse_redis_url("redis://:secret@127.0.0.1:6379");
  REQUIRE(!pw);
  CHECK(pw.error().find("never a password in the URL") != std::string::npos);
  CHECK(!parse_redis_url("redis://user@127.0.0.1"));
  auto name = parse_redis_url("redis://redis.example:6379");
  REQUIRE(!name);
  CHECK(name.error().find("IP address") != std::string::npos);
  for (const char* bad : {"", "redis://", "redis://:6379", "redis://127.0.0.1:", "redis://127.0.0.1:0",
                          "redis://127.0.0.1:65536", "redis://127.0.0.1:63x", "redis://127.0.0.1/0",
                          "redis://127.0.0.1?db=1", "redis://[::1", "redis://[::1]x", "redis://[nope]:1",
                          "redis://::1:6379", "rediss://127.0.0.1", "http://127.0.0.1", "unix:", "unix:relative",
                          "127.0.0.1:6379"}) {
    INFO(bad);
    CHECK(!parse_redis_url(bad));
  }
  CHECK(!parse_redis_url("unix:/" + std::string(200, 'a')));
  CHECK(!parse_redis_url(std::string_view("unix:/a\0b", 9)));
}

TEST_CASE("an Override survives the trip through Redis") {
  Override o{Rate{10, 60'000'000}, 3, true, 1'764'970'000'123'456, "rule slow: 421 4.7.0 try later \xff"};
  auto back = decode_override(encode_override(o));
  REQUIRE(back);
  CHECK(back->rate == o.rate);
  CHECK(back->connections == 3);
  CHECK(back->suspended);
  CHECK(back->until_us == o.until_us);
  CHECK(back->reason.starts_with("rule slow: 421 4.7.0 try later "));  // the bad byte is replaced

  Override unlimited;
  unlimited.until_us = 5;
  CHECK(decode_override(encode_override(unlimited)) == unlimited);

  for (const char* bad : {"", "[]", "{}", "nope", R"({"count":1,"period_us":0,"connections":0,"suspended":false,"until_us":1,"reason":""})",
                          R"({"count":-1,"period_us":1,"connections":0,"suspended":false,"until_us":1,"reason":""})",
                          R"({"count":1,"period_us":1,"connections":4294967296,"suspended":false,"until_us":1,"reason":""})",
                          R"({"count":1,"period_us":1,"connections":0,"suspended":0,"until_us":1,"reason":""})",
                          R"({"count":1,"period_us":1,"connections":0,"suspended":false,"until_us":1})"}) {
    INFO(bad);
    CHECK(!decode_override(bad));
  }
}
