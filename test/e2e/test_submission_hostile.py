"""Submission under attack and load, end to end: TLS robustness (STARTTLS
injection, garbage, stalled handshakes), password hashing off the event
loop with many clients at once, and SIGHUP reloads of the users file and
certificate. The shared set-up is in submission_base.py.
"""

import os
import random
import re
import smtplib
import socket
import ssl
import statistics
import subprocess
import threading
import time
import unittest

from harness import (HOSTNAME, pem_fingerprint, smtp_ssl, user_line)
from submission_base import (ALICE, AUTH_BAD, AUTH_OK, BOB, EHLO_IN_TLS, EHLO_PLAIN_587, ERIN, SubmissionTest, plain, users)


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
        # A relay listener adds Date, Message-ID and From too ([relay]
        # add_missing_headers, on by default; test_local_relay.py).
        self.assertIn(b"\r\nDate: ", msgs[1]["body"])
        self.assertIn(b"\r\nMessage-ID: ", msgs[1]["body"])
        self.assertIn(b"\r\nFrom: cron@example.org\r\n", msgs[1]["body"])


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
