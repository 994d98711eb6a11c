// message_test.cpp — the per-message parts of signing (dkim/message.hpp):
// the header/body split while content streams in pieces, the author address
// in its many RFC 5322 shapes, tag lists, and recognising a signature of our
// own that verifies (the RFC 8463 Appendix A signature among them).
#include <catch2/catch.hpp>

#include <openssl/base64.h>

#include <string>
#include <vector>

#include "dkim/message.hpp"

using namespace sluice::dkim;

namespace {

std::vector<uint8_t> unbase64(std::string_view s) {
  std::vector<uint8_t> out(s.size());
  size_t n = 0;
  REQUIRE(EVP_DecodeBase64(out.data(), &n, out.size(), reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  out.resize(n);
  return out;
}

std::string hash_of(std::string_view body) {
  BodyHash h;
  h.feed(body);
  return h.finish_base64();
}

// RFC 8463 Appendix A, the signed message as it arrives.
constexpr std::string_view kSigned =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";

}  // namespace

TEST_CASE("Scan splits header and body the same whatever the pieces") {
  const std::string header = "Received: from x\r\n\tby y\r\nFrom: a@example.com\r\nSubject: hi\r\n";
  const std::string body = "line one  \r\n\r\nline\ttwo\r\n\r\n\r\n";
  const std::string message = header + "\r\n" + body;
  for (size_t piece : {1, 2, 3, 7, 64, 100000}) {
    INFO("piece " << piece);
    Scan s;
    for (size_t i = 0; i < message.size(); i += piece) s.feed(std::string_view(message).substr(i, piece));
    CHECK_FALSE(s.too_large());
    CHECK(s.fields() == std::vector<std::string>{"Received: from x\r\n\tby y\r\n", "From: a@example.com\r\n",
                                                 "Subject: hi\r\n"});
    CHECK(s.body_hash() == hash_of(body));
  }
}

TEST_CASE("Scan: no body, no header, a body that looks like a header, a huge header") {
  {
    Scan s;  // the header section alone, without the empty line
    s.feed("From: a@example.com\r\nSubject: x\r\n");
    CHECK(s.fields().size() == 2);
    CHECK(s.body_hash() == hash_of(""));
  }
  {
    Scan s;  // an empty line first: no fields, all body
    s.feed("\r\nFrom: not a field\r\n");
    CHECK(s.fields().empty());
    CHECK(s.body_hash() == hash_of("From: not a field\r\n"));
  }
  {
    Scan s;  // a field over 1 MiB: not signed, the body still found
    s.feed("X-Big: ");
    s.feed(std::string(kMaxHeaderSection, 'a'));
    s.feed("\r\nFrom: a@example.com\r\n\r\nbody\r\n");
    CHECK(s.too_large());
    CHECK(s.fields().empty());
    CHECK(s.body_hash() == hash_of("body\r\n"));
  }
}

TEST_CASE("author: the one From mailbox, or why there is none") {
  auto of = [](std::vector<std::string> fields) { return author(fields); };
  struct Case {
    std::string field;
    std::string want;  // address, or "!" + error
  };
  const Case cases[] = {
      {"From: joe@Example.COM\r\n", "joe@example.com"},
      {"From: Joe SixPack <joe@football.example.com>\r\n", "joe@football.example.com"},
      {"from:\"Doe, John\" <john@Example.org.>\r\n", "john@example.org"},
      {"From: (comment, with <x@evil.example>) jane@example.net (more)\r\n", "jane@example.net"},
      {"From: \"odd@quoted\" <a@b.example>\r\n", "a@b.example"},
      {"From: \"quoted local\"@example.com\r\n", "\"quoted local\"@example.com"},
      {"From: Joe\r\n <joe@example.com>\r\n", "joe@example.com"},
      {"From: a@example.com,\r\n", "a@example.com"},
      {"From: a@example.com, b@example.com\r\n", "!2 mailboxes in From"},
      {"From: undisclosed:;\r\n", "!a group in From"},
      {"From: Joe\r\n", "!no address in From"},
      {"From: <joe@[192.0.2.1]>\r\n", "!no domain name in From"},
      {"From: <a@b.example\r\n", "!an unterminated From field"},
      {"From: x@evil.example <a@b.example>\r\n", "!an address outside <> in From"},
      {"From: <a@b.example> <c@d.example>\r\n", "!a From mailbox with two <addresses>"},
  };
  for (const Case& c : cases) {
    INFO(c.field);
    auto a = of({"To: x@y\r\n", c.field});
    if (c.want.starts_with("!")) {
      REQUIRE_FALSE(a);
      CHECK(a.error() == c.want.substr(1));
    } else {
      REQUIRE(a);
      CHECK(*a == c.want);
    }
  }
  CHECK(of({"To: x@y\r\n"}).error() == "no From field");
  CHECK(of({"From: a@b.example\r\n", "From: c@d.example\r\n"}).error() == "2 From fields");
}

TEST_CASE("parse_tags: FWS removed; malformed lists refused") {
  auto t = parse_tags(" v=1; a = rsa-sha256 ;\r\n\th=from :\r\n to; b=ab cd\r\n ef;");
  REQUIRE(t);
  CHECK(t->at("v") == "1");
  CHECK(t->at("a") == "rsa-sha256");
  CHECK(t->at("h") == "from:to");
  CHECK(t->at("b") == "abcdef");
  CHECK_FALSE(parse_tags("v=1; v=2"));
  CHECK_FALSE(parse_tags("v=1; novalue; a=x"));
  CHECK_FALSE(parse_tags("v=1;; a=x"));
  CHECK_FALSE(parse_tags("=1"));
}

TEST_CASE("verifies: RFC 8463's own signature; ours; and not when anything differs") {
  auto key = Key::ed25519_seed(unbase64("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="));
  REQUIRE(key);
  Scan s;
  s.feed(kSigned);
  const std::vector<std::string> fields = s.fields();
  const std::string bh = s.body_hash();
  CHECK(verifies(fields, 0, bh, *key, "football.example.com", "brisbane"));
  CHECK(verifies(fields, 0, bh, *key, "Football.Example.com", "BRISBANE"));
  CHECK_FALSE(verifies(fields, 0, bh, *key, "example.com", "brisbane"));
  CHECK_FALSE(verifies(fields, 0, bh, *key, "football.example.com", "other"));
  CHECK_FALSE(verifies(fields, 0, hash_of("another body\r\n"), *key, "football.example.com", "brisbane"));
  CHECK_FALSE(verifies(fields, 1, bh, *key, "football.example.com", "brisbane"));  // not a signature
  std::vector<std::string> tampered = fields;
  tampered[3] = "Subject: Is dinner ready yet?\r\n";
  CHECK_FALSE(verifies(tampered, 0, bh, *key, "football.example.com", "brisbane"));

  // A signature sign() makes verifies too, also with b= not the last tag.
  std::vector<std::string> plain(fields.begin() + 1, fields.end());
  Request r{"football.example.com", "brisbane", 1528637909, header_list(plain, default_headers()), bh};
  auto field = sign(r, *key, plain);
  REQUIRE(field);
  std::vector<std::string> ours = plain;
  ours.insert(ours.begin(), *field);
  CHECK(verifies(ours, 0, bh, *key, "football.example.com", "brisbane"));
  ours[0].insert(ours[0].size() - 2, "; x=1");  // a tag added afterwards is caught
  CHECK_FALSE(verifies(ours, 0, bh, *key, "football.example.com", "brisbane"));

  // b= in the middle of the tags (another signer's layout).
  const std::string tmpl = "DKIM-Signature: v=1; a=ed25519-sha256; b=; c=relaxed/relaxed;\r\n"
                           " d=football.example.com; s=brisbane; h=from:to; bh=" + bh + "\r\n";
  auto raw = key->sign(signing_input(plain, std::vector<std::string>{"from", "to"}, tmpl));
  REQUIRE(raw);
  std::string b64(4 * (raw->size() + 2) / 3 + 1, '\0');
  b64.resize(EVP_EncodeBlock(reinterpret_cast<uint8_t*>(b64.data()),
                             reinterpret_cast<const uint8_t*>(raw->data()), raw->size()));
  ours[0] = tmpl;
  ours[0].insert(tmpl.find("b=;") + 2, b64);
  CHECK(verifies(ours, 0, bh, *key, "football.example.com", "brisbane"));
}
