// reply_test.cpp — Reply rendering.
#include <catch2/catch.hpp>

#include "mta/proto/reply.hpp"

using sluice::proto::Reply;

TEST_CASE("Reply: single line with enhanced code") {
  Reply r(250, "2.1.0", "Sender ok");
  CHECK(r.wire() == "250 2.1.0 Sender ok\r\n");
  CHECK(r.text() == "Sender ok");
  CHECK(r.positive());
  CHECK_FALSE(r.transient());
  CHECK_FALSE(r.permanent());
}

TEST_CASE("Reply: multi-line repeats the enhanced code on every line") {
  Reply r;
  r.code = 250;
  r.enhanced = "2.0.0";
  r.lines = {"mail.example.com", "PIPELINING", "SIZE 35000000"};
  CHECK(r.wire() ==
        "250-2.0.0 mail.example.com\r\n"
        "250-2.0.0 PIPELINING\r\n"
        "250 2.0.0 SIZE 35000000\r\n");
  CHECK(r.text() == "mail.example.com; PIPELINING; SIZE 35000000");
}

TEST_CASE("Reply: without enhanced code (greeting, EHLO)") {
  Reply r;
  r.code = 250;
  r.lines = {"mail.example.com", "8BITMIME"};
  CHECK(r.wire() == "250-mail.example.com\r\n250 8BITMIME\r\n");
  CHECK(Reply(220, "", "mail.example.com ESMTP").wire() == "220 mail.example.com ESMTP\r\n");
}

TEST_CASE("Reply: empty lines vector renders one line without text") {
  Reply r;
  r.code = 354;
  CHECK(r.wire() == "354\r\n");
  r.enhanced = "2.0.0";
  CHECK(r.wire() == "354 2.0.0\r\n");
  CHECK(r.text().empty());
}

TEST_CASE("Reply: empty text lines") {
  Reply r(250, "2.0.0", "");
  CHECK(r.wire() == "250 2.0.0\r\n");
  r.lines = {"", "x"};
  CHECK(r.wire() == "250-2.0.0\r\n250 2.0.0 x\r\n");
  r.enhanced.clear();
  r.lines = {"", ""};
  CHECK(r.wire() == "250-\r\n250\r\n");
}

TEST_CASE("Reply: CR, LF and NUL in text cannot add lines") {
  Reply r(501, "5.5.4", std::string("bad\r\n250 ok\0x", 13));
  CHECK(r.wire() == "501 5.5.4 bad  250 ok x\r\n");
}

TEST_CASE("Reply: classes and append_wire") {
  CHECK(Reply(421, "4.4.2", "timeout").transient());
  CHECK(Reply(554, "5.7.1", "no").permanent());
  CHECK(Reply(334, "", "").positive());
  std::string out = "x";
  Reply(221, "2.0.0", "Bye").append_wire(out);
  CHECK(out == "x221 2.0.0 Bye\r\n");
}
