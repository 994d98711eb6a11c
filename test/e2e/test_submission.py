"""Submission end to end: STARTTLS on a `submission` listener, implicit TLS
on `submissions`, AUTH PLAIN/LOGIN against a users file (yescrypt, bcrypt and
SHA-512 hashes made with mkpasswd / openssl), sender policy, the Date and
Message-ID fixes, TLS robustness (STARTTLS injection, garbage, stalled
handshakes), password hashing off the event loop, and SIGHUP reloads.

Clients: smtplib (the flow of a mail client), swaks, openssl s_client and
raw sockets (ssl-wrapped) for exact bytes. Every test runs its own daemon,
which makes its own self-signed certificate on first start.
"""
import base64
import os
import random
import re
import shutil
import smtplib
import socket
import ssl
import statistics
import subprocess
import threading
import time
import unittest

from harness import (HOSTNAME, SluicedTest, SubmissionSluiced, TlsClient, pem_fingerprint,
                     smtp_ssl, smtp_starttls, tls_context, user_line)

ALICE = ("alice@example.org", "Alice-pw-1")
BOB = ("bob", "Bob-pw-2")
CAROL = ("carol@example.org", "Carol-pw-3")   # bcrypt
DAVE = ("dave@example.org", "Dave-pw-4")      # SHA-512 crypt
ERIN = ("erin@example.org", "Erin-pw-5")      # added by a reload


def users(*extra):
    return [user_line(ALICE[0], ALICE[1]),
            user_line(BOB[0], BOB[1], senders="bob@example.org,@example.net"),
            user_line(CAROL[0], CAROL[1], "bcrypt"),
            user_line(DAVE[0], DAVE[1], "sha512")] + list(extra)


def plain(login, password, authzid=""):
    return base64.b64encode(("%s\0%s\0%s" % (authzid, login, password)).encode()).decode()


def b64(s):
    return base64.b64encode(s.encode()).decode()


EHLO_PLAIN_587 = (b"250-mx.sluice.test\r\n250-PIPELINING\r\n250-SIZE 36700160\r\n"
                  b"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 STARTTLS\r\n")
EHLO_IN_TLS = (b"250-mx.sluice.test\r\n250-PIPELINING\r\n250-SIZE 36700160\r\n"
               b"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 AUTH PLAIN LOGIN\r\n")
AUTH_OK = b"235 2.7.0 Authentication successful\r\n"
AUTH_BAD = b"535 5.7.8 Authentication credentials invalid\r\n"
RFC5322_DATE = rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000"


def split_message(body):
    """(Received header, rest of the header section, content after the blank line)."""
    m = re.match(rb"(Received: [^\r]*\r\n(?:\t[^\r]*\r\n)*)", body)
    assert m, body[:300]
    rest = body[m.end():]
    if b"\r\n\r\n" in rest:
        head, content = rest.split(b"\r\n\r\n", 1)
        return m.group(1), head + b"\r\n", content
    return m.group(1), rest, b""


class SubmissionTest(SluicedTest):
    """self.d is a started SubmissionSluiced (587 first, then 465)."""

    def config(self):
        return {}

    def setUp(self):
        cfg = dict({"users": users()}, **self.config())
        # A failed AUTH is answered limits.auth_failure_delay after it began
        # (1 s by default; test_hardening_auth covers it): short here, so
        # that the suite's many deliberate failures stay fast.
        cfg["limits"] = dict({"auth_failure_delay": "100ms"}, **(cfg.get("limits") or {}))
        self.d = SubmissionSluiced(**cfg)
        self.d.start()

    def _outcome_failed(self):
        # Only this test's own failures (the harness looks at the whole run's).
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None:
            return super()._outcome_failed()
        return any(t is self or getattr(t, "test_case", None) is self
                   for t, _ in list(result.failures) + list(result.errors))

    def open(self, port, **kw):
        c = TlsClient(port, **kw)
        self.addCleanup(c.close)
        return c

    def ctx(self, **versions):
        return tls_context(self.d.cert_path, **versions)

    def c587(self, **kw):
        c = self.open(self.d.port587, **kw)
        self.assertEqual(c.reply(), b"220 mx.sluice.test ESMTP Sluice\r\n")
        return c

    def starttls(self, **kw):
        """A 587 session inside TLS, before its second EHLO."""
        c = self.c587(**kw)
        self.assertEqual(c.cmd("EHLO client.test"), EHLO_PLAIN_587)
        self.assertEqual(c.cmd("STARTTLS"), b"220 2.0.0 Ready to start TLS\r\n")
        c.starttls(self.ctx())
        return c

    def c465(self, **kw):
        c = self.open(self.d.port465, context=self.ctx(), **kw)
        self.assertEqual(c.reply(), b"220 mx.sluice.test ESMTP Sluice\r\n")
        return c

    def logged_in(self, who=ALICE):
        c = self.c465()
        self.assertEqual(c.cmd("EHLO client.test"), EHLO_IN_TLS)
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(*who)), AUTH_OK)
        return c

    def send_message(self, c, sender, rcpts, content):
        self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender), b"250 2.1.0 Ok\r\n")
        for r in rcpts:
            self.assertEqual(c.cmd("RCPT TO:<%s>" % r), b"250 2.1.5 Ok\r\n")
        self.assertEqual(c.cmd("DATA")[:4], b"354 ")
        r = c.cmd(content + ".")
        self.assertRegex(r, rb"^250 2\.0\.0 Ok: queued as [0-9A-F]{16}\r\n$")
        return r[len(b"250 2.0.0 Ok: queued as "):-2].decode()

    def wait_count(self, needle, n, timeout=5):
        """Waits until the log holds needle n times (no more, no less)."""
        deadline = time.time() + timeout
        while self.d.log().count(needle) < n and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.d.log().count(needle), n, self.d.log())

    def assertLoginWorks(self, who=ALICE):
        with smtp_ssl(self.d.port465, self.ctx()) as s:
            self.assertEqual(s.login(*who)[0], 235)

    def assertHealthy(self):
        self.assertIsNone(self.d.proc.poll(), "sluiced died:\n" + self.d.log())
        self.assertLoginWorks()


class Startup(SubmissionTest):
    def test_self_signed_certificate_made_on_first_start(self):
        self.assertIn("tls: created a self-signed certificate for mx.sluice.test in %s" % self.d.cert_path,
                      self.d.log())
        self.assertEqual(os.stat(self.d.key_path).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(self.d.cert_path).st_mode & 0o777, 0o644)
        out = subprocess.run(["openssl", "x509", "-in", self.d.cert_path, "-noout", "-subject",
                              "-ext", "subjectAltName"], capture_output=True, text=True, check=True).stdout
        self.assertIn("CN = mx.sluice.test", out)
        self.assertIn("DNS:mx.sluice.test", out)
        # The daemon serves that very certificate, and it verifies for its name.
        c = self.c465()
        self.assertEqual(c.peer_fingerprint(), pem_fingerprint(self.d.cert_path))
        # A second start reuses the files instead of making new ones.
        before = pem_fingerprint(self.d.cert_path)
        self.d.stop()
        self.d.start()
        self.assertEqual(self.d.log().count("created a self-signed certificate"), 1)
        self.assertEqual(pem_fingerprint(self.d.cert_path), before)
        self.assertEqual(self.c465().peer_fingerprint(), before)


class Starttls(SubmissionTest):
    def test_plaintext_then_starttls_dialogue(self):
        c = self.c587()
        self.assertEqual(c.cmd("EHLO client.test"), EHLO_PLAIN_587)   # STARTTLS, no AUTH
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(*ALICE)),
                         b"538 5.7.11 Encryption required for requested authentication mechanism\r\n")
        self.assertEqual(c.cmd("AUTH LOGIN")[:10], b"538 5.7.11")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>"), b"530 5.7.0 Authentication required\r\n")
        self.assertEqual(c.cmd("STARTTLS"), b"220 2.0.0 Ready to start TLS\r\n")
        c.starttls(self.ctx())
        self.assertEqual(c.sock.version(), "TLSv1.3")
        # RFC 3207: the session starts over; the EHLO before TLS is forgotten.
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>"), b"503 5.5.1 Error: send HELO/EHLO first\r\n")
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(*ALICE))[:10], b"503 5.5.1 ")
        self.assertEqual(c.cmd("EHLO client.test"), EHLO_IN_TLS)      # AUTH, no STARTTLS
        self.assertEqual(c.cmd("STARTTLS"), b"554 5.5.1 Error: TLS already active\r\n")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>"), b"530 5.7.0 Authentication required\r\n")
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(*ALICE)), AUTH_OK)
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(*ALICE))[:10], b"503 5.5.1 ")
        self.assertEqual(c.cmd("EHLO again.test"), EHLO_IN_TLS[:-len(b"250 AUTH PLAIN LOGIN\r\n")].replace(b"250-SMTPUTF8", b"250 SMTPUTF8"))
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.cmd("QUIT"), b"221 2.0.0 Bye\r\n")
        self.assertTrue(c.closed())

    def test_smtplib_starttls_login_sendmail_and_spool(self):
        """What a mail client does: EHLO, STARTTLS, EHLO, AUTH PLAIN, MAIL, RCPT, DATA."""
        with smtp_starttls(self.d.port587, self.ctx()) as s:
            s.ehlo()
            self.assertIn("starttls", s.esmtp_features)
            self.assertNotIn("auth", s.esmtp_features)
            self.assertEqual(s.starttls(context=self.ctx())[0], 220)
            s.ehlo()
            self.assertEqual(s.esmtp_features.get("auth"), " PLAIN LOGIN")
            self.assertNotIn("starttls", s.esmtp_features)
            self.assertEqual(s.login(*ALICE), (235, b"2.7.0 Authentication successful"))
            # 1: no Date, no Message-ID: both are added.
            self.assertEqual(s.sendmail(ALICE[0], ["x@example.net"],
                                        "From: Alice <alice@example.org>\r\nSubject: one\r\n\r\nfirst\r\n"), {})
            # 2: its own (case differs from ours): kept, nothing added.
            self.assertEqual(s.sendmail(ALICE[0], ["y@example.net", "z@example.com"],
                                        "DATE: Tue, 1 Jan 2030 00:00:00 +0100\r\nMessage-Id: <own@client.test>\r\n"
                                        "Subject: two\r\n\r\nsecond\r\n"), {})
            # 3: a Date but no Message-ID, and no body at all.
            self.assertEqual(s.sendmail(ALICE[0], ["x@example.net"],
                                        "Date: Tue, 1 Jan 2030 00:00:00 +0100\r\nSubject: three\r\n"), {})
        self.d.wait_log("disconnect from=127.0.0.1 messages=3")
        log = self.d.log()
        accepts = re.findall(r"([0-9A-F]{16}): accept conn=\d+ from=<alice@example.org> size=(\d+) nrcpt=(\d) "
                             r"msgid=(\S+) client=127\.0\.0\.1 login=alice@example.org", log)
        self.assertEqual(len(accepts), 3, log)
        self.d.stop()
        msgs = self.d.spool_messages()
        self.assertEqual([m["id"] for m in msgs], [a[0] for a in accepts])
        for m, a in zip(msgs, accepts):
            self.assertEqual(m["sender"], ALICE[0])
            self.assertEqual(m["size"], len(m["body"]))
            self.assertEqual(m["size"], int(a[1]))
            self.assertEqual(m["message_id"], a[3])
            received, head, content = split_message(m["body"])
            self.assertRegex(received,
                             rb"^Received: from mail\.client\.test \(\[127\.0\.0\.1\]\)\r\n"
                             rb"\t\(using TLSv1\.3 with cipher TLS_[A-Z0-9_]+ \((\d+)/\1 bits\)\)\r\n"
                             rb"\tby mx\.sluice\.test \(Sluice\) with ESMTPSA id " + m["id"].encode() +
                             rb"(\r\n\tfor <x@example\.net>)?; " + RFC5322_DATE + rb"\r\n$")
        self.assertEqual([r["address"] for r in msgs[0]["recipients"]], ["x@example.net"])
        self.assertEqual([r["address"] for r in msgs[1]["recipients"]], ["y@example.net", "z@example.com"])
        self.assertIn(b"\tfor <x@example.net>;", msgs[0]["body"])
        self.assertNotIn(b"\tfor <", msgs[1]["body"])    # two recipients: no "for"

        _, head, content = split_message(msgs[0]["body"])
        mid = b"<\\d{14}\\." + msgs[0]["id"].encode() + b"@mx\\.sluice\\.test>"
        self.assertRegex(head, rb"^From: Alice <alice@example\.org>\r\nSubject: one\r\nDate: " + RFC5322_DATE +
                         rb"\r\nMessage-ID: " + mid + rb"\r\n$")
        self.assertEqual(content, b"first\r\n")
        self.assertRegex(msgs[0]["message_id"].encode(), b"^" + mid + b"$")

        _, head, content = split_message(msgs[1]["body"])
        self.assertEqual(head, b"DATE: Tue, 1 Jan 2030 00:00:00 +0100\r\nMessage-Id: <own@client.test>\r\nSubject: two\r\n")
        self.assertEqual(content, b"second\r\n")
        self.assertEqual(msgs[1]["message_id"], "<own@client.test>")

        _, head, content = split_message(msgs[2]["body"])
        self.assertRegex(head, rb"^Date: Tue, 1 Jan 2030 00:00:00 \+0100\r\nSubject: three\r\nMessage-ID: <\d{14}\."
                         + msgs[2]["id"].encode() + rb"@mx\.sluice\.test>\r\n$")
        self.assertEqual(content, b"")

    def test_added_headers_when_the_header_end_is_split_across_reads(self):
        """The blank line ending the headers may arrive in pieces; the added
        Date/Message-ID must still land exactly before it."""
        c = self.logged_in()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = b"From: alice@example.org\r\nSubject: split\r\n"
        cases = [(head, b"\r\nbody\r\n"), (head + b"\r", b"\nbody\r\n"), (head[:-1], b"\n\r\nbody\r\n"),
                 (b"From: alice@example.org\r\nMessage-", b"ID: <split@client.test>\r\n\r\nbody\r\n")]
        ids = []
        for first, second in cases:
            c.cmd("MAIL FROM:<alice@example.org>")
            c.cmd("RCPT TO:<x@example.net>")
            self.assertEqual(c.cmd("DATA")[:4], b"354 ")
            c.send(first)
            time.sleep(0.05)   # separate reads on the server (not a wait for a condition)
            c.send(second + b".\r\n")
            r = c.reply()
            self.assertRegex(r, rb"^250 2\.0\.0 Ok: queued as ")
            ids.append(r[24:40])
        c.cmd("QUIT")
        self.d.stop()
        msgs = self.d.spool_messages()
        self.assertEqual([m["id"].encode() for m in msgs], ids)
        for m in msgs[:3]:
            _, h, content = split_message(m["body"])
            self.assertRegex(h, rb"^From: alice@example\.org\r\nSubject: split\r\nDate: " + RFC5322_DATE +
                             rb"\r\nMessage-ID: <\d{14}\.[0-9A-F]{16}@mx\.sluice\.test>\r\n$")
            self.assertEqual(content, b"body\r\n")
        _, h, content = split_message(msgs[3]["body"])
        self.assertRegex(h, rb"^From: alice@example\.org\r\nMessage-ID: <split@client\.test>\r\nDate: " +
                         RFC5322_DATE + rb"\r\n$")
        self.assertEqual(msgs[3]["message_id"], "<split@client.test>")

    def test_smtp_ssl_on_submissions(self):
        with smtp_ssl(self.d.port465, self.ctx()) as s:
            self.assertEqual(s.sock.version(), "TLSv1.3")
            s.ehlo()
            self.assertEqual(s.esmtp_features.get("auth"), " PLAIN LOGIN")
            self.assertNotIn("starttls", s.esmtp_features)
            self.assertEqual(s.login(*BOB)[0], 235)
            self.assertEqual(s.sendmail("sales@example.net", ["c1@example.com", "c2@example.com"],
                                        "Subject: from bob\r\n\r\nhello\r\n"), {})
        self.d.stop()
        msgs = self.d.spool_messages()
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["sender"], "sales@example.net")
        self.assertEqual([r["address"] for r in msgs[0]["recipients"]], ["c1@example.com", "c2@example.com"])
        body = msgs[0]["body"]
        self.assertIn(b"with ESMTPSA id " + msgs[0]["id"].encode(), body)
        self.assertIn(b"(using TLSv1.3 with cipher TLS_", body)
        _, head, content = split_message(body)
        self.assertRegex(head, rb"^Subject: from bob\r\nDate: [^\r]+\r\nMessage-ID: <[^\r]+@mx\.sluice\.test>\r\n$")

    def test_tls12_client_and_received_header(self):
        ctx = self.ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
        with smtp_ssl(self.d.port465, ctx) as s:
            self.assertEqual(s.sock.version(), "TLSv1.2")
            s.login(*ALICE)
            s.sendmail(ALICE[0], ["x@example.net"], "Subject: 1.2\r\n\r\nx\r\n")
        self.d.stop()
        body = self.d.spool_messages()[0]["body"]
        self.assertRegex(body, rb"\(using TLSv1\.2 with cipher ECDHE-RSA-(AES128-GCM-SHA256|AES256-GCM-SHA384|"
                               rb"CHACHA20-POLY1305) \((\d+)/\2 bits\)\)\r\n\tby mx\.sluice\.test \(Sluice\) with ESMTPSA id ")


class Resumption(SubmissionTest):
    def test_session_resumption_tls13_and_tls12(self):
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            with self.subTest(version=version):
                ctx = self.ctx(maximum_version=version)
                first = self.open(self.d.port465, context=ctx)
                first.reply()
                self.assertEqual(first.cmd("NOOP"), b"250 2.0.0 Ok\r\n")   # the TLS 1.3 ticket has arrived
                self.assertFalse(first.sock.session_reused)
                session = first.sock.session
                self.assertIsNotNone(session)
                first.cmd("QUIT")
                again = self.open(self.d.port465)
                again.sock = ctx.wrap_socket(again.sock, server_hostname=HOSTNAME, session=session)
                self.assertEqual(again.reply(), b"220 mx.sluice.test ESMTP Sluice\r\n")
                self.assertTrue(again.sock.session_reused)
                self.assertEqual(again.cmd("EHLO client.test"), EHLO_IN_TLS)
                self.assertEqual(again.cmd("AUTH PLAIN " + plain(*ALICE)), AUTH_OK)


class Swaks(SubmissionTest):
    def swaks(self, port, tls_flag, mech, who=ALICE):
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(port), tls_flag,
                            "--auth", mech, "--auth-user", who[0], "--auth-password", who[1],
                            "--from", who[0], "--to", "ops@example.net", "--ehlo", "swaks.test",
                            "--header", "Subject: swaks %s %s" % (tls_flag, mech), "--timeout", "10"],
                           capture_output=True, text=True, timeout=30)
        return r

    def test_swaks_both_listeners_both_mechanisms(self):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")
        for port, flag in ((self.d.port587, "--tls"), (self.d.port465, "--tlsc")):
            for mech in ("PLAIN", "LOGIN"):
                with self.subTest(flag=flag, mech=mech):
                    r = self.swaks(port, flag, mech)
                    out = r.stdout + r.stderr
                    self.assertEqual(r.returncode, 0, out)
                    if flag == "--tls":
                        self.assertIn("<-  220 2.0.0 Ready to start TLS", out)
                        self.assertIn("<-  250 STARTTLS", out)
                        self.assertNotRegex(out, r"<-  250[ -]AUTH")
                    else:
                        self.assertIn("<~  220 mx.sluice.test ESMTP Sluice", out)
                        self.assertNotIn("<-  ", out)     # nothing in plaintext on 465
                    self.assertIn("<~  250 AUTH PLAIN LOGIN", out)
                    if mech == "LOGIN":
                        self.assertIn("<~  334 VXNlcm5hbWU6", out)
                        self.assertIn("<~  334 UGFzc3dvcmQ6", out)
                    self.assertIn("<~  235 2.7.0 Authentication successful", out)
                    self.assertRegex(out, r"<~  250 2\.0\.0 Ok: queued as [0-9A-F]{16}")
        self.d.stop()
        msgs = self.d.spool_messages()
        self.assertEqual(len(msgs), 4)
        for m in msgs:
            self.assertEqual(m["sender"], ALICE[0])
            self.assertIn(b"with ESMTPSA id", m["body"])

    def test_swaks_wrong_password(self):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")
        r = self.swaks(self.d.port465, "--tlsc", "PLAIN", who=(ALICE[0], "wrong"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("<~* 535 5.7.8 Authentication credentials invalid", r.stdout + r.stderr)


class OpensslClient(SubmissionTest):
    def s_client(self, args, stdin, timeout=20):
        return subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % args[0]] + args[1:],
                              input=stdin, capture_output=True, timeout=timeout)

    def test_starttls_with_verification(self):
        r = self.s_client([self.d.port587, "-starttls", "smtp", "-quiet", "-CAfile", self.d.cert_path,
                           "-verify_return_error", "-verify_hostname", HOSTNAME],
                          b"EHLO test\r\nQUIT\r\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        # The EHLO reply came through TLS: it offers AUTH and no more STARTTLS.
        self.assertEqual(r.stdout, EHLO_IN_TLS + b"221 2.0.0 Bye\r\n")

    def test_implicit_tls_greeting_after_handshake(self):
        r = self.s_client([self.d.port465, "-quiet", "-CAfile", self.d.cert_path,
                           "-verify_return_error", "-verify_hostname", HOSTNAME], b"QUIT\r\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"220 mx.sluice.test ESMTP Sluice\r\n221 2.0.0 Bye\r\n")

    def test_protocol_versions(self):
        for port, starttls in ((self.d.port465, []), (self.d.port587, ["-starttls", "smtp"])):
            with self.subTest(port=port, version="1.2"):
                r = self.s_client([port, "-brief", "-quiet", "-tls1_2"] + starttls, b"QUIT\r\n")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(b"Protocol version: TLSv1.2", r.stderr)
                self.assertRegex(r.stderr, rb"Ciphersuite: ECDHE-RSA-[A-Z0-9-]+(GCM|POLY1305)")
                self.assertTrue(r.stdout.endswith(b"221 2.0.0 Bye\r\n"), r.stdout)
            with self.subTest(port=port, version="1.3"):
                r = self.s_client([port, "-brief", "-quiet", "-tls1_3"] + starttls, b"QUIT\r\n")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(b"Protocol version: TLSv1.3", r.stderr)
            with self.subTest(port=port, version="1.1"):
                before = self.d.log().count("tls error from=127.0.0.1: unsupported protocol")
                r = self.s_client([port, "-brief", "-quiet", "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]
                                  + starttls, b"QUIT\r\n")
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(b"alert protocol version", r.stderr)
                self.assertNotIn(b"221", r.stdout)
                # Refused by the server (the ClientHello did reach it), not by our openssl.
                self.wait_count("tls error from=127.0.0.1: unsupported protocol", before + 1)
            with self.subTest(port=port, version="1.2 CBC only"):
                r = self.s_client([port, "-brief", "-quiet", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"]
                                  + starttls, b"QUIT\r\n")
                self.assertNotEqual(r.returncode, 0)
                self.assertNotIn(b"221", r.stdout)
        self.assertHealthy()


class AuthFailures(SubmissionTest):
    def test_wrong_password_and_unknown_user_same_reply(self):
        c = self.c465()
        c.cmd("EHLO client.test")
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(ALICE[0], "not-her-password")), AUTH_BAD)
        self.assertEqual(c.cmd("AUTH PLAIN " + plain("nobody@example.org", "whatever")), AUTH_BAD)
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(*ALICE)), AUTH_OK)   # two failures: still open
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>"), b"250 2.1.0 Ok\r\n")
        # smtplib sees the same.
        for who in ((BOB[0], "x"), ("nobody", "x")):
            with smtp_ssl(self.d.port465, self.ctx()) as s:
                with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
                    s.login(*who)
                self.assertEqual(e.exception.smtp_code, 535)
                self.assertEqual(e.exception.smtp_error, b"5.7.8 Authentication credentials invalid")
        # Neither passwords nor AUTH payloads reach the log.
        log = self.d.log()
        for secret in ("not-her-password", ALICE[1], plain(*ALICE), plain(ALICE[0], "not-her-password")):
            self.assertNotIn(secret, log)

    def test_three_failures_end_the_session(self):
        c = self.c465()
        c.cmd("EHLO client.test")
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(ALICE[0], "bad1")), AUTH_BAD)
        self.assertEqual(c.cmd("AUTH LOGIN " + b64("nobody")), b"334 UGFzc3dvcmQ6\r\n")
        self.assertEqual(c.cmd(b64("bad2")), AUTH_BAD)
        c.send("AUTH PLAIN " + plain(ALICE[0], "bad3") + "\r\n")
        self.assertEqual(c.reply(), AUTH_BAD)
        self.assertEqual(c.reply()[:10], b"421 4.7.0 ")
        self.assertTrue(c.closed())
        self.assertEqual(c.buf, b"")
        self.assertHealthy()

    def test_failure_timing_does_not_reveal_unknown_logins(self):
        """Wrong password for a real (yescrypt) login vs an unknown login:
        answered after comparable times, median over several attempts."""
        known, unknown = [], []
        for i in range(7):
            c = self.c465()
            c.cmd("EHLO client.test")
            order = [(known, ALICE[0]), (unknown, "ghost%d@example.org" % i)]
            if i % 2:
                order.reverse()
            for bucket, login in order:   # two failures per session: below the limit of three
                t0 = time.perf_counter()
                self.assertEqual(c.cmd("AUTH PLAIN " + plain(login, "wrong-%d" % i)), AUTH_BAD)
                bucket.append(time.perf_counter() - t0)
            c.cmd("QUIT")
            c.close()
        k, u = statistics.median(known), statistics.median(unknown)
        print("\nAUTH failure medians: known login %.1f ms, unknown login %.1f ms" % (k * 1e3, u * 1e3))
        self.assertGreater(k, 0.003, "a yescrypt check should take milliseconds: %r" % known)
        self.assertGreater(u, k / 2, "unknown logins answer faster: %r vs %r" % (unknown, known))
        self.assertLess(u, k * 3, "unknown logins answer slower: %r vs %r" % (unknown, known))

    def test_every_hash_method_and_case_insensitive_logins(self):
        for who in (ALICE, BOB, CAROL, DAVE, ("ALICE@Example.ORG", ALICE[1]), ("Bob", BOB[1])):
            with self.subTest(login=who[0]):
                self.assertLoginWorks(who)
        for who in ((CAROL[0], DAVE[1]), (DAVE[0], CAROL[1]), (ALICE[0], ALICE[1].upper())):
            with self.subTest(login=who[0], password=who[1]):
                with smtp_ssl(self.d.port465, self.ctx()) as s:
                    with self.assertRaises(smtplib.SMTPAuthenticationError):
                        s.login(*who)


class AuthDialogue(SubmissionTest):
    def session(self):
        c = self.c465()
        self.assertEqual(c.cmd("EHLO client.test"), EHLO_IN_TLS)
        return c

    def test_auth_login_by_hand(self):
        c = self.session()
        self.assertEqual(c.cmd("AUTH LOGIN"), b"334 VXNlcm5hbWU6\r\n")
        self.assertEqual(c.cmd(b64(ALICE[0])), b"334 UGFzc3dvcmQ6\r\n")
        self.assertEqual(c.cmd(b64(ALICE[1])), AUTH_OK)
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>"), b"250 2.1.0 Ok\r\n")
        # smtplib's LOGIN sends the user name as an initial response.
        with smtp_ssl(self.d.port465, self.ctx()) as s:
            s.ehlo()
            s.user, s.password = ALICE
            self.assertEqual(s.auth("LOGIN", s.auth_login)[0], 235)
        # PLAIN without an initial response: an empty challenge first.
        c = self.session()
        self.assertEqual(c.cmd("AUTH PLAIN"), b"334 \r\n")
        self.assertEqual(c.cmd(plain(*BOB)), AUTH_OK)

    def test_cancel_and_bad_base64(self):
        c = self.session()
        self.assertEqual(c.cmd("AUTH LOGIN"), b"334 VXNlcm5hbWU6\r\n")
        self.assertEqual(c.cmd("*"), b"501 5.7.0 Authentication cancelled\r\n")
        c = self.session()
        self.assertEqual(c.cmd("AUTH LOGIN"), b"334 VXNlcm5hbWU6\r\n")
        self.assertEqual(c.cmd(b64(ALICE[0])), b"334 UGFzc3dvcmQ6\r\n")
        self.assertEqual(c.cmd("*"), b"501 5.7.0 Authentication cancelled\r\n")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>"), b"530 5.7.0 Authentication required\r\n")
        c = self.session()
        self.assertEqual(c.cmd("AUTH LOGIN"), b"334 VXNlcm5hbWU6\r\n")
        self.assertEqual(c.cmd("!!not base64!!")[:10], b"501 5.5.2 ")
        c = self.session()
        self.assertEqual(c.cmd("AUTH PLAIN"), b"334 \r\n")
        self.assertEqual(c.cmd("*"), b"501 5.7.0 Authentication cancelled\r\n")
        self.assertEqual(c.cmd("AUTH PLAIN abc")[:10], b"501 5.5.2 ")          # not a multiple of 4
        self.assertEqual(c.cmd("AUTH PLAIN " + b64("no separators"))[:10], b"501 5.5.2 ")
        self.assertEqual(c.cmd("AUTH CRAM-MD5"), b"504 5.5.4 Unrecognized authentication mechanism\r\n")
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(ALICE[0], ALICE[1], authzid=BOB[0])),
                         b"535 5.7.8 Authentication credentials invalid (authorization identity not permitted)\r\n")
        # Over-long logins and passwords (docs/users.md: 255 and 1024 bytes).
        too_long = b"500 5.5.6 Authentication exchange line is too long\r\n"
        self.assertEqual(c.cmd("AUTH LOGIN"), b"334 VXNlcm5hbWU6\r\n")
        self.assertEqual(c.cmd(b64("a" * 256)), too_long)
        self.assertEqual(c.cmd("AUTH LOGIN " + b64("a" * 255)), b"334 UGFzc3dvcmQ6\r\n")
        self.assertEqual(c.cmd(b64("p" * 1025)), too_long)
        self.assertEqual(c.cmd("AUTH PLAIN"), b"334 \r\n")
        self.assertEqual(c.cmd(plain(ALICE[0], "p" * 1025)), too_long)
        self.assertEqual(c.cmd("AUTH PLAIN"), b"334 \r\n")
        self.assertEqual(c.cmd("A" * 13000), too_long)              # over RFC 4954's 12288
        self.assertEqual(c.cmd("NOOP"), b"250 2.0.0 Ok\r\n")
        # After all that, the session still logs in and sends.
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(*ALICE, authzid=ALICE[0])), AUTH_OK)
        self.send_message(c, ALICE[0], ["x@example.net"], "Subject: after errors\r\n\r\nok\r\n")


class SenderPolicy(SubmissionTest):
    def test_login_that_is_an_address_sends_only_as_itself(self):
        c = self.logged_in(ALICE)
        self.assertEqual(c.cmd("MAIL FROM:<other@example.org>"),
                         b"553 5.7.1 <other@example.org>: Sender address rejected: not owned by user alice@example.org\r\n")
        self.assertEqual(c.cmd("MAIL FROM:<alice+news@example.org>")[:10], b"553 5.7.1 ")
        self.assertEqual(c.cmd("MAIL FROM:<>")[:10], b"553 5.7.1 ")
        self.assertEqual(c.cmd("MAIL FROM:<Alice@EXAMPLE.org>"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.cmd("RSET"), b"250 2.0.0 Ok\r\n")
        self.send_message(c, ALICE[0], ["x@example.net"], "Subject: ok\r\n\r\nok\r\n")

    def test_sender_list(self):
        c = self.logged_in(BOB)
        for sender in ("bob@example.org", "anything@example.net", "BOB@example.ORG", "x@EXAMPLE.NET"):
            with self.subTest(sender=sender):
                self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender), b"250 2.1.0 Ok\r\n")
                self.assertEqual(c.cmd("RSET"), b"250 2.0.0 Ok\r\n")
        for sender in ("x@example.com", "bob@example.com", "x@sub.example.net", "bob@example.net.evil.test"):
            with self.subTest(sender=sender):
                self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender)[:10], b"553 5.7.1 ")
        c = self.logged_in(BOB)
        self.assertEqual(c.cmd("MAIL FROM:<>"),
                         b"553 5.7.1 <>: Sender address rejected: null sender not allowed on submission\r\n")
        self.send_message(c, "news@example.net", ["x@example.com"], "Subject: list\r\n\r\nok\r\n")
        self.d.stop()
        msgs = self.d.spool_messages()
        self.assertEqual([m["sender"] for m in msgs], ["news@example.net"])


class StarttlsInjection(SubmissionTest):
    """CVE-2011-0411: commands sent after STARTTLS in the same packet must
    never be executed inside TLS."""

    def check(self, injected):
        c = self.c587()
        self.assertEqual(c.cmd("EHLO client.test"), EHLO_PLAIN_587)
        c.send(b"STARTTLS\r\n" + injected)          # one write
        self.assertEqual(c.reply(), b"220 2.0.0 Ready to start TLS\r\n")
        c.starttls(self.ctx())                        # fails if any plaintext followed the 220
        # The first reply inside TLS is the EHLO's.
        self.assertEqual(c.cmd("EHLO client.test"), EHLO_IN_TLS)
        self.assertEqual(c.cmd("NOOP"), b"250 2.0.0 Ok\r\n")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>"), b"530 5.7.0 Authentication required\r\n")
        self.assertEqual(c.cmd("QUIT"), b"221 2.0.0 Bye\r\n")
        self.assertTrue(c.closed())
        self.assertEqual(c.buf, b"")

    def test_injected_commands_are_discarded(self):
        for injected in (b"NOOP\r\n", b"RSET\r\n", b"MAIL FROM:<alice@example.org>\r\n",
                         b"EHLO evil\r\nAUTH PLAIN " + plain(*ALICE).encode() + b"\r\n",
                         b"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNO",
                         b"NOOP"):
            with self.subTest(injected=injected):
                self.check(injected)
        self.d.stop()
        self.assertEqual(self.d.spool_messages(), [])


class Garbage(SubmissionTest):
    def raw_exchange(self, data):
        """Sends data to 465 instead of a ClientHello; returns (what came back, EOF seen)."""
        s = socket.create_connection(("127.0.0.1", self.d.port465), timeout=5)
        s.sendall(data)
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return got, True
                got += chunk
        except ConnectionResetError:
            return got, True
        except socket.timeout:
            return got, False
        finally:
            s.close()

    def test_garbage_instead_of_client_hello(self):
        rnd = random.Random(20110411)
        cases = {
            "plain SMTP": b"EHLO x\r\n",
            "HTTP": b"GET / HTTP/1.1\r\nHost: mx.sluice.test\r\n\r\n",
            "random bytes": b"\x00" + bytes(rnd.getrandbits(8) for _ in range(2047)),
            "handshake record with a garbage body": b"\x16\x03\x01\x00\x40" + bytes(rnd.getrandbits(8) for _ in range(64)),
            "oversized record": b"\x16\x03\x01\xff\xff" + b"\x01" * 100,
        }
        for name, data in cases.items():
            with self.subTest(name):
                got, eof = self.raw_exchange(data)
                self.assertTrue(eof, "no close after %s; got %r" % (name, got))
                self.assertFalse(got.startswith(b"220"), got)   # never plaintext SMTP on 465
                if got:
                    self.assertEqual(got[0], 0x15, got)         # at most a TLS alert
                self.assertIsNone(self.d.proc.poll())
        self.wait_count("tls error from=127.0.0.1:", len(cases))
        self.assertIn("tls error from=127.0.0.1: wrong version number", self.d.log())
        self.assertIn("tls error from=127.0.0.1: http request", self.d.log())
        with smtp_ssl(self.d.port465, self.ctx()) as s:
            s.login(*ALICE)
            self.assertEqual(s.sendmail(ALICE[0], ["x@example.net"], "Subject: after garbage\r\n\r\nx\r\n"), {})


class StalledHandshakes(SubmissionTest):
    def config(self):
        return {"limits": {"command_timeout": "1s"}}

    def assertClosedAfterTimeout(self, c, start):
        self.assertTrue(c.closed(timeout=10), "still open after 10 s")
        took = time.time() - start
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 5)
        return took

    def test_silent_client_on_465(self):
        c = self.open(self.d.port465)
        start = time.time()
        self.assertClosedAfterTimeout(c, start)
        self.assertEqual(c.buf, b"")    # nothing in plaintext, not even a 421
        self.d.wait_log("tls handshake timeout from=127.0.0.1")

    def test_half_a_client_hello_on_465(self):
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.ctx().wrap_bio(incoming, outgoing, server_hostname=HOSTNAME)
        with self.assertRaises(ssl.SSLWantReadError):
            obj.do_handshake()
        hello = outgoing.read()
        self.assertEqual(hello[0], 0x16)
        c = self.open(self.d.port465)
        c.send(hello[:len(hello) // 2])
        start = time.time()
        self.assertClosedAfterTimeout(c, start)
        self.assertEqual(c.buf, b"")

    def test_no_client_hello_after_starttls(self):
        c = self.c587()
        c.cmd("EHLO client.test")
        self.assertEqual(c.cmd("STARTTLS"), b"220 2.0.0 Ready to start TLS\r\n")
        start = time.time()
        self.assertClosedAfterTimeout(c, start)
        self.assertEqual(c.buf, b"")

    def test_idle_tls_session_gets_the_command_timeout_inside_tls(self):
        c = self.c465()
        start = time.time()
        self.assertEqual(c.reply(), b"421 4.4.2 Error: timeout exceeded\r\n")
        self.assertGreaterEqual(time.time() - start, 0.9)
        self.assertTrue(c.closed())


class Concurrency(SubmissionTest):
    N = 20

    def test_logins_are_hashed_off_the_event_loop(self):
        ctx = self.ctx()
        # 1. Handshake rate: N threads, each doing 5 full handshakes on 465.
        per_thread = 5
        go = threading.Barrier(self.N + 1)
        errors = []

        def handshakes():
            try:
                go.wait()
                for _ in range(per_thread):
                    c = self.open(self.d.port465, context=ctx)
                    assert c.reply().startswith(b"220 ")
                    c.close()
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=handshakes) for _ in range(self.N)]
        for t in threads:
            t.start()
        go.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join(60)
        hs_elapsed = time.perf_counter() - t0
        self.assertEqual(errors, [])
        hs_rate = self.N * per_thread / hs_elapsed

        # 2. A client that keeps sending NOOPs, timing every reply.
        latencies = []
        stop = threading.Event()
        noop = self.c587()
        noop.cmd("EHLO noop.test")

        def noops():
            while not stop.is_set():
                t = time.perf_counter()
                r = noop.cmd("NOOP")
                latencies.append((t, time.perf_counter() - t))
                assert r == b"250 2.0.0 Ok\r\n", r
                time.sleep(0.002)

        noop_thread = threading.Thread(target=noops)
        noop_thread.start()

        # 3. N sessions in TLS, EHLO done, then all send AUTH at the same moment.
        sessions = [self.c465() for _ in range(self.N)]
        for c in sessions:
            c.cmd("EHLO client.test")
        go = threading.Barrier(self.N + 1)
        results = [None] * self.N

        def login(i):
            try:
                go.wait()
                r = sessions[i].cmd("AUTH PLAIN " + plain(*ALICE))
                results[i] = (r, time.perf_counter())
            except Exception as e:
                results[i] = (repr(e).encode(), time.perf_counter())

        threads = [threading.Thread(target=login, args=(i,)) for i in range(self.N)]
        for t in threads:
            t.start()
        time.sleep(0.1)   # let the NOOP client run before the burst (a baseline)
        go.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join(60)
        login_elapsed = max(r[1] for r in results) - t0
        time.sleep(0.1)
        stop.set()
        noop_thread.join(10)
        for c in sessions:
            c.close()

        self.assertEqual([r[0] for r in results], [AUTH_OK] * self.N)
        during = [lat for (t, lat) in latencies if t0 <= t <= t0 + login_elapsed]
        worst = max(lat for _, lat in latencies)
        login_rate = self.N / login_elapsed
        print("\nTLS handshakes: %d in %.2f s = %.0f/s (%d threads); logins: %d concurrent yescrypt AUTH "
              "in %.3f s = %.0f/s; NOOP replies during the burst: %d, worst %.1f ms, median %.1f ms"
              % (self.N * per_thread, hs_elapsed, hs_rate, self.N, self.N, login_elapsed, login_rate,
                 len(during), worst * 1e3, statistics.median(during or [0]) * 1e3))
        self.assertGreaterEqual(len(during), 3, "the NOOP client did not run during the burst")
        self.assertGreaterEqual(len(re.findall(r"conn=\d+ tls from=127\.0\.0\.1 TLSv1\.3", self.d.log())),
                                self.N * per_thread + self.N)
        self.assertLess(worst, 0.25)
        self.assertLess(worst, login_elapsed / 3,
                        "a NOOP waited about as long as all the logins took: hashing blocks the loop")


class Reload(SubmissionTest):
    def test_sighup_reloads_users(self):
        old = self.logged_in(ALICE)                    # in TLS and logged in before the reload
        with smtp_ssl(self.d.port465, self.ctx()) as s:
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                s.login(*ERIN)
        self.d.write_users(users(user_line(ERIN[0], ERIN[1])))
        self.d.reload()
        self.assertIn("users: 5 accounts from " + self.d.users_path, self.d.log())
        with smtp_ssl(self.d.port465, self.ctx()) as s:
            self.assertEqual(s.login(*ERIN)[0], 235)
            self.assertEqual(s.sendmail(ERIN[0], ["x@example.net"], "Subject: erin\r\n\r\nhi\r\n"), {})
        self.assertEqual(old.cmd("NOOP"), b"250 2.0.0 Ok\r\n")
        self.send_message(old, ALICE[0], ["y@example.net"], "Subject: still here\r\n\r\nok\r\n")
        # A broken file is refused and the accounts in force stay.
        self.d.write_users(users() + ["this line is wrong"])
        self.d.reload()
        self.assertIn("reload: users:", self.d.log())
        self.assertLoginWorks(ERIN)
        self.d.stop()
        self.assertEqual(sorted(m["sender"] for m in self.d.spool_messages()), [ALICE[0], ERIN[0]])

    def test_login_after_reload_on_a_connection_opened_before(self):
        """docs/users.md: "Clients already logged in keep the account they
        logged in with until they disconnect; the next login uses the new
        file." A removed account must not log in after the reload, not even
        on a connection that was open before it."""
        early = [self.c465() for _ in range(2)]
        for c in early:
            c.cmd("EHLO client.test")
        early_587 = self.starttls()
        early_587.cmd("EHLO client.test")
        # Remove bob, add erin.
        self.d.write_users([l for l in users(user_line(ERIN[0], ERIN[1])) if not l.startswith("bob:")])
        self.d.reload()
        got = (early[0].cmd("AUTH PLAIN " + plain(*BOB)),     # removed: refused
               early[1].cmd("AUTH PLAIN " + plain(*ERIN)),    # added: accepted
               early_587.cmd("AUTH PLAIN " + plain(*ERIN)))
        self.assertEqual(got, (AUTH_BAD, AUTH_OK, AUTH_OK))
        # New connections do see the new file.
        with smtp_ssl(self.d.port465, self.ctx()) as s:
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                s.login(*BOB)
        self.assertLoginWorks(ERIN)

    def test_starttls_after_reload_on_a_connection_opened_before(self):
        """docs/tls.md: after a reload the new certificate is used "for every
        new TLS handshake"; a STARTTLS handshake made after the reload is one,
        even on a connection accepted before it."""
        old_fp = pem_fingerprint(self.d.cert_path)
        early = self.c587()
        self.assertEqual(early.cmd("EHLO client.test"), EHLO_PLAIN_587)
        cert, key = self.make_cert(self.d.dir)
        new_fp = pem_fingerprint(cert)
        os.replace(key, self.d.key_path)
        os.replace(cert, self.d.cert_path)
        self.d.reload()
        self.assertEqual(early.cmd("STARTTLS"), b"220 2.0.0 Ready to start TLS\r\n")
        loose = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # to see which certificate comes
        loose.check_hostname = False
        loose.verify_mode = ssl.CERT_NONE
        early.starttls(loose)
        served = early.peer_fingerprint()
        self.assertIn(served, (old_fp, new_fp))
        self.assertEqual(served, new_fp, "the certificate from before the reload was served")

    def make_cert(self, directory):
        cert, key = os.path.join(directory, "new-cert.pem"), os.path.join(directory, "new-key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + HOSTNAME,
                        "-addext", "subjectAltName=DNS:" + HOSTNAME, "-days", "2",
                        "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
        return cert, key

    def test_sighup_reloads_certificate(self):
        old_fp = pem_fingerprint(self.d.cert_path)
        old_ctx = self.ctx()
        old465 = self.logged_in(ALICE)
        # A session to resume later; no verification (one context cannot
        # trust both self-signed certificates: they have the same name).
        loose = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        loose.check_hostname = False
        loose.verify_mode = ssl.CERT_NONE
        ticket = self.open(self.d.port465, context=loose)
        ticket.reply()
        self.assertEqual(ticket.cmd("NOOP"), b"250 2.0.0 Ok\r\n")
        old_session = ticket.sock.session
        old587 = self.starttls()
        self.assertEqual(old587.cmd("EHLO client.test"), EHLO_IN_TLS)
        self.assertEqual(old465.peer_fingerprint(), old_fp)
        self.assertEqual(old587.peer_fingerprint(), old_fp)

        cert, key = self.make_cert(self.d.dir)
        new_fp = pem_fingerprint(cert)
        self.assertNotEqual(new_fp, old_fp)
        os.replace(key, self.d.key_path)
        os.replace(cert, self.d.cert_path)
        self.d.reload()
        self.assertEqual(self.d.log().count("tls: subject=CN=mx.sluice.test"), 2, self.d.log())
        self.assertNotIn("reload: tls:", self.d.log())

        new_ctx = self.ctx()
        c = self.open(self.d.port465, context=new_ctx)
        self.assertEqual(c.reply(), b"220 mx.sluice.test ESMTP Sluice\r\n")
        self.assertEqual(c.peer_fingerprint(), new_fp)
        with self.assertRaises(ssl.SSLCertVerificationError):   # the old trust no longer fits
            self.open(self.d.port465, context=old_ctx)
        # Tickets from before the reload are not accepted (docs/tls.md): a full
        # handshake, with the new certificate.
        r = self.open(self.d.port465)
        r.sock = loose.wrap_socket(r.sock, server_hostname=HOSTNAME, session=old_session)
        self.assertEqual(r.reply(), b"220 mx.sluice.test ESMTP Sluice\r\n")
        self.assertFalse(r.sock.session_reused)
        self.assertEqual(r.peer_fingerprint(), new_fp)
        c2 = self.open(self.d.port587)
        c2.reply()
        c2.cmd("EHLO client.test")
        self.assertEqual(c2.cmd("STARTTLS"), b"220 2.0.0 Ready to start TLS\r\n")
        c2.starttls(new_ctx)
        self.assertEqual(c2.peer_fingerprint(), new_fp)
        self.assertEqual(c2.cmd("EHLO client.test"), EHLO_IN_TLS)

        # The sessions from before the reload go on as they were.
        self.assertEqual(old465.cmd("NOOP"), b"250 2.0.0 Ok\r\n")
        self.send_message(old465, ALICE[0], ["x@example.net"], "Subject: across the reload\r\n\r\nok\r\n")
        self.assertEqual(old587.cmd("AUTH PLAIN " + plain(*ALICE)), AUTH_OK)
        self.send_message(old587, ALICE[0], ["x@example.net"], "Subject: 587 across the reload\r\n\r\nok\r\n")
        self.assertEqual(old465.peer_fingerprint(), old_fp)

        # A key that does not match is refused; the new certificate stays in force.
        other_cert, other_key = self.make_cert(self.d.dir)
        os.replace(other_key, self.d.key_path)
        self.d.reload()
        self.assertIn("reload: tls:", self.d.log())
        c3 = self.open(self.d.port465, context=new_ctx)
        self.assertEqual(c3.reply(), b"220 mx.sluice.test ESMTP Sluice\r\n")
        self.assertEqual(c3.peer_fingerprint(), new_fp)


class RelayWithUsers(SubmissionTest):
    """The default trusted_networks include 127.0.0.0/8."""

    def config(self):
        return {"relay": True}

    def test_trusted_client_sees_auth_without_tls(self):
        c = self.open(self.d.relay_port)
        self.assertEqual(c.reply(), b"220 mx.sluice.test ESMTP Sluice\r\n")
        self.assertEqual(c.cmd("EHLO app.test"),
                         EHLO_PLAIN_587.replace(b"250 STARTTLS", b"250-STARTTLS") + b"250 AUTH PLAIN LOGIN\r\n")
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(ALICE[0], "wrong")), AUTH_BAD)
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(*ALICE)), AUTH_OK)
        qid = self.send_message(c, ALICE[0], ["x@example.net"], "Subject: relay auth\r\n\r\nok\r\n")
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.cmd("STARTTLS"), b"503 5.5.1 Error: STARTTLS not allowed during a mail transaction\r\n")
        self.assertEqual(c.cmd("RSET"), b"250 2.0.0 Ok\r\n")
        self.assertEqual(c.cmd("STARTTLS"), b"220 2.0.0 Ready to start TLS\r\n")
        c.starttls(self.ctx())
        self.assertEqual(c.cmd("EHLO app.test"), EHLO_IN_TLS)   # a new session: AUTH again
        # Without AUTH a trusted client relays as before.
        with smtplib.SMTP("127.0.0.1", self.d.relay_port, timeout=10) as s:
            self.assertEqual(s.sendmail("cron@example.org", ["ops@example.net"], "Subject: cron\r\n\r\nx\r\n"), {})
        self.d.stop()
        msgs = self.d.spool_messages()
        self.assertEqual([m["sender"] for m in msgs], [ALICE[0], "cron@example.org"])
        self.assertEqual(msgs[0]["id"], qid)
        self.assertIn(b"\tby mx.sluice.test (Sluice) with ESMTPA id " + qid.encode(), msgs[0]["body"])
        self.assertNotIn(b"(using ", msgs[0]["body"])
        self.assertIn(b" with ESMTP id ", msgs[1]["body"])
        # A relay listener adds no Date or Message-ID (only submission ports do).
        self.assertNotIn(b"\r\nDate: ", msgs[1]["body"])
        self.assertNotIn(b"\r\nMessage-ID: ", msgs[1]["body"])


class RelayUntrusted(SubmissionTest):
    def config(self):
        return {"relay": True, "trusted": ["10.0.0.0/8"]}

    def test_untrusted_client_gets_auth_only_in_tls(self):
        c = self.open(self.d.relay_port)
        c.reply()
        self.assertEqual(c.cmd("EHLO app.test"), EHLO_PLAIN_587)
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(*ALICE))[:10], b"538 5.7.11")
        self.assertEqual(c.cmd("STARTTLS"), b"220 2.0.0 Ready to start TLS\r\n")
        c.starttls(self.ctx())
        self.assertEqual(c.cmd("EHLO app.test"), EHLO_IN_TLS)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org>"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.cmd("RCPT TO:<b@example.net>"), b"554 5.7.1 <b@example.net>: Relay access denied\r\n")
        self.assertEqual(c.cmd("RSET"), b"250 2.0.0 Ok\r\n")
        self.assertEqual(c.cmd("AUTH PLAIN " + plain(*ALICE)), AUTH_OK)
        self.send_message(c, ALICE[0], ["b@example.net"], "Subject: relay auth tls\r\n\r\nok\r\n")


if __name__ == "__main__":
    unittest.main()
