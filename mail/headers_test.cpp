#include "mail/headers.hpp"

#include <catch2/catch.hpp>

using namespace sluice::mail;

namespace {
constexpr int64_t kNow = 1'700'000'000'000'000;  // Tue, 14 Nov 2023 22:13:20 UTC

Trace smtp_trace() {
  Trace t;
  t.by = "mx.example.net";
  t.id = "0123456789ABCDEF";
  t.unix_us = kNow;
  t.helo = "client.example.org";
  t.client_address = "192.0.2.7";
  t.with = "ESMTP";
  return t;
}
}  // namespace

TEST_CASE("rfc5322_date") {
  CHECK(rfc5322_date(kNow) == "Tue, 14 Nov 2023 22:13:20 +0000");
  CHECK(rfc5322_date(kNow + 999'999) == "Tue, 14 Nov 2023 22:13:20 +0000");
  CHECK(rfc5322_date(0) == "Thu, 01 Jan 1970 00:00:00 +0000");
  CHECK(rfc5322_date(-1) == "Wed, 31 Dec 1969 23:59:59 +0000");
  CHECK(rfc5322_date(1'769'435'761'000'000, 3600) == "Mon, 26 Jan 2026 14:56:01 +0100");
  CHECK(rfc5322_date(1'769'435'761'000'000, -5 * 3600 - 1800) == "Mon, 26 Jan 2026 08:26:01 -0530");
  CHECK(rfc5322_date(951'782'400'000'000) == "Tue, 29 Feb 2000 00:00:00 +0000");
  CHECK(rfc5322_date(1'735'689'599'000'000) == "Tue, 31 Dec 2024 23:59:59 +0000");
  CHECK(rfc5322_date(1'735'689'599'000'000, 1) == "Wed, 01 Jan 2025 00:00:00 +0000");
}

TEST_CASE("message_id") {
  CHECK(message_id(kNow, "0123456789ABCDEF", "mx.example.net") ==
        "<20231114221320.0123456789ABCDEF@mx.example.net>");
  CHECK(message_id(0, "x", "h") == "<19700101000000.x@h>");
}

TEST_CASE("received: SMTP, plain and in TLS, with one recipient or several") {
  Trace t = smtp_trace();
  CHECK(received(t) ==
        "Received: from client.example.org ([192.0.2.7])\r\n"
        "\tby mx.example.net (Sluice) with ESMTP id 0123456789ABCDEF; "
        "Tue, 14 Nov 2023 22:13:20 +0000\r\n");
  t.with = "ESMTPSA";
  t.tls_info = "TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)";
  t.for_recipient = "rcpt@example.com";
  CHECK(received(t) ==
        "Received: from client.example.org ([192.0.2.7])\r\n"
        "\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits))\r\n"
        "\tby mx.example.net (Sluice) with ESMTPSA id 0123456789ABCDEF\r\n"
        "\tfor <rcpt@example.com>; Tue, 14 Nov 2023 22:13:20 +0000\r\n");
}

TEST_CASE("received: local submission names the uid, never an address") {
  Trace t;
  t.by = "mx.example.net";
  t.id = "0123456789ABCDEF";
  t.unix_us = kNow;
  t.local_uid = 1000;
  CHECK(received(t) ==
        "Received: by mx.example.net (Sluice, from userid 1000)\r\n"
        "\tid 0123456789ABCDEF; Tue, 14 Nov 2023 22:13:20 +0000\r\n");
}

TEST_CASE("received: the HTTP API names the key, not the secret") {
  Trace t = smtp_trace();
  t.helo.clear();
  t.api_key = "shop";
  t.with = "HTTPS";
  CHECK(received(t) ==
        "Received: from [192.0.2.7] (API key shop)\r\n"
        "\tby mx.example.net (Sluice) with HTTPS id 0123456789ABCDEF; "
        "Tue, 14 Nov 2023 22:13:20 +0000\r\n");
}

TEST_CASE("missing_fields adds only what is missing: Date, Message-ID, From") {
  const Trace t = smtp_trace();
  std::string id;
  CHECK(missing_fields({true, true, true}, t, "a@example.org", &id).empty());
  CHECK(id.empty());
  CHECK(missing_fields({false, true, true}, t, "a@example.org", &id) ==
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n");
  CHECK(id.empty());
  CHECK(missing_fields({true, false, true}, t, "a@example.org", &id) ==
        "Message-ID: <20231114221320.0123456789ABCDEF@mx.example.net>\r\n");
  CHECK(id == "<20231114221320.0123456789ABCDEF@mx.example.net>");
  CHECK(missing_fields({true, true, false}, t, "a@example.org", nullptr) == "From: a@example.org\r\n");
  CHECK(missing_fields({}, t, "", nullptr) ==
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        "Message-ID: <20231114221320.0123456789ABCDEF@mx.example.net>\r\n"
        "From: MAILER-DAEMON@mx.example.net\r\n");
}

namespace {
// The answer for `content` fed whole, byte by byte and in pieces of 3.
bool tls_required_no(std::string_view content) {
  TlsRequiredScan whole;
  whole.feed(content);
  TlsRequiredScan bytes;
  for (char c : content) bytes.feed(std::string_view(&c, 1));
  TlsRequiredScan threes;
  for (size_t i = 0; i < content.size(); i += 3) threes.feed(content.substr(i, 3));
  CHECK(bytes.tls_required_no() == whole.tls_required_no());
  CHECK(threes.tls_required_no() == whole.tls_required_no());
  CHECK(bytes.in_headers() == whole.in_headers());
  return whole.tls_required_no();
}
}  // namespace

TEST_CASE("TlsRequiredScan: a TLS-Required: No field in the header section (RFC 8689 §3)") {
  CHECK(tls_required_no("Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n"));
  CHECK(tls_required_no("TLS-Required: No\r\n\r\n"));
  CHECK(tls_required_no("tls-required:no\r\n\r\n"));
  CHECK(tls_required_no("TLS-REQUIRED :\t NO \t\r\n\r\n"));
  CHECK(tls_required_no("TLS-Required:\r\n No\r\nSubject: x\r\n\r\n"));   // folded
  CHECK(tls_required_no("Subject: x\r\nTLS-Required: No\r\n"));           // no body
  CHECK(tls_required_no("A: b\r\nTLS-Required: Yes\r\nTLS-Required: No\r\n\r\n"));  // one is enough
  // Not it.
  CHECK_FALSE(tls_required_no(""));
  CHECK_FALSE(tls_required_no("Subject: x\r\n\r\nTLS-Required: No\r\n"));  // in the body
  CHECK_FALSE(tls_required_no("TLS-Required: Yes\r\n\r\n"));
  CHECK_FALSE(tls_required_no("TLS-Required: No thanks\r\n\r\n"));
  CHECK_FALSE(tls_required_no("TLS-Required: N\r\n o\r\n\r\n"));  // unfolds to "N o"
  CHECK_FALSE(tls_required_no("X-TLS-Required: No\r\n\r\n"));
  CHECK_FALSE(tls_required_no("TLS-Required-X: No\r\n\r\n"));
  CHECK_FALSE(tls_required_no("Subject: TLS-Required: No\r\n\r\n"));
  CHECK_FALSE(tls_required_no("Subject: x\r\n TLS-Required: No\r\n\r\n"));  // a continuation
  CHECK_FALSE(tls_required_no(" TLS-Required: No\r\n\r\n"));
  CHECK_FALSE(tls_required_no("TLS-Required: No" + std::string(100, ' ') + "x\r\n\r\n"));
  // A long field before does not disturb the next one.
  CHECK(tls_required_no("X-Long: " + std::string(5000, 'a') + "\r\nTLS-Required: No\r\n\r\n"));
  TlsRequiredScan s;
  s.feed("A: b\r\n\r\n");
  CHECK_FALSE(s.in_headers());
  s.feed("TLS-Required: No\r\n\r\n");
  CHECK_FALSE(s.tls_required_no());
}
