"""Every limit of [limits] and RFC 5321, answered with the SPEC's codes, and
the server stays healthy afterwards."""
import socket
import smtplib
import time
import unittest

from harness import SluicedTest, Client


# 127.0.0.1 is trusted (it relays); 127.0.0.3 is not, so the per-client
# limit applies to it: trusted clients are exempt (test_local_relay.py).
UNTRUSTED = "127.0.0.3"


class Limits(SluicedTest):
    def config(self):
        return {"limits": {"max_message_size": "2K", "max_recipients": 3,
                           "max_connections": 6, "max_connections_per_client": 4,
                           "command_timeout": "1s", "data_timeout": "2s"},
                "trusted": ["127.0.0.1/32"]}

    def assertHealthy(self):
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=10) as s:
            self.assertEqual(s.sendmail("a@example.org", ["b@example.net"], "Subject: ok\r\n\r\nok\r\n"), {})

    def test_command_line_length(self):
        c = self.client()
        # 512 octets including CRLF is the limit (RFC 5321 4.5.3.1.4).
        self.assertEqual(c.cmd("NOOP " + "a" * 505), b"250 2.0.0 Ok\r\n")   # 512
        self.assertEqual(c.cmd("NOOP " + "a" * 506), b"500 5.5.2 Error: line too long\r\n")  # 513
        self.assertEqual(c.cmd("NOOP " + "a" * 60000), b"500 5.5.2 Error: line too long\r\n")
        self.assertEqual(c.cmd("NOOP"), b"250 2.0.0 Ok\r\n")
        self.assertHealthy()

    def test_path_lengths(self):
        c = self.client()
        c.cmd("EHLO c")
        self.assertEqual(c.cmd("MAIL FROM:<%s@example.org>" % ("l" * 64))[:3], b"250")
        c.cmd("RSET")
        self.assertEqual(c.cmd("MAIL FROM:<%s@example.org>" % ("l" * 65))[:3], b"553")
        # The path, brackets included, may have 256 octets (RFC 5321 4.5.3.1.3).
        domain = ".".join(["d" * 63] * 3) + "." + "e" * 60   # 252 octets
        self.assertEqual(len("<a@%s>" % domain), 256)
        self.assertEqual(c.cmd("MAIL FROM:<a@%s>" % domain)[:3], b"250")
        c.cmd("RSET")
        self.assertEqual(c.cmd("MAIL FROM:<a@%se>" % domain)[:1], b"5")      # 257
        self.assertEqual(c.cmd("MAIL FROM:<a@%s.%s>" % ("d" * 64, "example"))[:1], b"5")  # label 64
        self.assertEqual(c.cmd("MAIL FROM:<a@%s.%s>" % ("d" * 63, "example"))[:3], b"250")

    def test_message_size(self):
        c = self.client()
        c.cmd("EHLO c")
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org> SIZE=2049"), b"552 5.3.4 Message size exceeds fixed limit\r\n")
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org> SIZE=2048")[:3], b"250")
        c.cmd("RCPT TO:<b@example.net>")
        self.assertEqual(c.cmd("DATA")[:3], b"354")
        c.send(("x" * 70 + "\r\n") * 40 + ".\r\n")
        self.assertEqual(c.reply(), b"552 5.3.4 Error: message size exceeds fixed limit\r\n")
        # Exactly at the limit is accepted (content counted without Received).
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<b@example.net>")
        c.cmd("DATA")
        c.send(("y" * 62 + "\r\n") * 32 + ".\r\n")   # 64 * 32 = 2048
        self.assertEqual(c.code(), 250)
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<b@example.net>")
        c.cmd("DATA")
        c.send(("y" * 62 + "\r\n") * 32 + "z\r\n.\r\n")  # 2051
        self.assertEqual(c.code(), 552)
        self.assertHealthy()

    def test_data_line_length(self):
        c = self.client()
        c.cmd("EHLO c")
        for n, want in ((997, 250), (998, 250), (999, 500)):
            c.cmd("MAIL FROM:<a@example.org>")
            c.cmd("RCPT TO:<b@example.net>")
            c.cmd("DATA")
            c.send("a" * n + "\r\n.\r\n")
            self.assertEqual(c.code(), want, n)

    def test_recipient_limit(self):
        c = self.client()
        c.cmd("EHLO c")
        c.cmd("MAIL FROM:<a@example.org>")
        for i in range(3):
            self.assertEqual(c.cmd("RCPT TO:<r%d@example.net>" % i), b"250 2.1.5 Ok\r\n")
        self.assertEqual(c.cmd("RCPT TO:<r3@example.net>"), b"452 4.5.3 Error: too many recipients\r\n")
        self.assertEqual(c.cmd("DATA")[:3], b"354")
        c.send("x\r\n.\r\n")
        self.assertEqual(c.code(), 250)

    def settle(self):
        # The harness's start-up probe connection must be gone from the count.
        self.d.wait_log("conn=1 disconnect")

    def test_connection_limits(self):
        self.settle()
        held = [Client(self.d.port, source=UNTRUSTED) for _ in range(4)]
        for h in held:
            self.assertEqual(h.code(), 220)
        extra = Client(self.d.port, source=UNTRUSTED)
        self.assertEqual(extra.reply(), b"421 4.7.0 Error: too many connections from your address, try again later\r\n")
        self.assertTrue(extra.closed())
        # Another address is not affected by 127.0.0.3's limit.
        other = socket.create_connection(("127.0.0.1", self.d.port), source_address=("127.0.0.2", 0))
        self.assertEqual(other.recv(100)[:4], b"220 ")
        other.close()
        for h in held:
            h.cmd("QUIT")
            h.close()
        time.sleep(0.2)
        self.assertHealthy()

    def test_global_connection_limit(self):
        self.settle()
        conns = []
        for i in range(6):
            s = socket.create_connection(("127.0.0.1", self.d.port), source_address=("127.0.0.%d" % (i + 2), 0))
            conns.append(s)
        for s in conns:
            self.assertEqual(s.recv(100)[:4], b"220 ")
        extra = socket.create_connection(("127.0.0.1", self.d.port), source_address=("127.0.0.9", 0))
        self.assertEqual(extra.recv(200), b"421 4.7.0 Error: too many connections, try again later\r\n")
        for s in conns:
            s.close()
        extra.close()
        time.sleep(0.2)
        self.assertHealthy()

    def test_command_timeout(self):
        c = self.client()
        start = time.time()
        self.assertEqual(c.reply(), b"421 4.4.2 Error: timeout exceeded\r\n")
        self.assertTrue(c.closed())
        self.assertGreaterEqual(time.time() - start, 0.9)

    def test_data_timeout(self):
        c = self.client()
        c.cmd("HELO c")
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<b@example.net>")
        c.cmd("DATA")
        c.send("Subject: never finished\r\n")
        start = time.time()
        self.assertEqual(c.reply(), b"421 4.4.2 Error: timeout exceeded\r\n")
        self.assertGreaterEqual(time.time() - start, 1.5)
        self.assertTrue(c.closed())
        self.d.stop()
        self.assertEqual(self.d.spool_messages(), [])

    def test_repeated_errors_disconnect(self):
        c = self.client()
        for i in range(9):
            self.assertEqual(c.cmd("BOGUS %d" % i)[:10], b"500 5.5.2 ")
        c.send("BOGUS last\r\n")
        self.assertEqual(c.reply()[:10], b"500 5.5.2 ")
        self.assertEqual(c.reply(), b"421 4.7.0 Error: too many errors\r\n")
        self.assertTrue(c.closed())
        self.assertHealthy()


if __name__ == "__main__":
    unittest.main()
