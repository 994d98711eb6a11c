"""More delivery end to end (see test_delivery.py for the set-up): implicit
MX, null MX, queue lifetime expiry, relayhost on port 465 with AUTH, hostile
SMTP servers, a DNS timeout, a restart while deferred, and a real Postfix
(STARTTLS) as the receiving server.

Every peer is on loopback: the sinks of test_delivery on 127.0.0.2 (the
recipients' MX) and 127.0.0.3 (the sender's MX, where bounces go), raw
hostile servers on 127.0.0.5-8, Postfix on 127.0.0.9, all at delivery.port.
"""
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import unittest

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from harness import ThreadedServer
from test_delivery import ZONE, Delivery, SinkHandler, wait_for

MORE_ZONE = ZONE + """\
implicit.test.     300 IN A 127.0.0.2
nullmx.test.       300 IN MX 0 .
overlong.test.     300 IN MX 10 mx.overlong.test.
mx.overlong.test.  300 IN A 127.0.0.5
endless.test.      300 IN MX 10 mx.endless.test.
mx.endless.test.   300 IN A 127.0.0.6
nul.test.          300 IN MX 10 mx.nul.test.
mx.nul.test.       300 IN A 127.0.0.7
closer.test.       300 IN MX 10 mx.closer.test.
mx.closer.test.    300 IN A 127.0.0.8
pf.test.           300 IN MX 10 mx.pf.test.
mx.pf.test.        300 IN A 127.0.0.9
!drop timeout.test.
"""


def log_line(log, rcpt, status):
    """The first delivery log line for rcpt with that status, as a match with
    groups relay, dsn, reason; None when there is none."""
    pat = re.compile(r" [0-9A-F]+: to=<%s> relay=(\S+) delay=\S+ tls=\S+ dsn=(\S+) status=%s \((.*)\)$"
                     % (re.escape(rcpt), status), re.M)
    return pat.search(log)


class MoreDelivery(Delivery):
    zone = MORE_ZONE

    def wait_line(self, rcpt, status, timeout=15):
        wait_for(lambda: log_line(self.d.log(), rcpt, status), timeout=timeout,
                 what="a log line to=<%s> ... status=%s" % (rcpt, status))
        return log_line(self.d.log(), rcpt, status)

    def assert_still_delivers(self):
        """The daemon is up, accepts mail and delivers it."""
        self.assertIsNone(self.d.proc.poll(), "sluiced exited")
        before = len(self.mx.messages)
        self.submit("alice@sender.test", ["still@example.test"])
        wait_for(lambda: len(self.mx.messages) > before, what="delivery of a later message")
        self.assertEqual(self.mx.messages[-1][1], ["still@example.test"])
        self.wait_line("still@example.test", "sent")


class ImplicitAndNullMx(MoreDelivery):
    def test_implicit_mx_delivers_to_the_domains_address(self):
        body = self.submit("alice@sender.test", ["bob@implicit.test"])
        wait_for(lambda: self.mx.messages, what="delivery to implicit.test's A record")
        self.assertEqual(self.mx.messages[0][1], ["bob@implicit.test"])
        self.assertTrue(self.mx.messages[0][2].endswith(body.encode()))
        m = self.wait_line("bob@implicit.test", "sent")
        self.assertEqual(m.group(1), "implicit.test[127.0.0.2]:%d" % self.port)
        self.assertEqual(m.group(2), "2.0.0")
        self.assert_spool_empty()

    def test_null_mx_bounces_at_once_with_5_1_10(self):
        t0 = time.time()
        self.submit("alice@sender.test", ["bob@nullmx.test"],
                    body="Subject: to a null MX\r\nMessage-ID: <nullmx@sender.test>\r\n\r\nbody\r\n")
        wait_for(lambda: self.bounce_mx.messages, what="the null MX bounce at the sender's MX")
        self.assertLess(time.time() - t0, 5)  # at once, not after retries
        mail_from, rcpts, content = self.bounce_mx.messages[0]
        self.assertIn(mail_from, ("", "<>"))
        self.assertEqual(rcpts, ["alice@sender.test"])
        self.assertIn(b"Final-Recipient: rfc822; bob@nullmx.test", content)
        self.assertIn(b"Status: 5.1.10", content)
        self.assertIn(b"556 5.1.10", content)
        self.assertIn(b"Message-ID: <nullmx@sender.test>", content)
        m = self.wait_line("bob@nullmx.test", "bounced")
        self.assertEqual(m.group(1), "none")
        self.assertEqual(m.group(2), "5.1.10")
        self.assertTrue(m.group(3).startswith("556 5.1.10"), m.group(3))
        self.assertIn("dsn=5.1.10 status=bounced", self.d.log())
        self.assertIsNone(log_line(self.d.log(), "bob@nullmx.test", "deferred"))
        self.assertEqual(self.mx.messages, [])
        wait_for(lambda: self.d.log().count(": removed") >= 2, what="message and bounce removed")
        self.d.stop()
        self.assertEqual(self.d.spool_messages(), [])


class Expiry(MoreDelivery):
    delivery_extra = 'max_queue_lifetime = "3s"\n'

    def test_always_4xx_bounces_when_the_lifetime_ends(self):
        self.mx.rules["bob@example.test"] = ["451 4.3.0 sink always busy"] * 1000
        t0 = time.time()
        self.submit("alice@sender.test", ["bob@example.test"])
        wait_for(lambda: self.bounce_mx.messages, timeout=15, what="the expiry bounce")
        elapsed = time.time() - t0
        self.assertGreaterEqual(elapsed, 2.9)  # not before the lifetime ended
        self.assertLess(elapsed, 7)            # and right when it ends, not much later
        self.assertIsNotNone(log_line(self.d.log(), "bob@example.test", "deferred"))
        mail_from, rcpts, content = self.bounce_mx.messages[0]
        self.assertIn(mail_from, ("", "<>"))
        self.assertEqual(rcpts, ["alice@sender.test"])
        self.assertIn(b"Final-Recipient: rfc822; bob@example.test", content)
        self.assertIn(b"Status: 4.4.7", content)
        self.assertIn(b"451 4.3.0 sink always busy", content)  # the last error it got
        m = self.wait_line("bob@example.test", "bounced")
        self.assertEqual(m.group(2), "4.4.7")
        self.assertEqual(self.mx.messages, [])
        wait_for(lambda: self.d.log().count(": removed") >= 2, what="message and bounce removed")
        self.d.stop()
        self.assertEqual(self.d.spool_messages(), [])


@unittest.skipUnless(os.geteuid() == 0, "binds port 465 (root)")
class Relayhost465(MoreDelivery):
    """relayhost [127.0.0.2]:465: TLS from the first byte, then AUTH."""
    relayhost = lambda self: "[127.0.0.2]:465"
    sink_auth = ("relayuser", "Pa55-w0rd-in-the-file")

    def setUp(self):
        self.work465 = __import__("tempfile").mkdtemp(prefix="sluice-465-")
        # With credentials the relayhost's certificate must verify: a test CA
        # in delivery.ca_file, the address as the certificate's IP entry.
        from testca import TestCa
        ca = TestCa(self.work465)
        cert, key = ca.issue("relay", dns=["relay.test"], ips=["127.0.0.2"])
        self.delivery_extra = 'ca_file = "%s"\n' % ca.cert
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self.relay = SinkHandler()
        self.relay_auth = []
        self.relay_tls = []

        def authenticator(server, session, envelope, mechanism, auth_data):
            self.relay_auth.append((mechanism, auth_data.login, auth_data.password))
            # the connection this AUTH came over is TLS (implicit)
            self.relay_tls.append(server.transport.get_extra_info("ssl_object") is not None)
            if (auth_data.login, auth_data.password) == (b"relayuser", b"Pa55-w0rd-in-the-file"):
                return AuthResult(success=True)
            return AuthResult(success=False, handled=False, message="535 5.7.8 bad credentials")

        # aiosmtpd's auth_require_tls only knows STARTTLS; the whole
        # connection is TLS here (checked in the authenticator).
        import warnings
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
        self.c465 = Controller(self.relay, hostname="127.0.0.2", port=465, ssl_context=ctx,
                               authenticator=authenticator, auth_required=True,
                               auth_require_tls=False)
        self.c465.start()
        try:
            super().setUp()
        except BaseException:
            self.c465.stop()
            raise

    def tearDown(self):
        super().tearDown()
        self.c465.stop()
        shutil.rmtree(self.work465, ignore_errors=True)

    def test_implicit_tls_relayhost_with_auth(self):
        body = self.submit("alice@sender.test", ["carol@nowhere.invalid"])
        wait_for(lambda: self.relay.messages, what="delivery through the port 465 relayhost")
        mail_from, rcpts, content = self.relay.messages[0]
        self.assertEqual((mail_from, rcpts), ("alice@sender.test", ["carol@nowhere.invalid"]))
        self.assertTrue(content.endswith(body.encode()))
        self.assertEqual([a[1:] for a in self.relay_auth], [(b"relayuser", b"Pa55-w0rd-in-the-file")])
        self.assertEqual(self.relay_tls, [True])
        m = self.wait_line("carol@nowhere.invalid", "sent")
        self.assertEqual(m.group(1), "127.0.0.2[127.0.0.2]:465")
        self.assertIn("delivery: tls to 127.0.0.2[127.0.0.2]:465 TLS", self.d.log())
        self.assertIn("verified=yes", self.d.log())
        self.assert_spool_empty()
        log = self.d.log()
        for secret in ("Pa55-w0rd-in-the-file", "Pa55"):
            self.assertNotIn(secret, log)
        import base64
        plain = base64.b64encode(b"\0relayuser\0Pa55-w0rd-in-the-file").decode()
        self.assertNotIn(plain, log)
        self.assertNotIn(base64.b64encode(b"Pa55-w0rd-in-the-file").decode(), log)


# ---- hostile servers ---------------------------------------------------------

class HostileServer(ThreadedServer):
    """A raw SMTP-ish server on host:port, one thread per connection; behaviour
    decides what goes wrong. Counts connections."""

    def __init__(self, host, port, behaviour):
        self.behaviour = behaviour
        self.sent_lines = 0
        super().__init__(host, port)

    def serve(self, conn, number):
        conn.settimeout(20)
        f = conn.makefile("rb")
        try:
            conn.sendall(b"220 hostile.test ESMTP\r\n")
            in_data = False
            while True:
                line = f.readline()
                if not line:
                    return
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        conn.sendall(b"250 2.0.0 queued\r\n")
                    continue
                cmd = line[:4].upper()
                b = self.behaviour
                if cmd in (b"EHLO", b"HELO"):
                    if b == "endless":
                        # continuation lines until the client gives up
                        for _ in range(200000):
                            conn.sendall(b"250-hostile.test keeps talking\r\n")
                            self.sent_lines += 1
                        conn.sendall(b"250 OK\r\n")
                    else:
                        conn.sendall(b"250-hostile.test\r\n250 8BITMIME\r\n")
                elif cmd == b"MAIL":
                    if b == "overlong":
                        conn.sendall(b"250 2.1.0 " + b"x" * 5000 + b"\r\n")
                    else:
                        conn.sendall(b"250 2.1.0 ok\r\n")
                elif cmd == b"RCPT":
                    if b == "nul":
                        conn.sendall(b"250 2.1.5 o\x00k\r\n")
                    else:
                        conn.sendall(b"250 2.1.5 ok\r\n")
                elif cmd == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    if b == "closer":
                        f.readline()  # the first line of the content, then hang up
                        conn.shutdown(socket.SHUT_RDWR)
                        return
                    in_data = True
                elif cmd == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")
        except OSError:
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass


class Hostile(MoreDelivery):
    HOSTS = {"overlong": "127.0.0.5", "endless": "127.0.0.6", "nul": "127.0.0.7", "closer": "127.0.0.8"}

    def setUp(self):
        super().setUp()
        self.hostile = {}
        for name, host in self.HOSTS.items():
            self.hostile[name] = HostileServer(host, self.port, name)

    def tearDown(self):
        for s in self.hostile.values():
            s.stop()
        super().tearDown()

    def test_hostile_replies_defer_and_the_daemon_stays_up(self):
        rcpts = ["u@%s.test" % name for name in self.HOSTS]
        self.submit("alice@sender.test", rcpts)
        lines = {}
        for name, host in self.HOSTS.items():
            m = self.wait_line("u@%s.test" % name, "deferred")
            self.assertEqual(m.group(1), "mx.%s.test[%s]:%d" % (name, host, self.port), name)
            lines[name] = m
        all_lines = "\n".join(m.group(0) for m in lines.values())
        # the reason says what went wrong
        self.assertIn("Protocol error while sending MAIL FROM: bad reply from server: line too long",
                      lines["overlong"].group(3))
        self.assertIn("Protocol error while sending EHLO: bad reply from server: too many lines",
                      lines["endless"].group(3))
        self.assertIn("Protocol error while sending RCPT TO: bad reply from server", lines["nul"].group(3))
        self.assertIn("mx.closer.test[127.0.0.8]", lines["closer"].group(3))
        self.assertEqual(lines["closer"].group(2), "4.4.2", all_lines)  # connection lost
        # the endless reply was cut off by sluiced, not sent in full
        self.assertLess(self.hostile["endless"].sent_lines, 200000)
        # a server's junk never reaches the log raw
        self.assertNotIn("\0", self.d.log())
        self.assertNotIn("x" * 600, self.d.log())
        self.assertEqual(self.bounce_mx.messages, [])
        self.assert_still_delivers()
        # the deferred recipients are retried (retry_schedule 1s), still without a crash
        wait_for(lambda: all(s.connections >= 2 for s in self.hostile.values()), timeout=15,
                 what="a second attempt at every hostile server")
        self.assertIsNone(self.d.proc.poll())


class HostileProtocolErrorCode(Hostile):
    HOSTS = {"overlong": "127.0.0.5", "nul": "127.0.0.7"}

    # docs/delivery.md and docs/smtp-client.md: an unreadable reply defers
    # with 4.5.0 "Protocol error while sending ...".
    def test_hostile_replies_defer_and_the_daemon_stays_up(self):
        self.submit("alice@sender.test", ["u@overlong.test", "u@nul.test"])
        for rcpt in ("u@overlong.test", "u@nul.test"):
            m = self.wait_line(rcpt, "deferred")
            self.assertEqual(m.group(2), "4.5.0", m.group(0))
            self.assertTrue(m.group(3).startswith("451 4.5.0 Protocol error while sending "), m.group(0))


class DnsTimeout(MoreDelivery):
    def test_unanswered_dns_defers_with_4_4_3(self):
        t0 = time.time()
        self.submit("alice@sender.test", ["u@timeout.test"])
        # the lookup in flight does not hold up other mail
        self.submit("alice@sender.test", ["early@example.test"])
        wait_for(lambda: self.mx.messages, what="other mail during the lookup")
        self.assertIsNone(log_line(self.d.log(), "u@timeout.test", "deferred"))
        m = self.wait_line("u@timeout.test", "deferred", timeout=40)
        self.assertGreater(time.time() - t0, 4)  # it waited for DNS
        self.assertEqual(m.group(1), "none")
        self.assertEqual(m.group(2), "4.4.3")
        self.assertIn("timeout.test MX: timed out", m.group(3))
        self.assertEqual(self.bounce_mx.messages, [])
        self.assert_still_delivers()


class RestartWhileDeferred(MoreDelivery):
    def test_deferred_survives_a_restart_then_delivers_once(self):
        self.mx.rules["bob@example.test"] = ["451 4.3.0 not now"] * 1000
        self.submit("alice@sender.test", ["bob@example.test"])
        self.wait_line("bob@example.test", "deferred")
        self.assertEqual(self.d.stop(), 0)
        msgs = self.d.spool_messages(body=False)
        self.assertEqual(len(msgs), 1)
        rcpt = msgs[0]["recipients"][0]
        self.assertEqual((rcpt["address"], rcpt["status"]), ("bob@example.test", "deferred"))
        self.assertGreaterEqual(rcpt["attempts"], 1)
        self.assertGreaterEqual(msgs[0]["attempts"], 1)
        self.assertTrue(rcpt["last_reply"].startswith("4"), rcpt["last_reply"])
        self.assertGreater(msgs[0]["next_attempt_us"], 0)
        self.assertEqual(self.mx.messages, [])
        self.mx.rules.clear()
        self.d.start()
        wait_for(lambda: self.mx.messages, what="delivery after the restart")
        wait_for(lambda: ": removed" in self.d.log(), what="the removal")
        time.sleep(1.5)  # a retry interval: a second delivery would show by now
        self.assertEqual(len(self.mx.messages), 1)
        self.assertEqual(self.mx.messages[0][1], ["bob@example.test"])
        sent = re.findall(r"to=<bob@example\.test> relay=\S+ delay=\S+ tls=\S+ dsn=\S+ status=sent", self.d.log())
        self.assertEqual(len(sent), 1)
        self.d.stop()
        self.assertEqual(self.d.spool_messages(), [])


# ---- a real Postfix ------------------------------------------------------------

POSTFIX = "/usr/sbin/postfix"
PF_HOST = "127.0.0.9"


@unittest.skipUnless(os.path.exists(POSTFIX) and os.geteuid() == 0,
                     "needs the postfix package and root (a private Postfix instance)")
class PostfixStartTls(MoreDelivery):
    """sluiced delivers to a private Postfix on 127.0.0.9 (delivery.port),
    which offers STARTTLS and writes pf.test's mail to one mailbox file."""

    def setUp(self):
        super().setUp()
        self.pf = os.path.join(self.work, "postfix")
        conf, queue, data, mail = (os.path.join(self.pf, d) for d in ("conf", "queue", "data", "mail"))
        for d in (conf, queue, data, mail):
            os.makedirs(d)
        for d in (self.work, self.pf):
            os.chmod(d, 0o755)
        shutil.chown(data, "postfix")
        os.chown(mail, 65534, 65534)
        self.maillog = os.path.join(self.pf, "maillog")
        self.mailbox = os.path.join(mail, "mailbox")
        cert, key = os.path.join(conf, "cert.pem"), os.path.join(conf, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=mx.pf.test", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=60)
        main_cf = """\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
maillog_file = {maillog}
maillog_file_prefixes = {pf}
myhostname = mx.pf.test
mydomain = pf.test
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
virtual_mailbox_domains = pf.test
virtual_mailbox_base = {mail}
virtual_mailbox_maps = static:mailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 1
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
""".format(queue=queue, data=data, maillog=self.maillog, pf=self.pf, mail=mail, cert=cert, key=key)
        services = [
            "%s:%d inet n - n - - smtpd" % (PF_HOST, self.port),
            "pickup unix n - n 60 1 pickup", "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr", "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce", "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify", "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap", "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp", "showq unix n - n - - showq",
            "error unix - - n - - error", "retry unix - - n - - error",
            "discard unix - - n - - discard", "local unix - n n - - local",
            "virtual unix - n n - - virtual", "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache", "postlog unix-dgram n - n - 1 postlogd",
        ]
        with open(os.path.join(conf, "main.cf"), "w") as f:
            f.write(main_cf)
        with open(os.path.join(conf, "master.cf"), "w") as f:
            f.write("\n".join(services) + "\n")
        self.pf_conf = conf
        r = subprocess.run([POSTFIX, "-c", conf, "start"], capture_output=True, timeout=60)
        if r.returncode != 0:
            self._postfix_down()
            super().tearDown()
            raise RuntimeError("postfix did not start (%d): %r %r\n%s"
                               % (r.returncode, r.stdout, r.stderr, self._maillog()))
        wait_for(lambda: self._listening(PF_HOST, self.port), what="postfix's smtpd")

    def _maillog(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def _postfix_down(self):
        subprocess.run([POSTFIX, "-c", self.pf_conf, "stop"], capture_output=True, timeout=60)
        # stop returns once master got the signal; wait for it to go
        deadline = time.time() + 10
        while time.time() < deadline and self._listening(PF_HOST, self.port):
            time.sleep(0.05)

    def tearDown(self):
        if self._failed():
            print("---- postfix maillog ----\n" + self._maillog()[-5000:])
        self._postfix_down()
        super().tearDown()

    def test_delivered_to_postfix_over_starttls(self):
        body = self.submit("alice@sender.test", ["bob@pf.test"],
                           body="Subject: to postfix\r\nMessage-ID: <pf@sender.test>\r\n\r\nThe body.\r\n")
        m = self.wait_line("bob@pf.test", "sent")
        self.assertEqual(m.group(1), "mx.pf.test[%s]:%d" % (PF_HOST, self.port))
        self.assertTrue(m.group(3).startswith("250 2.0.0 Ok: queued as "), m.group(3))
        pf_id = m.group(3).split()[-1]
        self.assertIn("delivery: tls to mx.pf.test[%s]:%d TLSv1.3" % (PF_HOST, self.port), self.d.log())
        wait_for(lambda: "%s: to=<bob@pf.test>, relay=virtual" % pf_id in self._maillog()
                 and "status=sent (delivered to mailbox)" in self._maillog(),
                 what="postfix to deliver to the mailbox")
        self.assertIn("Anonymous TLS connection established from", self._maillog())
        with open(self.mailbox, "rb") as f:
            mbox = f.read()
        self.assertIn(b"Message-ID: <pf@sender.test>", mbox)
        self.assertIn(b"The body.", mbox)
        # Postfix's own Received header says the hop was TLS
        self.assertRegex(mbox, rb"Received: from \S+ \(unknown \[127\.\d+\.\d+\.\d+\]\)\r?\n"
                               rb"\s+\(using TLSv1\.3 with cipher ")
        self.assertIn(b"with ESMTPS id " + pf_id.encode(), mbox)
        self.assertEqual(mbox.count(b"Message-ID: <pf@sender.test>"), 1)
        self.assert_spool_empty()


if __name__ == "__main__":
    unittest.main()
