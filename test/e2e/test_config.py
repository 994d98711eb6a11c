"""sluiced --check and start-up with bad configuration; SIGHUP reload."""
import os
import signal
import subprocess
import tempfile
import unittest

from harness import SLUICED, Sluiced, Client, temporary_account

EXAMPLE = os.path.join(os.path.dirname(__file__), "../../conf/sluice.toml")


def check(text):
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    try:
        return subprocess.run([SLUICED, "--check", "--config", f.name], capture_output=True, text=True, timeout=10)
    finally:
        os.unlink(f.name)


class Check(unittest.TestCase):
    # The example and a minimal file run as `sluice` (the default user): the
    # account packaging/postinst makes. Here it is made for the test.
    @unittest.skipUnless(os.geteuid() == 0, "needs root: makes the sluice account")
    def test_example_config_is_valid(self):
        # --check loads the files the example names, as the start would: with
        # its users file in place it passes (the default certificate pair is
        # made at start, so a missing one is fine).
        with open(EXAMPLE) as f:
            text = f.read()
        with tempfile.TemporaryDirectory() as tmp:
            users = os.path.join(tmp, "users")
            open(users, "w").close()
            self.assertIn('users_file = "/etc/sluice/users"', text)
            with temporary_account("sluice"):
                r = check(text.replace('users_file = "/etc/sluice/users"', 'users_file = "%s"' % users))
                self.assertEqual(r.returncode, 0, r.stderr)
                if not os.path.exists("/etc/sluice/users"):
                    # ... and without it, that is the one problem, named by its key.
                    r = subprocess.run([SLUICED, "--check", "--config", EXAMPLE], capture_output=True, text=True)
                    self.assertEqual(r.returncode, 1, r.stdout)
                    # (The example leaves [aliases] empty, so the root warning comes first.)
                    self.assertEqual(r.stderr.strip().splitlines(),
                                     ["%s: warning: aliases: root has no entry (and there is no \"*\"), so mail to root "
                                      "and postmaster is refused; add root = [\"you@example.com\"] to [aliases]"
                                      % EXAMPLE,
                                      "%s: auth.users_file: /etc/sluice/users: cannot open: No such file or directory"
                                      % EXAMPLE])

    @unittest.skipUnless(os.geteuid() == 0, "needs root: makes the sluice account")
    def test_minimal_config(self):
        with temporary_account("sluice"):
            r = check('hostname = "mx.example.com"\n[[listener]]\naddress = "127.0.0.1:2525"\nmode = "relay"\n')
        self.assertEqual(r.returncode, 0, r.stderr)


class UnknownUser(unittest.TestCase):
    """Finding 2 of the hardening review: `user = "sluicrev"` (a typo) passed
    --check and sluiced kept running as root with every capability. Now it is
    an error in --check and at start, naming the key and its line."""

    TEXT = 'hostname = "mx.example.com"\nuser = "sluicrev"\n[[listener]]\naddress = "127.0.0.1:%d"\nmode = "relay"\n'

    def test_check_names_the_key_and_line(self):
        r = check(self.TEXT % 2525)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stderr, r":2: user: \"sluicrev\": no such account")
        self.assertIn('user = \"root\"', r.stderr)  # the fix is named

    def test_the_default_user_must_exist_too(self):
        import pwd
        try:
            pwd.getpwnam("sluice")
            self.skipTest("this machine has a sluice account")
        except KeyError:
            pass
        r = check('hostname = "mx.example.com"\n[[listener]]\naddress = "127.0.0.1:2525"\nmode = "relay"\n')
        self.assertEqual(r.returncode, 1)
        self.assertIn("user: \"sluice\": no such account", r.stderr)

    def test_start_refuses_and_binds_nothing(self):
        from harness import free_port
        import socket
        port = free_port()
        d = Sluiced(user="sluicrev", listeners=[("127.0.0.1:%d" % port, "relay")])
        try:
            p = subprocess.run([SLUICED, "--config", d.config_path], capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("no such account", p.stderr)
            self.assertIn("not starting", p.stderr)
            self.assertFalse(os.path.exists(d.spool), "nothing is created for an unknown user")
            with socket.socket() as s:
                self.assertNotEqual(s.connect_ex(("127.0.0.1", port)), 0)
        finally:
            d.cleanup()

    def test_root_on_purpose(self):
        r = check(self.TEXT.replace("sluicrev", "root") % 2525)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_each_problem_named_with_key_and_line(self):
        r = check('hostname = "mx.example.com"\n'
                  'bogus = 1\n'
                  '[[listener]]\naddress = "127.0.0.1:99999"\nmode = "relay"\n'
                  '[limits]\nmax_recipients = "many"\ncommand_timeout = "5 parsecs"\n'
                  '[relay]\ntrusted_networks = ["10.0.0.1/8"]\n')
        self.assertEqual(r.returncode, 1)
        err = r.stdout + r.stderr
        for key, line in (("bogus", 2), ("listener[1].address", 4), ("limits.max_recipients", 7),
                          ("limits.command_timeout", 8), ("relay.trusted_networks", 10)):
            self.assertRegex(err, r":%d: %s" % (line, key.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")), err)

    def test_env_variable_locates_config(self):
        d = Sluiced()
        try:
            env = dict(os.environ, SLUICE_CONFIG=d.config_path)
            r = subprocess.run([SLUICED, "--check"], capture_output=True, text=True, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(d.config_path, r.stdout)
        finally:
            d.cleanup()

    def test_bad_config_refuses_to_start(self):
        d = Sluiced(extra="[limits]\nmax_message_size = \"huge\"\n")
        try:
            p = subprocess.run([SLUICED, "--config", d.config_path], capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 1)
            self.assertIn("limits.max_message_size", p.stderr)
        finally:
            d.cleanup()

    def test_port_in_use(self):
        a = Sluiced().start()
        b = Sluiced(listeners=a.listeners)
        try:
            b.start(wait=False)
            self.assertEqual(b.proc.wait(10), 1)
            self.assertIn("address already in use", b.log())
        finally:
            a.cleanup()
            b.cleanup()


class Reload(unittest.TestCase):
    def test_sighup_applies_new_limits(self):
        d = Sluiced(limits={"max_recipients": 1})
        try:
            d.start()
            c = Client(d.port)
            c.reply()
            c.cmd("HELO c")
            c.cmd("MAIL FROM:<a@example.org>")
            c.cmd("RCPT TO:<b@example.net>")
            self.assertEqual(c.cmd("RCPT TO:<c@example.net>")[:3], b"452")
            text = open(d.config_path).read().replace("max_recipients = 1", "max_recipients = 2")
            d.write_config(text)
            d.proc.send_signal(signal.SIGHUP)
            d.wait_log("reload: configuration re-read")
            # The old session keeps its limits; a new one gets the new ones.
            c2 = Client(d.port)
            c2.reply()
            c2.cmd("HELO c")
            c2.cmd("MAIL FROM:<a@example.org>")
            c2.cmd("RCPT TO:<b@example.net>")
            self.assertEqual(c2.cmd("RCPT TO:<c@example.net>")[:3], b"250")
            # A broken file is refused and the daemon keeps running.
            d.write_config(text + "\nbroken = = =\n")
            d.proc.send_signal(signal.SIGHUP)
            d.wait_log("keeping the running one")
            self.assertIsNone(d.proc.poll())
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
