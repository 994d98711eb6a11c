// The intake with a real spool (in a temporary directory) and a real loop:
// what it adds to each source's messages, that delivery gets each durable
// message once and before its source hears of it, and commits from another
// thread.
#include "mta/intake.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "dkim/message.hpp"

using sluice::mail::Trace;
using sluice::mta::Intake;
using sluice::queue::Envelope;
using sluice::queue::Spool;

namespace {

constexpr int64_t kNow = 1'700'000'000'000'000;  // Tue, 14 Nov 2023 22:13:20 UTC

struct Fixture {
  std::string dir;
  uv_loop_t loop;
  std::unique_ptr<Spool> spool;
  std::unique_ptr<Intake> intake;
  std::vector<Envelope> delivered;
  std::vector<std::string> events;  // "deliver ID" / "done ID ok"

  Fixture() {
    char tmpl[] = "/tmp/sluice-intake-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    Spool::Options o;
    o.dir = dir;
    o.exclusive = false;
    auto s = Spool::open(o);
    REQUIRE(s.has_value());
    spool = std::move(*s);
    uv_loop_init(&loop);
    intake = std::make_unique<Intake>(&loop, *spool);
    intake->deliver_to([this](const Envelope& env) {
      delivered.push_back(env);
      events.push_back("deliver " + env.id);
    });
  }
  ~Fixture() {
    spool.reset();
    intake->close();
    intake.reset();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    std::filesystem::remove_all(dir);
  }

  // Commits and runs the loop until the Done ran; returns the committed envelope.
  Envelope commit(std::unique_ptr<Intake::Message> m, Envelope env) {
    bool finished = false;
    Envelope out;
    intake->commit(std::move(m), std::move(env), [&](bool ok, const Envelope& e) {
      events.push_back("done " + e.id + (ok ? " ok" : " failed"));
      out = e;
      finished = true;
    });
    while (!finished) uv_run(&loop, UV_RUN_ONCE);
    return out;
  }

  std::string stored(const std::string& id) {
    std::string body;
    REQUIRE(spool->read_body(id, [&](std::string_view s) { body.append(s); }).has_value());
    return body;
  }
};

Trace smtp_trace() {
  Trace t;
  t.by = "mx.example.net";
  t.unix_us = kNow;
  t.helo = "client.example.org";
  t.client_address = "192.0.2.7";
  t.with = "ESMTPSA";
  t.for_recipient = "b@example.com";
  return t;
}

Envelope envelope() {
  Envelope e;
  e.sender = "a@example.org";
  e.arrival_us = kNow;
  sluice::queue::Recipient r;
  r.address = "b@example.com";
  e.recipients.push_back(r);
  return e;
}

}  // namespace

TEST_CASE("submission: the trace field, then the missing Date, Message-ID and From at the end of the headers") {
  Fixture f;
  auto m = f.intake->begin(Intake::Source::submission, smtp_trace());
  const std::string id = m->id();
  m->append("Subject: hi\r\n");
  m->end_of_headers({}, "a@example.org");
  m->append("\r\nbody\r\n");
  Envelope c = f.commit(std::move(m), envelope());
  const std::string expected =
      "Received: from client.example.org ([192.0.2.7])\r\n"
      "\tby mx.example.net (Sluice) with ESMTPSA id " + id + "\r\n"
      "\tfor <b@example.com>; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
      "Subject: hi\r\n"
      "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
      "Message-ID: <20231114221320." + id + "@mx.example.net>\r\n"
      "From: a@example.org\r\n"
      "\r\nbody\r\n";
  CHECK(f.stored(id) == expected);
  CHECK(c.id == id);
  CHECK(c.size == expected.size());
  CHECK(c.message_id == "<20231114221320." + id + "@mx.example.net>");
  // Delivery got it once, before the source heard.
  CHECK(f.events == std::vector<std::string>{"deliver " + id, "done " + id + " ok"});
  REQUIRE(f.delivered.size() == 1);
  CHECK(f.delivered[0].size == expected.size());
  CHECK(f.delivered[0].message_id == c.message_id);
  CHECK(f.spool->message_count() == 1);
  CHECK(f.intake->in_flight() == 0);
}

TEST_CASE("submission keeps the sender's own Date and Message-ID") {
  Fixture f;
  auto m = f.intake->begin(Intake::Source::submission, smtp_trace());
  m->append("Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <own@x>\r\n");
  m->end_of_headers({true, true, true}, "a@example.org");
  m->append("\r\nb\r\n");
  Envelope env = envelope();
  env.message_id = "<own@x>";
  Envelope c = f.commit(std::move(m), env);
  const std::string body = f.stored(c.id);
  CHECK(body.find("Date: ") == body.rfind("Date: "));
  CHECK(body.find("Message-ID: ") == body.rfind("Message-ID: "));
  CHECK(c.message_id == "<own@x>");
}

TEST_CASE("relay: the missing fields are added as on submission ([relay] add_missing_headers)") {
  Fixture f;
  Trace t = smtp_trace();
  t.with = "ESMTP";
  auto m = f.intake->begin(Intake::Source::relay, t);
  m->append("Subject: s\r\n");
  m->end_of_headers({false, false, false}, "app@example.org");
  m->append("\r\nbody\r\n");
  Envelope c = f.commit(std::move(m), envelope());
  const std::string body = f.stored(c.id);
  CHECK(body.ends_with("Subject: s\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
                       "Message-ID: <20231114221320." + c.id + "@mx.example.net>\r\n"
                       "From: app@example.org\r\n\r\nbody\r\n"));
  CHECK(c.message_id == "<20231114221320." + c.id + "@mx.example.net>");
}

TEST_CASE("relay with add_missing_headers off: the trace field only, a message without Date stays as sent") {
  Fixture f;
  f.intake->add_missing_on_relay(false);
  Trace t = smtp_trace();
  t.with = "ESMTP";
  auto m = f.intake->begin(Intake::Source::relay, t);
  m->append("Subject: s\r\n");
  m->end_of_headers({}, "a@example.org");
  Envelope c = f.commit(std::move(m), envelope());
  const std::string body = f.stored(c.id);
  CHECK(body.starts_with("Received: from client.example.org ([192.0.2.7])\r\n"));
  CHECK(body.ends_with("; Tue, 14 Nov 2023 22:13:20 +0000\r\nSubject: s\r\n"));
  CHECK(c.message_id.empty());
  CHECK(c.size == body.size());
}

TEST_CASE("local: the trace field names the uid; a bounce gets nothing added") {
  Fixture f;
  Trace t;
  t.by = "mx.example.net";
  t.unix_us = kNow;
  t.local_uid = 1000;
  auto m = f.intake->begin(Intake::Source::local, t);
  m->append("Subject: cron\r\n\r\nx\r\n");
  Envelope local = f.commit(std::move(m), envelope());
  CHECK(f.stored(local.id) == "Received: by mx.example.net (Sluice, from userid 1000)\r\n\tid " +
                                  local.id + "; Tue, 14 Nov 2023 22:13:20 +0000\r\nSubject: cron\r\n\r\nx\r\n");

  auto b = f.intake->begin(Intake::Source::bounce, Trace{});
  b->append("From: MAILER-DAEMON@mx.example.net\r\n\r\nreport\r\n");
  Envelope bounce = envelope();
  bounce.sender.clear();
  Envelope c = f.commit(std::move(b), bounce);
  CHECK(f.stored(c.id) == "From: MAILER-DAEMON@mx.example.net\r\n\r\nreport\r\n");
  CHECK(f.delivered.size() == 2);
  CHECK(f.delivered[1].sender.empty());
}

TEST_CASE("TLS-Required: No sets tls_optional, unless MAIL had REQUIRETLS (RFC 8689 §4.1)") {
  Fixture f;
  auto stored_env = [&](const std::string& id) {
    for (const Envelope& e : f.spool->messages())
      if (e.id == id) return e;
    FAIL("not in the spool: " << id);
    return Envelope{};
  };
  auto commit = [&](Intake::Source source, std::string content, bool requiretls) {
    auto m = f.intake->begin(source, smtp_trace());
    // In pieces that split the field, as the session streams it.
    for (size_t i = 0; i < content.size(); i += 5) m->append(std::string_view(content).substr(i, 5));
    Envelope env = envelope();
    env.requiretls = requiretls;
    return f.commit(std::move(m), env);
  };
  const std::string no = "Subject: s\r\nTLS-Required: No\r\n\r\nbody\r\n";
  Envelope c = commit(Intake::Source::relay, no, false);
  CHECK(c.tls_optional);
  CHECK_FALSE(c.requiretls);
  CHECK(f.delivered.back().tls_optional);
  CHECK(stored_env(c.id).tls_optional);  // stored (envelope version 3)
  c = commit(Intake::Source::submission, no, true);
  CHECK_FALSE(c.tls_optional);
  CHECK(c.requiretls);
  CHECK(stored_env(c.id).requiretls);
  c = commit(Intake::Source::local, "Subject: s\r\n\r\nTLS-Required: No\r\n", false);
  CHECK_FALSE(c.tls_optional);  // in the body: not a header field
  c = commit(Intake::Source::local, "tls-required:  no\r\n\r\nx\r\n", false);
  CHECK(c.tls_optional);
  c = commit(Intake::Source::bounce, no, false);
  CHECK_FALSE(c.tls_optional);  // Sluice's own bounces are never relaxed
}

TEST_CASE("a message given up before its commit is not stored and not delivered") {
  Fixture f;
  {
    auto m = f.intake->begin(Intake::Source::relay, smtp_trace());
    m->append("Subject: gone\r\n");
  }
  auto m = f.intake->begin(Intake::Source::relay, smtp_trace());
  m->append("Subject: kept\r\n");
  Envelope c = f.commit(std::move(m), envelope());
  CHECK(f.spool->message_count() == 1);
  REQUIRE(f.delivered.size() == 1);
  CHECK(f.delivered[0].id == c.id);
}

TEST_CASE("commits from another thread complete on the loop's thread") {
  Fixture f;
  const auto loop_thread = std::this_thread::get_id();
  int done = 0;
  bool on_loop = true;
  std::thread worker([&] {
    for (int i = 0; i < 20; ++i) {
      auto m = f.intake->begin(Intake::Source::local, Trace{});
      m->append("Subject: " + std::to_string(i) + "\r\n\r\nx\r\n");
      f.intake->commit(std::move(m), envelope(), [&](bool ok, const Envelope&) {
        on_loop = on_loop && std::this_thread::get_id() == loop_thread;
        done += ok;
      });
    }
  });
  while (done < 20) uv_run(&f.loop, UV_RUN_ONCE);
  worker.join();
  CHECK(on_loop);
  CHECK(f.delivered.size() == 20);
  CHECK(f.spool->message_count() == 20);
  CHECK(f.intake->in_flight() == 0);
}

namespace {

// One Ed25519 table for example.org (RFC 8463 Appendix A's key).
std::shared_ptr<const sluice::mta::Signing> example_org_signing() {
  constexpr std::string_view pem =
      "-----BEGIN PRIVATE KEY-----\n"
      "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
      "-----END PRIVATE KEY-----\n";
  auto key = sluice::dkim::Key::from_pem(pem);
  REQUIRE(key);
  sluice::conf::Dkim t;
  t.domain = "example.org";
  t.selector = "s1";
  t.index = 1;
  std::vector<sluice::mta::Signing::Signer> signers;
  signers.push_back({t, std::move(*key), {}});
  return std::make_shared<const sluice::mta::Signing>(std::move(signers));
}

// Whether `stored` starts with a signature by example.org's key that verifies.
bool signed_by_example_org(const std::string& stored) {
  sluice::dkim::Scan scan;
  scan.feed(stored);
  const auto fields = scan.fields();
  const std::string bh = scan.body_hash();
  auto signing = example_org_signing();
  return stored.starts_with("DKIM-Signature: v=1; a=ed25519-sha256;") &&
         sluice::dkim::verifies(fields, 0, bh, signing->signers()[0].key, "example.org", "s1");
}

}  // namespace

TEST_CASE("signing: on the thread pool from the loop, the signature in front, sized and delivered once") {
  Fixture f;
  f.intake->set_signing(example_org_signing());
  auto m = f.intake->begin(Intake::Source::submission, smtp_trace());
  const std::string id = m->id();
  m->append("From: a@example.org\r\nSubject: hi\r\n");
  m->end_of_headers({.from = true}, "a@example.org");
  m->append("\r\nbody\r\n");
  bool finished = false;
  f.intake->commit(std::move(m), envelope(), [&](bool ok, const Envelope& e) {
    f.events.push_back("done " + e.id + (ok ? " ok" : " failed"));
    finished = ok;
  });
  // Not committed yet: the signature is being made on the pool; drain()
  // waits for it.
  CHECK(f.intake->in_flight() == 0);
  bool drained = false;
  f.intake->drain([&] { drained = true; });
  CHECK_FALSE(drained);
  while (!finished) uv_run(&f.loop, UV_RUN_ONCE);
  CHECK(drained);
  const std::string stored = f.stored(id);
  CHECK(signed_by_example_org(stored));
  CHECK(stored.find("DKIM-Signature:", 10) == std::string::npos);  // one table, one signature
  REQUIRE(f.delivered.size() == 1);
  CHECK(f.delivered[0].size == stored.size());
  CHECK(f.events == std::vector<std::string>{"deliver " + id, "done " + id + " ok"});
  // The missing Date and Message-ID the intake added are signed too.
  CHECK(stored.find("h=From:From:Reply-To:Subject:Subject:Date:Date:Message-ID:To:Cc:Content-Type;") !=
        std::string::npos);
}

TEST_CASE("signing: a commit off the loop signs on its own thread; bounces and other domains are not signed") {
  Fixture f;
  f.intake->set_signing(example_org_signing());
  std::string local_id;
  int done = 0;
  std::thread worker([&] {
    auto m = f.intake->begin(Intake::Source::local, Trace{});
    local_id = m->id();
    m->append("From: a@example.org\r\n\r\nx\r\n");
    f.intake->commit(std::move(m), envelope(), [&](bool ok, const Envelope&) { done += ok; });
  });
  worker.join();
  while (done < 1) uv_run(&f.loop, UV_RUN_ONCE);
  CHECK(signed_by_example_org(f.stored(local_id)));

  auto b = f.intake->begin(Intake::Source::bounce, Trace{});
  const std::string bounce_id = b->id();
  b->append("From: MAILER-DAEMON@example.org\r\n\r\nbounce\r\n");
  f.commit(std::move(b), envelope());
  CHECK(f.stored(bounce_id) == "From: MAILER-DAEMON@example.org\r\n\r\nbounce\r\n");

  auto o = f.intake->begin(Intake::Source::relay, smtp_trace());
  const std::string other_id = o->id();
  o->append("From: a@example.net\r\n");
  o->end_of_headers({.from = true}, "a@example.net");
  o->append("\r\nx\r\n");
  f.commit(std::move(o), envelope());
  CHECK(f.stored(other_id).starts_with("Received: "));

  // Keys set to none: nothing signed from then on.
  f.intake->set_signing(nullptr);
  auto n = f.intake->begin(Intake::Source::relay, smtp_trace());
  const std::string none_id = n->id();
  n->append("From: a@example.org\r\n\r\nx\r\n");
  f.commit(std::move(n), envelope());
  CHECK(f.stored(none_id).starts_with("Received: "));
}
