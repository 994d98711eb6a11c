"""Issue 17: the daemon's HTTP/1.1 server ([http] address, mta/http_server).

Raw sockets, so that every framing case is what we wrote: keep-alive,
pipelining, HTTP/1.0, 404, 405 with Allow, 413 decided from Content-Length
before the body is sent, 431, 400 on garbage (and the daemon stays healthy:
the next connection and SMTP still work), the header timeout closing a slow
client with 408, Expect: 100-continue, the connection limit, TLS on the
listener with a test CA, `sluiced --check` refusing a non-loopback address
without a certificate, and GET /healthz 200 and 503 (limits.min_free_space
above the free space of the test's file system).
"""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import harness
from harness import Sluiced, SLUICED, free_port
from testca import TestCa


class HttpConn:
    """One client connection reading HTTP/1.1 responses."""

    def __init__(self, port, host="127.0.0.1", timeout=10, context=None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if context is not None:
            self.sock = context.wrap_socket(self.sock, server_hostname=host)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def response(self):
        """(status, {lower-case name: value}, body)"""
        status_line = self._line()
        version, status, _ = status_line.split(" ", 2)
        self.last_version = version
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return int(status), headers, body

    def closed(self, timeout=5):
        """True once the server closed the connection (EOF or reset)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def get(path, host="a"):
    return "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)


class HttpServerTest(unittest.TestCase):
    limits = None
    certificate = None

    def setUp(self):
        self.http_port = free_port()
        extra = '[http]\naddress = "127.0.0.1:%d"\n' % self.http_port
        if self.certificate:
            extra += 'certificate = "%s"\nprivate_key = "%s"\n' % self.certificate
        self.d = Sluiced(extra=extra, limits=self.limits)
        self.d.start()
        self.d.wait_log("http: listening on")

    def tearDown(self):
        self.d.stop()
        if harness.failed(self):
            print("---- sluiced log ----\n" + self.d.log()[-5000:])
        shutil.rmtree(self.d.dir, ignore_errors=True)

    def conn(self, **kw):
        return HttpConn(self.http_port, **kw)


class Plain(HttpServerTest):
    limits = {"max_connections": 6}

    def test_healthz_and_keep_alive(self):
        c = self.conn()
        c.send(get("/healthz"))
        status, headers, body = c.response()
        self.assertEqual(status, 200)
        self.assertEqual(body, b"ok\n")
        self.assertIn("GMT", headers["date"])
        self.assertNotIn("connection", headers)
        c.send(get("/healthz?verbose=1"))  # the same connection
        self.assertEqual(c.response()[0], 200)
        c.close()

    def test_pipelined_requests_are_answered_in_order(self):
        c = self.conn()
        c.send(get("/healthz") + get("/nowhere") + get("/healthz") + "BAD\r\n\r\n" + get("/healthz"))
        self.assertEqual(c.response()[0], 200)
        self.assertEqual(c.response()[0], 404)  # a 404 keeps the connection
        self.assertEqual(c.response()[0], 200)
        status, headers, _ = c.response()
        self.assertEqual(status, 400)
        self.assertEqual(headers.get("connection"), "close")  # a request it cannot parse closes it
        self.assertTrue(c.closed())
        self.assertEqual(c.buf, b"")  # nothing after the 400
        c.close()
        c = self.conn()
        c.send(get("/healthz") * 3)
        for _ in range(3):
            self.assertEqual(c.response()[0], 200)
        c.close()

    def test_http_1_0_closes_after_the_answer(self):
        c = self.conn()
        c.send("GET /healthz HTTP/1.0\r\n\r\n")
        status, headers, body = c.response()
        self.assertEqual((status, body), (200, b"ok\n"))
        self.assertEqual(c.last_version, "HTTP/1.1")
        self.assertEqual(headers.get("connection"), "close")
        self.assertTrue(c.closed())

    def test_404_and_405_with_allow(self):
        c = self.conn()
        c.send(get("/metrics-nope"))
        self.assertEqual(c.response()[0], 404)
        c = self.conn()
        c.send("POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
        status, headers, _ = c.response()
        self.assertEqual(status, 405)
        self.assertEqual(headers["allow"], "GET")
        self.d.wait_log("POST /healthz from=127.0.0.1 status=405")

    def test_413_is_decided_before_the_body(self):
        c = self.conn()
        # 2 * max_message_size + 64 KiB is the limit; far above it, and no body sent.
        c.send("POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999\r\n\r\n")
        status, headers, _ = c.response()
        self.assertEqual(status, 413)
        self.assertTrue(c.closed())

    def test_431_for_a_huge_header_section(self):
        c = self.conn()
        c.send("GET /healthz HTTP/1.1\r\nX-Big: %s\r\n\r\n" % ("a" * 20000))
        self.assertEqual(c.response()[0], 431)
        self.assertTrue(c.closed())
        c = self.conn()
        c.send("GET /healthz HTTP/1.1\r\n" + "".join("X-%d: v\r\n" % i for i in range(150)) + "\r\n")
        self.assertEqual(c.response()[0], 431)

    def test_garbage_is_400_and_the_daemon_stays_healthy(self):
        for junk in (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
                     b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"):
            c = self.conn()
            c.send(junk)
            self.assertEqual(c.response()[0], 400)
            self.assertTrue(c.closed())
        c = self.conn()
        c.send(get("/healthz"))
        self.assertEqual(c.response()[0], 200)
        smtp = harness.Client(self.d.port)
        self.assertEqual(smtp.code(), 220)
        self.assertTrue(smtp.cmd("EHLO client.test").startswith(b"250"))
        smtp.close()

    def test_header_timeout_closes_a_slow_client(self):
        c = self.conn(timeout=20)
        start = time.time()
        c.send("GET /healthz HTTP/1.1\r\nHost: a\r\n")  # never ends its header section
        status, headers, _ = c.response()
        self.assertEqual(status, 408)
        self.assertTrue(c.closed())
        self.assertTrue(9 <= time.time() - start < 15, time.time() - start)

    def test_expect_100_continue(self):
        c = self.conn()
        c.send("POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        status, _, _ = c.response()
        self.assertEqual(status, 100)
        c.send("hello")
        status, headers, _ = c.response()
        self.assertEqual(status, 405)

    def test_connections_beyond_the_limit_get_503(self):
        conns = [self.conn() for _ in range(6)]
        for c in conns:  # all accepted and served
            c.send(get("/healthz"))
            self.assertEqual(c.response()[0], 200)
        extra = self.conn()
        status, _, body = extra.response()
        self.assertEqual(status, 503)
        self.assertTrue(extra.closed())
        for c in conns:
            c.close()
        deadline = time.time() + 5
        while True:  # the slots come back
            c = self.conn()
            c.send(get("/healthz"))
            try:
                if c.response()[0] == 200:
                    break
            except EOFError:
                pass
            self.assertLess(time.time(), deadline)
            time.sleep(0.1)


class Shutdown(HttpServerTest):
    def test_sigterm_closes_idle_connections_and_stops_listening(self):
        c = self.conn()
        c.send(get("/healthz"))
        self.assertEqual(c.response()[0], 200)
        start = time.time()
        self.assertEqual(self.d.stop(), 0)
        self.assertLess(time.time() - start, 5)
        self.assertTrue(c.closed(timeout=1))
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.http_port), timeout=1)


class Unhealthy(HttpServerTest):
    # Far above any test machine's free space: the spool cannot take mail.
    limits = {"min_free_space": "1000000G"}

    def test_healthz_503_names_the_reason(self):
        c = self.conn()
        c.send(get("/healthz"))
        status, _, body = c.response()
        self.assertEqual(status, 503)
        self.assertIn(b"insufficient storage", body)
        self.assertEqual(body.count(b"\n"), 1)
        self.d.wait_log("GET /healthz from=127.0.0.1 status=503")


class Tls(HttpServerTest):
    @classmethod
    def setUpClass(cls):
        cls.ca_dir = tempfile.mkdtemp(prefix="sluice-http-ca-")
        cls.ca = TestCa(cls.ca_dir)
        cls.certificate = cls.ca.issue("http", dns=("localhost",), ips=("127.0.0.1",))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.ca_dir, ignore_errors=True)

    def test_healthz_over_tls(self):
        ctx = ssl.create_default_context(cafile=self.ca.cert)
        c = self.conn(context=ctx)
        c.send(get("/healthz") * 2)
        self.assertEqual(c.response()[0], 200)
        self.assertEqual(c.response()[0], 200)
        c.close()

    def test_certificate_is_re_read_on_sighup(self):
        ctx = ssl.create_default_context(cafile=self.ca.cert)
        cert, key = self.certificate
        c = self.conn(context=ctx)
        self.assertEqual(harness.cert_fingerprint(c.sock.getpeercert(binary_form=True)),
                         harness.pem_fingerprint(cert))
        new_cert, new_key = self.ca.issue("http-new", dns=("localhost",), ips=("127.0.0.1",))
        for src, dst in ((new_cert, cert), (new_key, key)):
            shutil.copy(src, dst + ".tmp")
            os.replace(dst + ".tmp", dst)
        self.d.proc.send_signal(signal.SIGHUP)
        self.d.wait_log("reload: configuration re-read")
        c2 = self.conn(context=ctx)
        self.assertEqual(harness.cert_fingerprint(c2.sock.getpeercert(binary_form=True)),
                         harness.pem_fingerprint(new_cert))
        c2.send(get("/healthz"))
        self.assertEqual(c2.response()[0], 200)
        c.send(get("/healthz"))  # the open connection keeps working
        self.assertEqual(c.response()[0], 200)

    def test_plaintext_on_the_tls_listener_gets_nothing(self):
        c = self.conn()
        c.send(get("/healthz"))
        self.assertTrue(c.closed())
        self.assertNotIn(b"HTTP/1.1 200", c.buf)

    def test_slow_handshake_is_closed(self):
        c = self.conn(timeout=20)
        start = time.time()
        self.assertTrue(c.closed(timeout=15))
        self.assertTrue(9 <= time.time() - start < 15)


class Check(unittest.TestCase):
    def test_non_loopback_without_certificate_is_refused(self):
        d = tempfile.mkdtemp(prefix="sluice-http-check-")
        try:
            cfg = os.path.join(d, "sluice.toml")
            with open(cfg, "w") as f:
                f.write('hostname = "mx.sluice.test"\nuser = "root"\nspool_dir = "%s/spool"\n'
                        '[[listener]]\naddress = "127.0.0.1:%d"\nmode = "relay"\n'
                        '[http]\naddress = "0.0.0.0:%d"\n' % (d, free_port(), free_port()))
            r = subprocess.run([SLUICED, "--check", "--config", cfg], capture_output=True, timeout=30)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(b"http.address", r.stdout + r.stderr)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
