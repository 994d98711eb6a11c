"""What the log says when a client refuses the server's certificate
(issue 13, item 7): with TLS 1.3 as with TLS 1.2, on 465 (implicit TLS) and
on 587 (STARTTLS), the client's alert is logged by name ("alert from peer:
unknown CA" / "bad certificate"), never nothing (a bare disconnect) nor
"bad packet length".

Clients: Python's ssl (OpenSSL) trusting a CA that did not sign the
daemon's self-signed certificate, and openssl s_client -verify_return_error.
"""
import re
import socket
import ssl
import subprocess
import tempfile
import shutil
import unittest

from harness import HOSTNAME, SluicedTest, SubmissionSluiced, Client
from testca import TestCa

REFUSAL = re.compile(r"tls error from=127\.0\.0\.1: alert from peer: (unknown CA|bad certificate)")


class RefusedCertificate(SluicedTest):
    @classmethod
    def setUpClass(cls):
        cls.ca_dir = tempfile.mkdtemp(prefix="sluice-ca-")
        cls.ca = TestCa(cls.ca_dir, name="Some Other CA")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.ca_dir, ignore_errors=True)

    def setUp(self):
        self.d = SubmissionSluiced()
        self.d.start()

    def context(self, version):
        ctx = ssl.create_default_context(cafile=self.ca.cert)  # does not know the daemon's certificate
        ctx.minimum_version = ctx.maximum_version = version
        return ctx

    def refusals(self):
        return len(REFUSAL.findall(self.d.log()))

    def wait_refusals(self, n):
        import time
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.refusals() >= n:
                return
            time.sleep(0.02)
        self.fail("no log line naming the client's alert:\n" + self.d.log())

    def refuse_465(self, version):
        before = self.refusals()
        with socket.create_connection(("127.0.0.1", self.d.port465), timeout=10) as raw:
            with self.assertRaises(ssl.SSLCertVerificationError):
                self.context(version).wrap_socket(raw, server_hostname=HOSTNAME)
        self.wait_refusals(before + 1)

    def refuse_587(self, version):
        before = self.refusals()
        c = Client(self.d.port587)
        self.assertEqual(c.code(), 220)
        c.cmd("EHLO client.test")
        self.assertTrue(c.cmd("STARTTLS").startswith(b"220"))
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.context(version).wrap_socket(c.sock, server_hostname=HOSTNAME)
        c.close()
        self.wait_refusals(before + 1)

    def test_tls13_on_465(self):
        self.refuse_465(ssl.TLSVersion.TLSv1_3)
        self.assertNotIn("bad packet length", self.d.log())

    def test_tls12_on_465(self):
        self.refuse_465(ssl.TLSVersion.TLSv1_2)

    def test_tls13_on_587(self):
        self.refuse_587(ssl.TLSVersion.TLSv1_3)
        self.assertNotIn("bad packet length", self.d.log())

    def test_tls12_on_587(self):
        self.refuse_587(ssl.TLSVersion.TLSv1_2)

    def test_openssl_s_client_verify_return_error(self):
        before = self.refusals()
        for args in (["-connect", "127.0.0.1:%d" % self.d.port465],
                     ["-starttls", "smtp", "-connect", "127.0.0.1:%d" % self.d.port587]):
            out = subprocess.run(["openssl", "s_client", "-verify_return_error", "-CAfile", self.ca.cert,
                                  "-servername", HOSTNAME] + args,
                                 input=b"", capture_output=True, timeout=30)
            self.assertNotEqual(out.returncode, 0, out.stdout + out.stderr)
        self.wait_refusals(before + 2)
        self.assertNotIn("bad packet length", self.d.log())


if __name__ == "__main__":
    unittest.main()
