"""End-to-end harness: runs the real sluiced on loopback with a private
config and spool in a temporary directory, and talks to it with real clients.

Environment: SLUICED and SPOOL_DUMP point at the built binaries (CTest sets
them). Every test gets fresh ports (bound to port 0 first, then released).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

SLUICED = os.environ.get("SLUICED", os.path.join(os.path.dirname(__file__), "../../build/exe/sluiced"))
SPOOL_DUMP = os.environ.get("SPOOL_DUMP", os.path.join(os.path.dirname(__file__), "../../build/test/spool_dump"))


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Sluiced:
    """One sluiced process with its own directory, config and log file."""

    def __init__(self, extra="", listeners=None, limits=None, trusted=None, workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="sluice-e2e-")
        self.spool = os.path.join(self.dir, "spool")
        self.port = free_port()
        self.listeners = listeners or [("127.0.0.1:%d" % self.port, "relay")]
        self.log_path = os.path.join(self.dir, "sluiced.log")
        self.config_path = os.path.join(self.dir, "sluice.toml")
        lines = [
            'hostname = "mx.sluice.test"',
            'spool_dir = "%s"' % self.spool,
            'control_socket = "%s"' % os.path.join(self.dir, "control.sock"),
        ]
        for addr, mode in self.listeners:
            lines += ["[[listener]]", 'address = "%s"' % addr, 'mode = "%s"' % mode]
        if trusted is not None:
            lines += ["[relay]", "trusted_networks = [%s]" % ", ".join('"%s"' % t for t in trusted)]
        if limits:
            lines.append("[limits]")
            for k, v in limits.items():
                lines.append("%s = %s" % (k, json.dumps(v)))
        lines.append(extra)
        self.write_config("\n".join(lines) + "\n")
        self.proc = None
        self.logf = None

    def write_config(self, text):
        with open(self.config_path, "w") as f:
            f.write(text)

    def start(self, wait=True):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SLUICED, "--config", self.config_path],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout=10):
        host, port = self.listeners[0][0].rsplit(":", 1)
        host = host.strip("[]")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sluiced exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                with socket.create_connection((host, int(port)), timeout=1) as s:
                    s.recv(100)
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("sluiced did not start listening:\n" + self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, needle, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if needle in self.log():
                return True
            time.sleep(0.02)
        raise AssertionError("log never showed %r:\n%s" % (needle, self.log()))

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.logf:
            self.logf.close()
            self.logf = None
        return self.proc.returncode if self.proc else None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        if self.logf:
            self.logf.close()
            self.logf = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def spool_messages(self, body=True):
        """The spool's content, read with the spool library (daemon stopped)."""
        args = [SPOOL_DUMP, self.spool] + (["--body"] if body else [])
        out = subprocess.run(args, check=True, capture_output=True, timeout=60).stdout.decode()
        msgs = [json.loads(l) for l in out.splitlines() if l.strip()]
        for m in msgs:
            if "body_hex" in m:
                m["body"] = bytes.fromhex(m.pop("body_hex"))
        return msgs


class Client:
    """A raw socket client for exact bytes."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """One whole (possibly multi-line) reply as bytes."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("connection closed; got %r" % (b"".join(lines) + self.buf))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line + b"\r\n")
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    def code(self):
        return int(self.reply()[:3])

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closed the connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


class SluicedTest(unittest.TestCase):
    """Base class: self.d is a started sluiced; override config() to change it."""

    def config(self):
        return {}

    def setUp(self):
        self.d = Sluiced(**self.config())
        self.d.start()

    def tearDown(self):
        self.d.stop()
        if self._outcome_failed():
            print("---- sluiced log ----\n" + self.d.log()[-5000:])
        shutil.rmtree(self.d.dir, ignore_errors=True)

    def _outcome_failed(self):
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        errors = getattr(outcome, "errors", None) or []
        result = getattr(outcome, "result", None)
        if result is not None:
            return bool(result.failures or result.errors)
        return any(e[1] for e in errors)

    def client(self):
        c = Client(self.d.port)
        self.assertEqual(c.code(), 220)
        return c
