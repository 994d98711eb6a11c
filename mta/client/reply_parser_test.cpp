// reply_parser_test.cpp — ReplyParser tables, hostile input, split invariance.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "mta/client/reply_parser.hpp"

using sluice::client::describe;
using sluice::client::ReplyError;
using sluice::client::ReplyParser;
using sluice::client::sanitise;
using sluice::proto::Reply;

namespace {

struct Parsed {
  std::vector<Reply> replies;
  std::optional<ReplyError> error;
};

// Feeds `input` in pieces of `step` octets (0 = all at once).
Parsed parse(std::string_view input, size_t step = 0) {
  ReplyParser p;
  Parsed out;
  size_t pos = 0;
  while (pos < input.size()) {
    const size_t n = step == 0 ? input.size() - pos : std::min(step, input.size() - pos);
    std::string_view in = input.substr(pos, n);
    pos += n;
    while (true) {
      auto r = p.next(in);
      if (!r) {
        out.error = r.error();
        return out;
      }
      if (!r->has_value()) break;
      out.replies.push_back(std::move(**r));
    }
  }
  return out;
}

Reply one(std::string_view input) {
  Parsed p = parse(input);
  REQUIRE_FALSE(p.error);
  REQUIRE(p.replies.size() == 1);
  return p.replies.front();
}

ReplyError error_of(std::string_view input) {
  Parsed p = parse(input);
  REQUIRE(p.error);
  return *p.error;
}

}  // namespace

TEST_CASE("ReplyParser: single-line replies") {
  Reply r = one("220 mx.example.com ESMTP ready\r\n");
  CHECK(r.code == 220);
  CHECK(r.enhanced.empty());
  CHECK(r.lines == std::vector<std::string>{"mx.example.com ESMTP ready"});

  r = one("250 2.1.0 Sender ok\r\n");
  CHECK(r.code == 250);
  CHECK(r.enhanced == "2.1.0");
  CHECK(r.lines == std::vector<std::string>{"Sender ok"});

  r = one("354\r\n");  // a bare code is a valid last line
  CHECK(r.code == 354);
  CHECK(r.lines == std::vector<std::string>{""});

  r = one("250 \r\n");
  CHECK(r.code == 250);
  CHECK(r.lines == std::vector<std::string>{""});

  r = one("550 5.1.1\r\n");  // enhanced code and nothing else
  CHECK(r.enhanced == "5.1.1");
  CHECK(r.lines == std::vector<std::string>{""});

  r = one("250 ok\n");  // bare LF accepted as a line end
  CHECK(r.code == 250);
  CHECK(r.lines == std::vector<std::string>{"ok"});
}

TEST_CASE("ReplyParser: multi-line replies and enhanced codes") {
  Reply r = one("250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n");
  CHECK(r.code == 250);
  CHECK(r.enhanced.empty());
  CHECK(r.lines == std::vector<std::string>{"mx.example.com", "PIPELINING", "SIZE 1000", "8BITMIME"});

  r = one("550-5.7.1 Blocked\r\n550-5.7.1 see http://x/\r\n550 5.7.1 bye\r\n");
  CHECK(r.enhanced == "5.7.1");
  CHECK(r.lines == std::vector<std::string>{"Blocked", "see http://x/", "bye"});
  CHECK(describe(r) == "550 5.7.1 Blocked; see http://x/; bye");

  // Lines without the code keep their text.
  r = one("451-4.3.0 first\r\n451 second\r\n");
  CHECK(r.lines == std::vector<std::string>{"first", "second"});

  // Continuation with empty text.
  r = one("250-\r\n250 done\r\n");
  CHECK(r.lines == std::vector<std::string>{"", "done"});
}

TEST_CASE("ReplyParser: what is not an enhanced code stays text") {
  CHECK(one("550 4.1.1 class mismatch\r\n").enhanced.empty());
  CHECK(one("354 2.0.0 go ahead\r\n").enhanced.empty());  // class 3 does not exist
  CHECK(one("250 2.1000.0 x\r\n").enhanced.empty());
  CHECK(one("250 2.1.0000 x\r\n").enhanced.empty());
  CHECK(one("250 2.1.0x\r\n").enhanced.empty());
  CHECK(one("250 2..0 x\r\n").enhanced.empty());
  CHECK(one("250 2.100.999 x\r\n").enhanced == "2.100.999");
  CHECK(one("250 8BITMIME\r\n").enhanced.empty());
}

TEST_CASE("ReplyParser: consumes exactly one reply at a time") {
  ReplyParser p;
  std::string_view in = "220 hi\r\n250 a\r\nleftover";
  auto r = p.next(in);
  REQUIRE(r);
  REQUIRE(r->has_value());
  CHECK((*r)->code == 220);
  CHECK(in == "250 a\r\nleftover");
  r = p.next(in);
  REQUIRE(r);
  REQUIRE(r->has_value());
  CHECK((*r)->code == 250);
  CHECK(in == "leftover");
  r = p.next(in);
  REQUIRE(r);
  CHECK_FALSE(r->has_value());  // partial: needs more
  CHECK(in.empty());
  CHECK(p.partial());
}

TEST_CASE("ReplyParser: hostile and broken input is an error") {
  CHECK(error_of(std::string_view("250 a\0b\r\n", 9)) == ReplyError::nul);
  CHECK(error_of("250 a\rb\r\n") == ReplyError::bare_cr);
  CHECK(error_of("250 a\r\r\n") == ReplyError::bare_cr);
  CHECK(error_of("hello\r\n") == ReplyError::bad_code);
  CHECK(error_of("\r\n") == ReplyError::bad_code);
  CHECK(error_of("25\r\n") == ReplyError::bad_code);
  CHECK(error_of("2500 x\r\n") == ReplyError::bad_code);
  CHECK(error_of("150 x\r\n") == ReplyError::bad_code);
  CHECK(error_of("650 x\r\n") == ReplyError::bad_code);
  CHECK(error_of("25a x\r\n") == ReplyError::bad_code);
  CHECK(error_of(" 250 x\r\n") == ReplyError::bad_code);
  CHECK(error_of("250-a\r\n251 b\r\n") == ReplyError::code_mismatch);
  CHECK(error_of("250-a\r\n550 b\r\n") == ReplyError::code_mismatch);
  CHECK(error_of("250-a\r\nb\r\n") == ReplyError::bad_code);

  // Errors are sticky until reset().
  ReplyParser p;
  std::string_view in = "xyz\r\n";
  CHECK_FALSE(p.next(in));
  CHECK(p.failed());
  std::string_view good = "250 ok\r\n";
  CHECK_FALSE(p.next(good));
  p.reset();
  auto r = p.next(good);
  REQUIRE(r);
  CHECK(r->has_value());
}

TEST_CASE("ReplyParser: line length bound") {
  const std::string ok = "250 " + std::string(ReplyParser::max_line - 6, 'a') + "\r\n";
  REQUIRE(ok.size() == ReplyParser::max_line);
  Reply r = one(ok);
  CHECK(r.lines.front().size() == ReplyParser::max_kept_line);
  CHECK(r.lines.front().ends_with("..."));

  const std::string too_long = "250 " + std::string(ReplyParser::max_line - 5, 'a') + "\r\n";
  CHECK(error_of(too_long) == ReplyError::line_too_long);

  // An endless line fails as soon as the bound is crossed, without a line end.
  ReplyParser p;
  const std::string endless(ReplyParser::max_line + 10, 'x');
  std::string_view in = endless;
  auto res = p.next(in);
  REQUIRE_FALSE(res);
  CHECK(res.error() == ReplyError::line_too_long);
}

TEST_CASE("ReplyParser: line count bound (endless continuations)") {
  std::string s;
  for (size_t i = 0; i + 1 < ReplyParser::max_lines; ++i) s += "250-x\r\n";
  s += "250 last\r\n";
  CHECK(one(s).lines.size() == ReplyParser::max_lines);

  std::string endless;
  for (size_t i = 0; i < ReplyParser::max_lines + 5; ++i) endless += "250-x\r\n";
  CHECK(error_of(endless) == ReplyError::too_many_lines);
}

TEST_CASE("ReplyParser: text is sanitised") {
  Reply r = one("550 5.7.1 a\tb\x01" "c\x7f" "d\xc3\xa9" "e\r\n");
  CHECK(r.lines.front() == "a b?c?d??e");
  CHECK(sanitise("abc", 3) == "abc");
  CHECK(sanitise("abcdef", 5) == "ab...");
  CHECK(sanitise("a\nb", 10) == "a?b");
  CHECK(describe(Reply(250, "", "xy"), 5) == "25...");
}

TEST_CASE("ReplyParser: the same replies whatever the split") {
  const std::string input =
      "220-mx.example.com ESMTP\r\n220 hello\r\n250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
      "250 2.1.0 Ok\r\n550 5.1.1 <x@y>: unknown\r\n354 go\n250 2.0.0 queued\r\n";
  const Parsed whole = parse(input);
  REQUIRE_FALSE(whole.error);
  REQUIRE(whole.replies.size() == 6);
  for (size_t step = 1; step < 12; ++step) {
    const Parsed split = parse(input, step);
    REQUIRE_FALSE(split.error);
    REQUIRE(split.replies.size() == whole.replies.size());
    for (size_t i = 0; i < whole.replies.size(); ++i) {
      CHECK(split.replies[i].code == whole.replies[i].code);
      CHECK(split.replies[i].enhanced == whole.replies[i].enhanced);
      CHECK(split.replies[i].lines == whole.replies[i].lines);
    }
  }
  // A CR at the end of one piece and its LF at the start of the next.
  ReplyParser p;
  std::string_view a = "250 ok\r";
  auto r = p.next(a);
  REQUIRE(r);
  CHECK_FALSE(r->has_value());
  std::string_view b = "\n";
  r = p.next(b);
  REQUIRE(r);
  REQUIRE(r->has_value());
  CHECK((*r)->code == 250);
}
