"""MTA-STS (RFC 8461) through delivery, end to end: sluiced finds the
`_mta-sts` TXT record in the fake DNS, fetches the policy from an HTTPS
server on 127.0.0.6 port 443 (its certificate from a test CA that
delivery.ca_file trusts), and applies it to the MX hosts of example.test:

    example.test MX 10 evil.example.test (127.0.0.3)   not in the policy
    example.test MX 20 mx.example.test   (127.0.0.2)   in the policy

The sinks offer STARTTLS with a certificate for mx.example.test from the
same CA, or a self-signed one (`good_sink_cert = False`).
"""
import os
import time
import unittest

from test_dane import StripStarttls
from test_delivery import Delivery, wait_for
from test_sts_fetch import HttpsServer, response
from testca import TestCa

POLICY_HOST = "127.0.0.6"


def policy(mode, mx=("mx.example.test",), max_age=86400):
    text = "version: STSv1\r\nmode: %s\r\n" % mode
    text += "".join("mx: %s\r\n" % m for m in mx)
    return (text + "max_age: %d\r\n" % max_age).encode()


class Sts(Delivery):
    sink_tls = True
    mode = "enforce"
    policy_mx = ("mx.example.test",)
    sink_names = ("mx.example.test", "evil.example.test", "smtp.example.test")  # in the sinks' certificate
    good_sink_cert = True
    mitm = False

    txt_id = "20261205"
    txt_ttl = 300

    def zone_text(self):
        return ("test.              3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 600\n"
                "example.test.      300 IN MX 10 evil.example.test.\n"
                "example.test.      300 IN MX 20 mx.example.test.\n"
                "evil.example.test. 300 IN A 127.0.0.3\n"
                "mx.example.test.   300 IN A 127.0.0.2\n"
                "smtp.example.test. 300 IN A 127.0.0.2\n"
                '_mta-sts.example.test. %d IN TXT "v=STSv1; id=%s;"\n'
                "mta-sts.example.test. 300 IN A %s\n"
                "sender.test.       300 IN MX 10 mx.sender.test.\n"
                "mx.sender.test.    300 IN A 127.0.0.3\n" % (self.txt_ttl, self.txt_id, POLICY_HOST))

    def sink_certificate(self):
        if not self.good_sink_cert:
            return super().sink_certificate()
        if not getattr(self, "sink_cert", None):
            self.test_ca = getattr(self, "test_ca", None) or TestCa(self.work)
            self.sink_cert = self.test_ca.issue("sink", dns=list(self.sink_names))
        return self.sink_cert

    def make_daemon(self, extra, dns_servers):
        self.test_ca = getattr(self, "test_ca", None) or TestCa(self.work)
        extra = extra.replace("[delivery]\n", '[delivery]\nca_file = "%s"\n' % self.test_ca.cert, 1)
        return super().make_daemon(extra, dns_servers)

    def setUp(self):
        self.policy_server = None
        super().setUp()
        cert = self.test_ca.issue("policy", dns=["mta-sts.example.test"])
        self.policy_server = HttpsServer(*cert, response(policy(self.mode, self.policy_mx)), addr=POLICY_HOST, port=443)
        self.proxy = None
        if self.mitm:
            # mx.example.test's sink moves behind a STARTTLS-stripping proxy.
            import ssl
            from aiosmtpd.controller import Controller
            self.c1.stop()
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*self.sink_certificate())
            self.c1 = Controller(self.mx, hostname="127.0.0.5", port=self.port, tls_context=ctx)
            self.c1.start()
            self.proxy = StripStarttls("127.0.0.2", self.port, "127.0.0.5")

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        if self.policy_server:
            self.policy_server.stop()
        super().tearDown()

    def line_of(self, rcpt, relay=""):
        """The delivery line of `rcpt` (waiting for it), optionally at `relay`."""
        self.d.wait_log("to=<%s> relay=%s" % (rcpt, relay) if relay else "to=<%s>" % rcpt)
        return next(l for l in self.d.log().splitlines() if "to=<%s>" % rcpt in l)

    def prime(self):
        """The first message to example.test starts the policy fetch; wait
        until the policy is cached, then forget what the sinks got."""
        self.submit("alice@sender.test", ["primer@example.test"])
        self.d.wait_log("mta-sts: domain=example.test id=%s mode=%s" % (self.txt_id, self.mode), timeout=15)
        wait_for(lambda: "primer@example.test" in self.d.log() and
                 ("status=sent" in self.d.log() or "status=deferred" in self.d.log()), what="the primer")
        # Its connection (opened before the policy was known) has closed.
        self.d.wait_log("closed transactions=", timeout=10)
        self.mx.messages.clear()
        self.bounce_mx.messages.clear()


class StsEnforce(Sts):
    def test_only_the_listed_mx_is_used(self):
        self.prime()
        self.submit("alice@sender.test", ["bob@example.test"])
        wait_for(lambda: self.mx.messages, what="mx.example.test to get the message")
        line = self.line_of("bob@example.test", "mx.example.test[127.0.0.2]")
        self.assertIn("tls=mta-sts", line)
        self.assertIn("status=sent", line)
        self.assertIn("skips MX evil.example.test", self.d.log())
        self.assertEqual(self.bounce_mx.messages, [])  # evil.example.test, preference 10, got nothing
        self.assertIn(b"GET /.well-known/mta-sts.txt HTTP/1.1", self.policy_server.requests[0])

    def test_the_cache_holds_across_a_restart_with_the_policy_server_down(self):
        self.prime()
        self.policy_server.stop()
        self.policy_server = None
        self.d.stop()
        self.assertEqual(os.listdir(os.path.join(self.d.spool, "sts")), ["example.test"])
        self.d.start()
        self.submit("alice@sender.test", ["carol@example.test"])
        line = self.line_of("carol@example.test", "mx.example.test[127.0.0.2]")
        self.assertIn("tls=mta-sts", line)
        self.assertEqual(self.bounce_mx.messages, [])


class StsEnforceBadCertificate(Sts):
    good_sink_cert = False  # self-signed: no PKIX for mx.example.test

    def test_a_bad_certificate_defers_and_nothing_is_sent(self):
        self.prime()
        self.submit("alice@sender.test", ["bob@example.test"])
        line = self.line_of("bob@example.test")
        self.assertIn("status=deferred", line)
        self.assertIn("dsn=4.7.5", line)
        self.assertIn("the MTA-STS policy of example.test requires TLS", line)
        time.sleep(0.3)
        self.assertEqual(self.mx.messages, [])
        self.assertEqual(self.bounce_mx.messages, [])


class StsEnforceWrongName(Sts):
    sink_names = ("other.example.test",)  # from the trusted CA, but for another name

    def test_a_certificate_for_another_name_defers(self):
        self.prime()
        self.submit("alice@sender.test", ["bob@example.test"])
        line = self.line_of("bob@example.test")
        self.assertIn("status=deferred", line)
        self.assertIn("dsn=4.7.5", line)
        self.assertIn("Hostname mismatch", line)
        self.assertEqual(self.mx.messages, [])


class StsEnforceStripped(Sts):
    mitm = True

    def test_a_stripped_starttls_defers_without_plaintext(self):
        self.prime()
        sent_before = len(self.proxy.sent)
        self.submit("alice@sender.test", ["bob@example.test"])
        line = self.line_of("bob@example.test")
        self.assertIn("status=deferred", line)
        self.assertIn("dsn=4.7.5", line)
        self.assertIn(b"EHLO", self.proxy.sent[sent_before:])
        self.assertNotIn(b"MAIL FROM", self.proxy.sent.upper())
        self.assertEqual(self.mx.messages, [])


class StsTesting(Sts):
    """Testing mode: delivered as without a policy, and the failure the
    policy would have caused is logged and counted for TLS-RPT."""
    mode = "testing"
    good_sink_cert = False

    def zone_text(self):
        return super().zone_text() + \
            '_smtp._tls.example.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:reports@sender.test"\n'

    def make_daemon(self, extra, dns_servers):
        from test_dkim import dkim_tables
        from test_tlsrpt import TLS_REPORTS
        return super().make_daemon(extra + dkim_tables(self.work) + TLS_REPORTS, dns_servers)

    def test_testing_mode_delivers_and_reports(self):
        import json
        import subprocess
        from test_tlsrpt import SLUICECTL
        self.prime()
        self.submit("alice@sender.test", ["bob@example.test"])
        wait_for(lambda: self.mx.messages or self.bounce_mx.messages, what="delivery")
        line = self.line_of("bob@example.test")
        self.assertIn("status=sent", line)
        self.assertIn("tls=opportunistic", line)
        self.assertIn("mode=testing: MX evil.example.test is not in the policy", self.d.log())
        r = subprocess.run([SLUICECTL, "--config", self.d.config_path, "tls-reports", "--json"],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        report = json.loads(r.stdout)
        policies = [p for day in report["days"] for d in day["domains"] if d["domain"] == "example.test"
                    for p in d["policies"]]
        self.assertTrue(any("sts-webpki-invalid" in json.dumps(p) and "mode: testing" in json.dumps(p)
                            for p in policies), json.dumps(policies))


class StsRecheckBeforeBounce(Sts):
    """RFC 8461 §5.1: a message about to bounce because of an enforced policy
    has the policy checked again first. The policy lists no MX of the
    domain, so every attempt defers (4.7.5) until max_queue_lifetime (4 s)."""
    policy_mx = ("other.example.test",)
    txt_ttl = 1

    def make_daemon(self, extra, dns_servers):
        extra = extra.replace('retry_schedule = ["1s"]', 'retry_schedule = ["1s"]\nmax_queue_lifetime = "4s"')
        return super().make_daemon(extra, dns_servers)

    def deferred_first(self):
        self.prime()
        self.submit("alice@sender.test", ["bob@example.test"])
        line = self.line_of("bob@example.test")
        self.assertIn("dsn=4.7.5", line)
        self.assertIn("no MX host of example.test is allowed by its MTA-STS policy", line)

    def test_a_new_policy_found_before_the_bounce_is_applied(self):
        self.deferred_first()
        # The domain publishes a new policy (new TXT id) that lists mx.example.test.
        self.policy_server.reply = response(policy("enforce", ("mx.example.test",)))
        self.txt_id = "20261206"
        zone = os.path.join(self.work, "zone.txt")
        with open(zone + ".new", "w") as f:
            f.write(self.zone_text())
        os.replace(zone + ".new", zone)
        self.d.wait_log("checked again before the message bounces", timeout=15)
        self.d.wait_log("has a new policy (enforce); delivery is tried again under it", timeout=10)
        wait_for(lambda: self.mx.messages, what="mx.example.test to get the message")
        self.d.wait_log("to=<bob@example.test> relay=mx.example.test[127.0.0.2]")
        self.assertNotIn("status=bounced", self.d.log())

    def test_the_same_policy_lets_it_bounce(self):
        self.deferred_first()
        self.d.wait_log("checked again before the message bounces", timeout=15)
        wait_for(lambda: "to=<bob@example.test>" in self.d.log() and "status=bounced" in self.d.log(),
                 timeout=15, what="the bounce")
        self.assertEqual(self.mx.messages, [])
        self.assertNotIn("has a new policy", self.d.log())


class ViaRelayhost(Sts):
    """Through a relayhost the relayhost's domain is the policy domain
    (smtp.example.test -> example.test), and enforce must list the relayhost."""

    def relayhost(self):
        return "smtp.example.test:%d" % self.port


class StsRelayhost(ViaRelayhost):
    policy_mx = ("*.example.test",)

    def test_a_listed_relayhost_is_used_under_the_policy(self):
        self.prime()
        self.submit("alice@sender.test", ["bob@example.test"])
        line = self.line_of("bob@example.test", "smtp.example.test[127.0.0.2]")
        self.assertIn("tls=mta-sts", line)
        self.assertIn("status=sent", line)


class StsRelayhostNotListed(ViaRelayhost):
    policy_mx = ("mx.example.test",)

    def test_an_unlisted_relayhost_defers(self):
        self.prime()
        self.submit("alice@sender.test", ["bob@example.test"])
        line = self.line_of("bob@example.test")
        self.assertIn("status=deferred", line)
        self.assertIn("dsn=4.7.5", line)
        self.assertIn("does not list the relayhost smtp.example.test", self.d.log())
        self.assertEqual(self.mx.messages, [])


if __name__ == "__main__":
    unittest.main()
