"""DANE (RFC 7672) end to end: sluiced delivers to an MX whose DNS answers the
fake DNS marks DNSSEC-secure (the AD bit, believed because the resolver is on
loopback), and whose TLSA records at _PORT._tcp.mx.example.test match, fail
to match, are unusable, unsigned, or cannot be looked up. The sinks offer
STARTTLS with a self-signed certificate (no CA vouches for it: only DANE can
authenticate it). A man in the middle between sluiced and the sink removes
STARTTLS from the EHLO reply and records every byte the client sends.
"""
import hashlib
import os
import socket
import subprocess
import threading
import time
import unittest

from test_delivery import Delivery, wait_for

SOA = "test.              3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 600\n"


def spki_sha256(cert):
    der = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"], check=True,
                         capture_output=True, timeout=30).stdout
    spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=der, check=True,
                          capture_output=True, timeout=30).stdout
    return hashlib.sha256(spki).hexdigest()


class StripStarttls:
    """Listens on (host, port), forwards to (to_host, port), and drops every
    STARTTLS line of the server's replies. `sent` is what the client sent."""

    def __init__(self, host, port, to_host):
        self.sent = b""
        self.to = (to_host, port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.to, timeout=10)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src, dst, from_client):
        buf = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_client:
                    self.sent += data
                    dst.sendall(data)
                    continue
                buf += data
                lines = buf.split(b"\r\n")
                buf = lines.pop()
                out = [l for l in lines if b"STARTTLS" not in l.upper()]
                if out:
                    dst.sendall(b"".join(l + b"\r\n" for l in out))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        self.stopping = True
        self.sock.close()


class Dane(Delivery):
    sink_tls = True
    # Per test: what _PORT._tcp.mx.example.test holds, and which names are secure.
    tlsa = "match"          # match | mismatch | unusable | none | servfail
    secure_tlsa = True      # the TLSA answer has the AD bit
    secure_host = True      # mx.example.test's address answer has the AD bit
    mitm = False            # the sink behind a STARTTLS-stripping man in the middle
    secure_mx = True        # example.test's MX answer has the AD bit

    def zone_text(self):
        cert, _ = self.sink_certificate()
        name = "_%d._tcp.mx.example.test." % self.port
        zone = SOA + ("example.test.      300 IN MX 10 mx.example.test.\n"
                      "mx.example.test.   300 IN A 127.0.0.2\n"
                      "sender.test.       300 IN MX 10 mx.sender.test.\n"
                      "mx.sender.test.    300 IN A 127.0.0.3\n")
        digest = spki_sha256(cert)
        if self.tlsa == "match":
            zone += "%s 300 IN TLSA 3 1 1 %s\n" % (name, digest)
        elif self.tlsa == "mismatch":
            zone += "%s 300 IN TLSA 3 1 1 %s\n" % (name, "00" * 32)
        elif self.tlsa == "unusable":  # PKIX-EE: not for SMTP (RFC 7672 §3.1.3)
            zone += "%s 300 IN TLSA 1 1 1 %s\n" % (name, digest)
        elif self.tlsa == "servfail":
            zone += "!servfail %s\n" % name
        if self.secure_mx:
            zone += "!secure example.test.\n"
        if self.secure_host:
            zone += "!secure mx.example.test.\n"
        if self.secure_tlsa:
            zone += "!secure %s\n" % name
        return zone

    def setUp(self):
        super().setUp()
        self.proxy = None
        if self.mitm:
            # The real sink moves behind the proxy: 127.0.0.2 is the proxy.
            self.c1.stop()
            from aiosmtpd.controller import Controller
            import ssl
            cert, key = self.sink_certificate()
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            self.c1 = Controller(self.mx, hostname="127.0.0.5", port=self.port, tls_context=ctx,
                                 require_starttls=False)
            self.c1.start()
            self.proxy = StripStarttls("127.0.0.2", self.port, "127.0.0.5")

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        super().tearDown()

    def queries(self):
        with open(os.path.join(self.work, "queries.log")) as f:
            return f.read()

    def deferred_line(self):
        self.d.wait_log("status=deferred")
        return next(l for l in self.d.log().splitlines() if "status=deferred" in l)


class DaneMatch(Dane):
    def test_delivered_authenticated_by_dane(self):
        self.submit("alice@sender.test", ["bob@example.test"])
        wait_for(lambda: self.mx.messages, what="the sink to get the message")
        self.d.wait_log("status=sent")
        self.assertIn("tls=dane", self.d.log())
        self.assertIn('dane="DANE-EE(3) SPKI SHA2-256 matched the leaf certificate"', self.d.log())
        self.assertIn("_%d._tcp.mx.example.test TLSA" % self.port, self.queries())


class DaneMismatch(Dane):
    tlsa = "mismatch"

    def test_deferred_and_nothing_sent(self):
        self.submit("alice@sender.test", ["bob@example.test"])
        line = self.deferred_line()
        self.assertIn("dsn=4.7.5", line)
        self.assertIn("DANE", line)
        time.sleep(0.3)
        self.assertEqual(self.mx.messages, [])


class DaneStripped(Dane):
    mitm = True

    def test_stripped_starttls_defers_without_plaintext(self):
        self.submit("alice@sender.test", ["bob@example.test"])
        line = self.deferred_line()
        self.assertIn("dsn=4.7.5", line)
        self.assertIn("DANE (TLSA records) requires TLS", line)
        self.assertEqual(self.mx.messages, [])
        self.assertIn(b"EHLO", self.proxy.sent)
        self.assertNotIn(b"MAIL FROM", self.proxy.sent.upper())


class DaneStrippedControl(Dane):
    """The same man in the middle without DANE (the host is not DNSSEC-secure):
    opportunistic TLS falls back to plaintext. This is the attack DANE stops."""
    mitm = True
    secure_host = False

    def test_without_dane_the_mail_goes_in_plaintext(self):
        self.submit("alice@sender.test", ["bob@example.test"])
        wait_for(lambda: self.mx.messages, what="the sink to get the message")
        self.d.wait_log("status=sent")
        self.assertIn("tls=none", self.d.log())
        self.assertIn(b"MAIL FROM", self.proxy.sent.upper())
        self.assertNotIn("TLSA", self.queries())  # insecure host: no TLSA lookup at all


class DaneUnsigned(Dane):
    secure_tlsa = False  # AD clear on the TLSA answer: the records are not believed
    tlsa = "mismatch"

    def test_unsigned_tlsa_is_ignored(self):
        self.submit("alice@sender.test", ["bob@example.test"])
        wait_for(lambda: self.mx.messages, what="the sink to get the message")
        self.d.wait_log("status=sent")
        self.assertIn("tls=opportunistic", self.d.log())
        self.assertIn("TLSA", self.queries())


class DaneUnusable(Dane):
    tlsa = "unusable"
    mitm = True

    def test_unusable_records_still_require_tls(self):
        self.submit("alice@sender.test", ["bob@example.test"])
        line = self.deferred_line()
        self.assertIn("dsn=4.7.5", line)
        self.assertIn("DANE (TLSA records, none usable) requires TLS", line)
        self.assertNotIn(b"MAIL FROM", self.proxy.sent.upper())


class DaneServfail(Dane):
    tlsa = "servfail"

    def test_failed_lookup_defers(self):
        self.submit("alice@sender.test", ["bob@example.test"])
        line = self.deferred_line()
        self.assertIn("dsn=4.7.5", line)
        self.assertIn("TLSA lookup of _%d._tcp.mx.example.test failed" % self.port, line)
        self.assertEqual(self.mx.messages, [])


if __name__ == "__main__":
    unittest.main()
