"""Submission end to end: STARTTLS on a `submission` listener, implicit TLS
on `submissions`, AUTH PLAIN/LOGIN against a users file (yescrypt, bcrypt and
SHA-512 hashes made with mkpasswd / openssl), sender policy and the Date and
Message-ID fixes. TLS robustness, concurrency and reloads are in
test_submission_hostile.py.

Clients: smtplib (the flow of a mail client), swaks, openssl s_client and
raw sockets (ssl-wrapped) for exact bytes. Every test runs its own daemon,
which makes its own self-signed certificate on first start.
"""

import os
import re
import shutil
import smtplib
import socket
import ssl
import statistics
import subprocess
import time
import unittest

from harness import (HOSTNAME, pem_fingerprint, smtp_ssl, smtp_starttls)
from submission_base import (ALICE, AUTH_BAD, AUTH_OK, BOB, CAROL, DAVE, EHLO_IN_TLS, EHLO_PLAIN_587, RFC5322_DATE, SubmissionTest, b64, plain, split_message)


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
        self.assertEqual(c.cmd("EHLO again.test"), EHLO_IN_TLS.replace(b"250-AUTH PLAIN LOGIN\r\n", b""))
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
        # No From: the envelope sender's is added, as Date and Message-ID are.
        self.assertEqual(head, b"DATE: Tue, 1 Jan 2030 00:00:00 +0100\r\nMessage-Id: <own@client.test>\r\nSubject: two\r\n"
                               b"From: alice@example.org\r\n")
        self.assertEqual(content, b"second\r\n")
        self.assertEqual(msgs[1]["message_id"], "<own@client.test>")

        _, head, content = split_message(msgs[2]["body"])
        self.assertRegex(head, rb"^Date: Tue, 1 Jan 2030 00:00:00 \+0100\r\nSubject: three\r\nMessage-ID: <\d{14}\."
                         + msgs[2]["id"].encode() + rb"@mx\.sluice\.test>\r\nFrom: alice@example\.org\r\n$")
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
        self.assertRegex(head, rb"^Subject: from bob\r\nDate: [^\r]+\r\nMessage-ID: <[^\r]+@mx\.sluice\.test>\r\n"
                         rb"From: sales@example\.net\r\n$")

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
                    self.assertIn("<~  250-AUTH PLAIN LOGIN", out)
                    self.assertIn("<~  250 REQUIRETLS", out)
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


if __name__ == "__main__":
    unittest.main()
