"""sluiced --check loads what the configuration names, as the start does
(issue 13, items 6 and 9):

- a typo in a certificate path (a path that does not exist, not the
  default one) fails --check and the start, naming the key, the path and
  the errno text; nothing is created there. The default pair (tls/ beside
  the configuration file) is still made self-signed at start, and --check
  passes it without creating anything;
- a key that does not belong to the certificate, a users file with errors
  (one problem per line) and a missing relayhost password file (with the
  errno text) fail --check;
- a key under the wrong table says which table it belongs in;
- binding a port below 1024 without root says what is needed.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import unittest

from harness import SLUICED, Sluiced, free_port, temporary_account
from testca import self_signed

BASE = ('hostname = "mx.sluice.test"\nuser = "root"\nspool_dir = "%(dir)s/spool"\n'
        'control_socket = "%(dir)s/control.sock"\n'
        '[[listener]]\naddress = "127.0.0.1:%(port)d"\nmode = "submission"\n')


class CheckLoadsFiles(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-check-")
        self.config = os.path.join(self.dir, "sluice.toml")
        self.port = free_port()

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, extra):
        with open(self.config, "w") as f:
            f.write(BASE % {"dir": self.dir, "port": self.port} + extra)

    def check(self):
        return subprocess.run([SLUICED, "--check", "--config", self.config], capture_output=True,
                              text=True, timeout=30)

    def start(self):
        return subprocess.run([SLUICED, "--config", self.config], capture_output=True, text=True,
                              timeout=30)

    def test_typo_in_the_certificate_path_fails_check_and_start(self):
        live = os.path.join(self.dir, "letsencrypt/live/mail.exmaple.com")
        self.write('[tls]\ncertificate = "%s/fullchain.pem"\nprivate_key = "%s/privkey.pem"\n' % (live, live))
        r = self.check()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn('tls.certificate: "%s/fullchain.pem": No such file or directory' % live, r.stderr)
        self.assertNotIn("configuration ok", r.stdout)
        p = self.start()
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn('tls.certificate: "%s/fullchain.pem": No such file or directory' % live, p.stderr)
        self.assertFalse(os.path.exists(live), "nothing is made at a configured path")
        self.assertNotIn("self-signed certificate for", p.stderr)

    def test_a_missing_key_is_named(self):
        cert, key = self_signed(self.dir, "own", "mx.sluice.test")
        self.write('[tls]\ncertificate = "%s"\nprivate_key = "%s/nokey.pem"\n' % (cert, self.dir))
        r = self.check()
        self.assertEqual(r.returncode, 1)
        self.assertIn('tls.private_key: "%s/nokey.pem": No such file or directory' % self.dir, r.stderr)

    def test_default_pair_passes_check_and_is_made_at_start(self):
        tls = os.path.join(self.dir, "tls")
        self.write('[tls]\ncertificate = "%s/fullchain.pem"\nprivate_key = "%s/privkey.pem"\n' % (tls, tls))
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration ok", r.stdout)
        self.assertFalse(os.path.exists(tls), "--check creates nothing")
        d = Sluiced(workdir=self.dir, listeners=[("127.0.0.1:%d" % self.port, "submission")],
                    extra='[tls]\ncertificate = "%s/fullchain.pem"\nprivate_key = "%s/privkey.pem"\n' % (tls, tls))
        try:
            d.start()
            self.assertIn("tls: created a self-signed certificate for mx.sluice.test in %s/fullchain.pem" % tls,
                          d.log())
        finally:
            d.stop()
        r = self.check()   # now with the files made: loaded and matching
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_a_key_that_does_not_match_fails_check(self):
        cert, _ = self_signed(self.dir, "one", "mx.sluice.test")
        _, key = self_signed(self.dir, "two", "mx.sluice.test")
        self.write('[tls]\ncertificate = "%s"\nprivate_key = "%s"\n' % (cert, key))
        r = self.check()
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stderr, r"tls: .*does not belong to the first certificate")

    def test_a_bad_users_file_fails_check_one_line_per_problem(self):
        users = os.path.join(self.dir, "users")
        with open(users, "w") as f:
            f.write("alice@example.org\nbob:$6$x$y:@bad domain\n")
        cert, key = self_signed(self.dir, "own", "mx.sluice.test")
        self.write('[tls]\ncertificate = "%s"\nprivate_key = "%s"\n[auth]\nusers_file = "%s"\n' % (cert, key, users))
        r = self.check()
        self.assertEqual(r.returncode, 1, r.stdout)
        lines = [l for l in r.stderr.splitlines() if "auth.users_file:" in l]
        self.assertGreaterEqual(len(lines), 2, r.stderr)
        self.assertNotIn("\\x0a", r.stderr)

    def test_a_missing_password_file_says_why(self):
        self.write('[delivery]\nrelayhost = "[127.0.0.1]:587"\nrelayhost_username = "u"\n'
                   'relayhost_password_file = "%s/nopass"\nrelayhost_tls = "required"\n' % self.dir)
        r = self.check()
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("delivery.relayhost_password_file: cannot read %s/nopass: No such file or directory"
                      % self.dir, r.stderr)

    def test_a_key_under_the_wrong_table_names_its_table(self):
        self.write('[dns]\nrelayhost = "[smtp.example.net]:587"\n')
        r = self.check()
        self.assertEqual(r.returncode, 1)
        self.assertIn("dns.relayhost: unknown key; it belongs in [delivery]", r.stderr)


def free_low_port():
    for port in range(990, 600, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise unittest.SkipTest("no free port below 1024")


@unittest.skipUnless(os.geteuid() == 0, "needs root: runs sluiced as another account")
class LowPortWithoutRoot(unittest.TestCase):
    def test_the_bind_error_says_root_or_capability(self):
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            if int(f.read()) <= 990:
                self.skipTest("this system lets anyone bind low ports")
        port = free_low_port()
        with temporary_account("sluicetestbind") as acct:
            d = Sluiced(user="sluicetestbind", listeners=[("127.0.0.1:%d" % port, "relay")])
            try:
                os.chmod(d.dir, 0o755)
                os.chown(d.dir, acct.pw_uid, acct.pw_gid)
                p = subprocess.run(["setpriv", "--reuid=%d" % acct.pw_uid, "--regid=%d" % acct.pw_gid,
                                    "--clear-groups", SLUICED, "--config", d.config_path],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn("listener 127.0.0.1:%d: permission denied: ports below 1024 need root" % port,
                              p.stderr)
                self.assertIn("CAP_NET_BIND_SERVICE", p.stderr)
            finally:
                d.cleanup()


if __name__ == "__main__":
    unittest.main()
