// command_test.cpp — parse_command, parse_path and the grammar helpers.
#include <catch2/catch.hpp>

#include <string>

#include "mta/proto/command.hpp"

using namespace sluice::proto;

namespace {

struct Bad {
  std::string line;
  int code;
  const char* enhanced;
};

std::string rep(size_t n, char c = 'a') { return std::string(n, c); }

// A domain of exactly n octets made of 63-octet labels ("aaa...a.bbb...").
std::string domain_of(size_t n) {
  std::string d;
  char c = 'a';
  while (d.size() < n) {
    if (!d.empty()) d += '.';
    size_t left = n - d.size();
    size_t len = std::min<size_t>(63, left);
    // Never leave a 1-octet remainder that would need an empty label.
    if (left > 63 && left - 63 < 2) len = 61;
    d += std::string(len, c);
    c = c == 'z' ? 'a' : static_cast<char>(c + 1);
  }
  return d;
}

}  // namespace

TEST_CASE("parse_command: valid commands") {
  struct Good {
    std::string line;
    Verb verb;
    std::string arg;
  };
  const Good table[] = {
      {"EHLO mail.example.com", Verb::ehlo, "mail.example.com"},
      {"ehlo mail.example.com", Verb::ehlo, "mail.example.com"},
      {"EhLo [192.0.2.1]", Verb::ehlo, "[192.0.2.1]"},
      {"EHLO [IPv6:2001:db8::1]", Verb::ehlo, "[IPv6:2001:db8::1]"},
      {"EHLO 192.0.2.1", Verb::ehlo, "192.0.2.1"},       // unbracketed IP: seen in the wild
      {"EHLO my_laptop", Verb::ehlo, "my_laptop"},       // underscore: seen in the wild
      {"EHLO localhost   ", Verb::ehlo, "localhost"},    // trailing whitespace ignored
      {"EHLO  \tpadded", Verb::ehlo, "padded"},
      {"HELO two words", Verb::helo, "two words"},       // Postfix collapses them too
      {"EHLO b\xc3\xbc" "cher.example", Verb::ehlo, "b\xc3\xbc" "cher.example"},
      {"HELO x", Verb::helo, "x"},
      {"DATA", Verb::data, ""},
      {"data", Verb::data, ""},
      {"DATA  ", Verb::data, ""},
      {"RSET", Verb::rset, ""},
      {"QUIT", Verb::quit, ""},
      {"STARTTLS", Verb::starttls, ""},
      {"StartTLS", Verb::starttls, ""},
      {"NOOP", Verb::noop, ""},
      {"NOOP hello there", Verb::noop, "hello there"},
      {"HELP", Verb::help, ""},
      {"HELP MAIL", Verb::help, "MAIL"},
      {"VRFY postmaster", Verb::vrfy, "postmaster"},
      {"EXPN staff", Verb::expn, "staff"},
      {"AUTH PLAIN dGVzdA==", Verb::auth, "PLAIN dGVzdA=="},
      {"AUTH LOGIN", Verb::auth, "LOGIN"},
      {"AUTH PLAIN =", Verb::auth, "PLAIN ="},
      {"BDAT 1000", Verb::bdat, "1000"},
      {"BDAT 0 LAST", Verb::bdat, "0 LAST"},
      {"bdat 42 last", Verb::bdat, "42 last"},
      {"BDAT 18446744073709551615 LAST", Verb::bdat, "18446744073709551615 LAST"},
  };
  for (const auto& g : table) {
    INFO(g.line);
    auto c = parse_command(g.line);
    REQUIRE(c.has_value());
    CHECK(c->verb == g.verb);
    CHECK(c->arg == g.arg);
    CHECK(c->params.empty());
    CHECK(c->path.empty());
  }
}

TEST_CASE("parse_command: invalid commands") {
  const Bad table[] = {
      {"", 500, "5.5.2"},
      {"   ", 500, "5.5.2"},
      {"FOO", 500, "5.5.2"},
      {"GET / HTTP/1.1", 500, "5.5.2"},
      {"EHLOX a", 500, "5.5.2"},
      {" EHLO a", 500, "5.5.2"},
      {"MAILFROM:<a@b>", 500, "5.5.2"},
      {std::string("NOOP a\0b", 8), 500, "5.5.2"},
      {"NOOP a\rb", 500, "5.5.2"},
      {"NOOP a\nb", 500, "5.5.2"},
      {"DATA\r", 500, "5.5.2"},
      {"TURN", 502, "5.5.1"},
      {"ETRN example.com", 502, "5.5.1"},
      {"SEND FROM:<a@b>", 502, "5.5.1"},
      {"EHLO", 501, "5.5.4"},
      {"EHLO ", 501, "5.5.4"},
      {"HELO", 501, "5.5.4"},
      {"HELO \t ", 501, "5.5.4"},
      {"EHLO a\x01" "b", 501, "5.5.4"},
      {"EHLO a\x7f", 501, "5.5.4"},
      {"DATA x", 501, "5.5.4"},
      {"RSET now", 501, "5.5.4"},
      {"QUIT please", 501, "5.5.4"},
      {"STARTTLS x", 501, "5.5.4"},
      {"VRFY", 501, "5.5.4"},
      {"EXPN ", 501, "5.5.4"},
      {"AUTH", 501, "5.5.4"},
      {"BDAT", 501, "5.5.4"},
      {"BDAT x", 501, "5.5.4"},
      {"BDAT -1", 501, "5.5.4"},
      {"BDAT 10 FIRST", 501, "5.5.4"},
      {"BDAT 10 LAST x", 501, "5.5.4"},
      {"BDAT 10LAST", 501, "5.5.4"},
      {"BDAT 18446744073709551616", 501, "5.5.4"},
      {"MAIL", 501, "5.5.4"},
      {"MAIL FROM", 501, "5.5.4"},
      {"MAIL TO:<a@b>", 501, "5.5.4"},
      {"MAIL FROM :<a@b>", 501, "5.5.4"},
      {"MAIL FROM:a@b", 501, "5.5.4"},          // no angle brackets
      {"MAIL FROM: a@b", 501, "5.5.4"},
      {"MAIL FROM:<a@b", 501, "5.5.4"},
      {"MAIL FROM:", 501, "5.5.4"},
      {"RCPT TO:", 501, "5.5.4"},
      {"RCPT FROM:<a@b>", 501, "5.5.4"},
      {"RCPT TO:user@example.com", 501, "5.5.4"},
      {"RCPT TO:<>", 501, "5.1.3"},
      {"MAIL FROM:<a@b>SIZE=10", 501, "5.5.4"},
      {"MAIL FROM:<a@b> SIZE=", 501, "5.5.4"},
      {"MAIL FROM:<a@b> =10", 501, "5.5.4"},
      {"MAIL FROM:<a@b> -SIZE=10", 501, "5.5.4"},
      {"MAIL FROM:<a@b> SI_ZE=10", 501, "5.5.4"},
      {"MAIL FROM:<a@b> SIZE=1=0", 501, "5.5.4"},
      {"MAIL FROM:<a@b> SIZE=10 size=20", 501, "5.5.4"},   // duplicate
      {"MAIL FROM:<a@b> BODY=8BITMIME BODY=7BIT", 501, "5.5.4"},
      {"MAIL FROM:<a@b> X=\xc3", 501, "5.5.4"},         // truncated UTF-8
      {"MAIL FROM:<a@b> X=\x7f", 501, "5.5.4"},
      {"MAIL FROM:<a@b>>", 501, "5.5.4"},
      {"MAIL FROM:<a b@c>", 501, "5.1.7"},
      {"MAIL FROM:<Postmaster>", 501, "5.1.7"},          // only a forward-path may omit the domain
      {"RCPT TO:<a@>", 501, "5.1.3"},
  };
  for (const auto& b : table) {
    INFO(b.line);
    auto c = parse_command(b.line);
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().code == b.code);
    CHECK(c.error().enhanced == b.enhanced);
    CHECK_FALSE(c.error().lines.empty());
    CHECK_FALSE(c.error().wire().empty());
  }
}

TEST_CASE("parse_command: HELO/EHLO usage text") {
  CHECK(parse_command("EHLO").error().text() == "Syntax: EHLO hostname");
  CHECK(parse_command("HELO").error().text() == "Syntax: HELO hostname");
  CHECK(parse_command("XYZZY").error().text() == "Command unrecognized");
}

TEST_CASE("parse_command: MAIL and RCPT") {
  struct Good {
    std::string line;
    Verb verb;
    std::string local, domain;
  };
  const Good table[] = {
      {"MAIL FROM:<user@example.com>", Verb::mail, "user", "example.com"},
      {"mail from:<user@example.com>", Verb::mail, "user", "example.com"},
      {"MAIL From:<user@example.com>", Verb::mail, "user", "example.com"},
      {"MAIL FROM: <user@example.com>", Verb::mail, "user", "example.com"},   // Postfix tolerates
      {"MAIL FROM:   <user@example.com>  ", Verb::mail, "user", "example.com"},
      {"MAIL FROM:<>", Verb::mail, "", ""},
      {"MAIL FROM: <>", Verb::mail, "", ""},
      {"RCPT TO:<user@example.com>", Verb::rcpt, "user", "example.com"},
      {"rcpt to:<User.Name+tag@Sub.Example.COM>", Verb::rcpt, "User.Name+tag", "Sub.Example.COM"},
      {"RCPT TO: <user@example.com>", Verb::rcpt, "user", "example.com"},
      {"RCPT TO:<Postmaster>", Verb::rcpt, "Postmaster", ""},
      {"RCPT TO:<postmaster>", Verb::rcpt, "postmaster", ""},
      {"RCPT TO:<POSTMASTER>", Verb::rcpt, "POSTMASTER", ""},
      {"RCPT TO:<Postmaster@example.com>", Verb::rcpt, "Postmaster", "example.com"},
      {"RCPT TO:<@relay1.example,@relay2.example:user@example.com>", Verb::rcpt, "user",
       "example.com"},
      {"MAIL FROM:<@a.example:user@example.com>", Verb::mail, "user", "example.com"},
      {"RCPT TO:<\"john doe\"@example.com>", Verb::rcpt, "\"john doe\"", "example.com"},
      {"RCPT TO:<\"a>b\"@example.com>", Verb::rcpt, "\"a>b\"", "example.com"},
      {"RCPT TO:<\"a\\\"b\"@example.com>", Verb::rcpt, "\"a\\\"b\"", "example.com"},
      {"RCPT TO:<user@[192.0.2.1]>", Verb::rcpt, "user", "[192.0.2.1]"},
      {"RCPT TO:<user@[IPv6:2001:db8::1]>", Verb::rcpt, "user", "[IPv6:2001:db8::1]"},
      {"RCPT TO:<user%other@example.com>", Verb::rcpt, "user%other", "example.com"},
      {"RCPT TO:<host!user@example.com>", Verb::rcpt, "host!user", "example.com"},
      {"RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>",
       Verb::rcpt, "\xe7\x94\xa8\xe6\x88\xb7", "\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a"},
  };
  for (const auto& g : table) {
    INFO(g.line);
    auto c = parse_command(g.line);
    REQUIRE(c.has_value());
    CHECK(c->verb == g.verb);
    CHECK(c->path.local == g.local);
    CHECK(c->path.domain == g.domain);
    CHECK(c->params.empty());
  }
}

TEST_CASE("parse_command: esmtp parameters") {
  auto c = parse_command(
      "MAIL FROM:<a@example.com> SIZE=12345 body=8BITMIME SMTPUTF8  RET=HDRS ENVID=x+2Bid");
  REQUIRE(c);
  REQUIRE(c->params.size() == 5);
  CHECK(c->params[0].keyword == "SIZE");
  CHECK(c->params[0].value == "12345");
  CHECK(c->params[1].keyword == "BODY");
  CHECK(c->params[1].value == "8BITMIME");
  CHECK(c->params[2].keyword == "SMTPUTF8");
  CHECK_FALSE(c->params[2].value.has_value());
  CHECK(c->params[3].keyword == "RET");
  CHECK(c->params[4].value == "x+2Bid");
  REQUIRE(c->find("SIZE"));
  CHECK(*c->find("SIZE")->value == "12345");
  CHECK(c->find("smtputf8") != nullptr);
  CHECK(c->find("AUTH") == nullptr);

  // RFC 8689 §2: "REQUIRETLS" on MAIL, a keyword without a value (which
  // parameters the session accepts, and when, is its own business).
  auto rt = parse_command("MAIL FROM:<a@example.com> SIZE=10 requiretls");
  REQUIRE(rt);
  REQUIRE(rt->params.size() == 2);
  CHECK(rt->params[1].keyword == "REQUIRETLS");
  CHECK_FALSE(rt->params[1].value.has_value());
  CHECK(rt->find("REQUIRETLS") != nullptr);
  auto rt_value = parse_command("MAIL FROM:<a@example.com> REQUIRETLS=no");
  REQUIRE(rt_value);
  CHECK(rt_value->find("REQUIRETLS")->value == "no");
  CHECK_FALSE(parse_command("MAIL FROM:<a@example.com> REQUIRETLS REQUIRETLS"));  // duplicate

  auto r = parse_command("RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com");
  REQUIRE(r);
  REQUIRE(r->params.size() == 2);
  CHECK(r->find("NOTIFY")->value == "SUCCESS,FAILURE");
  CHECK(r->find("ORCPT")->value == "rfc822;b@example.com");

  auto u = parse_command("MAIL FROM:<a@b> X-UTF=\xc3\xa9t\xc3\xa9 AUTH=<>");
  REQUIRE(u);
  CHECK(u->find("X-UTF")->value == "\xc3\xa9t\xc3\xa9");
  CHECK(u->find("AUTH")->value == "<>");

  auto d = parse_command("MAIL FROM:<a@b> 8BIT-X");
  REQUIRE(d);
  CHECK(d->params[0].keyword == "8BIT-X");

  // The parser does not judge which keywords are acceptable.
  auto x = parse_command("RCPT TO:<a@b> FOO=bar");
  REQUIRE(x);
  CHECK(x->find("FOO"));
}

TEST_CASE("parse_path: valid paths") {
  struct Good {
    std::string text;
    bool allow_null;
    std::string str;
  };
  const Good table[] = {
      {"<>", true, ""},
      {"<a@b>", true, "a@b"},
      {"<a@b>", false, "a@b"},
      {"<Postmaster>", false, "Postmaster"},
      {"<pOsTmAsTeR>", false, "pOsTmAsTeR"},
      {"<\"\"@example.com>", false, "\"\"@example.com"},
      {"<\"a@b\"@example.com>", false, "\"a@b\"@example.com"},
      {"<\"a b\\ c\"@example.com>", false, "\"a b\\ c\"@example.com"},
      {"<\"\xc3\xa9\"@example.com>", false, "\"\xc3\xa9\"@example.com"},
      {"<!#$%&'*+-/=?^_`{|}~@example.com>", false, "!#$%&'*+-/=?^_`{|}~@example.com"},
      {"<a.b.c@example.com>", false, "a.b.c@example.com"},
      {"<a@1.2.3.4>", false, "a@1.2.3.4"},   // a numeric Domain, not a literal
      {"<a@x-y.example>", false, "a@x-y.example"},
      {"<a@localhost>", false, "a@localhost"},
      {"<a@[IPv6:::1]>", false, "a@[IPv6:::1]"},
      {"<a@[ipv6:::ffff:192.0.2.1]>", false, "a@[ipv6:::ffff:192.0.2.1]"},
      {"<@x.example:a@b>", false, "a@b"},
      {"<@x.example,@y.example:a@b>", false, "a@b"},
      {"<\xc3\xb1o\xc3\xb1o@espa\xc3\xb1" "a.example>", false,
       "\xc3\xb1o\xc3\xb1o@espa\xc3\xb1" "a.example"},
      {"<a@xn--bcher-kva.example>", false, "a@xn--bcher-kva.example"},
  };
  for (const auto& g : table) {
    INFO(g.text);
    auto m = parse_path(g.text, g.allow_null);
    REQUIRE(m.has_value());
    CHECK(m->str() == g.str);
    // A parsed mailbox re-parses to itself.
    auto again = parse_path("<" + m->str() + ">", g.allow_null);
    REQUIRE(again.has_value());
    CHECK(again->local == m->local);
    CHECK(again->domain == m->domain);
  }
}

TEST_CASE("parse_path: invalid paths") {
  struct BadPath {
    std::string text;
    bool allow_null;
    int code;
    const char* enhanced;
  };
  const BadPath table[] = {
      {"a@b", true, 501, "5.5.4"},
      {"<a@b", true, 501, "5.5.4"},
      {"", false, 501, "5.5.4"},
      {"<>", false, 501, "5.1.3"},
      {"<Postmaster>", true, 501, "5.1.7"},
      {"<user>", false, 501, "5.1.3"},
      {"<@>", false, 501, "5.1.3"},
      {"<a@>", false, 501, "5.1.3"},
      {"<@b>", false, 501, "5.1.3"},
      {"<.a@b>", false, 501, "5.1.3"},
      {"<a.@b>", false, 501, "5.1.3"},
      {"<a..b@c>", false, 501, "5.1.3"},
      {"<a b@c>", false, 501, "5.1.3"},
      {"<a(b)@c>", false, 501, "5.1.3"},
      {"<a\"b@c>", false, 501, "5.1.3"},
      {"<a@b.>", false, 501, "5.1.3"},     // trailing dot
      {"<a@.b>", false, 501, "5.1.3"},
      {"<a@b..c>", false, 501, "5.1.3"},   // empty label
      {"<a@-b.c>", false, 501, "5.1.3"},
      {"<a@b-.c>", false, 501, "5.1.3"},
      {"<a@b_c.d>", false, 501, "5.1.3"},
      {"<a@b@c>", false, 501, "5.1.3"},
      {"<\"a@b>", false, 501, "5.1.3"},    // unterminated quote
      {"<\"a\"b@c>", false, 501, "5.1.3"},
      {"<\"a\nb\"@c>", false, 501, "5.1.3"},
      {"<\"a\rb\"@c>", false, 501, "5.1.3"},
      {std::string("<\"a\0b\"@c>", 9), false, 501, "5.1.3"},
      {"<\"a\\\x01\"@c>", false, 501, "5.1.3"},
      {"<\"a\tb\"@c>", false, 501, "5.1.3"},
      {"<\xff@example.com>", false, 501, "5.1.3"},          // not UTF-8
      {"<\xc3@example.com>", false, 501, "5.1.3"},          // truncated UTF-8
      {"<\xed\xa0\x80@example.com>", false, 501, "5.1.3"},  // surrogate
      {"<\xc0\xaf@example.com>", false, 501, "5.1.3"},      // overlong
      {"<a@[1.2.3]>", false, 501, "5.1.3"},
      {"<a@[1.2.3.256]>", false, 501, "5.1.3"},
      {"<a@[1.2.3.4.5]>", false, 501, "5.1.3"},
      {"<a@[IPv6:1.2.3.4]>", false, 501, "5.1.3"},
      {"<a@[IPv6:2001:db8::1::2]>", false, 501, "5.1.3"},
      {"<a@[IPv6:fe80::1%eth0]>", false, 501, "5.1.3"},
      {"<a@[2001:db8::1]>", false, 501, "5.1.3"},
      {"<a@[x-tag:content]>", false, 501, "5.1.3"},        // general literal refused
      {"<a@[]>", false, 501, "5.1.3"},
      {"<a@[1.2.3.4>", false, 501, "5.1.3"},
      {"<@:a@b>", false, 501, "5.1.3"},
      {"<@x,:a@b>", false, 501, "5.1.3"},
      {"<@x a@b>", false, 501, "5.1.3"},
      {"<@[1.2.3.4]:a@b>", false, 501, "5.1.3"},           // At-domain is a Domain only
      {"<x@y:a@b>", false, 501, "5.1.3"},
      {"<a@b>", true, 0, ""},  // sentinel: valid, skipped below
  };
  for (const auto& b : table) {
    if (b.code == 0) continue;
    INFO(b.text);
    auto m = parse_path(b.text, b.allow_null);
    REQUIRE_FALSE(m.has_value());
    CHECK(m.error().code == b.code);
    CHECK(m.error().enhanced == b.enhanced);
  }
}

TEST_CASE("Mailbox: str and utf8") {
  CHECK(Mailbox{}.str() == "");
  CHECK(Mailbox{}.empty());
  CHECK(Mailbox{"a", "b"}.str() == "a@b");
  CHECK(Mailbox{"Postmaster", ""}.str() == "Postmaster");
  CHECK_FALSE(Mailbox{"Postmaster", ""}.empty());
  CHECK_FALSE(Mailbox{"a", "b"}.utf8());
  CHECK(Mailbox{"\xc3\xa9", "b"}.utf8());
  CHECK(Mailbox{"a", "b\xc3\xa9"}.utf8());
}

TEST_CASE("to_string(Verb)") {
  CHECK(to_string(Verb::ehlo) == "EHLO");
  CHECK(to_string(Verb::starttls) == "STARTTLS");
  CHECK(to_string(Verb::auth) == "AUTH");
  CHECK(to_string(Verb::bdat) == "BDAT");
}

TEST_CASE("parse_bdat") {
  CHECK(parse_bdat("100")->size == 100);
  CHECK_FALSE(parse_bdat("100")->last);
  CHECK(parse_bdat("0 LAST")->last);
  CHECK(parse_bdat("7  last")->size == 7);
  CHECK_FALSE(parse_bdat(""));
  CHECK_FALSE(parse_bdat("LAST"));
  CHECK_FALSE(parse_bdat("1 2"));
  CHECK_FALSE(parse_bdat("+1"));
  CHECK_FALSE(parse_bdat("99999999999999999999"));
}

TEST_CASE("valid_domain and valid_address_literal") {
  CHECK(valid_domain("example.com"));
  CHECK(valid_domain("a"));
  CHECK(valid_domain("1-2.3"));
  CHECK(valid_domain("b\xc3\xbc" "cher.example"));
  CHECK_FALSE(valid_domain("b\xc3\xbc" "cher.example", false));
  CHECK_FALSE(valid_domain(""));
  CHECK_FALSE(valid_domain("."));
  CHECK_FALSE(valid_domain("example.com."));
  CHECK_FALSE(valid_domain("-a.com"));
  CHECK_FALSE(valid_domain("[1.2.3.4]"));
  CHECK(valid_address_literal("[1.2.3.4]"));
  CHECK(valid_address_literal("[IPv6:::]"));
  CHECK(valid_address_literal("[IPv6:2001:db8:0:0:0:0:0:1]"));
  CHECK_FALSE(valid_address_literal("1.2.3.4"));
  CHECK_FALSE(valid_address_literal("[1.2.3.4"));
  CHECK_FALSE(valid_address_literal("[IPv6:" + rep(60, '1') + "]"));
}

TEST_CASE("limits: label 63, domain 255") {
  CHECK(valid_domain(rep(62) + ".com"));
  CHECK(valid_domain(rep(63) + ".com"));
  CHECK_FALSE(valid_domain(rep(64) + ".com"));
  REQUIRE(domain_of(254).size() == 254);
  REQUIRE(domain_of(255).size() == 255);
  REQUIRE(domain_of(256).size() == 256);
  CHECK(valid_domain(domain_of(254)));
  CHECK(valid_domain(domain_of(255)));
  CHECK_FALSE(valid_domain(domain_of(256)));
  // A U-label is limited by the domain length only.
  std::string ulabel;
  for (int i = 0; i < 30; ++i) ulabel += "\xc3\xa9";
  CHECK(valid_domain(ulabel + ".example"));

  // In a path: label 63 fine, 64 a syntax error; a domain over 255 is 553.
  CHECK(parse_path("<a@" + rep(63, 'b') + ".com>", false));
  CHECK(parse_path("<a@" + rep(64, 'b') + ".com>", false).error().code == 501);
  auto big = parse_path("<a@" + domain_of(256) + ">", false);
  REQUIRE_FALSE(big);
  CHECK(big.error().code == 553);
  CHECK(big.error().enhanced == "5.1.3");
}

TEST_CASE("limits: local part 64") {
  for (bool mail : {true, false}) {
    const std::string verb = mail ? "MAIL FROM:" : "RCPT TO:";
    const std::string enh = mail ? "5.1.7" : "5.1.3";
    CHECK(parse_command(verb + "<" + rep(63) + "@example.com>"));
    CHECK(parse_command(verb + "<" + rep(64) + "@example.com>"));
    auto c = parse_command(verb + "<" + rep(65) + "@example.com>");
    REQUIRE_FALSE(c);
    CHECK(c.error().code == 553);
    CHECK(c.error().enhanced == enh);
    // Quoted local parts count their quotes.
    CHECK(parse_command(verb + "<\"" + rep(62) + "\"@example.com>"));
    CHECK(parse_command(verb + "<\"" + rep(63) + "\"@example.com>").error().code == 553);
  }
}

TEST_CASE("limits: path 256 including the angle brackets") {
  // "<" + local(60) + "@" + domain + ">" = 63 + domain
  for (size_t total : {255u, 256u, 257u}) {
    const std::string path = "<" + rep(60, 'x') + "@" + domain_of(total - 63) + ">";
    REQUIRE(path.size() == total);
    auto c = parse_command("RCPT TO:" + path + " NOTIFY=NEVER");
    INFO(total);
    if (total <= 256) {
      REQUIRE(c);
      CHECK(c->path.str().size() == total - 2);
    } else {
      REQUIRE_FALSE(c);
      CHECK(c.error().code == 501);
      CHECK(c.error().enhanced == "5.1.3");
    }
  }
  // A source route counts: it is part of the path as written.
  const std::string mbox = rep(60, 'x') + "@" + domain_of(180);
  CHECK(parse_path("<" + mbox + ">", true));
  auto routed = parse_path("<@" + domain_of(20) + ":" + mbox + ">", true);
  REQUIRE_FALSE(routed);
  CHECK(routed.error().code == 501);
  CHECK(routed.error().enhanced == "5.1.7");
}
