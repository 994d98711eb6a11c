"""Relay listener dialogues with real clients: smtplib, swaks, raw sockets."""
import re
import shutil
import smtplib
import subprocess
import unittest

from harness import SluicedTest, Client, Sluiced, free_port


class Dialogue(SluicedTest):
    def test_greeting_and_ehlo_exact_bytes(self):
        c = Client(self.d.port)
        self.assertEqual(c.reply(), b"220 mx.sluice.test ESMTP Sluice\r\n")
        ehlo = c.cmd("EHLO client.test")
        self.assertEqual(ehlo, b"250-mx.sluice.test\r\n250-PIPELINING\r\n250-SIZE 36700160\r\n"
                               b"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
        self.assertEqual(c.cmd("QUIT"), b"221 2.0.0 Bye\r\n")
        self.assertTrue(c.closed())

    def test_smtplib_message_accepted_and_spooled(self):
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=10) as s:
            s.ehlo("app.example")
            self.assertIn("pipelining", s.esmtp_features)
            msg = "From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\nMessage-ID: <t1@example.org>\r\n\r\nHello\r\n.leading dot\r\n"
            refused = s.sendmail("a@example.org", ["b@example.net", "c@example.com"], msg)
            self.assertEqual(refused, {})
        self.d.wait_log("accept")
        m = re.search(r"([0-9A-F]{16}): accept conn=\d+ from=<a@example.org> size=(\d+) nrcpt=2 msgid=<t1@example.org> client=127.0.0.1", self.d.log())
        self.assertTrue(m, self.d.log())
        qid = m.group(1)
        self.d.stop()
        msgs = self.d.spool_messages()
        self.assertEqual(len(msgs), 1)
        env = msgs[0]
        self.assertEqual(env["id"], qid)
        self.assertEqual(env["sender"], "a@example.org")
        self.assertEqual([r["address"] for r in env["recipients"]], ["b@example.net", "c@example.com"])
        self.assertEqual(env["size"], int(m.group(2)))
        body = env["body"]
        self.assertEqual(len(body), env["size"])
        self.assertTrue(body.startswith(b"Received: from app.example ([127.0.0.1])\r\n\tby mx.sluice.test (Sluice) with ESMTP id " + qid.encode() + b";"), body[:200])
        # The message had no Date: the relay listener added it ([relay] add_missing_headers).
        self.assertRegex(body, rb"Subject: hi\r\nMessage-ID: <t1@example\.org>\r\nDate: [^\r]+\r\n\r\nHello\r\n\.leading dot\r\n$")

    def test_swaks(self):
        if not shutil.which("swaks"):
            self.skipTest("swaks not installed")
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(self.d.port),
                            "--from", "cron@example.org", "--to", "ops@example.net",
                            "--header", "Subject: swaks test", "--body", "from swaks",
                            "--timeout", "10"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"<-  250 2\.0\.0 Ok: queued as [0-9A-F]{16}")

    def test_pipelining_in_one_write(self):
        c = self.client()
        c.send("EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
               "RCPT TO:<bad address>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n")
        self.assertTrue(c.reply().startswith(b"250-mx.sluice.test"))
        self.assertEqual(c.reply(), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.reply(), b"250 2.1.5 Ok\r\n")
        self.assertEqual(c.code(), 501)
        self.assertEqual(c.reply(), b"250 2.1.5 Ok\r\n")
        self.assertEqual(c.code(), 354)
        c.send("Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<d@example.net>\r\nDATA\r\n")
        self.assertRegex(c.reply(), rb"^250 2\.0\.0 Ok: queued as [0-9A-F]{16}\r\n$")
        self.assertEqual(c.reply(), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.reply(), b"250 2.1.5 Ok\r\n")
        self.assertEqual(c.code(), 354)
        c.send("\r\n.\r\nQUIT\r\n")
        self.assertEqual(c.code(), 250)
        self.assertEqual(c.code(), 221)
        self.d.stop()
        msgs = self.d.spool_messages()
        self.assertEqual(len(msgs), 2)
        self.assertEqual(msgs[1]["sender"], "")

    def test_sequence_and_syntax_errors(self):
        c = self.client()
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org>"), b"503 5.5.1 Error: send HELO/EHLO first\r\n")
        self.assertEqual(c.cmd("HELO c")[:4], b"250 ")
        self.assertEqual(c.cmd("RCPT TO:<b@example.net>")[:10], b"503 5.5.1 ")
        self.assertEqual(c.cmd("DATA")[:10], b"503 5.5.1 ")
        self.assertEqual(c.cmd("FOO")[:10], b"500 5.5.2 ")
        self.assertEqual(c.cmd("MAIL FROM:a@example.org")[:10], b"501 5.5.4 ")
        self.assertEqual(c.cmd("VRFY postmaster")[:10], b"252 2.0.0 ")
        self.assertEqual(c.cmd("HELP")[:10], b"214 2.0.0 ")
        self.assertEqual(c.cmd("NOOP"), b"250 2.0.0 Ok\r\n")
        self.assertEqual(c.cmd("RSET"), b"250 2.0.0 Ok\r\n")

    def test_data_content_rules(self):
        """Bare LF is a line end, bare CR and NUL are refused, only CRLF.CRLF ends."""
        c = self.client()
        c.cmd("EHLO c")
        def transaction(content):
            self.assertEqual(c.cmd("MAIL FROM:<a@example.org>")[:3], b"250")
            self.assertEqual(c.cmd("RCPT TO:<b@example.net>")[:3], b"250")
            c.send("DATA\r\n")
            self.assertEqual(c.code(), 354)
            c.send(content)
            return c.reply()
        self.assertEqual(transaction(b"a\rb\r\n.\r\n"), b"554 5.6.0 Error: bare CR in message content\r\n")
        self.assertEqual(transaction(b"a\0b\r\n.\r\n"), b"554 5.6.0 Error: NUL in message content\r\n")
        # Smuggling look-alikes are content; one message results.
        r = transaction(b"Subject: s\r\nFrom: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                        b"Message-ID: <s@example.org>\r\n\r\nA\n.\nMAIL FROM:<x@evil>\r\nB\r\n.\nC\n.\r\nD\r\n.\r\n")
        self.assertRegex(r, rb"^250 2\.0\.0 Ok: queued as ")
        self.assertEqual(c.cmd("QUIT")[:3], b"221")
        self.d.stop()
        msgs = self.d.spool_messages()
        self.assertEqual(len(msgs), 1)
        body = msgs[0]["body"]
        self.assertTrue(body.endswith(b"Subject: s\r\nFrom: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                                      b"Message-ID: <s@example.org>\r\n\r\nA\r\n.\r\nMAIL FROM:<x@evil>\r\nB\r\n.\r\nC\r\n.\r\nD\r\n"), body)
        self.assertNotIn(b"\r\n\r\n.\r\n", body.replace(b"\r\n.\r\n", b"X"))
        for i, ch in enumerate(body):
            if ch == 10:
                self.assertEqual(body[i - 1], 13)


class UntrustedRelay(SluicedTest):
    def config(self):
        return {"trusted": ["10.0.0.0/8"]}

    def test_relay_denied_at_rcpt(self):
        c = self.client()
        c.cmd("EHLO c")
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org>"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.cmd("RCPT TO:<b@example.net>"), b"554 5.7.1 <b@example.net>: Relay access denied\r\n")
        self.assertEqual(c.cmd("RCPT TO:<postmaster@[127.0.0.1]>")[:10], b"554 5.7.1 ")
        self.assertEqual(c.cmd("DATA"), b"554 5.5.1 Error: no valid recipients\r\n")
        self.d.wait_log('reject from=127.0.0.1 cmd="RCPT <b@example.net>" reply="554 5.7.1')
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            with smtplib.SMTP("127.0.0.1", self.d.port, timeout=10) as s:
                s.sendmail("a@example.org", ["b@example.net"], "Subject: x\r\n\r\nx\r\n")
        self.d.stop()
        self.assertEqual(self.d.spool_messages(), [])


class Listeners(unittest.TestCase):
    def test_ipv4_and_ipv6_listeners(self):
        p4, p6 = free_port(), free_port("::1")
        d = Sluiced(listeners=[("127.0.0.1:%d" % p4, "relay"), ("[::1]:%d" % p6, "relay")])
        try:
            d.start()
            for host, port in (("127.0.0.1", p4), ("::1", p6)):
                with smtplib.SMTP(host, port, timeout=10) as s:
                    s.sendmail("a@example.org", ["b@example.net"], "Subject: v\r\n\r\nx\r\n")
            d.wait_log("client=::1")
            self.assertIn("client=127.0.0.1", d.log())
        finally:
            d.cleanup()

    def test_submission_needs_auth(self):
        p = free_port()
        d = Sluiced(listeners=[("127.0.0.1:%d" % p, "submission")])
        try:
            d.start()
            c = Client(p)
            self.assertEqual(c.code(), 220)
            c.cmd("EHLO c")
            self.assertEqual(c.cmd("MAIL FROM:<a@example.org>"), b"530 5.7.0 Authentication required\r\n")
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
