// Session dialogues without sockets: a recording host stands in for the glue.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "mta/session_test_util.hpp"

using namespace sluice::mta::test;

TEST_CASE("greeting and EHLO advertise the extensions") {
  Host h;
  Session s(relay_cfg(), h);
  s.start();
  CHECK(h.take() == "220 mx.test ESMTP Sluice\r\n");
  s.feed("EHLO client.test\r\n");
  CHECK(h.take() ==
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-ENHANCEDSTATUSCODES\r\n"
        "250-8BITMIME\r\n250 SMTPUTF8\r\n");
  s.feed("HELO client.test\r\n");
  CHECK(h.take() == "250 mx.test\r\n");
}

TEST_CASE("a whole transaction in one pipelined write, replies in order") {
  Host h;
  Session s(relay_cfg(), h);
  s.start();
  h.take();
  s.feed(
      "EHLO c\r\nMAIL FROM:<a@x.test> SIZE=10\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\n"
      "DATA\r\n");
  CHECK(h.codes() == std::vector<int>{250, 250, 250, 250, 354});
  h.take();
  s.feed("Subject: hi\r\nMessage-ID: <m1@x.test>\r\n\r\n..dot\r\n.\r\nNOOP\r\nQUIT\r\n");
  // Blocked on the commit: NOOP and QUIT wait.
  CHECK(s.blocked());
  CHECK(h.out.empty());
  CHECK(h.committed == 1);
  CHECK(h.last.sender == "a@x.test");
  REQUIRE(h.last.recipients.size() == 2);
  CHECK(h.last.recipients[1].address == "c@y.test");
  CHECK(h.last.message_id == "<m1@x.test>");
  CHECK(h.content.starts_with("Received: from c ([127.0.0.1])\r\n\tby mx.test (Sluice) with ESMTP id 0123456789ABCDEF; "));
  CHECK(h.content.ends_with("Subject: hi\r\nMessage-ID: <m1@x.test>\r\n[eoh date=0 msgid=1 from=0 sender=a@x.test]\r\n.dot\r\n"));
  CHECK(h.trace.helo == "c");
  CHECK(h.trace.with == "ESMTP");
  CHECK(h.trace.for_recipient.empty());  // two recipients: neither is named
  s.on_commit(true, h.last);
  CHECK(h.take() == "250 2.0.0 Ok: queued as 0123456789ABCDEF\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n");
  CHECK(h.accepted_n == 1);
  CHECK(h.closed);
}

TEST_CASE("content split across feeds byte by byte gives the same message") {
  Host h;
  Session s(relay_cfg(), h);
  s.start();
  std::string all = "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nA: b\n\r\nbody\r\n.\r\nRSET\r\n";
  for (char ch : all) s.feed(std::string_view(&ch, 1));
  CHECK(h.committed == 1);
  CHECK(h.content.ends_with("A: b\r\n[eoh date=0 msgid=0 from=0 sender=]\r\nbody\r\n"));
  CHECK(h.content.find("\tfor <b@y.test>; ") != std::string::npos);
  s.on_commit(true, h.last);
  CHECK(h.codes() == std::vector<int>{220, 250, 250, 250, 354, 250, 250});
}

TEST_CASE("failed commit answers 451 and keeps the session") {
  Host h;
  Session s(relay_cfg(), h);
  s.feed("HELO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\n");
  s.on_commit(false, h.last);
  CHECK(h.codes() == std::vector<int>{250, 250, 250, 354, 451});
  CHECK(s.state() == Session::State::ready);
}

TEST_CASE("sequence errors") {
  Host h;
  Session s(relay_cfg(), h);
  s.feed("MAIL FROM:<a@x.test>\r\n");
  CHECK(h.take() == "503 5.5.1 Error: send HELO/EHLO first\r\n");
  s.feed("EHLO c\r\nRCPT TO:<b@y.test>\r\nDATA\r\nMAIL FROM:<a@x.test>\r\nMAIL FROM:<a@x.test>\r\nDATA\r\n");
  CHECK(h.codes() == std::vector<int>{250, 503, 503, 250, 503, 503});
  s.feed("RSET\r\nRCPT TO:<b@y.test>\r\n");
  CHECK(h.codes().back() == 503);
}

TEST_CASE("untrusted client on the relay listener is refused at RCPT") {
  Host h;
  Session s(relay_cfg(false), h);
  s.feed("EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
  CHECK(h.codes() == std::vector<int>{250, 250, 554, 554});
  CHECK(h.out.find("554 5.7.1 <b@y.test>: Relay access denied\r\n") != std::string::npos);
  CHECK(h.out.find("554 5.5.1 Error: no valid recipients\r\n") != std::string::npos);
  CHECK(h.begun == 0);
}

TEST_CASE("submission listener needs AUTH before MAIL") {
  Host h;
  auto cfg = relay_cfg(true);
  cfg.mode = Mode::submission;
  Session s(cfg, h);
  s.feed("EHLO c\r\nMAIL FROM:<a@x.test>\r\n");
  CHECK(h.out.ends_with("530 5.7.0 Authentication required\r\n"));
}

TEST_CASE("recipient limit answers 452 4.5.3 and keeps the earlier ones") {
  Host h;
  Session s(relay_cfg(), h);
  s.feed("EHLO c\r\nMAIL FROM:<a@x.test>\r\n");
  for (int i = 0; i < 5; ++i) s.feed("RCPT TO:<r" + std::to_string(i) + "@y.test>\r\n");
  CHECK(h.codes() == std::vector<int>{250, 250, 250, 250, 250, 452, 452});
  CHECK(h.out.find("452 4.5.3 ") != std::string::npos);
  s.feed("DATA\r\nx\r\n.\r\n");
  CHECK(h.last.recipients.size() == 3);
}

TEST_CASE("timeout closes with 421 4.4.2, aborting a message in DATA") {
  Host h;
  Session s(relay_cfg(), h);
  s.feed("EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\npartial");
  CHECK(s.timeout() == std::chrono::minutes(10));
  s.on_timeout();
  CHECK(h.out.ends_with("421 4.4.2 Error: timeout exceeded\r\n"));
  CHECK(h.aborted == 1);
  CHECK(h.closed);
}

TEST_CASE("shutdown waits for the message in progress") {
  Host h;
  Session s(relay_cfg(), h);
  s.feed("EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n");
  s.shutdown();
  CHECK_FALSE(h.closed);
  s.feed(".\r\n");
  s.on_commit(true, h.last);
  CHECK(h.out.ends_with("250 2.0.0 Ok: queued as 0123456789ABCDEF\r\n421 4.3.2 Service shutting down, closing transmission channel\r\n"));
  CHECK(h.closed);
}

TEST_CASE("parameters: BODY, SMTPUTF8, unknown") {
  Host h;
  Session s(relay_cfg(), h);
  s.feed("EHLO c\r\nMAIL FROM:<a@x.test> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<ü@y.test>\r\nRSET\r\n");
  CHECK(h.codes() == std::vector<int>{250, 250, 250, 250});
  h.take();
  s.feed("MAIL FROM:<a@x.test> FOO=1\r\nMAIL FROM:<a@x.test> BODY=9BIT\r\nMAIL FROM:<ä@x.test>\r\n");
  CHECK(h.take() ==
        "555 5.5.4 Error: unsupported parameter FOO\r\n501 5.5.4 Error: BODY must be 7BIT or "
        "8BITMIME\r\n553 5.6.7 Error: non-ASCII address needs SMTPUTF8\r\n");
}

TEST_CASE("VRFY, HELP, EXPN, AUTH, STARTTLS replies") {
  Host h;
  Session s(relay_cfg(), h);
  s.feed("VRFY bob\r\nHELP\r\nEXPN list\r\nSTARTTLS\r\nAUTH PLAIN\r\n");
  CHECK(h.codes() == std::vector<int>{252, 214, 502, 502, 503});
}

TEST_CASE("STARTTLS: offered, plaintext after it discarded, session restarts") {
  Host h;
  auto cfg = relay_cfg();
  cfg.tls_offered = true;
  Session s(cfg, h);
  s.feed("EHLO c\r\n");
  CHECK(h.take().find("250 STARTTLS\r\n") != std::string::npos);
  s.feed("MAIL FROM:<a@x.test>\r\nSTARTTLS\r\n");
  CHECK(h.take() == "250 2.1.0 Ok\r\n503 5.5.1 Error: STARTTLS not allowed during a mail transaction\r\n");
  s.feed("RSET\r\nSTARTTLS\r\nNOOP\r\nMAIL FROM:<evil@x.test>\r\n");
  CHECK(h.take() == "250 2.0.0 Ok\r\n220 2.0.0 Ready to start TLS\r\n");
  CHECK(h.tls_started == 1);
  s.feed("NOOP\r\n");  // anything before the handshake completes is ignored
  CHECK(h.out.empty());
  s.on_tls_started("TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)");
  s.feed("MAIL FROM:<a@x.test>\r\n");  // EHLO state forgotten
  CHECK(h.take() == "503 5.5.1 Error: send HELO/EHLO first\r\n");
  s.feed("EHLO c\r\n");
  CHECK(h.out.find("STARTTLS") == std::string::npos);
  h.take();
  s.feed("STARTTLS\r\n");
  CHECK(h.take() == "554 5.5.1 Error: TLS already active\r\n");
  s.feed("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\n");
  CHECK(h.content.starts_with("Received: from c ([127.0.0.1])\r\n\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits))\r\n\tby mx.test (Sluice) with ESMTPS id "));
}

TEST_CASE("REQUIRETLS: offered only in TLS; MAIL's parameter refused outside it, kept inside") {
  Host h;
  auto cfg = relay_cfg();
  cfg.tls_offered = true;
  Session s(cfg, h);
  s.feed("EHLO c\r\n");
  std::string ehlo = h.take();
  CHECK(ehlo.find("STARTTLS") != std::string::npos);
  CHECK(ehlo.find("REQUIRETLS") == std::string::npos);
  // Known, but not usable in plaintext: 530 5.7.10, and no transaction.
  s.feed("MAIL FROM:<a@x.test> REQUIRETLS\r\n");
  CHECK(h.take() == "530 5.7.10 Error: REQUIRETLS needs a TLS session; issue STARTTLS first\r\n");
  CHECK(s.state() == Session::State::ready);
  s.feed("STARTTLS\r\n");
  h.take();
  s.on_tls_started("TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)");
  s.feed("EHLO c\r\n");
  CHECK(h.take() ==
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-ENHANCEDSTATUSCODES\r\n"
        "250-8BITMIME\r\n250-SMTPUTF8\r\n250 REQUIRETLS\r\n");
  s.feed("MAIL FROM:<a@x.test> REQUIRETLS=yes\r\n");
  CHECK(h.take() == "501 5.5.4 Error: REQUIRETLS takes no value\r\n");
  // Any case, with other parameters; the flag reaches the commit.
  s.feed("MAIL FROM:<a@x.test> SIZE=10 requiretls\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
         "Subject: hi\r\nTLS-Required: No\r\n\r\nx\r\n.\r\n");
  CHECK(h.codes() == std::vector<int>{250, 250, 354});
  h.take();
  CHECK(h.committed == 1);
  CHECK(h.last.requiretls);
  s.on_commit(true, h.last);
  CHECK(h.codes() == std::vector<int>{250});
  h.take();
  // The next transaction starts without it.
  s.feed("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\n");
  CHECK(h.committed == 2);
  CHECK_FALSE(h.last.requiretls);
  s.on_commit(true, h.last);

  // After HELO, no parameters at all (as for every extension).
  Host h2;
  auto tls_cfg = relay_cfg();
  tls_cfg.in_tls = true;
  Session s2(tls_cfg, h2);
  s2.feed("HELO c\r\nMAIL FROM:<a@x.test> REQUIRETLS\r\n");
  CHECK(h2.codes() == std::vector<int>{250, 555});
}

TEST_CASE("STARTTLS not offered without a certificate; handshake timeout closes silently") {
  Host h;
  auto cfg = relay_cfg();
  Session s(cfg, h);
  s.feed("STARTTLS\r\n");
  CHECK(h.take() == "502 5.5.1 Error: command not implemented\r\n");
  cfg.tls_offered = true;
  cfg.command_timeout = std::chrono::minutes(5);
  Host h2;
  Session s2(cfg, h2);
  s2.feed("STARTTLS\r\n");
  h2.take();
  CHECK(s2.timeout() == std::chrono::seconds(30));
  s2.on_timeout();
  CHECK(h2.out.empty());
  CHECK(h2.closed);
}

namespace {
SessionConfig submission_cfg(bool in_tls) {
  SessionConfig c = relay_cfg(false);
  c.mode = Mode::submission;
  c.auth_offered = true;
  c.tls_offered = true;
  c.in_tls = in_tls;
  c.tls_info = "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)";
  return c;
}
}  // namespace

TEST_CASE("AUTH is refused before TLS on submission (538) and MAIL needs AUTH (530)") {
  Host h;
  Session s(submission_cfg(false), h);
  s.feed("EHLO c\r\n");
  CHECK(h.out.find("AUTH") == std::string::npos);
  h.take();
  s.feed("AUTH PLAIN AGFAYg==\r\nMAIL FROM:<a@x.test>\r\n");
  CHECK(h.take() ==
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
        "530 5.7.0 Authentication required\r\n");
  CHECK(h.checked.empty());
}

TEST_CASE("AUTH PLAIN with initial response inside TLS, then sender policy") {
  Host h;
  Session s(submission_cfg(true), h);
  s.feed("EHLO c\r\n");
  CHECK(h.take().find("250-AUTH PLAIN LOGIN\r\n250 REQUIRETLS\r\n") != std::string::npos);
  // \0alice@x.test\0secret
  s.feed("AUTH PLAIN AGFsaWNlQHgudGVzdABzZWNyZXQ=\r\nMAIL FROM:<alice@x.test>\r\n");
  CHECK(s.blocked());
  REQUIRE(h.checked == std::vector<std::string>{"alice@x.test:secret"});
  CHECK(h.out.empty());
  s.on_auth_result(true, "alice@x.test");
  CHECK(h.take() == "235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n");
  s.feed("RSET\r\nMAIL FROM:<bob@x.test>\r\nMAIL FROM:<>\r\nMAIL FROM:<x@allowed.test>\r\n");
  CHECK(h.take() ==
        "250 2.0.0 Ok\r\n553 5.7.1 <bob@x.test>: Sender address rejected: not owned by user "
        "alice@x.test\r\n553 5.7.1 <>: Sender address rejected: null sender not allowed on "
        "submission\r\n250 2.1.0 Ok\r\n");
  s.feed("RCPT TO:<anyone@far.test>\r\nDATA\r\nSubject: no date\r\n\r\nbody\r\n.\r\n");
  REQUIRE(h.committed == 1);
  CHECK(h.last.auth_user == "alice@x.test");
  CHECK(h.content.find("with ESMTPSA id 0123456789ABCDEF") != std::string::npos);
  CHECK(h.content.find("(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))") != std::string::npos);
  // The end of the header section is reported where the intake adds the
  // missing Date and Message-ID (mta/intake_test.cpp), with neither present.
  CHECK(h.content.ends_with("Subject: no date\r\n[eoh date=0 msgid=0 from=0 sender=x@allowed.test]\r\nbody\r\n"));
  CHECK(h.last.message_id.empty());
  s.feed("AUTH PLAIN AGFsaWNlQHgudGVzdABzZWNyZXQ=\r\n");
}

TEST_CASE("the end of the header section is reported with the sender's Date, Message-ID and From") {
  for (bool submission : {true, false}) {
    Host h;
    SessionConfig cfg = submission ? submission_cfg(true) : relay_cfg();
    Session s(cfg, h);
    s.feed("EHLO c\r\n");
    if (submission) {
      s.feed("AUTH PLAIN AGFsaWNlQHgudGVzdABzZWNyZXQ=\r\n");
      s.on_auth_result(true, "alice@x.test");
    }
    s.feed("MAIL FROM:<alice@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
    s.feed("Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <own@x.test>\r\nFrom: <alice@x.test>\r\n\r\nb\r\n.\r\n");
    CHECK(h.content.ends_with("<own@x.test>\r\nFrom: <alice@x.test>\r\n[eoh date=1 msgid=1 from=1 sender=alice@x.test]\r\nb\r\n"));
    CHECK(h.last.message_id == "<own@x.test>");
    // No empty line: the header section runs to the end of the message.
    s.on_commit(true, h.last);
    s.feed("MAIL FROM:<alice@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nSubject: s\r\n.\r\n");
    CHECK(h.content.ends_with("Subject: s\r\n[eoh date=0 msgid=0 from=0 sender=alice@x.test]"));
    CHECK(h.trace.for_recipient == "b@y.test");
    CHECK(h.trace.with == (submission ? "ESMTPSA" : "ESMTP"));
  }
}

TEST_CASE("AUTH LOGIN challenge dialogue, cancel, failures close the session") {
  Host h;
  auto cfg = submission_cfg(true);
  Session s(cfg, h);
  s.feed("EHLO c\r\n");
  h.take();
  s.feed("AUTH LOGIN\r\n");
  CHECK(h.take() == "334 VXNlcm5hbWU6\r\n");
  s.feed("*\r\n");
  CHECK(h.take().starts_with("501 5.7.0 "));
  s.feed("AUTH LOGIN\r\ndXNlcg==\r\n");
  CHECK(h.take() == "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n");
  s.feed("d3Jvbmc=\r\n");
  CHECK(h.checked.back() == "user:wrong");
  s.on_auth_result(false, "user");
  CHECK(h.take() == "535 5.7.8 Authentication credentials invalid\r\n");
  s.feed("AUTH PLAIN AHVzZXIAd3Jvbmc=\r\n");
  s.on_auth_result(false, "user");
  CHECK_FALSE(h.closed);
  s.feed("AUTH PLAIN AHVzZXIAd3Jvbmc=\r\n");
  s.on_auth_result(false, "user");
  CHECK(h.out.ends_with("535 5.7.8 Authentication credentials invalid\r\n421 4.7.0 Error: too many authentication failures\r\n"));
  CHECK(h.closed);
  // The password never reaches the log.
  for (const auto& r : h.rejects) CHECK(r.find("d3Jvbmc") == std::string::npos);
}

TEST_CASE("AUTH on a relay listener: trusted clients without TLS; authenticated may relay") {
  Host h;
  auto cfg = relay_cfg(true);
  cfg.auth_offered = true;
  Session s(cfg, h);
  s.feed("EHLO c\r\n");
  CHECK(h.take().find("250 AUTH PLAIN LOGIN\r\n") != std::string::npos);
  Host h2;
  cfg.trusted = false;
  Session s2(cfg, h2);
  s2.feed("EHLO c\r\nAUTH PLAIN AHVAeC50ZXN0AHB3\r\n");
  CHECK(h2.out.ends_with("538 5.7.11 Encryption required for requested authentication mechanism\r\n"));
  cfg.in_tls = true;
  Host h3;
  Session s3(cfg, h3);
  s3.feed("EHLO c\r\nAUTH PLAIN AHVAeC50ZXN0AHB3\r\n");
  s3.on_auth_result(true, "u@x.test");
  s3.feed("MAIL FROM:<u@x.test>\r\nRCPT TO:<far@away.test>\r\n");
  CHECK(h3.out.ends_with("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"));
}

// ---------------------------------------------------------------------------
// The free-space reserve (issue 11): limits.min_free_space.

namespace {
struct SpaceHost : Host {
  uint64_t free = 0;
  std::vector<uint64_t> asked;  // the low_water of every question
  uint64_t spool_free_space(uint64_t low_water) override {
    asked.push_back(low_water);
    return free;
  }
};
}  // namespace

TEST_CASE("MAIL FROM below the free-space reserve: 452 4.3.1, counting the declared SIZE") {
  SpaceHost h;
  SessionConfig c = relay_cfg();
  c.min_free_space = 1500;
  Session s(c, h);
  s.start();
  s.feed("EHLO c\r\n");
  h.take();
  h.free = 1499;
  s.feed("MAIL FROM:<a@x.test>\r\n");
  CHECK(h.take() == "452 4.3.1 Insufficient system storage\r\n");
  CHECK(s.state() == Session::State::ready);
  REQUIRE(h.rejects.size() == 1);
  CHECK(h.rejects.back() == "MAIL <a@x.test> 452");
  h.free = 1500;  // exactly the reserve: accepted without SIZE ...
  s.feed("MAIL FROM:<a@x.test>\r\n");
  CHECK(h.take() == "250 2.1.0 Ok\r\n");
  s.feed("RSET\r\nMAIL FROM:<a@x.test> SIZE=1\r\n");  // ... but not with one more byte declared
  CHECK(h.codes() == std::vector<int>{250, 452});
  h.take();
  h.free = 2500;
  s.feed("MAIL FROM:<a@x.test> SIZE=1000\r\nRCPT TO:<b@y.test>\r\n");
  CHECK(h.codes() == std::vector<int>{250, 250});
  CHECK(h.asked.back() == 2500);  // the host is told how much is needed
  // A temporary refusal is not a client error: it never ends the session.
  h.take();
  h.free = 0;
  s.feed("RSET\r\n");
  for (int i = 0; i < 20; ++i) s.feed("MAIL FROM:<a@x.test>\r\n");
  CHECK_FALSE(s.closed());
}

TEST_CASE("the reserve is off at 0, and a syntax error still comes first") {
  SpaceHost h;
  SessionConfig c = relay_cfg();
  c.min_free_space = 0;
  Session s(c, h);
  s.feed("EHLO c\r\nMAIL FROM:<a@x.test>\r\n");
  CHECK(h.codes() == std::vector<int>{250, 250});
  CHECK(h.asked.empty());  // never asked: no statvfs at all
  SpaceHost h2;
  c.min_free_space = 100;
  Session s2(c, h2);
  s2.feed("EHLO c\r\nMAIL FROM:<a@x.test> SIZE=x\r\nMAIL FROM:<a@x.test> SIZE=1001\r\n");
  CHECK(h2.codes() == std::vector<int>{250, 501, 552});
}

// The command table, state by state: every verb (with its arguments' and
// parameters' variants) sent in every state a command can arrive in, under
// each kind of listener, against a golden transcript. The transcript was
// recorded before the dispatch became a table (mta/testdata/
// session_commands.ref), so every reply, code, enhanced code, log hook and
// state change is pinned byte for byte. SLUICE_UPDATE_GOLDEN=1 rewrites it.
namespace {

struct NamedCfg {
  const char* name;
  SessionConfig cfg;
};

std::vector<NamedCfg> matrix_configs() {
  std::vector<NamedCfg> v;
  v.push_back({"relay-trusted", relay_cfg(true)});
  v.push_back({"relay-untrusted", relay_cfg(false)});
  auto tls_auth = relay_cfg(true);
  tls_auth.tls_offered = true;
  tls_auth.auth_offered = true;
  v.push_back({"relay-trusted-tls-auth", tls_auth});
  v.push_back({"submission-plain", submission_cfg(false)});
  v.push_back({"submission-tls", submission_cfg(true)});
  return v;
}

// "!auth" in a setup answers a pending password check with success.
const std::vector<std::vector<std::string>> kSetups = {
    {},
    {"HELO c"},
    {"EHLO c"},
    {"EHLO c", "AUTH PLAIN AGFAeC50ZXN0AHB3", "!auth"},
    {"HELO c", "MAIL FROM:<a@x.test>"},
    {"EHLO c", "MAIL FROM:<a@x.test>"},
    {"EHLO c", "MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>"},
    {"EHLO c", "AUTH PLAIN AGFAeC50ZXN0AHB3", "!auth", "MAIL FROM:<a@x.test>"},
    {"EHLO c", "AUTH PLAIN AGFAeC50ZXN0AHB3", "!auth", "MAIL FROM:<a@x.test>",
     "RCPT TO:<b@y.test>"},
};

const std::vector<std::string> kProbes = {
    "EHLO c2", "HELO c2", "MAIL FROM:<p@x.test>", "MAIL FROM:<a@x.test> SIZE=10 BODY=8BITMIME SMTPUTF8",
    "MAIL FROM:<p@x.test> SIZE=x", "MAIL FROM:<p@x.test> SIZE=99999", "MAIL FROM:<p@x.test> BODY=7bit",
    "MAIL FROM:<p@x.test> BODY=9BIT", "MAIL FROM:<p@x.test> SMTPUTF8=1", "MAIL FROM:<p@x.test> FOO=1",
    "MAIL FROM:<p@x.test> REQUIRETLS",
    "MAIL FROM:<p\xc3\xa9@x.test>", "MAIL FROM:<>", "RCPT TO:<q@y.test>",
    "RCPT TO:<q@y.test> NOTIFY=NEVER", "RCPT TO:<q\xc3\xa9@y.test>", "DATA", "RSET", "NOOP", "QUIT",
    "VRFY x", "HELP", "EXPN x", "BDAT 10 LAST", "STARTTLS", "AUTH PLAIN", "AUTH LOGIN",
    "AUTH PLAIN AGFAeC50ZXN0AHB3", "AUTH CRAM-MD5", "FOO", "MAIL TO:<x@y.test>",
};

void transcript_lines(std::string& t, const std::string& prefix, const std::string& bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t e = bytes.find("\r\n", pos);
    if (e == std::string::npos) e = bytes.size();
    t += prefix + bytes.substr(pos, e - pos) + "\n";
    pos = e + 2;
  }
}

std::string command_matrix() {
  std::string t;
  for (const auto& nc : matrix_configs()) {
    for (const auto& setup : kSetups) {
      for (const auto& probe : kProbes) {
        Host h;
        Session s(nc.cfg, h);
        s.start();
        for (const auto& line : setup) {
          if (line == "!auth") {
            if (s.state() == Session::State::auth_checking) s.on_auth_result(true, "a@x.test");
          } else {
            s.feed(line + "\r\n");
          }
        }
        t += fmt::format("{} [", nc.name);
        for (size_t i = 0; i < setup.size(); ++i) t += (i ? " / " : "") + setup[i];
        t += fmt::format("] {} ({})\n", probe, Session::to_string(s.state()));
        h.out.clear();
        h.rejects.clear();
        const int tls_before = h.tls_started;
        const size_t checked_before = h.checked.size();
        s.feed(probe + "\r\n");
        transcript_lines(t, "  < ", h.out);
        for (const auto& r : h.rejects) t += "  ! " + r + "\n";
        t += fmt::format("  = {}{}{}{}\n", Session::to_string(s.state()), h.closed ? " closed" : "",
                         h.tls_started > tls_before ? " start_tls" : "",
                         h.checked.size() > checked_before ? " check_password" : "");
      }
    }
  }
  return t;
}

}  // namespace

TEST_CASE("command table: every verb in every state replies as recorded") {
  const std::string path = SLUICE_TESTDATA "/session_commands.ref";
  const std::string got = command_matrix();
  if (std::getenv("SLUICE_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path, std::ios::binary) << got;
    WARN("rewrote " << path);
  }
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream want;
  want << in.rdbuf();
  // Line by line, so a failure names the first difference.
  std::istringstream a(got), b(want.str());
  std::string la, lb, context;
  int n = 0;
  while (true) {
    bool ga = static_cast<bool>(std::getline(a, la));
    bool gb = static_cast<bool>(std::getline(b, lb));
    ++n;
    if (!ga && !gb) break;
    if (!la.starts_with("  ")) context = la;
    INFO("line " << n << " in " << context);
    REQUIRE(la == lb);
  }
}

TEST_CASE("command table: the EHLO keywords are the registered extensions, in today's order") {
  CHECK(Session::extensions() ==
        std::vector<std::string_view>{"PIPELINING", "SIZE", "ENHANCEDSTATUSCODES", "8BITMIME",
                                      "SMTPUTF8", "STARTTLS", "AUTH", "REQUIRETLS"});
  // A trusted relay client with a certificate and a users file is offered all of them.
  Host h;
  auto cfg = relay_cfg(true);
  cfg.tls_offered = true;
  cfg.auth_offered = true;
  Session s(cfg, h);
  s.feed("EHLO c\r\n");
  CHECK(h.take() ==
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-ENHANCEDSTATUSCODES\r\n"
        "250-8BITMIME\r\n250-SMTPUTF8\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n");
  std::vector<std::string> keywords;
  for (auto name : Session::extensions()) keywords.emplace_back(name);
  // REQUIRETLS only once in TLS (where STARTTLS is no longer offered).
  REQUIRE(keywords.back() == "REQUIRETLS");
  keywords.pop_back();
  // Each line starts with its extension's name, in the same order.
  std::vector<std::string> lines = {"PIPELINING", "SIZE 1000", "ENHANCEDSTATUSCODES", "8BITMIME",
                                    "SMTPUTF8", "STARTTLS", "AUTH PLAIN LOGIN"};
  REQUIRE(lines.size() == keywords.size());
  for (size_t i = 0; i < lines.size(); ++i) CHECK(lines[i].starts_with(keywords[i]));
}

TEST_CASE("command table: which verb is allowed in which state") {
  using sluice::proto::Verb;
  using St = Session::State;
  const std::vector<St> command_states = {St::connected, St::ready, St::mail, St::rcpt};
  for (Verb v : {Verb::ehlo, Verb::helo, Verb::rset, Verb::noop, Verb::quit, Verb::vrfy, Verb::help})
    for (St st : command_states) CHECK(Session::allowed(v, st));
  for (Verb v : {Verb::expn, Verb::bdat})  // no row: 502
    for (St st : command_states) CHECK_FALSE(Session::allowed(v, st));
  CHECK(!Session::allowed(Verb::mail, St::connected));
  CHECK(Session::allowed(Verb::mail, St::ready));
  CHECK(!Session::allowed(Verb::mail, St::mail));
  CHECK(!Session::allowed(Verb::mail, St::rcpt));
  CHECK(!Session::allowed(Verb::rcpt, St::ready));
  CHECK(Session::allowed(Verb::rcpt, St::mail));
  CHECK(Session::allowed(Verb::rcpt, St::rcpt));
  CHECK(!Session::allowed(Verb::data, St::mail));
  CHECK(Session::allowed(Verb::data, St::rcpt));
  CHECK(Session::allowed(Verb::starttls, St::connected));
  CHECK(Session::allowed(Verb::starttls, St::ready));
  CHECK(!Session::allowed(Verb::starttls, St::mail));
  CHECK(!Session::allowed(Verb::auth, St::connected));
  CHECK(Session::allowed(Verb::auth, St::ready));
  CHECK(!Session::allowed(Verb::auth, St::rcpt));
}

TEST_CASE("command table: a refused verb keeps the state and counts as an error") {
  auto cfg = relay_cfg(true);
  cfg.max_errors = 4;
  Host h;
  Session s(cfg, h);
  s.feed("EHLO c\r\nMAIL FROM:<a@x.test>\r\n");
  h.take();
  s.feed("MAIL FROM:<b@x.test>\r\nDATA\r\nEXPN x\r\n");
  CHECK(h.take() ==
        "503 5.5.1 Error: nested MAIL command\r\n503 5.5.1 Error: need RCPT command\r\n"
        "502 5.5.1 Error: command not implemented\r\n");
  CHECK(h.rejects == std::vector<std::string>{"MAIL 503", "DATA 503", "EXPN 502"});
  CHECK(s.state() == Session::State::mail);
  s.feed("BDAT 1 LAST\r\n");  // the fourth error
  CHECK(h.take() ==
        "502 5.5.1 Error: command not implemented\r\n421 4.7.0 Error: too many errors\r\n");
  CHECK(s.closed());
}

TEST_CASE("every state change is reported once, old -> new") {
  Host h;
  auto cfg = submission_cfg(true);
  Session s(cfg, h);
  s.start();
  s.feed("EHLO c\r\nAUTH PLAIN AGFsaWNlQHgudGVzdABzZWNyZXQ=\r\n");
  s.on_auth_result(true, "alice@x.test");
  s.feed("MAIL FROM:<alice@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n"
         "Subject: x\r\n\r\nhi\r\n.\r\n");
  s.on_commit(true, h.last);
  // A refused command (the second MAIL) changes nothing; EHLO in ready is no change.
  s.feed("EHLO again\r\nMAIL FROM:<alice@x.test>\r\nMAIL FROM:<alice@x.test>\r\nRSET\r\nQUIT\r\n");
  CHECK(h.transitions ==
        std::vector<std::string>{"connected -> ready", "ready -> auth_checking",
                                 "auth_checking -> ready", "ready -> mail", "mail -> rcpt",
                                 "rcpt -> data", "data -> committing", "committing -> ready",
                                 "ready -> mail", "mail -> ready", "ready -> quitting"});
}
