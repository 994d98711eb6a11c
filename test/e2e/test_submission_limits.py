"""Submission limits with a real sluiced and smtplib (docs/shaping.md,
"Submission limits"): [limits] messages_per_login counts each MAIL FROM of a
login across sessions (450 4.7.1 past it), auth_failures_per_client counts
failed password checks per client address across sessions (AUTH then
answers 454 4.7.0 without a check, even for the right password); "" turns
either off, and a reload changes them for new connections."""

import re
import smtplib
import socket
import ssl
import unittest

from harness import HOSTNAME, SluicedTest, SubmissionSluiced, tls_context, user_line
from submission_base import ALICE, BOB, DAVE, plain, users


class _SMTP_SSL(smtplib.SMTP_SSL):
    """smtplib over implicit TLS from a chosen loopback address, checking the
    daemon's self-signed certificate for HOSTNAME."""

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout, self.source_address)
        return self.context.wrap_socket(sock, server_hostname=HOSTNAME)


class SubmissionLimits(SluicedTest):
    LIMITS = {"messages_per_login": "2/h", "auth_failures_per_client": "3/h",
              "auth_failure_delay": "100ms"}

    def setUp(self):
        # No trusted network: loopback clients are counted like any other.
        self.d = SubmissionSluiced(users=users(), trusted=[], limits=self.LIMITS)
        self.d.start()

    def smtp(self, source="127.0.0.1"):
        s = _SMTP_SSL("127.0.0.1", self.d.port465, timeout=10, local_hostname="mail.client.test",
                      context=tls_context(self.d.cert_path), source_address=(source, 0))
        self.addCleanup(self.close, s)
        s.ehlo()
        return s

    @staticmethod
    def close(s):
        try:
            s.quit()
        except (smtplib.SMTPException, OSError, ssl.SSLError):
            s.close()

    def auth(self, s, login, password):
        """One AUTH PLAIN (smtplib.login would try LOGIN after a failed PLAIN)."""
        return s.docmd("AUTH", "PLAIN " + plain(login, password))

    def logged_in(self, account, source="127.0.0.1"):
        s = self.smtp(source)
        self.assertEqual(self.auth(s, *account)[0], 235)
        return s

    def send(self, s, sender):
        s.sendmail(sender, ["someone@far.example"], "Subject: t\r\n\r\nbody\r\n")

    def set_limits(self, **limits):
        """Rewrite [limits] keys in the configuration and reload."""
        with open(self.d.config_path) as f:
            text = f.read()
        for k, v in limits.items():
            text, n = re.subn(r'(?m)^%s = .*$' % k, '%s = "%s"' % (k, v), text)
            self.assertEqual(n, 1, k)
        self.d.write_config(text)
        self.d.reload()
        self.assertIn("reload: configuration re-read", self.d.log())

    def test_messages_per_login_across_sessions(self):
        s = self.logged_in(ALICE)
        self.send(s, ALICE[0])
        self.close(s)
        s = self.logged_in(ALICE)   # another session of the same login
        self.send(s, ALICE[0])
        code, text = s.mail(ALICE[0])
        self.assertEqual(code, 450)
        self.assertRegex(text.decode(), r"^4\.7\.1 Error: too much mail from login alice@example\.org "
                                         r"\(limit 2/h\), try again in \d+ s$")
        # The session goes on; RCPT without MAIL is refused.
        self.assertEqual(s.rcpt("someone@far.example")[0], 503)
        self.assertEqual(s.noop()[0], 250)
        # Another login is not affected.
        b = self.logged_in(BOB)
        self.send(b, "bob@example.org")
        # Logged once, with the connection and the login, never a password.
        self.d.wait_log("450 4.7.1")
        log = self.d.log()
        lines = [l for l in log.splitlines() if "450 4.7.1" in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], r'conn=\d+ reject from=127\.0\.0\.1 cmd="MAIL <alice@example\.org> '
                                   r'login=alice@example\.org"')
        self.assertNotIn(ALICE[1], log)

    def test_auth_failures_per_client_across_sessions(self):
        for _ in range(3):
            s = self.smtp()
            self.assertEqual(self.auth(s, ALICE[0], "wrong")[0], 535)
            self.close(s)
        s = self.smtp()
        code, text = self.auth(s, *ALICE)   # the right password, not even checked
        self.assertEqual(code, 454)
        self.assertRegex(text.decode(), r"^4\.7\.0 Error: too many failed authentications from "
                                         r"127\.0\.0\.1, try again in \d+ s$")
        self.assertEqual(s.mail(ALICE[0])[0], 530)  # not authenticated
        # A client from another address still authenticates and sends.
        other = self.logged_in(ALICE, source="127.0.0.9")
        self.send(other, ALICE[0])
        self.d.wait_log("454 4.7.0")
        log = self.d.log()
        self.assertRegex(log, r'conn=\d+ reject from=127\.0\.0\.1 cmd="AUTH login=alice@example\.org" '
                              r'reply="454 4\.7\.0')
        self.assertNotIn(ALICE[1], log)

    def test_reload_changes_the_limits(self):
        s = self.logged_in(ALICE)
        for _ in range(2):
            self.send(s, ALICE[0])
        self.assertEqual(s.mail(ALICE[0])[0], 450)
        self.close(s)
        for _ in range(3):
            s = self.smtp()
            self.assertEqual(self.auth(s, BOB[0], "wrong")[0], 535)
            self.close(s)
        self.assertEqual(self.auth(self.smtp(), *BOB)[0], 454)
        # "" turns both off for new connections.
        self.set_limits(messages_per_login="", auth_failures_per_client="")
        s = self.logged_in(ALICE)
        for _ in range(4):
            self.send(s, ALICE[0])
        self.assertEqual(self.auth(self.smtp(), *BOB)[0], 235)
        self.assertEqual(self.auth(self.smtp(), BOB[0], "wrong")[0], 535)
        # Back on, higher: a fresh login sends five in a row, the sixth waits.
        # What alice sent before still counts: the store kept her debt, in
        # time (a whole hour of it), which at any rate is a period's worth.
        self.set_limits(messages_per_login="5/h", auth_failures_per_client="30/h")
        # (From another address: 127.0.0.1's three failures weigh a whole
        # hour too, so it stays blocked at 30/h for a while.)
        self.assertEqual(self.auth(self.smtp(), *DAVE)[0], 454)
        s = self.logged_in(DAVE, source="127.0.0.5")
        codes = []
        for _ in range(6):
            codes.append(s.mail(DAVE[0])[0])
            s.rset()
        self.assertEqual(codes, [250] * 5 + [450])
        self.assertEqual(self.logged_in(ALICE, source="127.0.0.5").mail(ALICE[0])[0], 450)
        # Three failures from a fresh address no longer block it.
        for _ in range(3):
            self.assertEqual(self.auth(self.smtp("127.0.0.9"), BOB[0], "wrong")[0], 535)
        self.assertEqual(self.auth(self.smtp("127.0.0.9"), *BOB)[0], 235)


class TrustedClientsExempt(SluicedTest):
    """Clients in relay.trusted_networks (here all of loopback, the default)
    are exempt from auth_failures_per_client."""

    def setUp(self):
        self.d = SubmissionSluiced(users=users(), limits={"auth_failures_per_client": "1/h",
                                                          "auth_failure_delay": "100ms"})
        self.d.start()

    def test_trusted_client_is_not_counted(self):
        ctx = tls_context(self.d.cert_path)
        for password in ("wrong", "wrong", ALICE[1]):
            s = _SMTP_SSL("127.0.0.1", self.d.port465, timeout=10, context=ctx,
                          local_hostname="mail.client.test")
            s.ehlo()
            code, _ = s.docmd("AUTH", "PLAIN " + plain(ALICE[0], password))
            self.assertEqual(code, 235 if password == ALICE[1] else 535)
            s.close()


if __name__ == "__main__":
    unittest.main()
