"""What the submission end-to-end tests share: the accounts, the SASL
helpers, and SubmissionTest (a daemon with a submission and a submissions
listener and a users file). Used by test_submission.py and
test_submission_hostile.py."""

import base64
import re
import time

from harness import (SluicedTest, SubmissionSluiced, TlsClient, smtp_ssl, tls_context, user_line)

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
               b"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-AUTH PLAIN LOGIN\r\n"
               b"250 REQUIRETLS\r\n")
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
