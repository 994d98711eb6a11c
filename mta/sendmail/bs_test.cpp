// bs_test.cpp — sluice-sendmail -bs (bs.hpp) driven by scripted SMTP
// dialogues: what the client reads, and the maildrop files written.
#include "mta/sendmail/bs.hpp"

#include <sysexits.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "mta/sendmail/maildrop.hpp"

using namespace sluice;
using namespace sluice::sendmail;

namespace {

constexpr uint64_t kLimit = 10'000;

class FakeIo : public BsIo {
 public:
  std::string out;                  // everything written to "standard output"
  std::vector<std::string> files;   // the maildrop files, in order
  std::vector<std::string> reports;
  bool fail_next_drop = false;

  void write(std::string_view bytes) override { out.append(bytes); }
  std::expected<std::string, IoError> drop(std::string_view file) override {
    if (fail_next_drop) {
      fail_next_drop = false;
      return std::unexpected(IoError{EX_TEMPFAIL, "no space left on device"});
    }
    files.emplace_back(file);
    return "file" + std::to_string(files.size());
  }
  Stamp stamp() override {
    Stamp s;
    s.unix_us = 1'769'435'761'123'456;  // 2026-01-26 13:56:01 UTC
    s.pid = 4242;
    s.random = 0x0123456789abcdefull + files.size();
    s.hostname = "mail.example.net";
    return s;
  }
  int64_t now_us() override { return 1'769'435'761'000'000; }
  void report(std::string_view line) override { reports.emplace_back(line); }

  // What was written since the last call.
  std::string take() {
    std::string r = std::move(out);
    out.clear();
    return r;
  }
  Maildrop file(size_t i) const {
    auto m = decode_maildrop(files.at(i));
    REQUIRE(m);
    return *m;
  }
};

struct Bs {
  FakeIo io;
  std::unique_ptr<BsDialogue> dialogue;

  explicit Bs(aliases::Table table = {{"root", {"admin@example.com"}}}) {
    Context c;
    c.login = "www-data";
    c.max_message_size = kLimit;
    c.stamp = io.stamp();
    dialogue = std::make_unique<BsDialogue>(
        bs_session_config("mail.example.net", kLimit, 1000,
                          std::make_shared<const aliases::Table>(std::move(table))),
        c, io);
    dialogue->start();
  }
  std::string say(std::string_view lines) {
    dialogue->feed(lines);
    return io.take();
  }
};

}  // namespace

TEST_CASE("-bs: a Symfony-style dialogue with two messages and a RSET") {
  Bs bs;
  CHECK(bs.io.take() == "220 mail.example.net ESMTP Sluice\r\n");
  const std::string ehlo = bs.say("EHLO [127.0.0.1]\r\n");
  CHECK(ehlo.starts_with("250-mail.example.net\r\n"));
  CHECK(ehlo.find("SIZE 8976\r\n") != std::string::npos);  // the limit minus kHeaderReserve
  CHECK(ehlo.find("STARTTLS") == std::string::npos);
  CHECK(ehlo.find("AUTH") == std::string::npos);

  CHECK(bs.say("MAIL FROM:<app@example.com>\r\n") == "250 2.1.0 Ok\r\n");
  CHECK(bs.say("RCPT TO:<bob@example.org>\r\n") == "250 2.1.5 Ok\r\n");
  CHECK(bs.say("RCPT TO:<carol@example.org>\r\n") == "250 2.1.5 Ok\r\n");
  CHECK(bs.say("DATA\r\n") == "354 End data with <CR><LF>.<CR><LF>\r\n");
  CHECK(bs.say("Subject: one\r\n\r\n..dot stuffed\r\nbody\r\n.\r\n") ==
        "250 2.0.0 Ok: queued as file1\r\n");

  CHECK(bs.say("MAIL FROM:<other@example.com>\r\nRCPT TO:<x@example.org>\r\nRSET\r\n") ==
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n");
  CHECK(bs.io.files.size() == 1);

  CHECK(bs.say("MAIL FROM:<>\r\nRCPT TO:<dave@example.net>\r\nDATA\r\n") ==
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
  CHECK(bs.say("From: me@example.com\r\nDate: Mon, 26 Jan 2026 14:56:01 +0100\r\n"
               "Message-ID: <m@x>\r\n\r\nsecond\r\n.\r\n") == "250 2.0.0 Ok: queued as file2\r\n");
  CHECK(bs.say("QUIT\r\n") == "221 2.0.0 Bye\r\n");
  CHECK(bs.dialogue->done());
  CHECK(bs.dialogue->queued() == 2);

  REQUIRE(bs.io.files.size() == 2);
  const Maildrop one = bs.io.file(0);
  CHECK(one.sender == "app@example.com");
  CHECK(one.recipients == std::vector<std::string>{"bob@example.org", "carol@example.org"});
  // The fields a plain submission adds, at the end of the header.
  CHECK(one.message ==
        "Subject: one\r\n"
        "Date: Mon, 26 Jan 2026 13:56:01 +0000\r\n"
        "From: app@example.com\r\n"
        "Message-ID: <20260126135601.123456.1092.0123456789abcdef@mail.example.net>\r\n"
        "\r\n.dot stuffed\r\nbody\r\n");
  const Maildrop two = bs.io.file(1);
  CHECK(two.sender.empty());
  CHECK(two.recipients == std::vector<std::string>{"dave@example.net"});
  CHECK(two.message ==
        "From: me@example.com\r\nDate: Mon, 26 Jan 2026 14:56:01 +0100\r\n"
        "Message-ID: <m@x>\r\n\r\nsecond\r\n");
  CHECK(bs.io.reports.empty());
}

TEST_CASE("-bs: a whole pipelined dialogue in one read gives its replies in order") {
  Bs bs;
  bs.io.take();
  const std::string out = bs.say(
      "EHLO app\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
      "Subject: 1\r\n\r\none\r\n.\r\n"
      "MAIL FROM:<a@example.com>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n"
      "Subject: 2\r\n\r\ntwo\r\n.\r\nQUIT\r\n");
  CHECK(out.find("250 2.0.0 Ok: queued as file1\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 ") !=
        std::string::npos);
  CHECK(out.ends_with("250 2.0.0 Ok: queued as file2\r\n221 2.0.0 Bye\r\n"));
  REQUIRE(bs.io.files.size() == 2);
  CHECK(bs.io.file(0).recipients == std::vector<std::string>{"b@example.org"});
  CHECK(bs.io.file(1).recipients == std::vector<std::string>{"c@example.org"});
  CHECK(bs.io.file(1).message.starts_with("Subject: 2\r\n"));
}

TEST_CASE("-bs: bad commands get the server's replies; no TLS, no AUTH") {
  Bs bs;
  bs.io.take();
  CHECK(bs.say("MAIL FROM:<a@example.com>\r\n") == "503 5.5.1 Error: send HELO/EHLO first\r\n");
  CHECK(bs.say("EHLO app\r\n").starts_with("250-"));
  CHECK(bs.say("STARTTLS\r\n") == "502 5.5.1 Error: command not implemented\r\n");
  CHECK(bs.say("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n") ==
        "503 5.5.1 Error: authentication not enabled\r\n");
  CHECK(bs.say("RCPT TO:<b@example.org>\r\n") == "503 5.5.1 Error: need MAIL command\r\n");
  CHECK(bs.say("DATA\r\n") == "503 5.5.1 Error: need MAIL command\r\n");
  CHECK(bs.say("FROB\r\n").starts_with("500 5.5."));
  CHECK(bs.say("MAIL FROM:<not an address>\r\n").starts_with("501 "));
  CHECK(bs.say("MAIL FROM:<a@example.com>\r\n") == "250 2.1.0 Ok\r\n");
  CHECK(bs.say("MAIL FROM:<a@example.com>\r\n") == "503 5.5.1 Error: nested MAIL command\r\n");
  CHECK(bs.say("RCPT TO:<b@example.org> NOTIFY=NEVER\r\n").starts_with("555 5.5.4"));
  CHECK(bs.say("QUIT\r\n") == "221 2.0.0 Bye\r\n");
  CHECK(bs.io.files.empty());
}

TEST_CASE("-bs: a message over the size limit is refused and writes nothing") {
  Bs bs;
  bs.say("EHLO app\r\n");
  CHECK(bs.say("MAIL FROM:<a@example.com> SIZE=9000\r\n") ==
        "552 5.3.4 Message size exceeds fixed limit\r\n");
  CHECK(bs.say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n").ends_with(
      "354 End data with <CR><LF>.<CR><LF>\r\n"));
  const std::string line(900, 'x');
  std::string big = "Subject: big\r\n\r\n";
  while (big.size() <= kLimit) big += line + "\r\n";
  CHECK(bs.say(big + ".\r\n") == "552 5.3.4 Error: message size exceeds fixed limit\r\n");
  CHECK(bs.io.files.empty());
  // Just under the advertised SIZE: accepted, and with the added fields it
  // still fits limits.max_message_size.
  bs.say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
  std::string fits = "Subject: fits\r\n\r\n";
  while (fits.size() + line.size() + 2 <= kLimit - kHeaderReserve) fits += line + "\r\n";
  CHECK(bs.say(fits + ".\r\n") == "250 2.0.0 Ok: queued as file1\r\n");
  REQUIRE(bs.io.files.size() == 1);
  CHECK(bs.io.file(0).message.size() <= kLimit);
}

TEST_CASE("-bs: end of input in the middle of DATA leaves no file") {
  Bs bs;
  bs.say("EHLO app\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n");
  bs.say("Subject: cut\r\n\r\nhalf a message\r\n");
  bs.dialogue->end_of_input();
  CHECK(bs.dialogue->done());
  CHECK(bs.io.files.empty());
  CHECK(bs.dialogue->queued() == 0);
  REQUIRE(bs.io.reports.size() == 1);
  CHECK(bs.io.reports[0].find("middle of DATA") != std::string::npos);
  // Even a final "." without its CRLF does not end the message.
  Bs cut;
  cut.say("EHLO app\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\r\n.");
  cut.dialogue->end_of_input();
  CHECK(cut.io.files.empty());
}

TEST_CASE("-bs: a maildrop write that fails is a 451, and the next message still goes") {
  Bs bs;
  bs.say("EHLO app\r\n");
  bs.io.fail_next_drop = true;
  CHECK(bs.say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\r\n.\r\n")
            .ends_with("451 4.3.0 Error: local error in processing, try again later\r\n"));
  CHECK(bs.io.reports == std::vector<std::string>{"no space left on device"});
  CHECK(bs.say("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\ny\r\n.\r\n")
            .ends_with("250 2.0.0 Ok: queued as file1\r\n"));
  CHECK(bs.dialogue->queued() == 1);
}

TEST_CASE("-bs: local recipients go through [aliases]") {
  Bs bs({{"root", {"admin@example.com"}}, {"www-data", {"dev@example.com", "ops@example.org"}}});
  bs.say("EHLO app\r\nMAIL FROM:<a@example.com>\r\n");
  CHECK(bs.say("RCPT TO:<root@MAIL.example.net>\r\n") == "250 2.1.5 Ok\r\n");
  CHECK(bs.say("RCPT TO:<postmaster>\r\n") == "250 2.1.5 Ok\r\n");  // same target: once
  CHECK(bs.say("RCPT TO:<WWW-DATA@localhost>\r\n") == "250 2.1.5 Ok\r\n");
  CHECK(bs.say("RCPT TO:<nobody@mail.example.net>\r\n") ==
        "550 5.1.1 <nobody@mail.example.net>: Recipient address rejected: no such local user\r\n");
  CHECK(bs.say("DATA\r\nx\r\n.\r\n").ends_with("250 2.0.0 Ok: queued as file1\r\n"));
  REQUIRE(bs.io.files.size() == 1);
  CHECK(bs.io.file(0).recipients ==
        std::vector<std::string>{"admin@example.com", "dev@example.com", "ops@example.org"});
}

TEST_CASE("-bs: the same recipient twice is stored once; a timeout ends the dialogue") {
  Bs bs;
  bs.say("EHLO app\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
         "RCPT TO:<b@EXAMPLE.org>\r\nDATA\r\nx\r\n.\r\n");
  REQUIRE(bs.io.files.size() == 1);
  CHECK(bs.io.file(0).recipients == std::vector<std::string>{"b@example.org"});
  CHECK(bs.dialogue->timeout() == std::chrono::minutes(5));
  bs.dialogue->on_timeout();
  CHECK(bs.io.take() == "421 4.4.2 Error: timeout exceeded\r\n");
  CHECK(bs.dialogue->done());
}
