// request_test.cpp — decode_request: both forms, and a FieldError naming the
// field for each kind of bad input.
#include <catch2/catch.hpp>

#include <string>

#include "api/request.hpp"

using namespace sluice::api;

namespace {
FieldError error_of(std::string_view body, size_t max_rcpt = 1000) {
  auto r = decode_request(body, Limits{max_rcpt});
  REQUIRE_FALSE(r.has_value());
  return r.error();
}
}  // namespace

TEST_CASE("raw form: content's line ends become CRLF") {
  auto r = decode_request(R"({"from":"a@x.test","to":["b@y.test"],"content":"Subject: hi\n\nbody\r\nmore\rend"})", {});
  REQUIRE(r);
  CHECK(r->raw);
  CHECK(r->from.address == "a@x.test");
  CHECK(r->recipients() == std::vector<std::string>{"b@y.test"});
  CHECK(r->content == "Subject: hi\r\n\r\nbody\r\nmore\r\nend\r\n");
}

TEST_CASE("structured form: every field") {
  auto r = decode_request(R"({"from":"Shop Ü <shop@x.test>","to":["b@y.test","C <c@y.test>"],
    "cc":["d@y.test"],"bcc":["e@y.test","b@y.test"],"subject":"Grüße","text":"t","html":"<p>h</p>",
    "headers":{"Reply-To":"r@x.test","X-Tag":"a b"},
    "attachments":[{"filename":"a.txt","content_type":"text/plain; charset=utf-8","content":"aGVs\nbG8="}]})", {});
  REQUIRE(r);
  CHECK_FALSE(r->raw);
  CHECK(r->from.name == "Shop Ü");
  CHECK(r->to[1].name == "C");
  CHECK(r->recipients() == std::vector<std::string>{"b@y.test", "c@y.test", "d@y.test", "e@y.test"});
  CHECK(r->subject == "Grüße");
  CHECK(r->headers.size() == 2);
  REQUIRE(r->attachments.size() == 1);
  CHECK(r->attachments[0].content == "hello");
  CHECK(r->attachments[0].content_type == "text/plain; charset=utf-8");
}

TEST_CASE("errors name the field") {
  const std::pair<std::string_view, std::string_view> table[] = {
      {"not json", ""},
      {"[1]", ""},
      {R"({"to":["b@y.test"],"text":"t"})", "from"},
      {R"({"from":7,"to":["b@y.test"],"text":"t"})", "from"},
      {R"({"from":"a@x.test","text":"t"})", "to"},
      {R"({"from":"a@x.test","to":"b@y.test","text":"t"})", "to"},
      {R"({"from":"a@x.test","to":["b@y.test","c@y.test","bad address"],"text":"t"})", "to[2]"},
      {R"({"from":"a@x.test","to":["b@y.test",5],"text":"t"})", "to[1]"},
      {R"({"from":"a@x.test","to":["postmaster"],"text":"t"})", "to[0]"},
      {R"({"from":"a@x.test","to":["@r.test:b@y.test"],"text":"t"})", "to[0]"},
      {R"({"from":"a@x.test","to":[],"text":"t"})", "to"},
      {R"({"from":"a@x.test","to":["b@y.test"]})", "text"},
      {R"({"from":"a@x.test","to":["b@y.test"],"text":1})", "text"},
      {R"({"from":"a@x.test","to":["b@y.test"],"subject":"a\r\nBcc: x@evil.test","text":"t"})", "subject"},
      {R"({"from":"a@x.test","to":["b@y.test"],"subject":"a\u0000b","text":"t"})", "subject"},
      {R"({"from":"a@x.test","to":["b@y.test"],"text":"t","headers":{"X-A":"v\nX-B: w"}})", "headers.X-A"},
      {R"({"from":"a@x.test","to":["b@y.test"],"text":"t","headers":{"Bcc":"x@y.test"}})", "headers.Bcc"},
      {R"({"from":"a@x.test","to":["b@y.test"],"text":"t","headers":{"X-A":3}})", "headers.X-A"},
      {R"({"from":"a@x.test","to":["b@y.test"],"text":"t","headers":{"X A":"v"}})", "headers"},
      {R"({"from":"a@x.test","to":["b@y.test"],"text":"t","headers":["X-A"]})", "headers"},
      {R"({"from":"a@x.test","to":["b@y.test"],"attachments":[{"filename":"f","content":"!!"}]})", "attachments[0].content"},
      {R"({"from":"a@x.test","to":["b@y.test"],"attachments":[{"content":"aGk="}]})", "attachments[0].filename"},
      {R"({"from":"a@x.test","to":["b@y.test"],"attachments":[{"filename":"../x","content":"aGk="}]})", "attachments[0].filename"},
      {R"({"from":"a@x.test","to":["b@y.test"],"attachments":[{"filename":"f","content_type":"text","content":"aGk="}]})", "attachments[0].content_type"},
      {R"({"from":"a@x.test","to":["b@y.test"],"attachments":[{"filename":"f","content_type":"multipart/mixed","content":"aGk="}]})", "attachments[0].content_type"},
      {R"({"from":"a@x.test","to":["b@y.test"],"attachments":[{"filename":"f","content":"aGk=","size":3}]})", "attachments[0].size"},
      {R"({"from":"a@x.test","to":["b@y.test"],"attachments":{}})", "attachments"},
      {R"({"from":"a@x.test","to":["b@y.test"],"content":"x","subject":"s"})", "subject"},
      {R"({"from":"a@x.test","to":["b@y.test"],"content":""})", "content"},
      {R"({"from":"a@x.test","to":["b@y.test"],"content":"a\u0000"})", "content"},
      {R"({"from":"A <a@x.test>","to":["b@y.test"],"content":"x"})", "from"},
      {R"({"from":"a@x.test","to":["b@y.test"],"text":"t","extra":1})", "extra"},
  };
  for (const auto& [body, field] : table) {
    INFO(body);
    const FieldError e = error_of(body);
    CHECK(e.field == field);
    CHECK_FALSE(e.message.empty());
  }
}

TEST_CASE("a line over 998 octets in content, and a word too long to fold") {
  const std::string long_line = std::string(999, 'a');
  CHECK(error_of(R"({"from":"a@x.test","to":["b@y.test"],"content":"S: x\n\n)" + long_line + "\"}").field == "content");
  CHECK(decode_request(R"({"from":"a@x.test","to":["b@y.test"],"content":"S: x\n\n)" + std::string(998, 'a') + "\"}", {}));
  CHECK(error_of(R"({"from":"a@x.test","to":["b@y.test"],"text":"t","subject":")" + std::string(851, 'a') + "\"}").field == "subject");
}

TEST_CASE("max_recipients counts to, cc and bcc once each") {
  const std::string body = R"({"from":"a@x.test","to":["b@y.test","c@y.test"],"cc":["b@y.test"],"bcc":["d@y.test"],"text":"t"})";
  CHECK(decode_request(body, Limits{3}));
  CHECK(error_of(body, 2).field == "to/cc/bcc");
  CHECK(error_of(R"({"from":"a@x.test","to":["b@y.test","c@y.test"],"content":"x"})", 1).field == "to");
}

TEST_CASE("base64_decode_lenient") {
  CHECK(base64_decode_lenient("aGVsbG8=").value() == "hello");
  CHECK(base64_decode_lenient("aGVsbG8").value() == "hello");
  CHECK(base64_decode_lenient("aGVs\r\nbG8=").value() == "hello");
  CHECK(base64_decode_lenient("").value().empty());
  CHECK_FALSE(base64_decode_lenient("aGVsbG8=="));
  CHECK_FALSE(base64_decode_lenient("a"));
  CHECK_FALSE(base64_decode_lenient("aG=Vs"));
  CHECK_FALSE(base64_decode_lenient("aGV$"));
}

TEST_CASE("smtputf8: a non-ASCII address") {
  auto r = decode_request(R"({"from":"a@x.test","to":["jürgen@y.test"],"text":"t"})", {});
  REQUIRE(r);
  CHECK(r->smtputf8());
}
