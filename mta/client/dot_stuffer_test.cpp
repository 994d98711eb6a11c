// dot_stuffer_test.cpp — DotStuffer: stuffing, line ends, the end of data,
// and the same output however the content is split.
#include <catch2/catch.hpp>

#include <random>
#include <string>

#include "mta/client/dot_stuffer.hpp"
#include "mta/proto/data_reader.hpp"

using sluice::client::DotStuffer;

namespace {

std::string stuff(std::string_view content, size_t step = 0) {
  DotStuffer d;
  std::string out;
  if (step == 0) {
    d.feed(content, out);
  } else {
    for (size_t pos = 0; pos < content.size(); pos += step)
      d.feed(content.substr(pos, step), out);
  }
  d.finish(out);
  return out;
}

// The stream has CR and LF only as CRLF pairs, and exactly one end of data,
// at its very end.
void check_wire(const std::string& w) {
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] == '\r') REQUIRE((i + 1 < w.size() && w[i + 1] == '\n'));
    if (w[i] == '\n') REQUIRE((i > 0 && w[i - 1] == '\r'));
  }
  REQUIRE(w.ends_with(".\r\n"));
  REQUIRE((w.size() == 3 || w.ends_with("\r\n.\r\n")));
  const size_t first = w.size() == 3 ? 0 : w.find("\r\n.\r\n") + 2;
  CHECK(first == w.size() - 3);
}

}  // namespace

TEST_CASE("DotStuffer: table") {
  struct Case {
    std::string_view in, out;
  };
  const Case cases[] = {
      {"", ".\r\n"},
      {"a\r\n", "a\r\n.\r\n"},
      {"a", "a\r\n.\r\n"},  // no final line end: one is added
      {".\r\n", "..\r\n.\r\n"},  // a lone dot line
      {".", "..\r\n.\r\n"},
      {"..x\r\n", "...x\r\n.\r\n"},
      {"a\r\n.b\r\nc.\r\n.\r\n", "a\r\n..b\r\nc.\r\n..\r\n.\r\n"},
      {"a\nb\n", "a\r\nb\r\n.\r\n"},  // bare LF -> CRLF
      {"a\rb\r", "a\r\nb\r\n.\r\n"},  // bare CR -> CRLF
      {"a\r\r\nb", "a\r\n\r\nb\r\n.\r\n"},
      {"\n.\n", "\r\n..\r\n.\r\n"},  // the smuggling shapes stay content
      {"\r\n.\n", "\r\n..\r\n.\r\n"},
      {"x\n.\r\n", "x\r\n..\r\n.\r\n"},
      {"x\r.\r", "x\r\n..\r\n.\r\n"},
      {"\r\n", "\r\n.\r\n"},
      {"a.b\r\n", "a.b\r\n.\r\n"},
  };
  for (const auto& c : cases) {
    INFO("input: " << std::string(c.in));
    CHECK(stuff(c.in) == c.out);
    check_wire(stuff(c.in));
  }
}

TEST_CASE("DotStuffer: split invariance") {
  const std::string content =
      ".start\r\nline\r\n..two\r\n.\r\nbare\nlf\n.dot-after-lf\rcr\r.dot-after-cr\r\n\r\n.\r\nend";
  const std::string whole = stuff(content);
  for (size_t step = 1; step <= content.size(); ++step) {
    INFO("step " << step);
    CHECK(stuff(content, step) == whole);
  }
  // Random contents over a small alphabet, random splits.
  std::mt19937 rng(12345);
  const char alphabet[] = {'.', '\r', '\n', 'a'};
  for (int round = 0; round < 500; ++round) {
    std::string c;
    const size_t len = rng() % 40;
    for (size_t i = 0; i < len; ++i) c.push_back(alphabet[rng() % 4]);
    const std::string w = stuff(c);
    check_wire(w);
    DotStuffer d;
    std::string out;
    size_t pos = 0;
    while (pos < c.size()) {
      const size_t n = std::min<size_t>(1 + rng() % 5, c.size() - pos);
      d.feed(std::string_view(c).substr(pos, n), out);
      pos += n;
    }
    d.finish(out);
    CHECK(out == w);
  }
}

TEST_CASE("DotStuffer: what the receiving side decodes is the content") {
  // Round trip through Sluice's own DATA decoder: CRLF content comes back
  // unchanged and the decoder stops exactly at the end.
  const std::string content = "Subject: x\r\n\r\n.\r\n..\r\n.x\r\nlast\r\n";
  const std::string wire = stuff(content);
  sluice::proto::DataReader r(1 << 20);
  std::string_view in = wire;
  std::string out;
  REQUIRE(r.feed(in, out));
  CHECK(in.empty());
  CHECK(out == content);
}

TEST_CASE("DotStuffer: reusable after finish") {
  DotStuffer d;
  std::string out;
  d.feed("abc", out);
  d.finish(out);
  CHECK(out == "abc\r\n.\r\n");
  out.clear();
  d.feed(".x\r", out);
  d.finish(out);
  CHECK(out == "..x\r\n.\r\n");
}
