// line_reader_test.cpp — command-line framing and its limits.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "mta/proto/command.hpp"
#include "mta/proto/line_reader.hpp"

using sluice::proto::LineReader;
using sluice::proto::Limits;

namespace {

// Runs the whole input through a reader in the given chunk sizes; lines are
// rendered as their text, too-long lines as "<TOO LONG>" and a line reported
// endless as "<ENDLESS>" (after its "<TOO LONG>" when both come at once).
std::vector<std::string> split_lines(std::string_view input, const std::vector<size_t>& chunks,
                                     size_t max_line = 512, std::string* rest = nullptr) {
  LineReader r(max_line);
  std::vector<std::string> out;
  size_t pos = 0, ci = 0;
  while (pos < input.size()) {
    size_t n = chunks.empty() ? input.size() : chunks[ci++ % chunks.size()];
    n = std::min(n, input.size() - pos);
    std::string_view in = input.substr(pos, n);
    while (auto line = r.next(in)) {
      if (line->too_long) out.push_back("<TOO LONG>");
      if (line->endless) out.push_back("<ENDLESS>");
      if (!line->too_long && !line->endless) out.push_back(std::string(line->text));
    }
    CHECK(in.empty());
    pos += n;
  }
  if (rest) *rest = std::to_string(r.buffered());
  return out;
}

}  // namespace

TEST_CASE("LineReader: CRLF and bare LF lines") {
  auto lines = split_lines("EHLO a\r\nMAIL FROM:<>\nRCPT TO:<b@c>\r\n\r\n\n", {});
  CHECK(lines == std::vector<std::string>{"EHLO a", "MAIL FROM:<>", "RCPT TO:<b@c>", "", ""});
}

TEST_CASE("LineReader: only one CR belongs to the line end") {
  auto lines = split_lines("A\r\r\nB\rC\n", {});
  CHECK(lines == std::vector<std::string>{"A\r", "B\rC"});
}

TEST_CASE("LineReader: a whole line inside the input is returned without a copy") {
  LineReader r;
  std::string buf = "NOOP\r\nQUIT\r\n";
  std::string_view in = buf;
  auto line = r.next(in);
  REQUIRE(line);
  CHECK(line->text == "NOOP");
  CHECK(line->text.data() == buf.data());
  CHECK(in == "QUIT\r\n");
  CHECK(r.buffered() == 0);
}

TEST_CASE("LineReader: partial lines are kept across calls and the rest stays in `in`") {
  LineReader r;
  std::string_view in = "MAIL FR";
  CHECK_FALSE(r.next(in));
  CHECK(in.empty());
  CHECK(r.buffered() == 7);
  in = "OM:<a@b>\r";
  CHECK_FALSE(r.next(in));
  in = "\nDATA\r\nSubject: x";
  auto line = r.next(in);
  REQUIRE(line);
  CHECK(line->text == "MAIL FROM:<a@b>");
  CHECK(in == "DATA\r\nSubject: x");
  line = r.next(in);
  REQUIRE(line);
  CHECK(line->text == "DATA");
  CHECK(in == "Subject: x");  // left for the DataReader
  CHECK(r.buffered() == 0);
}

TEST_CASE("LineReader: CR and LF split across calls") {
  for (size_t k = 1; k < 12; ++k) {
    auto lines = split_lines("HELO x\r\nNOOP\r\n", {k});
    CHECK(lines == std::vector<std::string>{"HELO x", "NOOP"});
  }
}

TEST_CASE("LineReader: 512-octet command line limit (N-1, N, N+1)") {
  REQUIRE(Limits::command_line == 512);
  for (std::vector<size_t> chunks : {std::vector<size_t>{}, {1}, {7}, {100}, {511}, {512}}) {
    // Text 509 / 510 / 511 octets; the line end always counts as two.
    for (const char* eol : {"\r\n", "\n"}) {
      const std::string t509(509, 'a'), t510(510, 'b'), t511(511, 'c');
      auto lines = split_lines(t509 + eol + t510 + eol + t511 + eol + "QUIT" + eol, chunks);
      REQUIRE(lines.size() == 4);
      CHECK(lines[0] == t509);
      CHECK(lines[1] == t510);
      CHECK(lines[2] == "<TOO LONG>");
      CHECK(lines[3] == "QUIT");
    }
  }
}

TEST_CASE("LineReader: a long line is reported as soon as it passes the limit, before its end") {
  LineReader r;
  std::string first(600, 'x');
  std::string_view in = first;
  auto line = r.next(in);
  REQUIRE(line);  // no LF yet: RFC 5321 §4.5.3.1.4, the client hears at once
  CHECK(line->too_long);
  CHECK_FALSE(line->endless);
  CHECK(line->text.empty());
  CHECK(in.empty());
  // The rest of it is dropped without a second report; memory stays bounded.
  std::string chunk(4096, 'x');
  for (int i = 0; i < 10; ++i) {
    in = chunk;
    CHECK_FALSE(r.next(in));
    CHECK(r.buffered() == 0);
  }
  std::string tail = "yyy\r\nNOOP\r\n";
  in = tail;
  line = r.next(in);  // the long line's end is passed over: the next line
  REQUIRE(line);
  CHECK_FALSE(line->too_long);
  CHECK(line->text == "NOOP");
  CHECK(in.empty());
}

TEST_CASE("LineReader: a line past 64 KB is reported endless, once") {
  LineReader r;
  std::string chunk(4096, 'x');
  std::string_view in = chunk;
  auto line = r.next(in);
  REQUIRE(line);
  CHECK(line->too_long);
  int endless = 0;
  size_t total = chunk.size(), at = 0;
  for (int calls = 1; calls < 40; ++calls) {  // 40 × 4 KB = 160 KB
    in = chunk;
    total += chunk.size();
    while (auto l = r.next(in)) {
      CHECK_FALSE(l->too_long);
      if (l->endless && ++endless == 1) at = total;
    }
  }
  CHECK(endless == 1);
  // Reported by the first piece that takes the line past 64 KB.
  CHECK(at > LineReader::kEndless);
  CHECK(at - chunk.size() <= LineReader::kEndless);
  // A whole line over 64 KB in one piece: both at once.
  std::string whole = std::string(70000, 'z') + "\r\nNOOP\r\n";
  LineReader r2;
  in = whole;
  line = r2.next(in);
  REQUIRE(line);
  CHECK(line->too_long);
  CHECK(line->endless);
  CHECK(split_lines(whole, {1000}) == split_lines(whole, {}));
  CHECK(split_lines(whole, {}) == std::vector<std::string>{"<TOO LONG>", "<ENDLESS>", "NOOP"});
}

TEST_CASE("LineReader: a partial line that becomes too long") {
  // 511 octets then CR (could still be the CRLF) then LF: too long; and 510
  // octets + CR buffered, then LF: fine.
  LineReader r;
  std::string a(510, 'a');
  std::string_view in = a;
  CHECK_FALSE(r.next(in));
  in = "\r";
  CHECK_FALSE(r.next(in));
  CHECK(r.buffered() == 511);
  in = "\n";
  auto line = r.next(in);
  REQUIRE(line);
  CHECK_FALSE(line->too_long);
  CHECK(line->text == a);

  std::string b(511, 'b');
  in = b;
  CHECK_FALSE(r.next(in));
  in = "\r";  // 511 octets of text whatever follows: too long now
  line = r.next(in);
  REQUIRE(line);
  CHECK(line->too_long);
  in = "\nNOOP\r\n";
  line = r.next(in);
  REQUIRE(line);
  CHECK_FALSE(line->too_long);
  CHECK(line->text == "NOOP");
}

TEST_CASE("LineReader: reset forgets the partial line") {
  LineReader r;
  std::string_view in = "STARTTLS\r\nEHLO injected";
  auto line = r.next(in);
  REQUIRE(line);
  CHECK(line->text == "STARTTLS");
  CHECK_FALSE(r.next(in));
  CHECK(r.buffered() > 0);
  r.reset();
  CHECK(r.buffered() == 0);
  in = "\r\nEHLO real\r\n";
  line = r.next(in);
  REQUIRE(line);
  CHECK(line->text == "");
  line = r.next(in);
  REQUIRE(line);
  CHECK(line->text == "EHLO real");
}

TEST_CASE("LineReader: reset also ends discarding") {
  LineReader r(16);
  std::string_view in = "0123456789abcdefghijkl";
  auto first = r.next(in);
  REQUIRE(first);
  CHECK(first->too_long);
  r.reset();
  in = "ok\r\n";
  auto line = r.next(in);
  REQUIRE(line);
  CHECK_FALSE(line->too_long);
  CHECK(line->text == "ok");
}

TEST_CASE("LineReader: set_max_line (e.g. for AUTH responses)") {
  LineReader r;
  r.set_max_line(12000);
  std::string big(11000, 'Q');
  std::string buf = big + "\r\n";
  std::string_view in = buf;
  auto line = r.next(in);
  REQUIRE(line);
  CHECK(line->text == big);
}

TEST_CASE("LineReader: tiny limits") {
  CHECK(split_lines("\r\nx\r\n", {}, 2) == std::vector<std::string>{"", "<TOO LONG>"});
  CHECK(split_lines("\r\n", {}, 1) == std::vector<std::string>{"<TOO LONG>"});
  CHECK(split_lines("\n", {}, 0) == std::vector<std::string>{"<TOO LONG>"});
}

TEST_CASE("LineReader: random splits give the same lines") {
  std::string input;
  std::mt19937 rng(42);
  for (int i = 0; i < 300; ++i) {
    size_t len = rng() % 600;
    for (size_t k = 0; k < len; ++k) input.push_back("ab\r "[rng() % 4]);
    input += (rng() % 2) ? "\r\n" : "\n";
  }
  const auto whole = split_lines(input, {});
  for (int round = 0; round < 50; ++round) {
    std::vector<size_t> chunks;
    for (int i = 0; i < 20; ++i) chunks.push_back(1 + rng() % 700);
    CHECK(split_lines(input, chunks) == whole);
  }
  CHECK(split_lines(input, {1}) == whole);
}
