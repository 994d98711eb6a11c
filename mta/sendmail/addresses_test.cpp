// addresses_test.cpp — the RFC 5322 address-list parser: the forms mail
// really uses, groups, comments, quoting, errors that name the culprit and
// do not stop the rest of the list, and the envelope address checks.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "mta/sendmail/addresses.hpp"

using namespace sluice::sendmail;

namespace {

// The addresses of a list that must parse without errors.
std::vector<std::string> addrs(std::string_view text) {
  AddressList l = parse_address_list(text);
  INFO(text);
  for (const auto& e : l.errors) UNSCOPED_INFO(e);
  REQUIRE(l.errors.empty());
  std::vector<std::string> out;
  for (const auto& m : l.mailboxes) out.push_back(m.address());
  return out;
}

using V = std::vector<std::string>;

}  // namespace

TEST_CASE("addr-spec and name-addr") {
  CHECK(addrs("bob@example.com") == V{"bob@example.com"});
  CHECK(addrs("  bob@example.com  ") == V{"bob@example.com"});
  CHECK(addrs("<bob@example.com>") == V{"bob@example.com"});
  CHECK(addrs("Bob Smith <bob@example.com>") == V{"bob@example.com"});
  CHECK(addrs("\"Smith, Bob\" <bob@example.com>, carol@example.org") ==
        V{"bob@example.com", "carol@example.org"});
  CHECK(addrs("first.last+tag@sub.example.co.uk") == V{"first.last+tag@sub.example.co.uk"});
  CHECK(addrs("o'brien@example.ie") == V{"o'brien@example.ie"});

  AddressList l = parse_address_list("\"Smith, Bob\" <bob@example.com>, John Q. Public <jqp@x.org>");
  REQUIRE(l.mailboxes.size() == 2);
  CHECK(l.mailboxes[0].display_name == "Smith, Bob");
  CHECK(l.mailboxes[0].local_part == "bob");
  CHECK(l.mailboxes[0].domain == "example.com");
  CHECK(l.mailboxes[1].display_name == "John Q. Public");
}

TEST_CASE("comments, nested, anywhere between tokens") {
  CHECK(addrs("bob@example.com (Bob Smith)") == V{"bob@example.com"});
  CHECK(addrs("(lead) bob (the (nested) one) @ (x) example.com") == V{"bob@example.com"});
  CHECK(addrs("Bob <bob@example.com> (work, \\) not the end), carol@x.org") ==
        V{"bob@example.com", "carol@x.org"});
  AddressList l = parse_address_list("bob@example.com (unclosed (comment)");
  CHECK(l.mailboxes.empty());
  REQUIRE(l.errors.size() == 1);
  CHECK(l.errors[0].find("comment not closed") != std::string::npos);
}

TEST_CASE("folded header values") {
  CHECK(addrs("Bob Smith\r\n <bob@example.com>,\r\n\tcarol@x.org") ==
        V{"bob@example.com", "carol@x.org"});
  CHECK(addrs("\"Smith,\r\n Bob\" <bob@example.com>") == V{"bob@example.com"});
  AddressList l = parse_address_list("\"Smith,\r\n Bob\" <bob@example.com>");
  REQUIRE(l.mailboxes.size() == 1);
  CHECK(l.mailboxes[0].display_name == "Smith, Bob");
}

TEST_CASE("groups") {
  CHECK(addrs("undisclosed-recipients:;").empty());
  CHECK(addrs("undisclosed-recipients: ;").empty());
  CHECK(addrs("team: a@x.org, Bee <b@y.org>;") == V{"a@x.org", "b@y.org"});
  CHECK(addrs("first@x.org, team: a@x.org, b@y.org; , last@z.org") ==
        V{"first@x.org", "a@x.org", "b@y.org", "last@z.org"});
  CHECK(addrs("\"The Team\": a@x.org;") == V{"a@x.org"});
  // Not closed before the end: accepted.
  CHECK(addrs("team: a@x.org, b@y.org") == V{"a@x.org", "b@y.org"});

  AddressList nested = parse_address_list("outer: inner: a@x.org;;, ok@x.org");
  CHECK(nested.errors.size() >= 1);
  CHECK(nested.errors[0].find("group inside a group") != std::string::npos);
  REQUIRE_FALSE(nested.mailboxes.empty());
  CHECK(nested.mailboxes.back().address() == "ok@x.org");

  AddressList anonymous = parse_address_list(": a@x.org;");
  REQUIRE(anonymous.errors.size() == 1);
  CHECK(anonymous.errors[0].find("needs a name") != std::string::npos);

  // One bad member does not cost the others.
  AddressList member = parse_address_list("team: a@x.org, not an address, b@y.org;");
  CHECK(member.errors.size() == 1);
  CHECK((member.mailboxes.size() == 2 && member.mailboxes[1].address() == "b@y.org"));
}

TEST_CASE("empty elements are skipped") {
  CHECK(addrs("").empty());
  CHECK(addrs("  ").empty());
  CHECK(addrs(",,a@x.org,,, b@y.org,") == V{"a@x.org", "b@y.org"});
  CHECK(addrs("(just a comment)").empty());
}

TEST_CASE("quoted local parts are canonicalised") {
  CHECK(addrs("\"john doe\"@example.com") == V{"\"john doe\"@example.com"});
  CHECK(addrs("\"john\"@example.com") == V{"john@example.com"});  // no quotes needed
  CHECK(addrs("\"john\".doe@example.com") == V{"john.doe@example.com"});  // obs-local-part
  CHECK(addrs("\"a\\\"b\"@example.com") == V{"\"a\\\"b\"@example.com"});
  CHECK(addrs("\"a@b\"@example.com") == V{"\"a@b\"@example.com"});
  CHECK(addrs("\"..\"@example.com") == V{"\"..\"@example.com"});
}

TEST_CASE("domains: literals, UTF-8, case kept") {
  CHECK(addrs("root@[192.0.2.1]") == V{"root@[192.0.2.1]"});
  CHECK(addrs("root@[IPv6:2001:db8::1]") == V{"root@[IPv6:2001:db8::1]"});
  CHECK(addrs("Bob@Example.COM") == V{"Bob@Example.COM"});
  CHECK(addrs("jos\xc3\xa9@exampl\xc3\xa9.fr") == V{"jos\xc3\xa9@exampl\xc3\xa9.fr"});
  CHECK(addrs("bob @ example . com") == V{"bob@example.com"});  // CFWS around dots (obs)
}

TEST_CASE("obsolete route in angle brackets is dropped") {
  CHECK(addrs("<@relay.example,@other.example:bob@example.com>") == V{"bob@example.com"});
  AddressList l = parse_address_list("<@relay.example bob@example.com>");
  CHECK(l.mailboxes.empty());
  CHECK(l.errors.size() == 1);
}

TEST_CASE("local parts without a domain are returned for the caller to qualify") {
  AddressList l = parse_address_list("root, <postmaster>, Cron <cron.daemon>");
  REQUIRE(l.errors.empty());
  REQUIRE(l.mailboxes.size() == 3);
  CHECK(l.mailboxes[0].local_part == "root");
  CHECK(l.mailboxes[0].domain.empty());
  CHECK(l.mailboxes[0].address() == "root");
  CHECK(l.mailboxes[1].address() == "postmaster");
  CHECK(l.mailboxes[2].address() == "cron.daemon");
}

TEST_CASE("invalid addresses are named, the rest of the list survives") {
  struct Case {
    const char* text;
    const char* why;
    bool eats_rest = false;  // an unclosed quote or literal swallows what follows
  };
  const Case cases[] = {
      {"John Smith", "not an address"},
      {"bob@", "missing domain"},
      {"@example.com", "empty"},
      {"bob@@example.com", "missing domain"},
      {"bob@example..com", "invalid domain"},
      {"bob@example.com.", "invalid domain"},
      {"bob@-example.com", "invalid domain"},
      {"bob@exa_mple.com", "invalid domain"},
      {"bob.@example.com", "ends with '.'"},
      {".bob@example.com", "misplaced '.'"},
      {"bob..smith@example.com", "misplaced '.'"},
      {"<>", "empty address"},
      {"<bob@example.com", "'>' was expected"},
      {"bob@example.com>", "unexpected '>'"},
      {"Bob <bob@example.com> extra", "after the address"},
      {"bob@example.com carol@example.com", "after the address"},
      {"\"unterminated@example.com", "not closed", true},
      {"bob@[300.1.1.1]", "invalid domain"},
      {"bob@[192.0.2.1", "not closed", true},
      {"bob@[1.2.3.4\\]", "invalid character"},
      {"a\x01" "b@example.com", "invalid character"},
      {"\"a\x01" "b\"@example.com", "invalid characters"},
      {"\xff@example.com", "invalid characters"},
      {"bob@exam\xffple.com", "invalid domain"},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    AddressList l = parse_address_list(std::string("ok1@x.org, ") + c.text + ", ok2@y.org");
    REQUIRE(l.errors.size() == 1);
    CHECK(l.errors[0].find(c.why) != std::string::npos);
    CHECK(l.errors[0].find("ok1") == std::string::npos);  // names only the culprit
    REQUIRE(l.mailboxes.size() == (c.eats_rest ? 1 : 2));
    CHECK(l.mailboxes[0].address() == "ok1@x.org");
    if (!c.eats_rest) CHECK(l.mailboxes[1].address() == "ok2@y.org");
  }
}

TEST_CASE("length limits: local 64, domain 255, address 254") {
  const std::string local64(64, 'a');
  CHECK(addrs(local64 + "@x.org") == V{local64 + "@x.org"});
  AddressList l65 = parse_address_list(local64 + "a@x.org");
  REQUIRE(l65.errors.size() == 1);
  CHECK(l65.errors[0].find("64") != std::string::npos);

  std::string label63(63, 'b');
  std::string domain = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'c');
  REQUIRE(domain.size() == 253);
  AddressList too_long = parse_address_list("a@" + domain);  // 255 octets in all
  REQUIRE(too_long.errors.size() == 1);
  CHECK(too_long.errors[0].find("254") != std::string::npos);
  CHECK(addrs("a@" + domain.substr(0, 251)) == V{"a@" + domain.substr(0, 251)});
  AddressList label64 = parse_address_list("a@" + std::string(64, 'd') + ".org");
  CHECK(label64.errors.size() == 1);
}

TEST_CASE("error text is sanitised and capped") {
  AddressList l = parse_address_list(std::string(300, 'x') + " y");
  REQUIRE(l.errors.size() == 1);
  CHECK(l.errors[0].size() < 200);
  AddressList c = parse_address_list("a b\x7f");
  REQUIRE(c.errors.size() == 1);
  CHECK(c.errors[0].find('\x7f') == std::string::npos);
}

TEST_CASE("duplicates: domain case-insensitive, local part not") {
  Mailbox a{"", "bob", "Example.COM"}, b{"Bobby", "bob", "example.com"}, c{"", "Bob", "example.com"};
  CHECK(same_address(a, b));
  CHECK_FALSE(same_address(a, c));
  std::vector<Mailbox> into{a};
  append_unique(into, {b, c, c});
  REQUIRE(into.size() == 2);
  CHECK(into[1].local_part == "Bob");
}

TEST_CASE("canonical_local_part") {
  CHECK(canonical_local_part("bob") == "bob");
  CHECK(canonical_local_part("bob.smith") == "bob.smith");
  CHECK(canonical_local_part("bob smith") == "\"bob smith\"");
  CHECK(canonical_local_part("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(canonical_local_part(".bob") == "\".bob\"");
  CHECK(canonical_local_part("") == "");
  CHECK(canonical_local_part("a\tb") == "");
  CHECK(canonical_local_part("a\nb") == "");
  CHECK(canonical_local_part(std::string(64, 'a')) == std::string(64, 'a'));
  CHECK(canonical_local_part(std::string(65, 'a')) == "");
  CHECK(canonical_local_part(std::string(62, ' ')) == "\"" + std::string(62, ' ') + "\"");
  CHECK(canonical_local_part(std::string(63, ' ')) == "");  // 65 octets quoted
}

TEST_CASE("valid_address: the envelope form") {
  CHECK(valid_address("bob@example.com"));
  CHECK(valid_address("\"john doe\"@example.com"));
  CHECK(valid_address("\"a@b\"@example.com"));
  CHECK(valid_address("bob@[192.0.2.1]"));
  CHECK(valid_address("bob@[IPv6:::1]"));
  CHECK(valid_address("jos\xc3\xa9@exampl\xc3\xa9.fr"));
  CHECK(valid_address("bob@localhost"));
  CHECK_FALSE(valid_address(""));
  CHECK_FALSE(valid_address("bob"));
  CHECK_FALSE(valid_address("@example.com"));
  CHECK_FALSE(valid_address("bob@"));
  CHECK_FALSE(valid_address("<bob@example.com>"));
  CHECK_FALSE(valid_address("bob smith@example.com"));
  CHECK_FALSE(valid_address("bob@example.com "));
  CHECK_FALSE(valid_address("bob@exa mple.com"));
  CHECK_FALSE(valid_address("bob\r\n@example.com"));
  CHECK_FALSE(valid_address(std::string("bob\0x@example.com", 17)));
  CHECK_FALSE(valid_address("\"unterminated@example.com"));
  CHECK_FALSE(valid_address("\"a\"b\"@example.com"));
  CHECK_FALSE(valid_address("\"a\\\"@example.com"));
  CHECK_FALSE(valid_address("bob@[999.1.1.1]"));
  CHECK_FALSE(valid_address("bob@[example.com]"));
  CHECK_FALSE(valid_address("\xc3@example.com"));
  CHECK_FALSE(valid_address(std::string(65, 'a') + "@x.org"));
  CHECK_FALSE(valid_address("a@" + std::string(252, 'b')));
}

TEST_CASE("utf8_sequence_length") {
  CHECK(utf8_sequence_length("a", 0) == 0);
  CHECK(utf8_sequence_length("\xc3\xa9", 0) == 2);
  CHECK(utf8_sequence_length("\xe2\x82\xac", 0) == 3);
  CHECK(utf8_sequence_length("\xf0\x9f\x98\x80", 0) == 4);
  CHECK(utf8_sequence_length("\xc0\xaf", 0) == 0);      // overlong
  CHECK(utf8_sequence_length("\xed\xa0\x80", 0) == 0);  // surrogate
  CHECK(utf8_sequence_length("\xf4\x90\x80\x80", 0) == 0);  // above U+10FFFF
  CHECK(utf8_sequence_length("\xe2\x82", 0) == 0);      // truncated
}
