// submit_test.cpp — the rules that turn options + message into a maildrop:
// recipients from arguments and -t, qualification with the host name, the
// envelope sender, added headers, and each failure's exit code.
#include <catch2/catch.hpp>

#include <sysexits.h>

#include <string>
#include <vector>

#include "mta/sendmail/submit.hpp"

using namespace sluice::sendmail;
using V = std::vector<std::string>;

namespace {

Context context() {
  Context c;
  c.login = "alice";
  c.max_message_size = 1 << 20;
  c.stamp.unix_us = 1'769'435'761'123'456;
  c.stamp.utc_offset_s = 0;
  c.stamp.pid = 42;
  c.stamp.random = 7;
  c.stamp.hostname = "host.example.com";
  return c;
}

Options opts(std::vector<std::string> args) {
  args.insert(args.begin(), "sendmail");
  auto o = parse_options(args);
  REQUIRE(o);
  return *o;
}

Maildrop build(const std::vector<std::string>& args, std::string_view content,
               const Context& c = context()) {
  auto m = build_maildrop(opts(args), content, c);
  INFO((m ? std::string() : m.error().message));
  REQUIRE(m);
  return *m;
}

Failure failure(const std::vector<std::string>& args, std::string_view content,
                const Context& c = context()) {
  auto m = build_maildrop(opts(args), content, c);
  REQUIRE_FALSE(m);
  return m.error();
}

}  // namespace

TEST_CASE("recipients from arguments: forms, lists, local names qualified, duplicates") {
  Maildrop m = build({"bob@example.com", "<carol@example.org>", "d@y.org, Eve <e@z.org>", "root",
                      "BOB@example.COM", "bob@example.com"},
                     "Subject: x\r\n\r\nhi\r\n");
  CHECK(m.recipients == V{"bob@example.com", "carol@example.org", "d@y.org", "e@z.org",
                          "root@host.example.com", "BOB@example.COM"});
}

TEST_CASE("-t adds the header's recipients to the arguments and removes Bcc") {
  const std::string msg =
      "To: bob@example.com, root\r\n"
      "Cc: Carol <carol@example.org>\r\n"
      "Bcc: hidden@example.net\r\n"
      "Subject: x\r\n"
      "\r\nbody\r\n";
  Maildrop m = build({"-t", "arg@example.com", "bob@example.com"}, msg);
  CHECK(m.recipients == V{"arg@example.com", "bob@example.com", "root@host.example.com",
                          "carol@example.org", "hidden@example.net"});
  CHECK(m.message.find("Bcc") == std::string::npos);
  CHECK(m.message.find("hidden") == std::string::npos);
  CHECK(m.message.find("To: bob@example.com, root\r\n") != std::string::npos);

  // Without -t the header is not read for recipients, and Bcc stays.
  Maildrop plain = build({"arg@example.com"}, msg);
  CHECK(plain.recipients == V{"arg@example.com"});
  CHECK(plain.message.find("Bcc: hidden@example.net\r\n") != std::string::npos);
}

TEST_CASE("-t with Resent- fields") {
  Maildrop m = build({"-t"},
                     "To: old@example.com\r\nResent-To: new@example.com\r\n"
                     "Resent-Bcc: rb@example.com\r\n\r\n");
  CHECK(m.recipients == V{"new@example.com", "rb@example.com"});
  CHECK(m.message.find("Resent-Bcc") == std::string::npos);
  CHECK(m.message.find("To: old@example.com") != std::string::npos);
}

TEST_CASE("no recipients is a usage error") {
  Failure none = failure({}, "Subject: x\r\n\r\n");
  CHECK(none.exit_code == EX_USAGE);
  CHECK(none.message.starts_with("no recipients"));
  Failure t = failure({"-t"}, "To: undisclosed-recipients:;\r\n\r\n");
  CHECK(t.exit_code == EX_USAGE);
  CHECK(t.message.find("To, Cc or Bcc") != std::string::npos);
  Failure resent = failure({"-t"}, "Resent-To: group:;\r\n\r\n");
  CHECK(resent.message.find("Resent-To") != std::string::npos);
  CHECK(failure({""}, "").exit_code == EX_USAGE);  // an empty argument names nobody
}

TEST_CASE("invalid recipients are a data error naming each") {
  Failure arg = failure({"good@example.com", "John Smith", "bad@"}, "");
  CHECK(arg.exit_code == EX_DATAERR);
  CHECK(arg.message.starts_with("invalid recipient addresses: "));
  CHECK(arg.message.find("John Smith") != std::string::npos);
  CHECK(arg.message.find("bad@") != std::string::npos);

  Failure hdr = failure({"-t"}, "To: ok@example.com, not valid\r\nCc: x@-bad.org\r\n\r\n");
  CHECK(hdr.exit_code == EX_DATAERR);
  CHECK(hdr.message.find("To: not valid") != std::string::npos);
  CHECK(hdr.message.find("Cc: x@-bad.org") != std::string::npos);

  // A local name that becomes too long with the host name.
  Failure long_local = failure({"-f", "me@x.org", std::string(64, 'a')}, "", [] {
    Context c = context();
    c.stamp.hostname = std::string(63, 'h') + "." + std::string(63, 'h') + "." +
                       std::string(63, 'h') + "." + std::string(60, 'h');
    return c;
  }());
  CHECK(long_local.exit_code == EX_DATAERR);

  std::string many;
  for (int i = 0; i < 12; ++i) many += "bad" + std::to_string(i) + "@, ";
  Failure capped = failure({many}, "");
  CHECK(capped.message.find("and 7 more") != std::string::npos);
}

TEST_CASE("too many recipients") {
  std::string list;
  for (size_t i = 0; i <= kMaxRecipients; ++i) list += "u" + std::to_string(i) + "@x.org,";
  Failure f = failure({list}, "");
  CHECK(f.exit_code == EX_DATAERR);
  CHECK(f.message.find("too many recipients") != std::string::npos);
}

TEST_CASE("envelope sender") {
  const Context c = context();
  CHECK(envelope_sender(opts({}), c) == "alice@host.example.com");
  CHECK(envelope_sender(opts({"-f", "bob@example.com"}), c) == "bob@example.com");
  CHECK(envelope_sender(opts({"-f<bob@example.com>"}), c) == "bob@example.com");
  CHECK(envelope_sender(opts({"-r", " Bob <bob@example.com> "}), c) == "bob@example.com");
  CHECK(envelope_sender(opts({"-f", "bob"}), c) == "bob@host.example.com");
  CHECK(envelope_sender(opts({"-f", ""}), c) == "");
  CHECK(envelope_sender(opts({"-f", "<>"}), c) == "");
  for (const char* bad : {"two@x.org, three@y.org", "bad@", "a b", "group:;"}) {
    INFO(bad);
    auto s = envelope_sender(opts({"-f", bad}), c);
    REQUIRE_FALSE(s);
    CHECK(s.error().exit_code == EX_USAGE);
    CHECK(s.error().message.starts_with("-f: "));
  }
  Context odd = c;
  odd.login = "odd user";
  CHECK(envelope_sender(opts({}), odd) == "\"odd user\"@host.example.com");
  odd.login = "bad\nlogin";
  CHECK_FALSE(envelope_sender(opts({}), odd));
}

TEST_CASE("added headers: Date, From (with -F), Message-ID") {
  Maildrop m = build({"-F", "Alice Example", "bob@example.com"}, "Subject: x\r\n\r\nhi\r\n");
  CHECK(m.sender == "alice@host.example.com");
  CHECK(m.message ==
        "Subject: x\r\n"
        "Date: Mon, 26 Jan 2026 13:56:01 +0000\r\n"
        "From: Alice Example <alice@host.example.com>\r\n"
        "Message-ID: <20260126135601.123456.2a.0000000000000007@host.example.com>\r\n"
        "\r\nhi\r\n");

  Maildrop f = build({"-f", "list@example.org", "bob@example.com"}, "From: Me <me@x.org>\r\n\r\n");
  CHECK(f.sender == "list@example.org");
  CHECK(f.message.find("From: Me <me@x.org>\r\n") != std::string::npos);
  CHECK(f.message.find("From: list") == std::string::npos);

  Maildrop null_sender = build({"-f", "", "bob@example.com"}, "");
  CHECK(null_sender.sender == "");
  CHECK(null_sender.message.find("From: alice@host.example.com\r\n") != std::string::npos);

  Maildrop body_only = build({"bob@example.com"}, "just text\r\n");
  CHECK(body_only.message.starts_with("Date: "));
  CHECK(body_only.message.ends_with("\r\n\r\njust text\r\n"));

  Failure long_name = failure({"-F", std::string(kMaxFullName + 1, 'n'), "bob@example.com"}, "");
  CHECK(long_name.exit_code == EX_USAGE);
}

TEST_CASE("[relay] add_missing_headers = false: the message is written as read") {
  Context c = context();
  c.add_missing_headers = false;
  Maildrop m = build({"bob@example.com"}, "Subject: x\r\n\r\nhi\r\n", c);
  CHECK(m.message == "Subject: x\r\n\r\nhi\r\n");
}

TEST_CASE("more Received fields than limits.max_hops: a data error, as the daemon's 554 5.4.6") {
  Context c = context();
  c.max_hops = 3;
  auto hops = [](int n) {
    std::string h;
    for (int i = 0; i < n; ++i) h += "Received: by h" + std::to_string(i) + "; date\r\n";
    return h + "Subject: loop\r\n\r\nx\r\n";
  };
  Failure f = failure({"bob@example.com"}, hops(4), c);
  CHECK(f.exit_code == EX_DATAERR);
  CHECK(f.message == "the message has 4 Received header fields, more than limits.max_hops (3): a mail loop?");
  CHECK(build({"bob@example.com"}, hops(3), c).message.starts_with("Received: by h0; date\r\n"));
}

TEST_CASE("the size limit counts the added headers") {
  const std::string body(900, 'x');
  const std::string content = "Subject: x\r\n\r\n" + body + "\r\n";
  Context c = context();
  c.max_message_size = content.size() + 50;  // room for the content, not for the headers
  Failure f = failure({"bob@example.com"}, content, c);
  CHECK(f.exit_code == EX_DATAERR);
  CHECK(f.message.find("limits.max_message_size") != std::string::npos);
  c.max_message_size = content.size() + 300;
  auto ok = build_maildrop(opts({"bob@example.com"}), content, c);
  CHECK(ok);
}

TEST_CASE("what build_maildrop makes, encode_maildrop accepts") {
  Maildrop m = build({"-t", "-F", "J\xc3\xb6rg", "x@y.org"},
                     "To: \"quoted name\"@example.com, Bob <BOB@Example.com>\r\n"
                     "Subject: " + std::string(2000, 's') + "\r\n\r\n" + std::string(3000, 'b') +
                         "\r\n");
  auto f = encode_maildrop(m);
  REQUIRE(f);
  auto back = decode_maildrop(*f);
  REQUIRE(back);
  CHECK(*back == m);
}

TEST_CASE("[aliases]: local recipients replaced by their entry; unknown ones are EX_NOUSER") {
  const sluice::aliases::Table table = {{"root", {"admin@example.com"}},
                                        {"backup", {"b1@example.org", "admin@example.com"}}};
  Context c = context();
  c.aliases = &table;
  // Arguments and -t alike; the domain-less name, @hostname and @localhost.
  Maildrop m = build({"-t", "root", "bob@example.com", "Backup@LOCALHOST"},
                     "To: postmaster@Host.Example.Com, bob@example.com\r\n\r\nhi\r\n", c);
  CHECK(m.recipients == V{"admin@example.com", "bob@example.com", "b1@example.org"});
  // The header is not rewritten.
  CHECK(m.message.starts_with("To: postmaster@Host.Example.Com, bob@example.com\r\n"));

  Failure f = failure({"root", "nobody", "ghost@localhost", "x@example.com"}, "hi\r\n", c);
  CHECK(f.exit_code == EX_NOUSER);
  CHECK(f.message.find("nobody@host.example.com; ghost@localhost") != std::string::npos);

  // Without a table (Context::aliases null) nothing is special.
  CHECK(build({"nobody"}, "hi\r\n").recipients == V{"nobody@host.example.com"});
}

TEST_CASE("smtp_maildrop (-bs): fields added as for a plain submission, duplicates dropped") {
  Context c = context();
  auto m = smtp_maildrop("", {"a@example.com", "A@EXAMPLE.COM", "a@Example.com", "b@example.com"},
                         "Subject: s\r\n\r\nbody\r\n", c);
  REQUIRE(m);
  CHECK(m->sender.empty());
  CHECK(m->recipients == V{"a@example.com", "A@EXAMPLE.COM", "b@example.com"});
  CHECK(m->message ==
        "Subject: s\r\nDate: Mon, 26 Jan 2026 13:56:01 +0000\r\nFrom: alice@host.example.com\r\n"
        "Message-ID: <20260126135601.123456.2a.0000000000000007@host.example.com>\r\n\r\nbody\r\n");
  c.max_message_size = 40;
  auto big = smtp_maildrop("x@example.com", {"a@example.com"}, "Subject: s\r\n\r\nbody\r\n", c);
  REQUIRE_FALSE(big);
  CHECK(big.error().exit_code == EX_DATAERR);
}
