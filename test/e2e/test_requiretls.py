"""REQUIRETLS and TLS-Required: No on the server side (RFC 8689; issue 15):
REQUIRETLS is offered in EHLO only inside TLS, MAIL's REQUIRETLS is refused
in plaintext (530 5.7.10) and accepted in TLS, and the spool keeps what was
asked: `requiretls` for MAIL's parameter, `tls_optional` for a
"TLS-Required: No" header field (unless REQUIRETLS was given, which wins).
Both show in `sluicectl queue show` (JSON and text) and in spool_dump.

Delivery is not exercised here (the DNS server is a closed port: every
message stays deferred); how delivery honours the flags is tested with the
delivery wiring.
"""
import json
import os
import re
import shutil
import subprocess
import unittest

from harness import SubmissionSluiced, TlsClient, failed, tls_context

SLUICECTL = os.environ.get("SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))
QUEUED = re.compile(rb"^250 2\.0\.0 Ok: queued as ([0-9A-F]{16})\r\n$")


class RequireTls(unittest.TestCase):
    def setUp(self):
        # A relay listener (trusted loopback clients) that offers STARTTLS
        # with the self-signed certificate the daemon makes on first start.
        self.d = SubmissionSluiced(relay=True, trusted=["127.0.0.0/8"])
        self.d.start()
        self.ctx = tls_context(self.d.cert_path)

    def tearDown(self):
        self.d.stop()
        if failed(self):
            print("---- sluiced log ----\n" + self.d.log()[-5000:])
        shutil.rmtree(self.d.dir, ignore_errors=True)

    def ctl(self, *args):
        r = subprocess.run([SLUICECTL, "--config", self.d.config_path] + list(args),
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r.stdout.decode()

    def connect(self):
        c = TlsClient(self.d.relay_port)
        self.assertEqual(c.code(), 220)
        return c

    def starttls(self, c):
        self.assertTrue(c.cmd("STARTTLS").startswith(b"220 "))
        c.starttls(self.ctx)
        return c.cmd("EHLO client.test")

    def send(self, c, mail, content):
        """One transaction on `c`; returns the queue id."""
        self.assertEqual(c.cmd(mail)[:3], b"250")
        self.assertEqual(c.cmd("RCPT TO:<bob@example.test>")[:3], b"250")
        self.assertEqual(c.cmd("DATA")[:3], b"354")
        r = c.cmd(content.encode() + b"\r\n.")
        m = QUEUED.match(r)
        self.assertTrue(m, r)
        return m.group(1).decode()

    def test_offered_only_in_tls_and_refused_in_plaintext(self):
        c = self.connect()
        ehlo = c.cmd("EHLO client.test")
        self.assertIn(b"250-STARTTLS\r\n", ehlo)
        self.assertNotIn(b"REQUIRETLS", ehlo)
        self.assertEqual(c.cmd("MAIL FROM:<alice@sender.test> REQUIRETLS"),
                         b"530 5.7.10 Error: REQUIRETLS needs a TLS session; issue STARTTLS first\r\n")
        # No transaction was started: a plain MAIL is accepted next.
        self.assertEqual(c.cmd("MAIL FROM:<alice@sender.test>")[:3], b"250")
        self.assertEqual(c.cmd("RSET")[:3], b"250")
        ehlo = self.starttls(c)
        self.assertTrue(ehlo.endswith(b"250 REQUIRETLS\r\n") or b"250-REQUIRETLS\r\n" in ehlo, ehlo)
        self.assertNotIn(b"STARTTLS", ehlo)
        self.assertEqual(c.cmd("MAIL FROM:<alice@sender.test> REQUIRETLS=yes"),
                         b"501 5.5.4 Error: REQUIRETLS takes no value\r\n")
        c.cmd("QUIT")
        c.close()

    def test_flags_reach_the_spool_queue_show_and_spool_dump(self):
        c = self.connect()
        c.cmd("EHLO client.test")
        self.starttls(c)
        required = self.send(c, "MAIL FROM:<alice@sender.test> REQUIRETLS",
                             "Subject: secret\r\n\r\nconfidential\r\n")
        optional = self.send(c, "MAIL FROM:<alice@sender.test>",
                             "Subject: newsletter\r\nTLS-Required: No\r\n\r\nanyone may read\r\n")
        both = self.send(c, "MAIL FROM:<alice@sender.test> REQUIRETLS",
                         "Subject: both\r\ntls-required: no\r\n\r\nREQUIRETLS wins\r\n")
        plain = self.send(c, "MAIL FROM:<alice@sender.test>",
                          "Subject: plain\r\n\r\nTLS-Required: No\r\n")  # in the body: nothing
        c.cmd("QUIT")
        c.close()
        self.d.wait_log("%s: TLS-Required: No: MTA-STS and DANE will not be enforced" % optional)
        self.d.wait_log("%s: TLS-Required: No ignored: the message was sent with REQUIRETLS" % both)

        expect = {required: (True, False), optional: (False, True), both: (True, False),
                  plain: (False, False)}
        for mid, (requiretls, tls_optional) in expect.items():
            shown = json.loads(self.ctl("queue", "show", mid, "--json"))["message"]
            self.assertEqual((shown["requiretls"], shown["tls_optional"]), (requiretls, tls_optional), mid)
            self.assertEqual(shown["recipients"][0]["tls"], "none")  # no delivery session yet
            human = self.ctl("queue", "show", mid)
            if requiretls:
                self.assertIn("REQUIRETLS (authenticated TLS to every hop)", human)
            elif tls_optional:
                self.assertIn("optional (TLS-Required: No)", human)
            else:
                self.assertNotIn("TLS:", human)

        self.d.stop()
        dumped = {m["id"]: m for m in self.d.spool_messages(body=False)}
        for mid, (requiretls, tls_optional) in expect.items():
            self.assertEqual((dumped[mid]["requiretls"], dumped[mid]["tls_optional"]),
                             (requiretls, tls_optional), mid)
            self.assertEqual(dumped[mid]["recipients"][0]["tls"], "none")


if __name__ == "__main__":
    unittest.main()
