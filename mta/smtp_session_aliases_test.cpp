// The session's RCPT with [aliases] (SessionConfig::aliases): local names
// expanded at RCPT with the original kept as the DSN ORCPT, unknown ones
// refused with 550 5.1.1 as warnings, postmaster from any client, the
// recipient limit counted after expansion.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "mta/session_test_util.hpp"

using namespace sluice::mta::test;

namespace {

SessionConfig cfg(bool trusted, sluice::aliases::Table table) {
  SessionConfig c = relay_cfg(trusted);
  c.client_address = "192.0.2.1";
  c.max_message_size = SessionConfig{}.max_message_size;
  c.max_recipients = 4;
  c.aliases = std::make_shared<const sluice::aliases::Table>(std::move(table));
  return c;
}

const sluice::aliases::Table kTable = {
    {"root", {"admin@example.com"}},
    {"team", {"a@example.com", "b@example.com", "admin@example.com"}},
    {"postmaster", {"pm@example.com"}},
};

std::vector<std::string> addresses(const sluice::queue::Envelope& env) {
  std::vector<std::string> v;
  for (const auto& r : env.recipients) v.push_back(r.address + " " + r.orcpt);
  return v;
}

}  // namespace

TEST_CASE("aliases at RCPT: expanded in the envelope, the original kept as ORCPT") {
  Host h;
  Session s(cfg(true, kTable), h);
  s.start();
  s.feed("EHLO c\r\nMAIL FROM:<app@example.org>\r\n");
  h.take();
  s.feed("RCPT TO:<Root@MX.test>\r\n");
  s.feed("RCPT TO:<team@localhost>\r\n");  // admin@example.com is there already
  s.feed("RCPT TO:<postmaster>\r\n");
  CHECK(h.take() == "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n");
  s.feed("DATA\r\nx\r\n.\r\n");
  CHECK(addresses(h.last) == std::vector<std::string>{
                                 "admin@example.com rfc822;Root@MX.test",
                                 "a@example.com rfc822;team@localhost",
                                 "b@example.com rfc822;team@localhost",
                                 "pm@example.com rfc822;postmaster@mx.test",
                             });
  CHECK(h.warnings.empty());
}

TEST_CASE("aliases at RCPT: an unknown local name is 550 5.1.1, logged as a warning") {
  Host h;
  Session s(cfg(true, kTable), h);
  s.start();
  s.feed("EHLO c\r\nMAIL FROM:<app@example.org>\r\n");
  h.take();
  s.feed("RCPT TO:<nobody@mx.test>\r\n");
  CHECK(h.take() ==
        "550 5.1.1 <nobody@mx.test>: Recipient address rejected: no such local user\r\n");
  CHECK(h.warnings ==
        std::vector<std::string>{"RCPT <nobody@mx.test> (no [aliases] entry for the local name "
                                 "nobody) 550"});
  s.feed("DATA\r\n");
  CHECK(h.take() == "554 5.5.1 Error: no valid recipients\r\n");
  // An address with "+" shows in ORCPT as xtext; "*" catches it.
  Host h2;
  Session s2(cfg(true, {{"*", {"all@example.com"}}}), h2);
  s2.start();
  s2.feed("EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x+y=z@mx.test>\r\nDATA\r\nx\r\n.\r\n");
  CHECK(addresses(h2.last) == std::vector<std::string>{"all@example.com rfc822;x+2By+3Dz@mx.test"});
}

TEST_CASE("aliases at RCPT: postmaster from any client, other names need trust") {
  Host h;
  Session s(cfg(false, kTable), h);
  s.start();
  s.feed("EHLO c\r\nMAIL FROM:<someone@example.net>\r\n");
  h.take();
  s.feed("RCPT TO:<root@mx.test>\r\nRCPT TO:<bob@example.com>\r\n");
  CHECK(h.take() == "554 5.7.1 <root@mx.test>: Relay access denied\r\n"
                    "554 5.7.1 <bob@example.com>: Relay access denied\r\n");
  s.feed("RCPT TO:<POSTMASTER>\r\nRCPT TO:<postmaster@mx.test>\r\n");
  CHECK(h.take() == "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n");
  s.feed("DATA\r\nx\r\n.\r\n");
  // The second names the same target: it adds nothing.
  CHECK(addresses(h.last) ==
        std::vector<std::string>{"pm@example.com rfc822;POSTMASTER@mx.test"});
  // Without an entry for postmaster, root or "*", postmaster is refused: an
  // untrusted client as for any recipient, a trusted one with 550 5.1.1.
  Host h2;
  Session s2(cfg(false, {}), h2);
  s2.start();
  s2.feed("EHLO c\r\nMAIL FROM:<someone@example.net>\r\n");
  h2.take();
  s2.feed("RCPT TO:<postmaster>\r\n");
  CHECK(h2.take() == "554 5.7.1 <postmaster>: Relay access denied\r\n");
  Host h3;
  Session s3(cfg(true, {}), h3);
  s3.start();
  s3.feed("EHLO c\r\nMAIL FROM:<someone@example.net>\r\n");
  h3.take();
  s3.feed("RCPT TO:<postmaster>\r\n");
  CHECK(h3.take() == "550 5.1.1 <postmaster>: Recipient address rejected: no such local user\r\n");
}

TEST_CASE("aliases at RCPT: max_recipients counts the expanded addresses") {
  Host h;
  Session s(cfg(true, kTable), h);
  s.start();
  s.feed("EHLO c\r\nMAIL FROM:<app@example.org>\r\nRCPT TO:<x@example.net>\r\n"
         "RCPT TO:<y@example.net>\r\n");
  h.take();
  s.feed("RCPT TO:<team@mx.test>\r\n");  // three more: over the limit of 4
  CHECK(h.take() == "452 4.5.3 Error: too many recipients\r\n");
  s.feed("RCPT TO:<root@mx.test>\r\nRCPT TO:<z@example.net>\r\n");
  CHECK(h.take() == "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n");
}

TEST_CASE("aliases at RCPT: without a table local names are not special") {
  Host h;
  SessionConfig c = cfg(true, {});
  c.aliases.reset();
  Session s(c, h);
  s.start();
  s.feed("EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<root@mx.test>\r\nDATA\r\nx\r\n.\r\n");
  CHECK(addresses(h.last) == std::vector<std::string>{"root@mx.test "});
}
