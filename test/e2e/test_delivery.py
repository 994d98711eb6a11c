"""Delivery end to end: sluiced accepts mail on its relay listener and delivers
it, through its own DNS lookups (dns/testdata/fake_dns.py serving a small
zone), to SMTP sinks (aiosmtpd) on 127.0.0.2 and 127.0.0.3 at one port, the
configured delivery.port.

Zone: example.test MX -> mx.example.test -> 127.0.0.2 (the recipients' sink);
      sender.test  MX -> mx.sender.test  -> 127.0.0.3 (where bounces go).
"""
import asyncio
import os
import smtplib
import subprocess
import tempfile
import time
import unittest

import logging

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

logging.getLogger("mail.log").setLevel(logging.CRITICAL)  # aiosmtpd's tracebacks on refused handshakes

import harness
from harness import Sluiced, free_port

FAKE_DNS = os.path.join(os.path.dirname(__file__), "../../dns/testdata/fake_dns.py")

ZONE = """\
test.              3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 600
example.test.      300 IN MX 10 mx.example.test.
mx.example.test.   300 IN A 127.0.0.2
sender.test.       300 IN MX 10 mx.sender.test.
mx.sender.test.    300 IN A 127.0.0.3
backup.test.       300 IN MX 10 dead.backup.test.
backup.test.       300 IN MX 20 mx.example.test.
dead.backup.test.  300 IN A 127.0.0.4
"""


class FakeDns:
    def __init__(self, workdir, zone_text=ZONE):
        zone = os.path.join(workdir, "zone.txt")
        with open(zone, "w") as f:
            f.write(zone_text)
        self.proc = subprocess.Popen(["/usr/bin/python3", FAKE_DNS, zone, os.path.join(workdir, "queries.log")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.port = int(self.proc.stdout.readline())

    def stop(self):
        self.proc.stdin.close()
        self.proc.stdout.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class SinkHandler:
    """Records every transaction; `rules` maps a recipient to a list of RCPT
    replies to give in turn (None accepts), after which it is accepted."""

    def __init__(self):
        self.messages = []  # (mail_from, [rcpt], content bytes)
        self.sessions = []  # the aiosmtpd session of each transaction (one per connection)
        self.rules = {}
        self.data_delay = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rule = self.rules.get(address)
        if rule:
            r = rule.pop(0)
            if r is not None:
                return r
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        self.sessions.append(session)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 Ok: queued at the sink"


def wait_for(pred, timeout=15, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def sink_port():
    for _ in range(50):
        p = free_port("127.0.0.2")
        try:
            free_port_at("127.0.0.3", p)
            return p
        except OSError:
            continue
    raise RuntimeError("no common free port")


def free_port_at(host, port):
    import socket
    with socket.socket() as s:
        s.bind((host, port))


class Delivery(unittest.TestCase):
    relayhost = None
    delivery_extra = ""
    sink_tls = False  # the sinks offer (and require) STARTTLS with a self-signed certificate
    sink_auth = None  # (login, password): the sinks require AUTH inside TLS; their certificate
                      # then comes from a test CA that delivery.ca_file trusts (it must verify)
    use_smtp_sink = False  # smtp-sink instead of aiosmtpd on 127.0.0.2
    zone = ZONE  # what the fake DNS serves

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="sluice-dlv-")
        self.port = sink_port()
        self.dns = FakeDns(self.work, self.zone_text())
        self.mx = SinkHandler()
        self.bounce_mx = SinkHandler()
        kw = {}
        self.ca = None
        if self.sink_tls and self.sink_auth:
            import ssl
            from testca import TestCa
            self.ca = TestCa(self.work)
            cert, key = self.ca.issue("sink", dns=["mx.example.test"], ips=["127.0.0.2", "127.0.0.3"])
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            kw = dict(tls_context=ctx, require_starttls=True)
        elif self.sink_tls:
            import ssl
            cert, key = self.sink_certificate()
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            kw = dict(tls_context=ctx, require_starttls=True)
        if self.sink_auth:
            self.auth_seen = []

            def authenticator(server, session, envelope, mechanism, auth_data):
                self.auth_seen.append((mechanism, auth_data.login, auth_data.password))
                expected = getattr(self, "sink_expects", None) or self.sink_auth
                if (auth_data.login.decode(), auth_data.password.decode()) == expected:
                    return AuthResult(success=True)
                return AuthResult(success=False, handled=False, message="535 5.7.8 bad credentials")
            kw.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
        self.smtp_sink = None
        if self.use_smtp_sink:
            # Postfix's smtp-sink offers PIPELINING (aiosmtpd does not).
            self.smtp_sink = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "root", "-d",
                                               os.path.join(self.work, "sink-%M."),
                                               "127.0.0.2:%d" % self.port, "100"])
        self.c1 = Controller(self.mx, hostname="127.0.0.2", port=self.port, **kw)
        self.c2 = Controller(self.bounce_mx, hostname="127.0.0.3", port=self.port, **kw)
        if self.smtp_sink:
            wait_for(lambda: self._listening("127.0.0.2", self.port), what="smtp-sink")
        else:
            self.c1.start()
        self.c2.start()
        extra = '[delivery]\nport = %d\nretry_schedule = ["1s"]\n' % self.port
        extra += self.delivery_extra
        if self.relayhost:
            extra += 'relayhost = "%s"\n' % self.relayhost()
        if self.sink_auth:
            pw = os.path.join(self.work, "relay-password")
            with open(pw, "w") as f:
                f.write("  %s  \nsecond line ignored\n" % self.sink_auth[1])
            extra += 'relayhost_username = "%s"\nrelayhost_password_file = "%s"\n' % (self.sink_auth[0], pw)
            if self.ca:  # relayhost credentials: the relayhost's certificate must verify
                extra += 'ca_file = "%s"\n' % self.ca.cert
        self.d = self.make_daemon(extra, ["127.0.0.1:%d" % self.dns.port])
        self.d.start()

    def zone_text(self):
        """What the fake DNS serves; self.port and self.work are set."""
        return self.zone

    def sink_certificate(self):
        """(cert, key) of the sinks under sink_tls: self-signed for mx.example.test."""
        cert, key = os.path.join(self.work, "cert.pem"), os.path.join(self.work, "key.pem")
        if not os.path.exists(cert):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-subj", "/CN=mx.example.test", "-keyout", key, "-out", cert],
                           check=True, capture_output=True, timeout=60)
        return cert, key

    def make_daemon(self, extra, dns_servers):
        return Sluiced(extra=extra, dns_servers=dns_servers)

    def tearDown(self):
        failed = self._failed()
        self.d.stop()
        if failed:
            print("---- sluiced log ----\n" + self.d.log()[-8000:])
        if self.smtp_sink:
            self.smtp_sink.terminate()
            self.smtp_sink.wait()
        else:
            self.c1.stop()
        self.c2.stop()
        self.dns.stop()
        import shutil
        shutil.rmtree(self.d.dir, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    @staticmethod
    def _listening(host, port):
        import socket
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False

    def _failed(self):
        return harness.failed(self)

    # A complete header section: the relay listener adds nothing to it
    # ([relay] add_missing_headers), so what arrives ends with what was sent.
    def submit(self, sender, rcpts, body="From: sender@sender.test\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                                         "Message-ID: <hello@sender.test>\r\n"
                                         "Subject: hello\r\n\r\nThe body.\r\n.leading dot line\r\n"):
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=10) as s:
            s.sendmail(sender, rcpts, body)
        return body

    def assert_spool_empty(self):
        wait_for(lambda: self.d.log().count(": removed") >= 1, what="a removal")
        self.d.stop()
        self.assertEqual(self.d.spool_messages(), [])


class MxDelivery(Delivery):
    def test_delivered_to_the_mx_and_removed(self):
        body = self.submit("alice@sender.test", ["bob@example.test"])
        wait_for(lambda: self.mx.messages, what="the sink to get the message")
        mail_from, rcpts, content = self.mx.messages[0]
        self.assertEqual(mail_from, "alice@sender.test")
        self.assertEqual(rcpts, ["bob@example.test"])
        self.assertTrue(content.startswith(b"Received: "), content[:200])
        self.assertTrue(content.endswith(body.encode()), content)
        self.d.wait_log("to=<bob@example.test> relay=mx.example.test[127.0.0.2]:%d" % self.port)
        self.d.wait_log("status=sent")
        self.assertEqual(len(self.mx.messages), 1)
        self.assert_spool_empty()

    def test_many_recipients_one_transaction(self):
        rcpts = ["user%02d@example.test" % i for i in range(30)]
        self.submit("alice@sender.test", rcpts)
        wait_for(lambda: self.mx.messages, what="the sink to get the message")
        time.sleep(0.3)
        self.assertEqual(len(self.mx.messages), 1)
        self.assertEqual(self.mx.messages[0][1], rcpts)
        wait_for(lambda: self.d.log().count("status=sent") == 30, what="30 sent lines")
        self.assert_spool_empty()

    def test_two_domains_two_transactions(self):
        self.submit("alice@sender.test", ["a@example.test", "b@backup.test", "c@example.test"])
        wait_for(lambda: len(self.mx.messages) == 2, what="one transaction per domain")
        self.assertEqual(sorted(m[1] for m in self.mx.messages),
                         [["a@example.test", "c@example.test"], ["b@backup.test"]])
        self.assert_spool_empty()

    def test_4xx_defers_then_the_retry_delivers(self):
        self.mx.rules["bob@example.test"] = ["451 4.3.0 try again later"]
        self.submit("alice@sender.test", ["bob@example.test"])
        self.d.wait_log("status=deferred (451 4.3.0 try again later)", timeout=10)
        wait_for(lambda: self.mx.messages, timeout=10, what="the retry")
        self.assertEqual(self.mx.messages[0][1], ["bob@example.test"])
        self.d.wait_log("status=sent")
        self.assertEqual(self.bounce_mx.messages, [])
        self.assert_spool_empty()

    def test_5xx_bounces_to_the_senders_mx(self):
        self.mx.rules["nobody@example.test"] = ["550 5.1.1 no such user"]
        self.submit("alice@sender.test", ["nobody@example.test", "bob@example.test"],
                    body="Subject: will bounce\r\nMessage-ID: <orig@sender.test>\r\n\r\nbody\r\n")
        wait_for(lambda: self.bounce_mx.messages, what="the bounce at the sender's MX")
        mail_from, rcpts, content = self.bounce_mx.messages[0]
        self.assertIn(mail_from, ("", "<>"))  # aiosmtpd keeps the brackets of the null sender
        self.assertEqual(rcpts, ["alice@sender.test"])
        self.assertIn(b"multipart/report", content)
        self.assertIn(b"Final-Recipient: rfc822; nobody@example.test", content)
        self.assertIn(b"550 5.1.1 no such user", content)
        self.assertIn(b"Message-ID: <orig@sender.test>", content)  # the original's headers
        # bob got it; the sink never saw nobody as a recipient.
        self.assertEqual(self.mx.messages[0][1], ["bob@example.test"])
        self.d.wait_log("to=<nobody@example.test>")
        self.assertIn("status=bounced (550 5.1.1 no such user)", self.d.log())
        wait_for(lambda: self.d.log().count(": removed") >= 2, what="both messages removed")
        self.d.stop()
        self.assertEqual(self.d.spool_messages(), [])

    def test_nxdomain_bounces_at_once(self):
        # nx.test does not exist: a permanent DNS failure bounces at once.
        self.submit("alice@sender.test", ["x@nx.test"])
        wait_for(lambda: self.bounce_mx.messages, what="the NXDOMAIN bounce")
        self.assertIn(b"5.1.2", self.bounce_mx.messages[0][2])


    def test_refused_mx_host_moves_on_to_the_next(self):
        # dead.backup.test (127.0.0.4) refuses the connection: same attempt,
        # next MX host.
        self.submit("alice@sender.test", ["eve@backup.test"])
        wait_for(lambda: self.mx.messages, what="delivery through the second MX")
        self.assertEqual(self.mx.messages[0][1], ["eve@backup.test"])
        self.d.wait_log("relay=mx.example.test[127.0.0.2]:%d" % self.port)
        self.assertNotIn("status=deferred", self.d.log())
        self.assert_spool_empty()

    def test_sigterm_during_delivery_defers_and_exits_cleanly(self):
        self.mx.data_delay = 30
        self.submit("alice@sender.test", ["bob@example.test"])
        time.sleep(1.0)  # the DATA is now waiting at the sink
        t0 = time.time()
        self.assertEqual(self.d.stop(), 0)
        self.assertLess(time.time() - t0, 10)
        self.assertIn("interrupted by shutdown", self.d.log())
        self.assertIn("delivery: stopped", self.d.log())
        # Nothing was learnt: the spool keeps the message as it was, due at
        # once at the next start, which delivers it.
        msgs = self.d.spool_messages(body=False)
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["recipients"][0]["status"], "pending")
        self.mx.data_delay = 0
        self.d.start()
        wait_for(lambda: len(self.mx.messages) == 1, what="delivery after the restart")
        self.assert_spool_empty()


class SubmittedMailIsDelivered(Delivery):
    """Mail from a mail client on the submission port (STARTTLS + AUTH) takes
    the same way out as relayed mail."""

    def make_daemon(self, extra, dns_servers):
        from harness import SubmissionSluiced, user_line
        return SubmissionSluiced(users=[user_line("alice@sender.test", "pw1", "sha512")],
                                 extra=extra, dns_servers=dns_servers)

    def test_submission_reaches_the_mx(self):
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", self.d.port587, timeout=10) as s:
            s.starttls(context=ctx)
            s.login("alice@sender.test", "pw1")
            s.sendmail("alice@sender.test", ["bob@example.test"], "Subject: from a client\r\n\r\nhi\r\n")
        wait_for(lambda: self.mx.messages, what="the message at the MX")
        mail_from, rcpt_tos, content = self.mx.messages[0]
        self.assertEqual(mail_from, "alice@sender.test")
        self.assertEqual(rcpt_tos, ["bob@example.test"])
        self.assertIn(b"with ESMTPSA id", content)
        self.assertIn(b"\r\nMessage-ID: <", content)  # added on submission
        self.assert_spool_empty()


class Reuse(Delivery):
    delivery_extra = "max_connections_per_destination = 1\n"

    def test_one_connection_carries_the_destinations_messages(self):
        self.mx.data_delay = 0.5
        for i in range(3):
            self.submit("alice@sender.test", ["r%d@example.test" % i])
        wait_for(lambda: len(self.mx.messages) == 3, what="three messages")
        self.assertEqual(sorted(m[1][0] for m in self.mx.messages),
                         ["r0@example.test", "r1@example.test", "r2@example.test"])
        # the 2nd and 3rd went over the connection of the 1st
        self.assertIs(self.mx.sessions[1], self.mx.sessions[2])
        self.assertIs(self.mx.sessions[0], self.mx.sessions[1])
        wait_for(lambda: self.d.log().count(": removed") == 3, what="three removals")


class Pipelining(Delivery):
    use_smtp_sink = True

    def test_pipelined_transaction_to_smtp_sink(self):
        rcpts = ["p%02d@example.test" % i for i in range(20)]
        self.submit("alice@sender.test", rcpts)
        wait_for(lambda: self.d.log().count("status=sent") == 20, what="20 sent lines")
        self.assertEqual(self.d.log().count("relay=mx.example.test[127.0.0.2]"), 20)
        dumps = [f for f in os.listdir(self.work) if f.startswith("sink-")]
        self.assertEqual(len(dumps), 1)
        with open(os.path.join(self.work, dumps[0]), "rb") as f:
            dump = f.read()
        self.assertIn(b"The body.", dump)
        self.assert_spool_empty()


class StartTls(Delivery):
    sink_tls = True

    def test_opportunistic_starttls_to_an_unverified_certificate(self):
        body = self.submit("alice@sender.test", ["bob@example.test"])
        wait_for(lambda: self.mx.messages, what="delivery over TLS")
        self.assertTrue(self.mx.messages[0][2].endswith(body.encode()))
        self.d.wait_log("delivery: tls to mx.example.test[127.0.0.2]:%d TLSv1.3" % self.port)
        self.assertIn("verified=no", self.d.log())
        self.assert_spool_empty()


class StartTlsVerify(Delivery):
    sink_tls = True
    delivery_extra = 'tls = "verify"\n'

    def test_verify_defers_on_a_self_signed_certificate(self):
        self.submit("alice@sender.test", ["bob@example.test"])
        self.d.wait_log("status=deferred", timeout=10)
        self.assertEqual(self.mx.messages, [])
        self.assertIn("dsn=4.7", self.d.log())


class RelayhostDelivery(Delivery):
    relayhost = lambda self: "[127.0.0.2]:%d" % self.port

    def test_everything_goes_to_the_relayhost(self):
        body = self.submit("alice@sender.test", ["carol@nowhere.invalid", "dave@example.org"])
        wait_for(lambda: self.mx.messages, what="the relayhost to get the message")
        time.sleep(0.3)
        self.assertEqual(len(self.mx.messages), 1)
        mail_from, rcpts, content = self.mx.messages[0]
        self.assertEqual(mail_from, "alice@sender.test")
        self.assertEqual(rcpts, ["carol@nowhere.invalid", "dave@example.org"])
        self.assertTrue(content.endswith(body.encode()))
        self.d.wait_log("relay=127.0.0.2[127.0.0.2]:%d" % self.port)
        self.assert_spool_empty()


class RelayhostAuth(Delivery):
    relayhost = lambda self: "[127.0.0.2]:%d" % self.port
    sink_tls = True
    sink_auth = ("relayuser", "s3cret pass")

    def test_credentials_go_inside_tls(self):
        self.submit("alice@sender.test", ["carol@nowhere.invalid"])
        wait_for(lambda: self.mx.messages, what="delivery through the authenticated relayhost")
        self.assertIn("verified=yes", self.d.log())  # 127.0.0.2 is an IP entry of the test CA's certificate
        self.assertEqual(self.auth_seen[0][1:], (b"relayuser", b"s3cret pass"))
        self.assertNotIn("s3cret", self.d.log())
        self.assert_spool_empty()


class RelayhostBadAuth(Delivery):
    relayhost = lambda self: "[127.0.0.2]:%d" % self.port
    sink_tls = True
    sink_auth = ("relayuser", "configured")  # what sluiced sends
    sink_expects = ("relayuser", "other")     # what the relayhost wants

    def test_auth_failure_defers_never_bounces(self):
        self.submit("alice@sender.test", ["carol@nowhere.invalid"])
        self.d.wait_log("status=deferred", timeout=10)
        self.assertIn("dsn=4.7.8", self.d.log())
        self.assertEqual(self.mx.messages, [])
        self.assertEqual(self.bounce_mx.messages, [])


if __name__ == "__main__":
    unittest.main()
