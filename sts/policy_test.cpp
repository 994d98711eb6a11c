// policy_test.cpp — sts/policy.hpp as tables: TXT records, policy files and
// MX patterns, each with what it must give.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "sts/policy.hpp"

using namespace sluice::sts;

namespace {

std::string txt_id(std::vector<std::string> records) {
  auto r = parse_txt(records);
  return r ? *r : "ERR";
}

TxtError txt_error(std::vector<std::string> records) {
  auto r = parse_txt(records);
  REQUIRE_FALSE(r);
  return r.error().error;
}

std::string policy_error(std::string_view text) {
  auto r = parse_policy(text);
  return r ? "OK" : r.error();
}

}  // namespace

TEST_CASE("TXT: well-formed STSv1 records give their id") {
  struct Row {
    std::string record, id;
  };
  const std::vector<Row> rows{
      {"v=STSv1; id=20160831085700Z;", "20160831085700Z"},
      {"v=STSv1; id=20160831085700Z", "20160831085700Z"},
      {"v=STSv1;id=abc", "abc"},
      {"v=STSv1 ; id=abc ;", "abc"},
      {"v=STSv1; id=abc; ", "abc"},
      {"v=STSv1;\tid=A1", "A1"},
      {"v=STSv1; id=" + std::string(32, 'z') + ";", std::string(32, 'z')},
      // extensions are ignored, before or after id
      {"v=STSv1; foo=bar; id=x1", "x1"},
      {"v=STSv1; id=x1; ext_1.a-b=val:ue/!", "x1"},
  };
  for (const auto& row : rows) {
    INFO(row.record);
    CHECK(txt_id({row.record}) == row.id);
  }
}

TEST_CASE("TXT: malformed records are refused") {
  const std::vector<std::string> bad{
      "v=STSv1",                                 // no id
      "v=STSv1;",                                // no id
      "v=STSv1; foo=bar",                        // no id
      "v=STSv1; id=",                            // empty id
      "v=STSv1; id=" + std::string(33, 'a'),     // id too long
      "v=STSv1; id=abc-def",                     // id not alphanumeric
      "v=STSv1; id=abc def",                     // WSP inside the id
      "v=STSv1; id=a; id=b",                     // two ids
      "v=STSv1; id=a; v=STSv1",                  // v repeated
      "v=STSv1; id=a;; x=y",                     // empty field
      "v=STSv1 id=a",                            // no ';'
      "v=STSv1; id=a; novalue",                  // field without '='
      "v=STSv1; id=a; _x=y",                     // extension name starts with '_'
      "v=STSv1; id=a; x=",                       // empty extension value
      "v=STSv1; id=a; x=a=b",                    // '=' in a value
      "v=STSv1; ID=a",                           // tags are case-sensitive
  };
  for (const auto& r : bad) {
    INFO(r);
    CHECK(txt_error({r}) == TxtError::syntax);
  }
}

TEST_CASE("TXT: records not starting v=STSv1 are discarded; not exactly one = none usable") {
  CHECK(txt_id({"v=spf1 -all", "v=STSv1; id=a1;"}) == "a1");
  CHECK(txt_id({"something else", "v=STSv1; id=a1;", "v=STSv10; id=b"}) == "a1");
  CHECK(txt_error({}) == TxtError::none_published);
  CHECK(txt_error({"v=spf1 -all"}) == TxtError::none_published);
  CHECK(txt_error({" v=STSv1; id=a"}) == TxtError::none_published);  // v must be first
  CHECK(txt_error({"id=a; v=STSv1"}) == TxtError::none_published);
  CHECK(txt_error({"V=STSv1; id=a"}) == TxtError::none_published);
  CHECK(txt_error({"v=STSv1; id=a", "v=STSv1; id=b"}) == TxtError::several);
  // two records, even one of them broken, are "several": none usable
  CHECK(txt_error({"v=STSv1; id=a", "v=STSv1"}) == TxtError::several);
}

TEST_CASE("policy: the RFC 8461 example, LF and CRLF") {
  const std::string lf =
      "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmx: backupmx.example.com\n"
      "max_age: 604800\n";
  std::string crlf;
  for (char c : lf) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  for (const std::string& text : {lf, crlf}) {
    auto p = parse_policy(text);
    REQUIRE(p);
    CHECK(p->mode == Mode::enforce);
    CHECK(p->max_age == 604800);
    CHECK(p->mx == std::vector<std::string>{"mail.example.com", "*.example.net", "backupmx.example.com"});
  }
}

TEST_CASE("policy: accepted variants") {
  auto p = parse_policy("mode:testing\r\nmax_age:   0  \r\nmx:\tMX1.Example.COM.\r\nversion: STSv1");
  REQUIRE(p);  // any order, no final line end, WSP after ':', final dot
  CHECK(p->mode == Mode::testing);
  CHECK(p->max_age == 0);
  CHECK(p->mx == std::vector<std::string>{"mx1.example.com"});

  p = parse_policy("version: STSv1\nmode: none\nmax_age: 31557600\n");
  REQUIRE(p);  // mode none needs no mx
  CHECK(p->mode == Mode::none);
  CHECK(p->max_age == kMaxAge);
  CHECK(p->mx.empty());

  p = parse_policy("\nversion: STSv1\n\nmode: enforce\nfuture_key: any value, even UTF-8 \xc3\xa9\nmx: a.b\n"
                   "max_age: 0000000086\n\n");
  REQUIRE(p);  // empty lines skipped, unknown keys ignored, leading zeros
  CHECK(p->max_age == 86);
}

TEST_CASE("policy: refused with a reason") {
  struct Row {
    std::string text, reason;
  };
  const std::string ok_tail = "mode: enforce\nmx: mx.example.com\nmax_age: 86400\n";
  const std::vector<Row> rows{
      {"mode: enforce\nmx: mx.example.com\nmax_age: 86400\n", "no version"},
      {"version: STSv1\nmx: mx.example.com\nmax_age: 86400\n", "no mode"},
      {"version: STSv1\nmode: enforce\nmx: mx.example.com\n", "no max_age"},
      {"version: STSv1\nmode: enforce\nmax_age: 86400\n", "no mx"},
      {"version: STSv1\nmode: testing\nmax_age: 86400\n", "no mx"},
      {"version: STSv1\nversion: STSv1\n" + ok_tail, "line 2: version repeated"},
      {"version: STSv1\nmode: testing\n" + ok_tail, "line 3: mode repeated"},
      {"version: STSv1\nmax_age: 1\n" + ok_tail, "line 5: max_age repeated"},
      {"version: STSv2\n" + ok_tail, "line 1: version is not STSv1"},
      {"version: stsv1\n" + ok_tail, "line 1: version is not STSv1"},
      {"version: STSv1\nmode: Enforce\nmx: a.b\nmax_age: 1\n", "line 2: unknown mode"},
      {"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 31557601\n", "line 4: max_age over 31557600"},
      {"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 99999999999\n", "line 4: max_age is not 1 to 10 digits"},
      {"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n", "line 4: max_age is not 1 to 10 digits"},
      {"version: STSv1\nmode: enforce\nmx: a.b\nmax_age:\n", "line 4: max_age is not 1 to 10 digits"},
      {"version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n", "line 3: mx is not a host name or *.host"},
      {"version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", "line 3: mx is not a host name or *.host"},
      {"version: STSv1\nmode: enforce\nmx: a.*.b\nmax_age: 1\n", "line 3: mx is not a host name or *.host"},
      {"version: STSv1\nmode: enforce\nmx: -a.b\nmax_age: 1\n", "line 3: mx is not a host name or *.host"},
      {"version: STSv1\nmode: enforce\nmx: a_b.c\nmax_age: 1\n", "line 3: mx is not a host name or *.host"},
      {"version: STSv1\nmode: enforce\nmx: " + std::string(64, 'a') + ".b\nmax_age: 1\n",
       "line 3: mx is not a host name or *.host"},
      {"version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n", "line 3: mx is not a host name or *.host"},
      {"version: STSv1\njunk\n" + ok_tail, "line 2: no ':'"},
      {"version: STSv1\nmode : enforce\n" + ok_tail, "line 2: malformed key"},
      {"version: STSv1\n: x\n" + ok_tail, "line 2: malformed key"},
      {"version: STSv1\nx\ry: 1\n" + ok_tail, "line 2: control character"},
      {"version: STSv1\nx: \x7f\n" + ok_tail, "line 2: control character"},
  };
  for (const auto& row : rows) {
    INFO(row.text);
    CHECK(policy_error(row.text) == row.reason);
  }
  CHECK(policy_error(std::string_view("version: STSv1\nx: \0\n", 19)) == "line 2: control character");
}

TEST_CASE("policy: at most 64 KB of input") {
  std::string text = "version: STSv1\nmode: enforce\nmax_age: 86400\n";
  while (text.size() < kMaxPolicy) text += "mx: mx.example.com\n";
  text.resize(kMaxPolicy);
  text.back() = '\n';
  CHECK(parse_policy(text));
  text += "\n";
  CHECK(policy_error(text) == "policy over 65536 octets");
}

TEST_CASE("MX patterns (RFC 8461 §4.1)") {
  struct Row {
    std::string pattern, host;
    bool match;
  };
  const std::vector<Row> rows{
      {"mail.example.com", "mail.example.com", true},
      {"mail.example.com", "MAIL.Example.COM", true},
      {"mail.example.com", "mail.example.com.", true},
      {"mail.example.com.", "mail.example.com", true},
      {"Mail.Example.Com", "mail.example.com", true},
      {"mail.example.com", "mail.example.co", false},
      {"mail.example.com", "xmail.example.com", false},
      {"mail.example.com", "example.com", false},
      {"*.example.net", "mx.example.net", true},
      {"*.example.net", "MX.EXAMPLE.NET.", true},
      {"*.example.net", "a.b.example.net", false},
      {"*.example.net", "example.net", false},
      {"*.example.net", ".example.net", false},
      {"*.example.net", "mx.example.net.evil", false},
      {"*.example.net", "mxexample.net", false},
      {"*.example.net", "*.example.net", true},  // "*" is one label; no MX is named so
      {"", "mx.example.net", false},
      {"mx.example.net", "", false},
  };
  for (const auto& row : rows) {
    INFO(row.pattern << " vs " << row.host);
    CHECK(mx_pattern_matches(row.pattern, row.host) == row.match);
  }
  auto p = parse_policy("version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.Example.NET\nmax_age: 1\n");
  REQUIRE(p);
  CHECK(mx_allowed(*p, "mail.example.com"));
  CHECK(mx_allowed(*p, "mx2.example.net."));
  CHECK_FALSE(mx_allowed(*p, "mx2.example.org"));
  CHECK_FALSE(mx_allowed(*p, "a.mx2.example.net"));
  CHECK_FALSE(mx_allowed(Policy{}, "mail.example.com"));
}
