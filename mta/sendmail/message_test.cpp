// message_test.cpp — line-end normalisation and the dot rule while
// streaming, the size limit, header/body split, folding of long lines, -t
// extraction with Bcc removal and the Resent- rule, and the added Date,
// Message-ID and From fields.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "mta/sendmail/message.hpp"

using namespace sluice::sendmail;
using Status = InputReader::Status;

namespace {

// Feeds `in` in pieces of `step` octets (0 = at once) and finishes.
std::pair<Status, std::string> read(std::string_view in, bool ignore_dots = true,
                                    uint64_t max = 1 << 20, size_t step = 0) {
  InputReader r(max, ignore_dots);
  Status s = Status::more;
  for (size_t pos = 0; pos < in.size() && s == Status::more;) {
    const size_t n = step == 0 ? in.size() : std::min(step, in.size() - pos);
    s = r.feed(in.substr(pos, n));
    pos += n;
  }
  if (s == Status::more) s = r.finish();
  return {s, r.take()};
}

std::vector<std::string> addresses(const Extracted& e) {
  std::vector<std::string> out;
  for (const auto& m : e.recipients) out.push_back(m.address());
  return out;
}

Stamp stamp() {
  Stamp s;
  s.unix_us = 1'769'435'761'123'456;  // 2026-01-26T13:56:01.123456Z, a Monday
  s.utc_offset_s = 3600;
  s.pid = 1234;
  s.random = 0x0123456789abcdefull;
  s.hostname = "mail.example.com";
  return s;
}

}  // namespace

TEST_CASE("line ends: LF, CRLF and lone CR all become CRLF, split anywhere") {
  const std::string in = "a\nb\r\nc\rd\r\re\n\nf";
  const std::string want = "a\r\nb\r\nc\r\nd\r\n\r\ne\r\n\r\nf\r\n";
  for (size_t step : {0, 1, 2, 3, 5}) {
    INFO(step);
    auto [s, out] = read(in, true, 1 << 20, step);
    CHECK(s == Status::done);
    CHECK(out == want);
  }
  CHECK(read("").second == "");
  CHECK(read("\r").second == "\r\n");
  CHECK(read("\r\n").second == "\r\n");
  CHECK(read("x\r").second == "x\r\n");
  CHECK(read("\n\r").second == "\r\n\r\n");
}

TEST_CASE("no bare CR survives any input") {
  const std::string in = "Subject: a\rb\r\r\nc\n\rd\r\r\r";
  for (size_t step : {0, 1, 2}) {
    auto [s, out] = read(in, true, 1 << 20, step);
    for (size_t i = 0; i < out.size(); ++i) {
      if (out[i] == '\r') CHECK((i + 1 < out.size() && out[i + 1] == '\n'));
      if (out[i] == '\n') CHECK((i > 0 && out[i - 1] == '\r'));
    }
  }
}

TEST_CASE("without -i a lone '.' line ends the input; with -i it is content") {
  for (size_t step : {0, 1}) {
    INFO(step);
    auto [s, out] = read("a\n.\nnot read\n", false, 1 << 20, step);
    CHECK(s == Status::done);
    CHECK(out == "a\r\n");
    CHECK(read(".\r\nrest", false, 1 << 20, step).second == "");
    CHECK(read("a\r.\rb", false, 1 << 20, step).second == "a\r\n");
    CHECK(read("a\n.", false, 1 << 20, step).second == "a\r\n");  // at the end, too
    CHECK(read("a\n..\n.x\n x\n", false, 1 << 20, step).second == "a\r\n..\r\n.x\r\n x\r\n");
    CHECK(read("a\n.\nb\n", true, 1 << 20, step).second == "a\r\n.\r\nb\r\n");
  }
}

TEST_CASE("the size limit is checked while reading, CRLF counted") {
  CHECK(read("abc\n", true, 5).first == Status::done);
  CHECK(read("abc\n", true, 5).second == "abc\r\n");
  CHECK(read("abcd\n", true, 5).first == Status::too_big);
  CHECK(read("abcdef", true, 5).first == Status::too_big);
  CHECK(read("abc", true, 4).first == Status::too_big);  // the added CRLF counts
  InputReader r(10, true);
  CHECK(r.feed("0123456789") == Status::more);
  CHECK(r.feed("x") == Status::too_big);
  CHECK(r.size() <= 10);
  CHECK(r.feed("more") == Status::too_big);  // stays failed
  CHECK(r.finish() == Status::too_big);
}

TEST_CASE("NUL is refused") {
  CHECK(read(std::string("a\0b\n", 4)).first == Status::nul);
  CHECK(read(std::string("ab\n\0", 4), true, 1 << 20, 1).first == Status::nul);
}

TEST_CASE("split: header fields, folding, body") {
  Message m = split("Subject: hi\r\n there\r\nTo: a@b\r\n\r\nbody\r\n\r\nmore\r\n");
  REQUIRE(m.header.size() == 2);
  CHECK(m.header[0].name == "Subject");
  CHECK(m.header[0].lines == "Subject: hi\r\n there\r\n");
  CHECK(m.header[0].value() == " hi there");
  CHECK(m.header[1].name == "To");
  CHECK(m.body == "body\r\n\r\nmore\r\n");
  CHECK(assemble(m) == "Subject: hi\r\n there\r\nTo: a@b\r\n\r\nbody\r\n\r\nmore\r\n");

  Message obs = split("Subject : x\r\nX-Empty:\r\n\r\n");
  REQUIRE(obs.header.size() == 2);
  CHECK(obs.header[0].name == "Subject");
  CHECK(obs.header[1].value() == "");
  CHECK(obs.body == "");
}

TEST_CASE("split: no header section, or one ended by a non-header line") {
  Message none = split("Hello there\r\nSubject: not a header\r\n");
  CHECK(none.header.empty());
  CHECK(none.body == "Hello there\r\nSubject: not a header\r\n");
  CHECK(assemble(none) == "\r\nHello there\r\nSubject: not a header\r\n");

  Message cont = split(" starts with space\r\n");
  CHECK(cont.header.empty());

  Message mbox = split("From alice Mon Jan 26 13:56:01 2026\r\nSubject: x\r\n");
  CHECK(mbox.header.empty());

  Message cut = split("Subject: x\r\nthis is body\r\n");
  REQUIRE(cut.header.size() == 1);
  CHECK(cut.body == "this is body\r\n");
  CHECK(assemble(cut) == "Subject: x\r\n\r\nthis is body\r\n");

  Message only = split("Subject: x\r\n");
  CHECK(only.body.empty());
  CHECK(assemble(only) == "Subject: x\r\n\r\n");
}

TEST_CASE("header names are case-insensitive") {
  Message m = split("sUbJeCt: x\r\nBCC: a@b\r\nbcc: c@d\r\n\r\n");
  CHECK(m.has("Subject"));
  CHECK(m.has("bcc"));
  CHECK_FALSE(m.has("Sub"));
  m.remove("Bcc");
  CHECK(m.header.size() == 1);
}

TEST_CASE("assemble keeps every line within 998 octets") {
  auto max_line = [](const std::string& s) {
    size_t longest = 0, start = 0;
    for (size_t i = s.find("\r\n"); i != std::string::npos; i = s.find("\r\n", start)) {
      longest = std::max(longest, i - start);
      start = i + 2;
    }
    return longest;
  };
  SECTION("a long header is folded at white space, its value unchanged") {
    std::string value;
    for (int i = 0; i < 300; ++i) value += " word" + std::to_string(i);
    Message m = split("Subject:" + value + "\r\n\r\nbody\r\n");
    const std::string out = assemble(m);
    CHECK(max_line(out) <= 998);
    Message again = split(out);
    REQUIRE(again.header.size() == 1);
    CHECK(again.header[0].value() == value);
    CHECK(again.body == "body\r\n");
  }
  SECTION("a header without white space is cut, continuing with a space") {
    const std::string value(3000, 'x');
    Message m = split("X-Long: " + value + "\r\n\r\n");
    const std::string out = assemble(m);
    CHECK(max_line(out) <= 998);
    Message again = split(out);
    REQUIRE(again.header.size() == 1);
    std::string v = again.header[0].value();
    v.erase(std::remove(v.begin(), v.end(), ' '), v.end());
    CHECK(v == value);
  }
  SECTION("a long body line is broken, UTF-8 kept whole") {
    std::string line;
    while (line.size() < 2500) line += "\xc3\xa9";  // é
    Message m = split("Subject: x\r\n\r\n" + line + "\r\nend\r\n");
    const std::string out = assemble(m);
    CHECK(max_line(out) <= 998);
    std::string joined = split(out).body;
    joined.erase(std::remove(joined.begin(), joined.end(), '\r'), joined.end());
    joined.erase(std::remove(joined.begin(), joined.end(), '\n'), joined.end());
    CHECK(joined == line + "end");
    // every piece is valid UTF-8: no piece starts with a continuation octet
    size_t start = out.find("\r\n\r\n") + 4;
    for (size_t i = out.find("\r\n", start); i != std::string::npos; i = out.find("\r\n", i + 2))
      if (i + 2 < out.size()) CHECK((static_cast<unsigned char>(out[i + 2]) & 0xC0) != 0x80);
  }
  SECTION("exactly 998 is untouched") {
    const std::string line(998, 'y');
    Message m = split("Subject: x\r\n\r\n" + line + "\r\n");
    CHECK(assemble(m) == "Subject: x\r\n\r\n" + line + "\r\n");
  }
}

TEST_CASE("-t: To, Cc and Bcc; Bcc removed; duplicates dropped") {
  Message m = split(
      "From: me@here.org\r\n"
      "To: Bob <bob@example.com>, carol@example.org\r\n"
      "Cc: bob@EXAMPLE.com,\r\n\tdave@example.net\r\n"
      "Bcc: secret@example.com\r\n"
      "Subject: hi\r\n"
      "\r\nbody\r\n");
  Extracted e = extract_recipients(m);
  CHECK(e.errors.empty());
  CHECK_FALSE(e.resent);
  CHECK(addresses(e) == std::vector<std::string>{"bob@example.com", "carol@example.org",
                                                 "dave@example.net", "secret@example.com"});
  CHECK_FALSE(m.has("Bcc"));
  const std::string out = assemble(m);
  CHECK(out.find("secret") == std::string::npos);
  CHECK(out.find("Cc: bob@EXAMPLE.com,\r\n\tdave@example.net\r\n") != std::string::npos);
}

TEST_CASE("-t: Resent- fields win when present; Resent-Bcc removed") {
  Message m = split(
      "To: original@example.com\r\n"
      "Resent-To: new@example.com\r\n"
      "resent-cc: other@example.com\r\n"
      "Resent-Bcc: hidden@example.com\r\n"
      "Bcc: old-hidden@example.com\r\n"
      "\r\n");
  Extracted e = extract_recipients(m);
  CHECK(e.resent);
  CHECK(addresses(e) ==
        std::vector<std::string>{"new@example.com", "other@example.com", "hidden@example.com"});
  CHECK_FALSE(m.has("Resent-Bcc"));
  CHECK_FALSE(m.has("Bcc"));
  CHECK(m.has("To"));
  CHECK(m.has("Resent-To"));
}

TEST_CASE("-t: groups, local names, errors named with their field") {
  Message m = split(
      "To: undisclosed-recipients:;\r\n"
      "Cc: root, John Smith, ok@example.com\r\n"
      "\r\n");
  Extracted e = extract_recipients(m);
  REQUIRE(e.errors.size() == 1);
  CHECK(e.errors[0].starts_with("Cc: John Smith: "));
  REQUIRE(e.recipients.size() == 2);
  CHECK(e.recipients[0].address() == "root");
  CHECK(e.recipients[1].address() == "ok@example.com");
}

TEST_CASE("-t: only the header section is read") {
  Message m = split("Subject: x\r\n\r\nTo: not@header.example\r\n");
  Extracted e = extract_recipients(m);
  CHECK(e.recipients.empty());
  CHECK(e.errors.empty());
}

TEST_CASE("make_message_id") {
  CHECK(make_message_id(stamp()) ==
        "<20260126135601.123456.4d2.0123456789abcdef@mail.example.com>");
  Stamp other = stamp();
  other.random = 1;
  CHECK(make_message_id(other) != make_message_id(stamp()));
}

TEST_CASE("format_mailbox quotes and encodes the name") {
  CHECK(format_mailbox("", "a@b.org") == "a@b.org");
  CHECK(format_mailbox("   ", "a@b.org") == "a@b.org");
  CHECK(format_mailbox("Cron Daemon", "a@b.org") == "Cron Daemon <a@b.org>");
  CHECK(format_mailbox(" Cron ", "a@b.org") == "Cron <a@b.org>");
  CHECK(format_mailbox("Smith, John", "a@b.org") == "\"Smith, John\" <a@b.org>");
  CHECK(format_mailbox("John Q. Public", "a@b.org") == "\"John Q. Public\" <a@b.org>");
  CHECK(format_mailbox("a\"b\\c", "a@b.org") == "\"a\\\"b\\\\c\" <a@b.org>");
  // No header injection: CR and LF become spaces.
  CHECK(format_mailbox("Evil\r\nBcc: victim@x.org", "a@b.org") ==
        "\"Evil  Bcc: victim@x.org\" <a@b.org>");
  // Non-ASCII: RFC 2047 B encoding of UTF-8.
  CHECK(format_mailbox("J\xc3\xb6rg", "a@b.org") == "=?UTF-8?B?SsO2cmc=?= <a@b.org>");
  CHECK(format_mailbox("J\xff", "a@b.org") == "J? <a@b.org>");  // invalid UTF-8 -> '?'
  // Long names: several words of at most 75 characters, folded, never
  // splitting a character.
  std::string name;
  for (int i = 0; i < 40; ++i) name += "\xe2\x82\xac";  // € (3 octets)
  const std::string v = format_mailbox(name, "a@b.org");
  size_t words = 0;
  for (size_t pos = 0; (pos = v.find("=?UTF-8?B?", pos)) != std::string::npos; ++words) {
    const size_t end = v.find("?=", pos + 10);
    REQUIRE(end != std::string::npos);
    CHECK(end + 2 - pos <= 75);
    CHECK((end - pos - 10) % 4 == 0);
    pos = end + 2;
  }
  CHECK(words == 3);  // 120 octets in pieces of at most 45 whole characters (45, 45, 30)
  CHECK(v.find("?=\r\n =?UTF-8?B?") != std::string::npos);
  CHECK(v.ends_with("?= <a@b.org>"));
  // 30 two-octet characters: 45 octets would cut one, so the first word takes 44.
  std::string e_acute;
  for (int i = 0; i < 30; ++i) e_acute += "\xc3\xa9";
  CHECK(format_mailbox(e_acute, "a@b.org") ==
        "=?UTF-8?B?w6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6k=?=\r\n"
        " =?UTF-8?B?w6nDqcOpw6nDqcOpw6nDqQ==?= <a@b.org>");
}

TEST_CASE("add_missing_headers adds Date, From, Message-ID only when missing") {
  Message m = split("Subject: x\r\n\r\nbody\r\n");
  add_missing_headers(m, stamp(), "alice@example.com", "Alice A");
  CHECK(assemble(m) ==
        "Subject: x\r\n"
        "Date: Mon, 26 Jan 2026 14:56:01 +0100\r\n"
        "From: Alice A <alice@example.com>\r\n"
        "Message-ID: <20260126135601.123456.4d2.0123456789abcdef@mail.example.com>\r\n"
        "\r\nbody\r\n");

  Message has = split("date: yesterday\r\nFROM: someone@else.org\r\nmessage-id: <x@y>\r\n\r\n");
  const std::string before = assemble(has);
  add_missing_headers(has, stamp(), "alice@example.com", "Alice");
  CHECK(assemble(has) == before);

  Message plain = split("");
  add_missing_headers(plain, stamp(), "alice@example.com", "");
  CHECK(assemble(plain).find("From: alice@example.com\r\n") != std::string::npos);
  CHECK(assemble(plain).ends_with(">\r\n\r\n"));
}
