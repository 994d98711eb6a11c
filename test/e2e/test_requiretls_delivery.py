"""REQUIRETLS (RFC 8689) through delivery: a message sent with
`MAIL FROM:<...> REQUIRETLS` (over STARTTLS to sluiced's relay listener)
goes only to a next hop whose name is authenticated (DNSSEC-secure MX
records, an enforced MTA-STS policy, or the relayhost), over TLS that is
authenticated (PKIX, MTA-STS or DANE), and that offers REQUIRETLS. The
receiving sinks (aiosmtpd) never offer REQUIRETLS. The fake DNS marks
answers secure as test_dane.py does.
"""
import json
import re
import subprocess
import unittest

from harness import SubmissionSluiced, TlsClient, tls_context
from test_dane import Dane
from test_delivery import wait_for
from test_requiretls import QUEUED, SLUICECTL


class RequireTlsDelivery(Dane):
    tlsa = "match"

    def make_daemon(self, extra, dns_servers):
        extra = extra.replace('retry_schedule = ["1s"]', 'retry_schedule = ["1s"]\nmax_queue_lifetime = "3s"')
        return SubmissionSluiced(relay=True, trusted=["127.0.0.0/8"], extra=extra, dns_servers=dns_servers)

    def ctl_json(self, *args):
        r = subprocess.run([SLUICECTL, "--config", self.d.config_path, "--json"] + list(args),
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return json.loads(r.stdout)

    def send_requiretls(self):
        c = TlsClient(self.d.relay_port)
        self.assertEqual(c.code(), 220)
        c.cmd("EHLO client.test")
        self.assertTrue(c.cmd("STARTTLS").startswith(b"220 "))
        c.starttls(tls_context(self.d.cert_path))
        self.assertIn(b"REQUIRETLS", c.cmd("EHLO client.test"))
        self.assertEqual(c.cmd("MAIL FROM:<alice@sender.test> REQUIRETLS")[:3], b"250")
        self.assertEqual(c.cmd("RCPT TO:<bob@example.test>")[:3], b"250")
        self.assertEqual(c.cmd("DATA")[:3], b"354")
        r = c.cmd(b"From: alice@sender.test\r\nSubject: secret\r\n\r\nThe secret body.\r\n.")
        m = QUEUED.match(r)
        self.assertTrue(m, r)
        c.cmd("QUIT")
        return m.group(1).decode()


class NameNotAuthenticated(RequireTlsDelivery):
    secure_mx = False  # the MX records are not DNSSEC-signed: nothing vouches for the name

    def test_never_sent_then_bounced_with_5_7_30(self):
        qid = self.send_requiretls()
        self.d.wait_log("%s: to=<bob@example.test>" % qid, timeout=10)
        line = next(l for l in self.d.log().splitlines() if "%s: to=<bob@example.test>" % qid in l)
        self.assertIn("dsn=4.7.30", line)
        self.assertIn("name is not authenticated", line)
        self.assertEqual(self.mx.messages, [])
        # At the end of max_queue_lifetime (3 s here) it bounces with 5.7.30,
        # and the bounce is itself a REQUIRETLS message.
        wait_for(lambda: "dsn=5.7.30 status=bounced" in self.d.log(), timeout=20, what="the 5.7.30 bounce")
        m = re.search(r"%s: sender non-delivery notification: ([0-9A-F]{16})" % qid, self.d.log())
        self.assertTrue(m, self.d.log()[-3000:])
        self.assertEqual(self.mx.messages, [])
        bounce = m.group(1)
        wait_for(lambda: "%s: to=<alice@sender.test>" % bounce in self.d.log(), timeout=10,
                 what="the bounce's delivery attempt")
        shown = self.ctl_json("queue", "show", bounce)
        self.assertTrue(json.dumps(shown).find('"requiretls": true') >= 0, shown)


class NoRequireTlsAtTheMx(RequireTlsDelivery):
    """Name and TLS authenticated (DNSSEC MX, DANE match), but the MX does
    not offer REQUIRETLS: nothing is sent, the recipient waits with 4.7.30."""

    def test_deferred_without_sending(self):
        qid = self.send_requiretls()
        self.d.wait_log("%s: to=<bob@example.test>" % qid, timeout=10)
        line = next(l for l in self.d.log().splitlines() if "%s: to=<bob@example.test>" % qid in l)
        self.assertIn("dsn=4.7.30", line)
        self.assertIn("tls=dane", line)
        self.assertIn("REQUIRETLS", line)
        self.assertEqual(self.mx.messages, [])
        shown = self.ctl_json("queue", "show", qid)
        self.assertIn('"tls": "dane"', json.dumps(shown))


if __name__ == "__main__":
    unittest.main()
