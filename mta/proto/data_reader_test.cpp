// data_reader_test.cpp — DATA decoding: transparency, the terminator and its
// look-alikes (SMTP smuggling), errors, limits, header facts, split-invariance.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "mta/proto/data_reader.hpp"

using sluice::proto::DataReader;
using Error = DataReader::Error;

namespace {

struct Result {
  std::string out;
  std::string rest;  // input left after the end of data
  bool done = false;
  Error error = Error::none;
  uint64_t size = 0;
  std::string message_id;
  bool has_date = false, has_message_id = false, has_from = false, in_headers = true;
  uint32_t received = 0;

  bool operator==(const Result&) const = default;
};

// Feeds `input` in pieces of the given sizes (cycled; empty = all at once).
Result run(std::string_view input, const std::vector<size_t>& chunks = {},
           uint64_t max_size = UINT64_MAX) {
  DataReader r(max_size);
  Result res;
  size_t pos = 0, ci = 0;
  bool done = false;
  while (pos < input.size() && !done) {
    size_t n = chunks.empty() ? input.size() : chunks[ci++ % chunks.size()];
    n = std::min(n, input.size() - pos);
    std::string_view in = input.substr(pos, n);
    done = r.feed(in, res.out);
    pos += n - in.size();
    if (!done) REQUIRE(in.empty());
  }
  res.rest = std::string(input.substr(pos));
  res.done = r.done();
  CHECK(res.done == done);
  res.error = r.error();
  res.size = r.size();
  res.message_id = r.message_id();
  res.has_date = r.has_date();
  res.has_message_id = r.has_message_id();
  res.has_from = r.has_from();
  res.received = r.received();
  res.in_headers = r.in_headers();
  CHECK(res.size == res.out.size());
  return res;
}

// Checks that every way of splitting gives the same result as one feed().
Result run_all_splits(std::string_view input, uint64_t max_size = UINT64_MAX) {
  const Result whole = run(input, {}, max_size);
  CHECK(run(input, {1}, max_size) == whole);
  CHECK(run(input, {2}, max_size) == whole);
  CHECK(run(input, {3, 1}, max_size) == whole);
  if (input.size() <= 40) {
    for (size_t cut = 0; cut <= input.size(); ++cut) {
      INFO("cut at " << cut);
      CHECK(run(input, {cut == 0 ? input.size() : cut, input.size()}, max_size) == whole);
    }
  }
  return whole;
}

}  // namespace

TEST_CASE("DataReader: simple message and pipelined commands stay in `in`") {
  auto r = run_all_splits("Subject: hi\r\n\r\nBody\r\n.\r\nQUIT\r\n");
  CHECK(r.done);
  CHECK(r.error == Error::none);
  CHECK(r.out == "Subject: hi\r\n\r\nBody\r\n");
  CHECK(r.rest == "QUIT\r\n");
  CHECK(r.size == r.out.size());
}

TEST_CASE("DataReader: empty message") {
  auto r = run_all_splits(".\r\nRSET\r\n");
  CHECK(r.done);
  CHECK(r.out.empty());
  CHECK(r.rest == "RSET\r\n");
}

TEST_CASE("DataReader: incomplete data is not done") {
  for (std::string in : {"", "abc", "abc\r\n", "abc\r\n.", "abc\r\n.\r", ".", ".\r"}) {
    INFO(in);
    auto r = run_all_splits(in);
    CHECK_FALSE(r.done);
    CHECK(r.rest.empty());
  }
}

TEST_CASE("DataReader: dot-stuffing is removed") {
  auto r = run_all_splits("..\r\n...\r\n.x\r\n..x\r\na.b\r\n .\r\n.\r\n");
  CHECK(r.done);
  CHECK(r.out == ".\r\n..\r\nx\r\n.x\r\na.b\r\n .\r\n");
}

TEST_CASE("DataReader: bare LF is a line end, written as CRLF") {
  auto r = run_all_splits("a\nb\r\n\nc\n\r\n.\r\n");
  CHECK(r.done);
  CHECK(r.out == "a\r\nb\r\n\r\nc\r\n\r\n");
  CHECK(r.error == Error::none);
}

TEST_CASE("DataReader: end-of-data look-alikes do not end the data") {
  // Each is followed by a real end so we can see what became of it.
  struct Case {
    std::string in, out;
  };
  const Case table[] = {
      {"a\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n"},            // LF . LF
      {"a\r\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n"},          // CRLF . LF
      {"a\n.\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n"},          // LF . CRLF
      {".\nb\r\n.\r\n", ".\r\nb\r\n"},                    // at the start, . LF
      {"\n.\r\nb\r\n.\r\n", "\r\n.\r\nb\r\n"},            // empty bare-LF line, . CRLF
      {"a\r\n.\n.\n.\r\n.\r\n", "a\r\n.\r\n.\r\n.\r\n"},  // three fakes in a row
      {"a\n..\r\n.\r\n", "a\r\n.\r\n"},                   // ".." after LF is a stuffed "."
      {"a\r\n. \r\n.\r\n", "a\r\n \r\n"},                 // ". " is not "."
      {"a .\r\n.\r\n", "a .\r\n"},                        // "." mid-line
      {"a\r\n.a\r\n.\r\n", "a\r\na\r\n"},
  };
  for (const auto& c : table) {
    INFO(c.in);
    auto r = run_all_splits(c.in + "NEXT");
    CHECK(r.done);
    CHECK(r.error == Error::none);
    CHECK(r.out == c.out);
    CHECK(r.rest == "NEXT");
  }
}

TEST_CASE("DataReader: look-alikes alone never finish") {
  for (std::string in : {"a\n.\n", "a\r\n.\n", "a\n.\r\n", "a\r.\r\n", "a\r\n.\r", "a\r.\r",
                         "a\n.\n\n.\n", ".\n", "\n.\n", "\r\n.\n", "a.\r\n", "\r.\r\n"}) {
    INFO(in);
    auto r = run_all_splits(in + "MAIL FROM:<evil@example>\r\n");
    CHECK_FALSE(r.done);
    CHECK(r.rest.empty());
  }
}

TEST_CASE("DataReader: the smuggling pattern ends only at the real end") {
  const std::string in =
      "Subject: one\r\n\r\nbody\n.\nMAIL FROM:<x@y>\r\nRCPT TO:<v@w>\r\nDATA\r\nSubject: two\r\n"
      "\r\n.\r\nQUIT\r\n";
  auto r = run_all_splits(in);
  CHECK(r.done);
  CHECK(r.error == Error::none);
  CHECK(r.rest == "QUIT\r\n");
  CHECK(r.out ==
        "Subject: one\r\n\r\nbody\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<v@w>\r\nDATA\r\n"
        "Subject: two\r\n\r\n");
}

TEST_CASE("DataReader: bare CR is an error, the real end is still found") {
  for (std::string in : {"a\rb\r\n.\r\n", "a\r.\r\n.\r\n", "\r\r\n.\r\n", "a\r\n.\rx\r\n.\r\n",
                         "a\r\n\r.\r\n.\r\n", "a\r\r\n.\r\n"}) {
    INFO(in);
    auto r = run_all_splits(in + "QUIT\r\n");
    CHECK(r.done);
    CHECK(r.error == Error::bare_cr);
    CHECK(r.rest == "QUIT\r\n");
  }
  auto r = run("ok\r\nbad\rmore\r\nignored\r\n.\r\n");
  CHECK(r.out == "ok\r\nbad");  // nothing after the error
}

TEST_CASE("DataReader: NUL is an error, the real end is still found") {
  const std::string in = std::string("a\0b\r\nc\r\n.\r\nQUIT\r\n", 17);
  auto r = run_all_splits(in);
  CHECK(r.done);
  CHECK(r.error == Error::nul);
  CHECK(r.out == "a");
  CHECK(r.rest == "QUIT\r\n");
  auto d = run_all_splits(std::string(".\0\r\n.\r\n", 7));
  CHECK(d.done);
  CHECK(d.error == Error::nul);
}

TEST_CASE("DataReader: the first error is the one reported") {
  auto r = run_all_splits(std::string("a\0b\rc\r\n.\r\n", 10));
  CHECK(r.error == Error::nul);
  auto s = run_all_splits(std::string("a\rb\0c\r\n.\r\n", 10));
  CHECK(s.error == Error::bare_cr);
}

TEST_CASE("DataReader: line length 998 / 999 octets (1000 / 1001 with CRLF)") {
  REQUIRE(DataReader::max_line == 998);
  for (const char* eol : {"\r\n", "\n"}) {
    auto ok = run_all_splits(std::string(997, 'x') + eol + std::string(998, 'y') + eol + "end\r\n.\r\n");
    CHECK(ok.done);
    CHECK(ok.error == Error::none);
    CHECK(ok.out == std::string(997, 'x') + "\r\n" + std::string(998, 'y') + "\r\nend\r\n");

    auto bad = run_all_splits("a\r\n" + std::string(999, 'z') + eol + "b\r\n.\r\nQUIT\r\n");
    CHECK(bad.done);
    CHECK(bad.error == Error::line_too_long);
    CHECK(bad.out == "a\r\n" + std::string(998, 'z'));
    CHECK(bad.rest == "QUIT\r\n");
  }
  // The stuffing dot counts: "." + 998 is 999 wire octets.
  auto stuffed_ok = run_all_splits("." + std::string(997, 's') + "\r\n.\r\n");
  CHECK(stuffed_ok.error == Error::none);
  CHECK(stuffed_ok.out == std::string(997, 's') + "\r\n");
  auto stuffed_bad = run_all_splits("." + std::string(998, 's') + "\r\n.\r\n");
  CHECK(stuffed_bad.error == Error::line_too_long);
  CHECK(stuffed_bad.done);
  // Lines after an error may be any length; the end is still found.
  auto after = run_all_splits(std::string(5000, 'q') + "\r\n" + std::string(3000, 'r') + "\r\n.\r\nX");
  CHECK(after.done);
  CHECK(after.error == Error::line_too_long);
  CHECK(after.rest == "X");
}

TEST_CASE("DataReader: max_size N-1 / N / N+1") {
  const std::string msg = "Subject: x\r\n\r\n0123456789\r\n";  // 26 octets
  REQUIRE(msg.size() == 26);
  auto fits = run_all_splits(msg + ".\r\n", 27);
  CHECK(fits.error == Error::none);
  auto exact = run_all_splits(msg + ".\r\n", 26);
  CHECK(exact.error == Error::none);
  CHECK(exact.out == msg);
  auto over = run_all_splits(msg + ".\r\nQUIT", 25);
  CHECK(over.done);
  CHECK(over.error == Error::too_big);
  CHECK(over.rest == "QUIT");
  CHECK(over.out == msg.substr(0, 24));  // a line end goes out whole or not at all
  CHECK(over.size == 24);
  auto mid = run_all_splits(msg + ".\r\n", 20);
  CHECK(mid.error == Error::too_big);
  CHECK(mid.out == msg.substr(0, 20));
  auto zero = run_all_splits(".\r\n", 0);
  CHECK(zero.error == Error::none);
  auto zero_over = run_all_splits("a\r\n.\r\n", 0);
  CHECK(zero_over.error == Error::too_big);
  CHECK(zero_over.out.empty());
}

TEST_CASE("DataReader: a big message streams through") {
  std::string in;
  std::string expect;
  for (int i = 0; i < 20000; ++i) {
    std::string line = "line " + std::to_string(i) + " \t the quick brown fox";
    if (i % 7 == 0) line = "." + line;
    in += line + (i % 3 ? "\r\n" : "\n");
    expect += (i % 7 == 0 ? line.substr(1) : line) + "\r\n";
  }
  in += ".\r\n";
  auto r = run(in);
  CHECK(r.done);
  CHECK(r.out == expect);
  CHECK(run(in, {4096}) == r);
  CHECK(run(in, {1, 1000, 7, 65536}) == r);
}

TEST_CASE("DataReader: feed after done consumes nothing") {
  DataReader r;
  std::string out;
  std::string_view in = ".\r\nQUIT\r\n";
  CHECK(r.feed(in, out));
  CHECK(in == "QUIT\r\n");
  CHECK(r.feed(in, out));
  CHECK(in == "QUIT\r\n");
  CHECK(r.done());
}

TEST_CASE("DataReader: header facts") {
  auto r = run_all_splits(
      "Received: from x\r\n\tby y\r\n"
      "FROM: a@b\r\n"
      "message-id:   <abc@example.com>  \r\n"
      "DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
      "\r\n"
      "Message-ID: <body@example.com>\r\n.\r\n");
  CHECK(r.has_from);
  CHECK(r.has_date);
  CHECK(r.has_message_id);
  CHECK(r.message_id == "<abc@example.com>");
  CHECK(r.received == 1);
  CHECK_FALSE(r.in_headers);
}

TEST_CASE("DataReader: Received fields are counted in the header section only") {
  std::string msg;
  for (int i = 0; i < 101; ++i) msg += "received \t: from h" + std::to_string(i) + "\r\n\tby x; date\r\n";
  msg += "X-Received: not one\r\nReceivedX: nor this\r\n\r\nReceived: in the body\r\n.\r\n";
  auto r = run_all_splits(msg);
  CHECK(r.received == 101);
  CHECK(run_all_splits("Subject: x\r\n\r\n.\r\n").received == 0);
}

TEST_CASE("DataReader: folded Message-ID, WSP before the colon, first one wins") {
  auto r = run_all_splits(
      "Message-ID \t:\r\n   <folded@\r\n example.com>\r\nMessage-ID: <second@x>\r\n\r\nbody\r\n.\r\n");
  CHECK(r.has_message_id);
  CHECK(r.message_id == "<folded@ example.com>");
  CHECK_FALSE(r.has_date);
  CHECK_FALSE(r.has_from);
}

TEST_CASE("DataReader: header names must match exactly") {
  auto r = run_all_splits(
      "From-Address: x\r\nX-Date: y\r\nResent-Message-ID: <r@x>\r\nDate\r\n From: folded\r\n\r\n"
      "From: in body\r\n.\r\n");
  CHECK_FALSE(r.has_from);
  CHECK_FALSE(r.has_date);
  CHECK_FALSE(r.has_message_id);
}

TEST_CASE("DataReader: headers end at the first empty line, also with bare LF") {
  auto r = run_all_splits("Subject: x\n\nDate: later\n.\r\n");
  CHECK_FALSE(r.has_date);
  CHECK_FALSE(r.in_headers);
  auto none = run_all_splits("\r\nFrom: body\r\n.\r\n");
  CHECK_FALSE(none.has_from);
  CHECK_FALSE(none.in_headers);
  auto all = run_all_splits("From: a\r\nDate: b\r\n.\r\n");
  CHECK(all.has_from);
  CHECK(all.has_date);
  CHECK(all.in_headers);  // no body
}

TEST_CASE("DataReader: a lone dot after a bare LF does not end the headers") {
  auto r = run_all_splits("Subject: x\n.\nDate: d\r\n\r\n.\r\n");
  CHECK(r.has_date);
  CHECK(r.out == "Subject: x\r\n.\r\nDate: d\r\n\r\n");
}

TEST_CASE("DataReader: Message-ID capped at 998 octets") {
  const std::string id = "<" + std::string(1500, 'm') + "@x>";
  std::string in = "Message-ID: " + id.substr(0, 900) + "\r\n " + id.substr(900) + "\r\n\r\n.\r\n";
  auto r = run_all_splits(in);
  CHECK(r.has_message_id);
  CHECK(r.message_id.size() == 998);
  CHECK(r.message_id == (id.substr(0, 900) + " " + id.substr(900)).substr(0, 998));
}

TEST_CASE("DataReader: split-invariance on random inputs") {
  std::mt19937 rng(1234);
  const std::string alphabet[] = {"\r", "\n", ".", "a", "\r\n", "\r\n.", ".\r\n", "\0",
                                  ":", " ", "From:", "Message-ID:", "Date:", "x"};
  for (int round = 0; round < 2000; ++round) {
    std::string in;
    const int parts = static_cast<int>(rng() % 40);
    for (int i = 0; i < parts; ++i) {
      const auto& a = alphabet[rng() % std::size(alphabet)];
      if (a.empty()) {
        in.push_back('\0');
      } else {
        in += a;
      }
    }
    if (rng() % 4 == 0) in += std::string(rng() % 1200, 'L');
    if (rng() % 2) in += "\r\n.\r\nTAIL";
    const uint64_t max = rng() % 3 == 0 ? rng() % 60 : UINT64_MAX;
    const Result whole = run(in, {}, max);
    INFO("round " << round);
    CHECK(run(in, {1}, max) == whole);
    std::vector<size_t> chunks;
    for (int i = 0; i < 8; ++i) chunks.push_back(1 + rng() % 20);
    CHECK(run(in, chunks, max) == whole);
    // Output is always CRLF-clean.
    for (size_t i = 0; i < whole.out.size(); ++i) {
      if (whole.out[i] == '\r') {
        REQUIRE(i + 1 < whole.out.size());
        CHECK(whole.out[i + 1] == '\n');
      }
      if (whole.out[i] == '\n') {
        REQUIRE(i > 0);
        CHECK(whole.out[i - 1] == '\r');
      }
    }
  }
}
