// maildrop_test.cpp — the maildrop file format: exact encoding, round trips,
// and hostile files (every refusal the header comment promises).
#include <catch2/catch.hpp>

#include <string>

#include "mta/sendmail/maildrop.hpp"

using namespace sluice::sendmail;
using namespace std::string_literals;

namespace {

Maildrop sample() {
  Maildrop m;
  m.sender = "alice@example.com";
  m.recipients = {"bob@example.net", "\"carol smith\"@example.org", "dave@[192.0.2.7]"};
  m.message = "Subject: hi\r\n\r\nhello\r\n.\r\n..dots\r\n";
  return m;
}

std::string envelope(std::string_view rest) {
  return "SLUICE-MAILDROP 1\nsender a@b.org\nrcpt c@d.org\n" + std::string(rest);
}

std::string error_of(std::string_view file) {
  auto d = decode_maildrop(file);
  REQUIRE_FALSE(d);
  return d.error();
}

}  // namespace

TEST_CASE("encoding is exactly the documented format") {
  auto f = encode_maildrop(sample());
  REQUIRE(f);
  CHECK(*f ==
        "SLUICE-MAILDROP 1\n"
        "sender alice@example.com\n"
        "rcpt bob@example.net\n"
        "rcpt \"carol smith\"@example.org\n"
        "rcpt dave@[192.0.2.7]\n"
        "size 33\n"
        "\n"
        "Subject: hi\r\n\r\nhello\r\n.\r\n..dots\r\n");
}

TEST_CASE("round trip, including the null sender and an empty message") {
  Maildrop m = sample();
  auto f = encode_maildrop(m);
  REQUIRE(f);
  auto back = decode_maildrop(*f);
  REQUIRE(back);
  CHECK(*back == m);

  m.sender.clear();
  m.message.clear();
  f = encode_maildrop(m);
  REQUIRE(f);
  CHECK(f->starts_with("SLUICE-MAILDROP 1\nsender\nrcpt "));
  CHECK(f->ends_with("size 0\n\n"));
  back = decode_maildrop(*f);
  REQUIRE(back);
  CHECK(*back == m);
}

TEST_CASE("encode refuses what decode would refuse") {
  Maildrop m = sample();
  m.recipients.clear();
  CHECK_FALSE(encode_maildrop(m));
  m = sample();
  m.sender = "not an address";
  CHECK_FALSE(encode_maildrop(m));
  m = sample();
  m.recipients.push_back("bob@EXAMPLE.net");  // duplicate of bob@example.net
  CHECK(encode_maildrop(m).error().find("twice") != std::string::npos);
  m = sample();
  m.recipients.push_back("x@y.org\nrcpt evil@z.org");
  CHECK_FALSE(encode_maildrop(m));
  m = sample();
  m.message = "bare\nLF\r\n";
  CHECK_FALSE(encode_maildrop(m));
  m = sample();
  m.recipients.clear();
  for (size_t i = 0; i <= kMaxRecipients; ++i) m.recipients.push_back("u" + std::to_string(i) + "@x.org");
  CHECK_FALSE(encode_maildrop(m));
  m.recipients.pop_back();
  CHECK(encode_maildrop(m));
}

TEST_CASE("decode: magic and version") {
  CHECK(error_of("") == "the file ends inside the envelope");
  CHECK(error_of("hello\n") == "not a maildrop file");
  CHECK(error_of("SLUICE-MAILDROP\n") == "not a maildrop file");
  CHECK(error_of("SLUICE-MAILDROPX 1\n") == "not a maildrop file");
  CHECK(error_of("SLUICE-MAILDROP 2\nsender\n").find("unsupported maildrop version \"2\"") == 0);
  CHECK(error_of("SLUICE-MAILDROP 1") == "the file ends inside the envelope");
}

TEST_CASE("decode: envelope lines") {
  CHECK(error_of("SLUICE-MAILDROP 1\r\nsender\n").find("CR") != std::string::npos);
  CHECK(error_of("SLUICE-MAILDROP 1\nsender a@b.org\r\n").find("CR") != std::string::npos);
  CHECK(error_of("SLUICE-MAILDROP 1\nsender a\0@b.org\n"s).find("NUL") != std::string::npos);
  CHECK(error_of("SLUICE-MAILDROP 1\nrcpt a@b.org\n") == "expected the sender line");
  CHECK(error_of("SLUICE-MAILDROP 1\nsenders a@b.org\n") == "expected the sender line");
  CHECK(error_of("SLUICE-MAILDROP 1\nsender \n").find("invalid sender") == 0);
  CHECK(error_of("SLUICE-MAILDROP 1\nsender <a@b.org>\n").find("invalid sender") == 0);
  CHECK(error_of("SLUICE-MAILDROP 1\nsender a@b.org\nsize 0\n\n") == "no recipients");
  CHECK(error_of(envelope("rcpt\n")).find("invalid recipient") == 0);
  CHECK(error_of(envelope("rcpt x\n")).find("invalid recipient") == 0);
  CHECK(error_of(envelope("rcpt  c@d.org\n")).find("invalid recipient") == 0);
  CHECK(error_of(envelope("envid x\n")) == "expected a rcpt or the size line");
  CHECK(error_of(envelope("size\n")) == "expected a rcpt or the size line");
  CHECK(error_of(envelope("size 01\n\nx")).find("invalid size") == 0);
  CHECK(error_of(envelope("size -1\n\n")).find("invalid size") == 0);
  CHECK(error_of(envelope("size 99999999999999999999999\n\n")).find("invalid size") == 0);
  CHECK(error_of(envelope("size 0\nx\n")) == "expected the empty line after the size");
  CHECK(error_of(envelope("size 0\n")) == "the file ends inside the envelope");
  CHECK(error_of(envelope("rcpt " + std::string(2000, 'a') + "@b.org\n"))
            .find("longer than 1024") != std::string::npos);
  CHECK(error_of("SLUICE-MAILDROP 1\n" + std::string(5000, 'x')).find("longer") !=
        std::string::npos);
}

TEST_CASE("decode: size must match, message must be clean CRLF") {
  CHECK(error_of(envelope("size 5\n\nab\r\n")) == "size says 5 octets but 4 follow");
  CHECK(error_of(envelope("size 3\n\nab\r\n")) == "size says 3 octets but 4 follow");
  CHECK(decode_maildrop(envelope("size 4\n\nab\r\n")));
  CHECK(error_of(envelope("size 3\n\nab\n")).find("LF without CR") == 0);
  CHECK(error_of(envelope("size 4\n\na\rb\n")).find("CR without LF") == 0);
  CHECK(error_of(envelope("size 3\n\nab\r")).find("CR without LF") == 0);
  CHECK(error_of(envelope("size 2\n\nab")) == "the message does not end with CRLF");
  CHECK(error_of(envelope("size 4\n\na\0\r\n"s)).find("NUL") == 0);
  const std::string ok_line(998, 'x'), long_line(999, 'x');
  CHECK(decode_maildrop(envelope("size 1000\n\n" + ok_line + "\r\n")));
  CHECK(error_of(envelope("size 1001\n\n" + long_line + "\r\n")).find("longer than 998") != std::string::npos);
}

TEST_CASE("decode: duplicates dropped, recipients capped") {
  auto d = decode_maildrop(envelope("rcpt C@D.ORG\nrcpt c@D.org\nrcpt C@d.org\nsize 0\n\n"));
  REQUIRE(d);
  // c@d.org and C@D.ORG differ in the local part; the domain case does not count.
  CHECK(d->recipients == std::vector<std::string>{"c@d.org", "C@D.ORG"});

  std::string many = "SLUICE-MAILDROP 1\nsender\n";
  for (size_t i = 0; i < kMaxRecipients; ++i) many += "rcpt u" + std::to_string(i) + "@x.org\n";
  auto at_limit = decode_maildrop(many + "size 0\n\n");
  REQUIRE(at_limit);
  CHECK(at_limit->recipients.size() == kMaxRecipients);
  CHECK(error_of(many + "rcpt one-more@x.org\nsize 0\n\n").find("more than 10000") == 0);
  // Repeating one address many times is not "many recipients".
  std::string repeated = "SLUICE-MAILDROP 1\nsender\n";
  for (size_t i = 0; i < 2 * kMaxRecipients; ++i) repeated += "rcpt same@x.org\n";
  auto r = decode_maildrop(repeated + "size 0\n\n");
  REQUIRE(r);
  CHECK(r->recipients.size() == 1);
}

TEST_CASE("decode never mistakes the message for the envelope") {
  // A message whose text looks like envelope lines stays message.
  Maildrop m = sample();
  m.message = "rcpt evil@example.com\r\nsize 0\r\n\r\n";
  auto f = encode_maildrop(m);
  REQUIRE(f);
  auto back = decode_maildrop(*f);
  REQUIRE(back);
  CHECK(back->recipients == sample().recipients);
  CHECK(back->message == m.message);
}

TEST_CASE("file names") {
  const std::string n = maildrop_file_name(1'769'435'761'123'456, 1234, 0xfedcba9876543210ull);
  CHECK(n == "6494addfea080000004d2fedcba9876543210");
  CHECK(n.size() == 37);
  CHECK(valid_maildrop_file_name(n));
  CHECK(maildrop_file_name(1, 1, 1) < maildrop_file_name(2, 0, 0));  // sorted by time
  CHECK_FALSE(valid_maildrop_file_name(""));
  CHECK_FALSE(valid_maildrop_file_name(n + ".tmp"));
  CHECK_FALSE(valid_maildrop_file_name(".hidden"));
  CHECK_FALSE(valid_maildrop_file_name("../x"));
  CHECK_FALSE(valid_maildrop_file_name(std::string(65, 'a')));
}
