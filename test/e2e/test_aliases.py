"""[aliases] end to end: mail to root, postmaster and other local names,
from sluice-sendmail and over SMTP, goes to the addresses the configuration
names (delivered by the real sluiced to the sinks of test_delivery); an
unknown local name is refused (EX_NOUSER, 550 5.1.1) with a warning; a
change takes effect on SIGHUP; --check and start-up warn when root has no
entry. Before issue 13, `sluice-sendmail root` queued root@mx.sluice.test,
which the daemon then tried to deliver to its own host.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

import test_delivery as td
from harness import SLUICED, Client
from test_sendmail import SendmailCase

EX_NOUSER = 67

ALIASES = """
[aliases]
root = ["admin@example.test"]
"www-data" = ["dev@example.test", "ops@example.test"]
"""


class AliasCase(SendmailCase):
    aliases = ALIASES

    def make_daemon(self, extra, dns_servers):
        return super().make_daemon(extra + self.aliases, dns_servers)

    def smtp(self):
        c = Client(self.d.port)
        self.addCleanup(c.close)
        self.assertTrue(c.reply().startswith(b"220 "))
        self.assertTrue(c.cmd("EHLO app.test").startswith(b"250"))
        return c

    def send_smtp(self, rcpts, subject):
        """One message from the trusted relay port; the RCPT replies."""
        c = self.smtp()
        self.assertEqual(c.cmd("MAIL FROM:<app@sender.test>")[:3], b"250")
        replies = [c.cmd("RCPT TO:%s" % r) for r in rcpts]
        if any(r.startswith(b"250") for r in replies):
            self.assertTrue(c.cmd("DATA").startswith(b"354"))
            c.send(b"Subject: %s\r\n\r\nhello\r\n.\r\n" % subject.encode())
            self.assertTrue(c.reply().startswith(b"250 2.0.0"))
        c.cmd("QUIT")
        return replies

    def by_subject(self, n):
        msgs = self.delivered(n)
        return {m[2].split(b"Subject: ")[1].split(b"\r\n")[0].decode(): m for m in msgs}


class Aliases(AliasCase):
    def test_sendmail_root_arrives_at_the_alias_target(self):
        r = self.sendmail(["root", "www-data@LOCALHOST"], b"To: root\nSubject: cron\n\nout\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        mail_from, rcpts, content = self.delivered()[0]
        self.assertEqual(sorted(rcpts), ["admin@example.test", "dev@example.test", "ops@example.test"])
        self.assertIn(b"\r\nTo: root\r\n", content)  # the header is not rewritten
        self.assertEqual(len(self.mx.messages), 1)

    def test_sendmail_unknown_local_name_is_ex_nouser(self):
        r = self.sendmail(["nobody", "bob@example.test"], b"Subject: x\n\ny\n")
        self.assertEqual(r.returncode, EX_NOUSER, r.stderr)
        self.assertIn(b"no such local user: nobody@mx.sluice.test", r.stderr)
        self.assertEqual(os.listdir(self.maildrop()), [])

    def test_smtp_local_names_are_rewritten_and_unknown_ones_refused(self):
        replies = self.send_smtp(["<root@MX.SLUICE.TEST>", "<www-data@localhost>", "<nobody@mx.sluice.test>"],
                                 "one")
        self.assertEqual(replies[:2], [b"250 2.1.5 Ok\r\n"] * 2)
        self.assertEqual(replies[2],
                         b"550 5.1.1 <nobody@mx.sluice.test>: Recipient address rejected: no such local user\r\n")
        self.assertEqual(self.send_smtp(["<postmaster>"], "two"), [b"250 2.1.5 Ok\r\n"])
        self.assertEqual(self.send_smtp(["<ROOT@localhost>", "<Postmaster@mx.sluice.test>"], "three"),
                         [b"250 2.1.5 Ok\r\n"] * 2)
        got = self.by_subject(3)
        self.assertEqual(sorted(got["one"][1]), ["admin@example.test", "dev@example.test", "ops@example.test"])
        self.assertEqual(got["two"][1], ["admin@example.test"])
        self.assertEqual(got["three"][1], ["admin@example.test"])  # the same target once
        warnings = [l for l in self.d.log().splitlines() if "warning" in l and "nobody@mx.sluice.test" in l]
        self.assertEqual(len(warnings), 1, self.d.log())
        self.assertIn("550 5.1.1", warnings[0])

    def test_postmaster_from_an_untrusted_client_is_accepted(self):
        # The relay port trusts 127.0.0.0/8; connect from elsewhere is not
        # possible here, so trust nobody instead.
        with open(self.d.config_path) as f:
            text = f.read()
        self.d.write_config(text.replace("[dns]", '[relay]\ntrusted_networks = []\n[dns]', 1))
        self.d.proc.send_signal(1)
        self.d.wait_log("reload: configuration re-read")
        replies = self.send_smtp(["<root@mx.sluice.test>", "<postmaster>"], "pm")
        self.assertEqual(replies[0], b"554 5.7.1 <root@mx.sluice.test>: Relay access denied\r\n")
        self.assertEqual(replies[1], b"250 2.1.5 Ok\r\n")
        self.assertEqual(self.by_subject(1)["pm"][1], ["admin@example.test"])

    def test_an_alias_change_takes_effect_after_sighup(self):
        self.assertEqual(self.send_smtp(["<root@mx.sluice.test>"], "before"), [b"250 2.1.5 Ok\r\n"])
        with open(self.d.config_path) as f:
            text = f.read()
        text = text.replace('root = ["admin@example.test"]', 'root = ["new-admin@example.test"]\n"*" = ["catch@example.test"]')
        self.d.write_config(text)
        self.d.proc.send_signal(1)
        self.d.wait_log("reload: configuration re-read")
        self.assertEqual(self.send_smtp(["<root@mx.sluice.test>", "<anyone@localhost>"], "after"),
                         [b"250 2.1.5 Ok\r\n"] * 2)
        r = self.sendmail(["whoever"], b"Subject: via sendmail\n\nx\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = self.by_subject(3)
        self.assertEqual(got["before"][1], ["admin@example.test"])
        self.assertEqual(sorted(got["after"][1]), ["catch@example.test", "new-admin@example.test"])
        self.assertEqual(got["via sendmail"][1], ["catch@example.test"])

    def drop_file(self, name, rcpts, subject):
        """A maildrop file as an older sluice-sendmail (or one run under
        another configuration) wrote it: local recipients not expanded."""
        body = b"Subject: %s\r\n\r\nhi\r\n" % subject
        head = b"SLUICE-MAILDROP 1\nsender a@sender.test\n" + b"".join(b"rcpt %s\n" % r for r in rcpts)
        tmp = os.path.join(self.maildrop(), name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(head + b"size %d\n\n" % len(body) + body)
        os.rename(tmp, os.path.join(self.maildrop(), name))

    def test_pickup_expands_local_names_and_sets_aside_unknown_ones(self):
        self.drop_file("0000000000000000aaaa", [b"root@mx.sluice.test", b"bob@example.test"], b"old")
        mail_from, rcpts, content = self.delivered()[0]
        self.assertEqual(sorted(rcpts), ["admin@example.test", "bob@example.test"])
        self.drop_file("0000000000000000bbbb", [b"bob@example.test", b"nobody@localhost"], b"lost")
        self.d.wait_log("moved to")
        self.assertEqual(os.listdir(os.path.join(self.d.spool, "corrupt")), ["0000000000000000bbbb"])
        line = [l for l in self.d.log().splitlines() if "0000000000000000bbbb" in l][0]
        self.assertIn("error: maildrop", line)  # as for every file set aside
        self.assertIn("<nobody@localhost> is a local name without an [aliases] entry", line)
        self.assertEqual(len(self.mx.messages), 1)

    def test_newaliases_says_where_aliases_live(self):
        r = self.sendmail(["-bi"], b"")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"[aliases]", r.stdout)
        self.assertIn(b"2 names", r.stdout)
        self.assertNotIn(b"warning", r.stdout)


class NoAliases(AliasCase):
    """No [aliases] at all: every local name is refused, postmaster too,
    and the start-up log says why."""
    aliases = ""

    def test_without_root_mail_to_local_names_is_refused_and_start_up_warns(self):
        self.d.wait_log("root has no entry")
        self.assertIn("warning", [l for l in self.d.log().splitlines() if "root has no entry" in l][0])
        self.assertEqual(self.send_smtp(["<postmaster>"], "x")[0][:10], b"550 5.1.1 ")
        r = self.sendmail(["root"], b"Subject: x\n\ny\n")
        self.assertEqual(r.returncode, EX_NOUSER, r.stderr)
        r = self.sendmail(["-bi"], b"")
        self.assertIn(b"warning: aliases: root has no entry", r.stdout)


class CheckAliases(unittest.TestCase):
    def check(self, aliases):
        d = tempfile.mkdtemp(prefix="sluice-aliases-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "sluice.toml")
        with open(path, "w") as f:
            f.write('hostname = "mx.sluice.test"\nuser = "root"\nspool_dir = "%s"\n'
                    '[[listener]]\naddress = "127.0.0.1:2525"\nmode = "relay"\n%s' % (d, aliases))
        return subprocess.run([SLUICED, "--check", "--config", path], capture_output=True, timeout=30)

    def test_check_warns_when_root_has_no_entry(self):
        r = self.check("")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"warning: aliases: root has no entry", r.stderr)
        r = self.check('[aliases]\nroot = ["admin@example.test"]\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(b"warning", r.stderr)

    def test_check_names_the_key_of_a_bad_target(self):
        r = self.check('[aliases]\nroot = ["admin"]\nwww = ["x@MX.sluice.test"]\n')
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"aliases.root[1]: \"admin\" is not an address", r.stderr)
        self.assertIn(b"aliases.www[1]: \"x@MX.sluice.test\" is itself local", r.stderr)


if __name__ == "__main__":
    unittest.main()
