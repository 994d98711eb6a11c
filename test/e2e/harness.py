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
import threading
import time
import unittest

# Set by .ci/run's sanitizer stage. ASan keeps freed memory in quarantine
# and adds shadow memory, so resident-memory bounds are looser there.
SANITIZED = bool(os.environ.get("SLUICE_SANITIZED"))


def memory_bound(nbytes):
    return nbytes * 8 if SANITIZED else nbytes


SLUICED = os.environ.get("SLUICED", os.path.join(os.path.dirname(__file__), "../../build/exe/sluiced"))
SPOOL_DUMP = os.environ.get("SPOOL_DUMP", os.path.join(os.path.dirname(__file__), "../../build/test/spool_dump"))


class temporary_account:
    """A system account made for one test and removed afterwards, even when
    the test fails (`with temporary_account("sluicetest") as acct:`; acct
    is its pwd entry). If the account already exists it is used and left
    alone. Needs root."""

    def __init__(self, name, group=None):
        self.name, self.group, self.made = name, group, False

    def __enter__(self):
        import pwd
        try:
            return pwd.getpwnam(self.name)
        except KeyError:
            pass
        cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        cmd += ["--gid", self.group] if self.group else ["--user-group"]
        subprocess.run(cmd + [self.name], check=True, capture_output=True)
        self.made = True
        return pwd.getpwnam(self.name)

    def __exit__(self, *exc):
        if self.made:
            subprocess.run(["userdel", self.name], capture_output=True)
            if not self.group:
                subprocess.run(["groupdel", self.name], capture_output=True)
        return False


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(n, host="127.0.0.1"):
    """n distinct free ports: each socket stays bound until all are chosen
    (free_port() twice may return the same port)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Sluiced:
    """One sluiced process with its own directory, config and log file."""

    def __init__(self, extra="", listeners=None, limits=None, trusted=None, workdir=None,
                 dns_servers=None, user="root"):
        self.dir = workdir or tempfile.mkdtemp(prefix="sluice-e2e-")
        self.spool = os.path.join(self.dir, "spool")
        self.port = free_port()
        self.listeners = listeners or [("127.0.0.1:%d" % self.port, "relay")]
        self.log_path = os.path.join(self.dir, "sluiced.log")
        self.config_path = os.path.join(self.dir, "sluice.toml")
        lines = [
            'hostname = "mx.sluice.test"',
            # An unknown account is fatal; the tests run as root on purpose
            # unless they test the drop.
            'user = "%s"' % user,
            'spool_dir = "%s"' % self.spool,
            'control_socket = "%s"' % os.path.join(self.dir, "control.sock"),
        ]
        # Delivery runs in every test. By default its DNS server is a closed
        # loopback port: lookups fail at once (temporary), so accepted mail
        # stays in the spool, deferred, for the suites that inspect it.
        if dns_servers is None:
            dns_servers = ["127.0.0.1:9"]
        lines += ["[dns]", "servers = [%s]" % ", ".join('"%s"' % s for s in dns_servers)]
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


class ThreadedServer:
    """A listening socket on host:port (0: any free port, then in .port) with
    one thread per accepted connection, for the tests' scripted SMTP peers.
    Subclasses set their own state first, then call this __init__ (serving
    may begin at once), and write serve(conn, number): number counts the
    connections from 1, `connections` is how many were accepted."""

    def __init__(self, host, port=0, backlog=16):
        self.connections = 0
        self._count_lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(backlog)
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.sock.close()  # accept() fails: the accepting thread ends

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._count_lock:
                self.connections += 1
                number = self.connections
            threading.Thread(target=self.serve, args=(conn, number), daemon=True).start()

    def serve(self, conn, number):
        raise NotImplementedError


class Client:
    """A raw socket client for exact bytes."""

    def __init__(self, port, host="127.0.0.1", timeout=10, source=None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
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


def failed(test):
    """Whether this test (or one of its subtests) has failed so far: for a
    tearDown that prints the daemon's log only when it helps."""
    result = getattr(getattr(test, "_outcome", None), "result", None)
    if result is None:
        return False
    return any(t is test or getattr(t, "test_case", None) is test
               for t, _ in list(result.failures) + list(result.errors))


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
        return failed(self)

    def client(self):
        c = Client(self.d.port)
        self.assertEqual(c.code(), 220)
        return c


# ---- submission: [tls], [auth] and the users file ------------------------

def hash_password(password, method="yescrypt"):
    """A crypt(3) hash made by the tools docs/users.md tells administrators to
    use: mkpasswd (package whois) for yescrypt and bcrypt, openssl for SHA-512."""
    if method == "yescrypt":
        cmd = ["mkpasswd", "-m", "yescrypt", "--stdin"]
    elif method == "bcrypt":
        cmd = ["mkpasswd", "-m", "bcrypt", "-R", "5", "--stdin"]
    elif method == "sha512":
        cmd = ["openssl", "passwd", "-6", "-stdin"]
    else:
        raise ValueError(method)
    out = subprocess.run(cmd, input=password.encode(), capture_output=True, check=True, timeout=30)
    h = out.stdout.decode().strip()
    if not h.startswith("$"):
        raise RuntimeError("%s made no hash: %r %r" % (cmd, out.stdout, out.stderr))
    return h


_hash_cache = {}


def user_line(login, password, method="yescrypt", senders=None):
    """One users-file line; hashes are cached per (password, method) so a suite
    pays for mkpasswd once."""
    key = (password, method)
    if key not in _hash_cache:
        _hash_cache[key] = hash_password(password, method)
    line = "%s:%s" % (login, _hash_cache[key])
    if senders is not None:
        line += ":" + senders
    return line


def write_file_atomically(path, text, mode=0o640):
    """Replace path the way an administrator's tooling would (write + rename),
    so a running daemon never reads a half-written file."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class SubmissionSluiced(Sluiced):
    """sluiced with a submission (STARTTLS) listener first, a submissions
    (implicit TLS) listener and, with relay=True, a relay listener; [tls]
    names certificate and key files that do not exist yet (so the daemon makes
    a self-signed pair on first start) and [auth] a users file made from
    `users`, a list of lines (see user_line)."""

    def __init__(self, users=(), relay=False, limits=None, trusted=None, extra="", dns_servers=None):
        workdir = tempfile.mkdtemp(prefix="sluice-e2e-")
        self.port587, self.port465, relay_port = free_ports(3)
        listeners = [("127.0.0.1:%d" % self.port587, "submission"),
                     ("127.0.0.1:%d" % self.port465, "submissions")]
        self.relay_port = None
        if relay:
            self.relay_port = relay_port
            listeners.append(("127.0.0.1:%d" % self.relay_port, "relay"))
        self.cert_path = os.path.join(workdir, "tls", "fullchain.pem")
        self.key_path = os.path.join(workdir, "tls", "privkey.pem")
        self.users_path = os.path.join(workdir, "users")
        self.write_users(users)
        tls_auth = ('[tls]\ncertificate = "%s"\nprivate_key = "%s"\n[auth]\nusers_file = "%s"\n'
                    % (self.cert_path, self.key_path, self.users_path))
        super().__init__(extra=tls_auth + extra, listeners=listeners, limits=limits,
                         trusted=trusted, workdir=workdir, dns_servers=dns_servers)

    def write_users(self, lines):
        write_file_atomically(self.users_path, "".join(l + "\n" for l in lines))

    def reload(self, timeout=10):
        """SIGHUP, then wait until the daemon says it re-read its configuration,
        or that it refused the new one (a reload is all or nothing)."""
        def done():
            log = self.log()
            return log.count("reload: configuration re-read") + log.count("reload: configuration has errors")
        before = done()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if done() > before:
                return
            time.sleep(0.02)
        raise AssertionError("no reload in the log:\n" + self.log())


# ---- TLS clients -----------------------------------------------------------

HOSTNAME = "mx.sluice.test"


def tls_context(cafile, **versions):
    """A client context that trusts only `cafile` and checks the host name
    (the self-signed certificate the daemon made is its own CA). versions:
    minimum_version= / maximum_version= (ssl.TLSVersion)."""
    import ssl
    ctx = ssl.create_default_context(cafile=cafile)
    for k, v in versions.items():
        setattr(ctx, k, v)
    return ctx


def cert_fingerprint(der):
    import hashlib
    return hashlib.sha256(der).hexdigest()


def pem_fingerprint(path):
    """SHA-256 of the first certificate in a PEM file."""
    import ssl
    with open(path) as f:
        text = f.read()
    end = text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    return cert_fingerprint(ssl.PEM_cert_to_DER_cert(text[:end]))


class TlsClient(Client):
    """Client for exact bytes that can be in TLS: implicit (context given at
    connect) or later with starttls(). source: a local address to bind."""

    def __init__(self, port, context=None, host="127.0.0.1", timeout=10, source=None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        if context is not None:
            try:
                self.starttls(context)
            except BaseException:
                self.sock.close()
                raise

    def starttls(self, context, server_hostname=HOSTNAME):
        if self.buf:
            raise AssertionError("plaintext received before the TLS handshake: %r" % self.buf)
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def peer_fingerprint(self):
        return cert_fingerprint(self.sock.getpeercert(binary_form=True))

    def closed(self, timeout=5):
        import ssl
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True
        except socket.timeout:
            return False


def smtp_starttls(port, context, timeout=10, local_hostname="mail.client.test"):
    """smtplib.SMTP to 127.0.0.1 whose starttls() checks the certificate for
    HOSTNAME (smtplib checks against the host it connected to)."""
    import smtplib
    s = smtplib.SMTP("127.0.0.1", port, timeout=timeout, local_hostname=local_hostname)
    s._host = HOSTNAME
    return s


def smtp_ssl(port, context, timeout=10, local_hostname="mail.client.test"):
    """smtplib.SMTP_SSL to 127.0.0.1 that checks the certificate for HOSTNAME."""
    import smtplib

    class _SMTP_SSL(smtplib.SMTP_SSL):
        def _get_socket(self, host, port, timeout):
            sock = socket.create_connection((host, port), timeout)
            return self.context.wrap_socket(sock, server_hostname=HOSTNAME)

    return _SMTP_SSL("127.0.0.1", port, timeout=timeout, context=context,
                     local_hostname=local_hostname)
