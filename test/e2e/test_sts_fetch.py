"""MTA-STS policy fetch and policy store end to end (mta/sts_fetch.*,
mta/sts_policies.*), through test/tools/sts_fetch_tool: the real resolver
against dns/testdata/fake_dns.py, the real BoringSSL client against a Python
HTTPS server on 127.0.0.5 (a free port: the port is a parameter of the
fetch; production uses 443) with certificates from testca.py.

Fetch cases: a good policy (and the exact request), a certificate for another
name, a redirect, a body over 64 KB, a wrong content type, a server that
never answers (timeout), no address for the policy host. Store cases: the
cache file written and read back after a restart, kept when a refresh fails,
dropped once expired, a corrupt file ignored with a log line.
"""
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest

from test_delivery import FakeDns
from testca import TestCa

TOOL = os.environ.get("STS_FETCH_TOOL", os.path.join(os.path.dirname(__file__), "../../build/test/sts_fetch_tool"))
ADDR = "127.0.0.5"

GOOD = (b"version: STSv1\r\nmode: enforce\r\nmx: mx.good.test\r\nmx: *.backup.test\r\n"
        b"max_age: 86400\r\n")


def response(body, status="200 OK", ctype="text/plain; charset=utf-8", extra=b""):
    head = ("HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (status, ctype, len(body))).encode()
    return head + extra + b"\r\n" + body


class HttpsServer:
    """Answers every connection with `reply` (bytes; None: never answers)
    after reading the request head, which it records."""

    def __init__(self, cert, key, reply, addr=ADDR, port=0):
        self.reply = reply
        self.requests = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                tls = self.ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()
                continue
            try:
                data = b""
                tls.settimeout(10)
                while b"\r\n\r\n" not in data:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                if self.reply is None:
                    self.held.append(tls)
                    continue
                tls.sendall(self.reply)
                tls.close()
            except (ssl.SSLError, OSError):
                tls.close()

    def stop(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() in the server thread
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)
        for t in self.held:
            t.close()


class StsFetch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sluice-sts-")
        cls.ca = TestCa(cls.dir)
        cls.cert = cls.ca.issue("good", dns=["mta-sts.good.test"])
        cls.other = cls.ca.issue("other", dns=["mta-sts.other.test"])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.server = None
        self.dns = None
        self.work = tempfile.mkdtemp(prefix="sluice-sts-run-", dir=self.dir)

    def tearDown(self):
        if self.server:
            self.server.stop()
        if self.dns:
            self.dns.stop()

    def serve(self, reply, cert=None):
        self.server = HttpsServer(*(cert or self.cert), reply)

    def zone(self, txt_id="20240101"):
        if self.dns:
            self.dns.stop()
        self.dns = FakeDns(self.work, (
            "test. 3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 600\n"
            "mta-sts.good.test. 300 IN A %s\n"
            '_mta-sts.good.test. 300 IN TXT "v=STSv1; id=%s;"\n' % (ADDR, txt_id)))

    def tool(self, *args, port=None, timeout=10):
        cmd = [TOOL] + list(args[:1]) + ["--dns", "127.0.0.1:%d" % self.dns.port, "--ca-file", self.ca.cert,
                                          "--port", str(port or (self.server.port if self.server else 1))]
        cmd += list(args[1:])
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def fetch(self, *extra, domain="good.test"):
        r = self.tool("fetch", *extra, domain)
        self.assertIn(r.returncode, (0, 1), r.stderr)
        return r.stdout.strip()

    # ---- the fetch ----

    def test_good_policy(self):
        self.zone()
        self.serve(response(GOOD))
        self.assertEqual(self.fetch(), "ok mode=enforce max_age=86400 mx=mx.good.test,*.backup.test")
        req = self.server.requests[0].decode()
        self.assertTrue(req.startswith("GET /.well-known/mta-sts.txt HTTP/1.1\r\n"), req)
        self.assertIn("\r\nHost: mta-sts.good.test\r\n", req)

    def test_chunked_policy(self):
        self.zone()
        body = GOOD
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        self.serve(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        self.assertEqual(self.fetch(), "ok mode=enforce max_age=86400 mx=mx.good.test,*.backup.test")

    def test_certificate_for_another_name(self):
        self.zone()
        self.serve(response(GOOD), cert=self.other)
        out = self.fetch()
        self.assertTrue(out.startswith("error: %s:%d: tls: " % (ADDR, self.server.port)), out)
        self.assertIn("certificate verify failed", out)
        self.assertEqual(self.server.requests, [])  # the request never left

    def test_redirect_refused(self):
        self.zone()
        self.serve(response(b"", status="301 Moved Permanently",
                            extra=b"Location: https://elsewhere.test/.well-known/mta-sts.txt\r\n"))
        out = self.fetch()
        self.assertIn("redirect (301) to https://elsewhere.test/.well-known/mta-sts.txt refused", out)
        self.assertEqual(len(self.server.requests), 1)

    def test_body_over_64k(self):
        self.zone()
        self.serve(response(GOOD + b"#" * (64 * 1024)))
        self.assertIn("bad HTTP response: body", self.fetch())

    def test_wrong_content_type(self):
        self.zone()
        self.serve(response(GOOD, ctype="text/html"))
        self.assertIn('content type "text/html" is not text/plain', self.fetch())

    def test_http_error_status(self):
        self.zone()
        self.serve(response(b"not here", status="404 Not Found"))
        self.assertIn("HTTP status 404", self.fetch())

    def test_bad_policy(self):
        self.zone()
        self.serve(response(b"version: STSv1\r\nmode: enforce\r\n"))
        self.assertIn("bad policy: ", self.fetch())

    def test_timeout(self):
        self.zone()
        self.serve(None)
        out = self.fetch("--timeout-ms", "1500")
        self.assertIn("timed out", out)

    def test_no_address(self):
        self.zone()
        out = self.fetch(domain="nothere.test")
        self.assertTrue(out.startswith("error: mta-sts.nothere.test: "), out)

    def test_nobody_listening(self):
        self.zone()
        port = self.free_port()
        r = self.tool("fetch", "good.test", port=port)
        self.assertIn("connect to %s:%d: connection refused" % (ADDR, port), r.stdout)

    def free_port(self):
        with socket.socket() as s:
            s.bind((ADDR, 0))
            return s.getsockname()[1]

    # ---- the store ----

    def store(self, *extra, port=None):
        r = self.tool("store", "--dir", os.path.join(self.work, "sts"), *extra, "good.test", port=port)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip().split("\n"), r.stderr

    def test_store_caches_and_keeps(self):
        self.zone()
        self.serve(response(GOOD))
        out, log = self.store("--now", "1764950000")
        self.assertEqual(out, ["cached none", "policy mode=enforce max_age=86400 mx=mx.good.test,*.backup.test"])
        self.assertIn("mta-sts: domain=good.test id=20240101 mode=enforce max_age=86400", log)
        path = os.path.join(self.work, "sts", "good.test")
        with open(path) as f:
            text = f.read()
        self.assertTrue(text.startswith("sluice-sts 1\ndomain: good.test\nid: 20240101\nfetched_at: 1764950000\n\n"))
        self.assertEqual(oct(os.stat(path).st_mode & 0o777), "0o600")
        self.assertEqual(len(self.server.requests), 1)

        # A restart with the same id: read from the file, no fetch.
        out, log = self.store("--now", "1764950100")
        self.assertEqual(out[0], "cached id=20240101 mode=enforce")
        self.assertEqual(out[1], "policy mode=enforce max_age=86400 mx=mx.good.test,*.backup.test")
        self.assertNotIn("mta-sts: domain=", log)
        self.assertEqual(len(self.server.requests), 1)

        # A new id, the policy host down: the fetch fails, the cached policy stays.
        self.server.stop()
        self.server = None
        self.zone("20240202")
        out, log = self.store("--now", "1764950200", port=self.free_port())
        self.assertEqual(out[1], "policy mode=enforce max_age=86400 mx=mx.good.test,*.backup.test")
        self.assertIn("mta-sts: domain=good.test fetch failed: ", log)
        self.assertTrue(os.path.exists(path))

        # Past max_age: no policy any more, the file is removed.
        out, log = self.store("--now", str(1764950000 + 86400), port=self.free_port())
        self.assertEqual(out, ["cached none", "policy none"])
        self.assertFalse(os.path.exists(path))

    def test_store_no_policy_when_first_fetch_fails(self):
        self.zone()
        self.serve(response(GOOD, ctype="text/html"))
        out, log = self.store()
        self.assertEqual(out, ["cached none", "policy none"])
        self.assertIn("mta-sts: domain=good.test fetch failed: ", log)
        self.assertFalse(os.path.exists(os.path.join(self.work, "sts", "good.test")))

    def test_store_rate_limits_fetches(self):
        # A failing policy host is asked once per domain and id per 5 minutes.
        self.zone()
        self.serve(response(GOOD, ctype="text/html"))
        out, log = self.store("--times", "3")
        self.assertEqual(out, ["cached none", "policy none", "policy none", "policy none"])
        self.assertEqual(log.count("mta-sts: domain=good.test fetch failed: "), 1)
        self.assertEqual(len(self.server.requests), 1)

    def test_store_fetches_once_per_id(self):
        self.zone()
        self.serve(response(GOOD))
        out, log = self.store("--times", "2")
        self.assertEqual(out[1:], ["policy mode=enforce max_age=86400 mx=mx.good.test,*.backup.test"] * 2)
        self.assertEqual(log.count("mta-sts: domain=good.test id=20240101"), 1)
        self.assertEqual(len(self.server.requests), 1)

    def test_store_ignores_a_corrupt_file(self):
        self.zone()
        self.serve(response(GOOD))
        os.makedirs(os.path.join(self.work, "sts"))
        with open(os.path.join(self.work, "sts", "good.test"), "w") as f:
            f.write("sluice-sts 1\ndomain: good.test\nid: x\n")
        with open(os.path.join(self.work, "sts", "left.test.tmp"), "w") as f:
            f.write("half")
        out, log = self.store()
        self.assertEqual(out[0], "cached none")
        self.assertIn("mta-sts: cache file %s ignored: " % os.path.join(self.work, "sts", "good.test"), log)
        self.assertEqual(out[1], "policy mode=enforce max_age=86400 mx=mx.good.test,*.backup.test")
        self.assertFalse(os.path.exists(os.path.join(self.work, "sts", "left.test.tmp")))


if __name__ == "__main__":
    unittest.main()
