"""sluice-sendmail end to end: local programs hand mail to the running daemon
through the maildrop, and it is delivered by the real sluiced to the sinks of
test_delivery (fake DNS, aiosmtpd on 127.0.0.2 for example.test and 127.0.0.3
for sender.test). Also: mail dropped while the daemon is stopped, a non-root
user through the setgid binary (Postfix's postdrop model), exit codes, and
`mailq`.
"""
import grp
import os
import shutil
import stat
import subprocess
import time
import unittest

import test_delivery as td
from harness import Sluiced

SENDMAIL = os.environ.get("SLUICE_SENDMAIL",
                          os.path.join(os.path.dirname(__file__), "../../build/exe/sluice-sendmail"))

EX_USAGE, EX_DATAERR, EX_CONFIG = 64, 65, 78


def have_root():
    return os.geteuid() == 0


class SendmailCase(td.Delivery):
    retry = "1s"

    def make_daemon(self, extra, dns_servers):
        extra = extra.replace('retry_schedule = ["1s"]', 'retry_schedule = ["%s"]' % self.retry)
        return Sluiced(extra=extra, dns_servers=dns_servers)

    def sendmail(self, args, stdin, user=None, binary=None, env=None):
        cmd = [binary or SENDMAIL, "-C", self.d.config_path] + list(args)
        if user is not None:
            cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
        e = dict(os.environ)
        e.pop("SLUICE_CONFIG", None)
        if env:
            e.update(env)
        return subprocess.run(cmd, input=stdin, capture_output=True, timeout=30, env=e)

    def maildrop(self):
        return os.path.join(self.d.spool, "maildrop")

    def delivered(self, n=1, timeout=15):
        td.wait_for(lambda: len(self.mx.messages) >= n, timeout=timeout, what="%d messages at the sink" % n)
        return self.mx.messages


class Sendmail(SendmailCase):
    def test_t_takes_recipients_from_the_headers_and_removes_bcc(self):
        msg = (b"From: Alice <alice@sender.test>\n"
               b"To: Bob <bob@example.test>, \"Smith, Carol\" <carol@example.test>\n"
               b"Cc: team: dave@example.test, erin@example.test;\n"
               b"Bcc: frank@example.test\n"
               b"Subject: cron output\n"
               b"\n"
               b"line one\n"
               b".\n"
               b"after the dot, kept because of -i\n")
        r = self.sendmail(["-t", "-i", "-f", "alice@sender.test"], msg)
        self.assertEqual(r.returncode, 0, r.stderr)
        mail_from, rcpts, content = self.delivered()[0]
        self.assertEqual(mail_from, "alice@sender.test")
        self.assertEqual(sorted(rcpts), ["bob@example.test", "carol@example.test", "dave@example.test",
                                         "erin@example.test", "frank@example.test"])
        self.assertNotIn(b"Bcc:", content)
        self.assertNotIn(b"frank", content)
        self.assertIn(b"\r\nafter the dot, kept because of -i\r\n", content)
        self.assertTrue(content.startswith(b"Received: by mx.sluice.test (Sluice, from userid 0)"), content[:200])
        for h in (b"\r\nDate: ", b"\r\nMessage-ID: <"):
            self.assertIn(h, content)
        self.assertEqual(content.count(b"\nFrom: "), 1)  # the message's own, not a second one
        self.assertNotIn(b"\r\r", content)
        self.assertNotIn(b"\n\n", content.replace(b"\r\n", b""))  # no bare LF left
        self.d.wait_log("accept maildrop=")
        self.assert_spool_empty()
        self.assertEqual(os.listdir(self.maildrop()), [])

    def test_arguments_f_and_F_and_a_dot_ending_the_input(self):
        msg = b"Subject: disk almost full\n\n/var is at 91%\n.\nnot part of the message\n"
        r = self.sendmail(["-f", "alice@sender.test", "-F", "Backup Robot", "bob@example.test,carol@example.test"],
                          msg)
        self.assertEqual(r.returncode, 0, r.stderr)
        mail_from, rcpts, content = self.delivered()[0]
        self.assertEqual(mail_from, "alice@sender.test")
        self.assertEqual(sorted(rcpts), ["bob@example.test", "carol@example.test"])
        self.assertIn(b"\r\nFrom: Backup Robot <alice@sender.test>\r\n", content)
        self.assertIn(b"/var is at 91%\r\n", content)
        self.assertNotIn(b"not part of the message", content)

    def test_harmless_classic_options_are_accepted(self):
        r = self.sendmail(["-odi", "-oem", "-bm", "-oi", "-v", "-f", "alice@sender.test", "--", "bob@example.test"],
                          b"Subject: classic\n\nhello\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.delivered()[0][1], ["bob@example.test"])

    def test_exit_codes(self):
        r = self.sendmail(["-t"], b"Subject: nobody to send to\n\nx\n")
        self.assertEqual(r.returncode, EX_USAGE, r.stderr)
        self.assertIn(b"recipient", r.stderr.lower())
        r = self.sendmail(["-bd"], b"")
        self.assertEqual(r.returncode, EX_USAGE, r.stderr)
        bad = os.path.join(self.d.dir, "bad.toml")
        with open(bad, "w") as f:
            f.write("hostname = 12\n")
        r = subprocess.run([SENDMAIL, "-C", bad, "bob@example.test"], input=b"x\n", capture_output=True, timeout=30)
        self.assertEqual(r.returncode, EX_CONFIG, r.stderr)
        self.assertIn(b"hostname", r.stderr)
        time.sleep(0.5)
        self.assertEqual(self.mx.messages, [])

    def test_a_broken_file_in_the_maildrop_is_set_aside_not_lost(self):
        path = os.path.join(self.maildrop(), "0000000000000000broken")
        with open(path, "wb") as f:
            f.write(b"this is not a maildrop file\n")
        self.d.wait_log("moved to")
        self.assertEqual(os.listdir(os.path.join(self.d.spool, "corrupt")), ["0000000000000000broken"])
        # The daemon carries on.
        r = self.sendmail(["bob@example.test"], b"Subject: still working\n\nx\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.delivered()


class DaemonStopped(SendmailCase):
    def test_mail_dropped_while_stopped_is_delivered_at_start(self):
        self.d.stop()
        r = self.sendmail(["-f", "alice@sender.test", "bob@example.test"], b"Subject: queued offline\n\nx\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(os.listdir(self.maildrop())), 1)
        time.sleep(0.3)
        self.assertEqual(self.mx.messages, [])
        self.d.start()
        mail_from, rcpts, content = self.delivered()[0]
        self.assertEqual(rcpts, ["bob@example.test"])
        self.assertIn(b"Subject: queued offline", content)
        self.assertEqual(os.listdir(self.maildrop()), [])


@unittest.skipUnless(have_root(), "needs root: a setgid binary and another user")
class NonRootUser(SendmailCase):
    """The installed layout: sluice-sendmail setgid sluicedrop, the maildrop
    owned by the daemon, group sluicedrop, mode 1730."""

    def setUp(self):
        try:
            grp.getgrnam("sluicedrop")
        except KeyError:
            subprocess.run(["groupadd", "--system", "sluicedrop"], check=True)
        super().setUp()
        os.chmod(self.d.dir, 0o711)  # mkdtemp made it 0700: other users must reach the spool
        os.chmod(self.d.config_path, 0o644)
        self.bin = os.path.join(self.d.dir, "bin")
        os.mkdir(self.bin, 0o755)
        self.setgid = os.path.join(self.bin, "sluice-sendmail")
        shutil.copy(SENDMAIL, self.setgid)
        os.chown(self.setgid, 0, grp.getgrnam("sluicedrop").gr_gid)
        os.chmod(self.setgid, 0o2755)

    def test_maildrop_is_shared_with_the_sluicedrop_group(self):
        st = os.stat(self.maildrop())
        self.assertEqual(st.st_gid, grp.getgrnam("sluicedrop").gr_gid)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o1730)

    def sendmail_as_nobody_with_the_system_config(self, args, stdin):
        """A non-root user may not pick the configuration (-C or SLUICE_CONFIG
        give up the setgid privilege), so this runs in a private mount
        namespace where /etc/sluice holds this test's configuration."""
        etc = os.path.join(self.d.dir, "etc-sluice")
        os.mkdir(etc, 0o755)
        shutil.copy(self.d.config_path, os.path.join(etc, "sluice.toml"))
        os.chmod(os.path.join(etc, "sluice.toml"), 0o644)
        os.makedirs("/etc/sluice", exist_ok=True)
        script = 'mount --bind "$1" /etc/sluice && shift && exec "$@"'
        cmd = ["unshare", "--mount", "sh", "-c", script, "sh", etc,
               "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", self.setgid] + list(args)
        env = dict(os.environ)
        env.pop("SLUICE_CONFIG", None)
        return subprocess.run(cmd, input=stdin, capture_output=True, timeout=30, env=env)

    def test_nobody_sends_through_the_setgid_binary(self):
        r = self.sendmail_as_nobody_with_the_system_config(["bob@example.test"], b"Subject: from nobody\n\nhi\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        mail_from, rcpts, content = self.delivered()[0]
        self.assertEqual(mail_from, "nobody@mx.sluice.test")
        self.assertIn(b"(Sluice, from userid 65534)", content)
        self.assertIn(b"uid=65534", self.d.log().encode())

    def test_nobody_without_the_setgid_bit_is_refused_clearly(self):
        plain = os.path.join(self.bin, "plain-sendmail")
        shutil.copy(SENDMAIL, plain)
        os.chmod(plain, 0o755)
        r = self.sendmail(["bob@example.test"], b"Subject: x\n\nx\n", user=65534, binary=plain)
        self.assertIn(r.returncode, (73, 77), r.stderr)  # EX_CANTCREAT / EX_NOPERM
        self.assertIn(b"maildrop", r.stderr)
        time.sleep(0.3)
        self.assertEqual(self.mx.messages, [])

    def test_a_users_own_config_drops_the_setgid_privilege(self):
        # Pointing the privileged binary at a configuration the user wrote
        # (another spool) must not give the user the group's rights there.
        other = os.path.join(self.d.dir, "other")
        os.makedirs(os.path.join(other, "maildrop"))
        os.chmod(other, 0o755)
        os.chown(os.path.join(other, "maildrop"), 0, grp.getgrnam("sluicedrop").gr_gid)
        os.chmod(os.path.join(other, "maildrop"), 0o1730)
        cfg = os.path.join(self.d.dir, "nobody.toml")
        with open(cfg, "w") as f:
            f.write('hostname = "x.test"\nspool_dir = "%s"\n[[listener]]\naddress = "127.0.0.1:1"\nmode = "relay"\n' % other)
        os.chmod(cfg, 0o644)
        os.chown(cfg, 65534, 65534)  # the user's own file
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", self.setgid, "-C", cfg,
                            "bob@example.test"], input=b"x\n", capture_output=True, timeout=30)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.listdir(os.path.join(other, "maildrop")), [])


class Mailq(SendmailCase):
    retry = "1h"

    def test_mailq_lists_the_queue(self):
        self.mx.rules["bob@example.test"] = ["451 4.3.0 greylisted, try later"]
        r = self.sendmail(["-f", "alice@sender.test", "bob@example.test"], b"Subject: q\n\nx\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.d.wait_log("status=deferred")
        link = os.path.join(self.d.dir, "mailq")
        os.symlink(SENDMAIL, link)
        for cmd in ([link, "-C", self.d.config_path], [SENDMAIL, "-C", self.d.config_path, "-bp"]):
            r = subprocess.run(cmd, capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            out = r.stdout.decode()
            self.assertIn("alice@sender.test", out)
            self.assertIn("bob@example.test", out)
            self.assertIn("greylisted", out)
            self.assertIn("deferred", out)


if __name__ == "__main__":
    unittest.main()
