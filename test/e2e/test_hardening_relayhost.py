"""Hardening (issue 11, finding 4): the relayhost password goes only to a
relayhost whose certificate verifies.

A fake relayhost (a hand-written asyncio SMTP server on 127.0.0.2, recording
every command line it receives, offering STARTTLS and AUTH PLAIN LOGIN even
before TLS, as an attacker would) stands in for the smarthost. sluiced has
relayhost credentials and leaves delivery.tls and delivery.relayhost_tls at
their defaults unless a test says otherwise:

  - a self-signed certificate for attacker.invalid: no AUTH ever reaches the
    server, the mail stays deferred (4.7.5), the log says why and what to do;
  - a certificate from a test CA named in delivery.ca_file, for the
    relayhost's name: AUTH, delivered;
  - relayhost [127.0.0.2]:port: the certificate's IP entry is checked
    (verifies with IP:127.0.0.2, not with a DNS name alone), or, with
    delivery.relayhost_tls_name, the name given there;
  - relayhost_tls = "required" written out: the self-signed relayhost gets
    AUTH (the administrator's explicit choice);
  - implicit TLS (relayhost port 465, root only): the same refusal.
Certificates are made with the openssl CLI in a temporary directory
(testca.py).
"""
import asyncio
import base64
import os
import shutil
import smtplib
import ssl
import tempfile
import threading
import time
import unittest

import harness
from harness import Sluiced, free_port
from testca import TestCa, self_signed
from test_delivery import FakeDns, wait_for

LOGIN, PASSWORD = "relayuser", "Relay-Secret-8472"
NAME = "relay.hardening.test"

ZONE = """\
test.              3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 600
relay.hardening.test. 300 IN A 127.0.0.2
"""


class FakeRelayhost:
    """An SMTP server on host:port that records every line it is sent.

    commands: [(connection number, in_tls, line)]; auth: [(login, password)]
    decoded from AUTH PLAIN/LOGIN; messages: [(mail_from, [rcpt], data)];
    handshake_errors: TLS handshakes that failed on the server's side (the
    client refused the certificate)."""

    def __init__(self, host, port, cert, key, implicit=False):
        self.host, self.port, self.implicit = host, port, implicit
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.commands, self.auth, self.messages, self.handshake_errors = [], [], [], []
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("fake relayhost did not start")

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def main():
            self.server = await asyncio.start_server(
                self._session, self.host, self.port,
                ssl=self.ctx if self.implicit else None)
            self.ready.set()
        self.loop.run_until_complete(main())
        self.loop.run_forever()

    def stop(self):
        def close():
            self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(close)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()

    def auth_lines(self):
        return [c for c in self.commands if c[2].upper().startswith("AUTH")]

    async def _session(self, reader, writer):
        self.connections += 1
        conn, tls = self.connections, self.implicit

        async def say(text):
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        async def line():
            raw = await reader.readline()
            if not raw:
                raise ConnectionError("eof")
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.commands.append((conn, tls, text))
            return text

        try:
            await say("220 %s ESMTP fake relayhost" % NAME)
            mail_from, rcpts = None, []
            while True:
                cmd = await line()
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    caps = ["relay.hardening.test"]
                    if not tls:
                        caps.append("STARTTLS")
                    caps += ["AUTH PLAIN LOGIN", "8BITMIME"]
                    await say("\r\n".join("250-" + c for c in caps[:-1]) + "\r\n250 " + caps[-1])
                elif verb == "STARTTLS" and not tls:
                    await say("220 2.0.0 Ready to start TLS")
                    try:
                        await writer.start_tls(self.ctx)
                    except (ssl.SSLError, ConnectionError, OSError) as e:
                        self.handshake_errors.append(str(e))
                        return
                    tls = True
                elif verb == "AUTH":
                    parts = cmd.split(" ")
                    mech = parts[1].upper() if len(parts) > 1 else ""
                    if mech == "PLAIN":
                        blob = parts[2] if len(parts) > 2 else None
                        if blob is None:
                            await say("334 ")
                            blob = await line()
                        _, login, password = base64.b64decode(blob).split(b"\0", 2)
                    elif mech == "LOGIN":
                        await say("334 VXNlcm5hbWU6")
                        login = base64.b64decode(await line())
                        await say("334 UGFzc3dvcmQ6")
                        password = base64.b64decode(await line())
                    else:
                        await say("504 5.5.4 mechanism")
                        continue
                    self.auth.append((login.decode(), password.decode()))
                    await say("235 2.7.0 Authentication successful")
                elif verb == "MAIL":
                    mail_from, rcpts = cmd[10:].split(">")[0].lstrip("<"), []
                    await say("250 2.1.0 Ok")
                elif verb == "RCPT":
                    rcpts.append(cmd[8:].split(">")[0].lstrip("<"))
                    await say("250 2.1.5 Ok")
                elif verb == "DATA":
                    await say("354 End data with <CR><LF>.<CR><LF>")
                    data = b""
                    while True:
                        raw = await reader.readline()
                        if not raw:
                            raise ConnectionError("eof in data")
                        if raw == b".\r\n":
                            break
                        data += raw
                    self.messages.append((mail_from, rcpts, data))
                    await say("250 2.0.0 Ok: queued")
                elif verb in ("RSET", "NOOP"):
                    await say("250 2.0.0 Ok")
                elif verb == "QUIT":
                    await say("221 2.0.0 Bye")
                    return
                else:
                    await say("502 5.5.2 unknown command")
        except (ConnectionError, OSError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass


class RelayhostTls(unittest.TestCase):
    relayhost = NAME + ":%(port)d"  # %(port)d: the fake relayhost's port
    cert = "self-signed"  # "self-signed" (attacker.invalid), or the SAN lists for the test CA
    delivery_extra = ""
    trust_ca = True       # delivery.ca_file = the test CA
    host = "127.0.0.2"    # where the fake relayhost listens
    port = None           # None: a free port on `host`
    implicit = False

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="sluice-relaytls-")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.ca = TestCa(self.work)
        if self.cert == "self-signed":
            cert, key = self_signed(self.work, "attacker", "attacker.invalid")
        else:
            dns, ips = self.cert
            cert, key = self.ca.issue("relay", dns=dns, ips=ips)
        self.dns = FakeDns(self.work, ZONE)
        self.addCleanup(self.dns.stop)
        port = self.port or free_port(self.host)
        self.relay = FakeRelayhost(self.host, port, cert, key, implicit=self.implicit)
        self.addCleanup(self.relay.stop)
        pw = os.path.join(self.work, "relay-password")
        with open(pw, "w") as f:
            f.write(PASSWORD + "\n")
        extra = ('[delivery]\nretry_schedule = ["1s"]\nrelayhost = "%s"\n'
                 'relayhost_username = "%s"\nrelayhost_password_file = "%s"\n'
                 % (self.relayhost % {"port": port}, LOGIN, pw))
        if self.trust_ca:
            extra += 'ca_file = "%s"\n' % self.ca.cert
        extra += self.delivery_extra
        self.d = Sluiced(extra=extra, dns_servers=["127.0.0.1:%d" % self.dns.port])
        self.addCleanup(shutil.rmtree, self.d.dir, True)
        self.d.start()
        self.addCleanup(self.d.stop)

    def tearDown(self):
        if harness.failed(self):
            print("---- sluiced log ----\n" + self.d.log()[-6000:])
            print("---- relayhost saw ----\n%r" % (self.relay.commands,))

    def submit(self):
        body = ("From: alice@sender.test\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <r@sender.test>\r\n"
                "Subject: relayed\r\n\r\nThrough the relayhost.\r\n")
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=10) as s:
            s.sendmail("alice@sender.test", ["carol@nowhere.invalid"], body)
        return body

    def assert_refused_without_auth(self, reason):
        """The mail is deferred, twice (the first try and the retry a second
        later), and the relayhost never saw AUTH nor the password."""
        self.submit()
        wait_for(lambda: self.d.log().count("status=deferred") >= 2 or self.relay.auth_lines(),
                 timeout=15, what="two deferrals (first try and retry)")
        log = self.d.log()
        self.assertEqual(self.relay.auth_lines(), [])  # the attack: AUTH PLAIN with the password
        self.assertEqual(self.relay.auth, [])
        self.assertEqual(self.relay.messages, [])
        self.assertIn("dsn=4.7.5", log)
        self.assertNotIn("status=sent", log)
        self.assertNotIn("status=bounced", log)
        self.assertIn("certificate not trusted", log)
        self.assertIn("AUTH not sent", log)
        self.assertIn(reason, log)
        self.assertIn("delivery.ca_file", log)  # the fix, on the same line as the reason
        line = next(l for l in log.splitlines() if "certificate not trusted" in l and "delivery.ca_file" in l)
        self.assertIn(reason, line)
        self.assertNotIn(PASSWORD, log)
        self.assertIn(" warning: ", line)
        # A failure the administrator must fix: counted in sluicectl status.
        import json
        import subprocess
        from test_reload import SLUICECTL
        st = json.loads(subprocess.run([SLUICECTL, "--config", self.d.config_path, "status", "--json"],
                                       capture_output=True, check=True, timeout=60).stdout)
        warnings = [l for l in log.splitlines() if " warning: " in l and "certificate not trusted" in l]
        self.assertGreaterEqual(len(warnings), 2)  # the first try and the retry
        self.assertGreaterEqual(st["warnings"]["tls_verify"], len(warnings))  # (more retries may follow)
        self.d.stop()
        msgs = self.d.spool_messages(body=False)
        self.assertEqual(len(msgs), 1, msgs)

    def assert_delivered_with_auth(self):
        body = self.submit()
        wait_for(lambda: self.relay.messages, timeout=15, what="delivery through the relayhost")
        self.assertEqual(self.relay.auth, [(LOGIN, PASSWORD)])
        # AUTH only ever went inside TLS
        self.assertTrue(all(tls for _, tls, _ in self.relay.auth_lines()))
        mail_from, rcpts, data = self.relay.messages[0]
        self.assertEqual((mail_from, rcpts), ("alice@sender.test", ["carol@nowhere.invalid"]))
        self.assertTrue(data.endswith(body.encode()))
        self.d.wait_log("status=sent", timeout=10)
        self.assertNotIn(PASSWORD, self.d.log())


class SelfSignedByDefault(RelayhostTls):
    """Credentials and every TLS key at its default: relayhost_tls is
    "verify", ca_file the system bundle."""
    trust_ca = False

    def test_untrusted_certificate_never_sees_auth(self):
        self.assert_refused_without_auth("self signed certificate")
        # the handshake went that far: the refusal is the certificate's
        self.assertTrue(any(c[2].upper() == "STARTTLS" for c in self.relay.commands))


class SelfSignedWithTestCa(RelayhostTls):
    """A private CA configured: a self-signed certificate still fails."""

    def test_untrusted_certificate_never_sees_auth(self):
        self.assert_refused_without_auth("self signed certificate")


class TrustedByName(RelayhostTls):
    cert = ([NAME], [])

    def test_verified_relayhost_gets_auth_and_the_mail(self):
        self.assert_delivered_with_auth()
        self.assertIn("verified=yes", self.d.log())


class WrongNameFromTrustedCa(RelayhostTls):
    """Signed by the trusted CA, but for another name."""
    cert = (["other.hardening.test"], ["127.0.0.2"])

    def test_name_mismatch_never_sees_auth(self):
        self.assert_refused_without_auth("Hostname mismatch")


class AddressWithIpSan(RelayhostTls):
    relayhost = "[127.0.0.2]:%(port)d"
    cert = ([NAME], ["127.0.0.2"])

    def test_ip_entry_verifies(self):
        self.assert_delivered_with_auth()


class AddressWithoutIpSan(RelayhostTls):
    """An address relayhost without relayhost_tls_name is checked against the
    certificate's IP entries only: a DNS name does not stand in for it."""
    relayhost = "[127.0.0.2]:%(port)d"
    cert = ([NAME], [])

    def test_missing_ip_entry_never_sees_auth(self):
        self.assert_refused_without_auth("IP address mismatch")
        self.assertIn("delivery.relayhost_tls_name", self.d.log())


class AddressWithTlsName(RelayhostTls):
    relayhost = "[127.0.0.2]:%(port)d"
    cert = ([NAME], [])
    delivery_extra = 'relayhost_tls_name = "%s"\n' % NAME

    def test_tls_name_verifies(self):
        self.assert_delivered_with_auth()


class RequiredWrittenOut(RelayhostTls):
    """relayhost_tls = "required": TLS without verification, the
    administrator's explicit choice; AUTH goes to the self-signed relayhost."""
    trust_ca = False
    delivery_extra = 'relayhost_tls = "required"\n'

    def test_required_sends_auth_unverified(self):
        self.assert_delivered_with_auth()
        self.assertIn("verified=no", self.d.log())


@unittest.skipUnless(os.geteuid() == 0, "binds port 465 (root)")
class ImplicitTlsSelfSigned(RelayhostTls):
    """relayhost on port 465: TLS from the first byte, same rule. (On
    127.0.0.6: test_delivery_more's port 465 relayhost is on 127.0.0.2.)"""
    relayhost = "[127.0.0.6]:%(port)d"
    host = "127.0.0.6"
    port = 465
    implicit = True
    trust_ca = False

    def test_untrusted_certificate_never_sees_auth(self):
        self.assert_refused_without_auth("self signed certificate")
        self.assertEqual(self.relay.commands, [])  # not even EHLO


if __name__ == "__main__":
    unittest.main()
