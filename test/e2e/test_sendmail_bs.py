"""sluice-sendmail -bs end to end: SMTP over a pipe, as Symfony Mailer
(`sendmail://default?command=/usr/sbin/sendmail%20-bs`) and Laravel
(`/usr/sbin/sendmail -bs -i`) run it. Each accepted message becomes a
maildrop file and is delivered by the real sluiced to the sinks of
test_delivery. Before issue 13 the binary refused -bs with exit 64.
"""
import os
import shutil
import subprocess
import unittest

import test_sendmail as ts
from test_sendmail import SENDMAIL, SendmailCase, have_root

SYMFONY_MAILER = "/usr/share/php/Symfony/Component/Mailer/autoload.php"  # Debian's php-symfony-mailer
SYMFONY_SCRIPT = """<?php
require '%s';
use Symfony\\Component\\Mailer\\Mailer;
use Symfony\\Component\\Mailer\\Transport;
use Symfony\\Component\\Mime\\Email;
$mailer = new Mailer(Transport::fromDsn('sendmail://default?command=' . rawurlencode($argv[1])));
foreach ([1, 2] as $i) {
    $mailer->send((new Email())->from('app@sender.test')->to('bob@example.test')
        ->bcc('carol@example.test')->subject("symfony $i")->text("hello $i"));
}
echo "sent\\n";
"""


class BsClient:
    """sluice-sendmail -bs as a child process, spoken to line by line."""

    def __init__(self, config_path, args=("-bs",), user=None):
        cmd = [SENDMAIL, "-C", config_path] + list(args)
        if user is not None:
            cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
        env = dict(os.environ)
        env.pop("SLUICE_CONFIG", None)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)

    def reply(self):
        """One whole reply (all its lines), as bytes."""
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError("sluice-sendmail -bs ended without a reply; got %r, stderr %r"
                                     % (b"".join(lines), self.proc.stderr.read()))
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def cmd(self, line):
        self.send(line + b"\r\n")
        return self.reply()

    def finish(self, timeout=30):
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=timeout)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc, err


class SendmailBs(SendmailCase):
    def bs(self, **kw):
        c = BsClient(self.d.config_path, **kw)
        self.addCleanup(lambda: c.proc.poll() is None and c.proc.kill())
        return c

    def maildrop_names(self):
        return sorted(os.listdir(self.maildrop()))

    def test_bs_dialogue_over_a_pipe_delivers_every_message(self):
        c = self.bs()
        greeting = c.reply()
        self.assertTrue(greeting.startswith(b"220 mx.sluice.test ESMTP"), greeting)
        ehlo = c.cmd(b"EHLO [127.0.0.1]")
        self.assertTrue(ehlo.startswith(b"250-mx.sluice.test\r\n"), ehlo)
        self.assertIn(b"PIPELINING", ehlo)
        self.assertNotIn(b"STARTTLS", ehlo)
        self.assertNotIn(b"AUTH", ehlo)
        # First message: as Symfony sends it.
        self.assertEqual(c.cmd(b"MAIL FROM:<app@sender.test>"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.cmd(b"RCPT TO:<bob@example.test>"), b"250 2.1.5 Ok\r\n")
        self.assertEqual(c.cmd(b"RCPT TO:<carol@example.test>"), b"250 2.1.5 Ok\r\n")
        self.assertTrue(c.cmd(b"DATA").startswith(b"354 "))
        c.send(b"Subject: first\r\nTo: bob@example.test\r\n\r\n..leading dot\r\nline two\r\n.\r\n")
        first = c.reply()
        self.assertTrue(first.startswith(b"250 2.0.0 Ok: queued as "), first)
        # A transaction abandoned with RSET, then a second message pipelined.
        self.assertEqual(c.cmd(b"MAIL FROM:<x@sender.test>"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.cmd(b"RSET"), b"250 2.0.0 Ok\r\n")
        c.send(b"MAIL FROM:<>\r\nRCPT TO:<dave@example.test>\r\nDATA\r\n")
        self.assertEqual(c.reply(), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.reply(), b"250 2.1.5 Ok\r\n")
        self.assertTrue(c.reply().startswith(b"354 "))
        c.send(b"Subject: second\r\n\r\nbody\r\n.\r\n")
        self.assertTrue(c.reply().startswith(b"250 2.0.0 Ok: queued as "))
        # A bad command is answered and the dialogue goes on.
        self.assertTrue(c.cmd(b"STARTTLS").startswith(b"502 "))
        self.assertEqual(c.cmd(b"QUIT"), b"221 2.0.0 Bye\r\n")
        rc, err = c.finish()
        self.assertEqual(rc, 0, err)

        msgs = self.delivered(2)
        by_subject = {m[2].split(b"Subject: ")[1].split(b"\r\n")[0]: m for m in msgs}
        mail_from, rcpts, content = by_subject[b"first"]
        self.assertEqual(mail_from, "app@sender.test")
        self.assertEqual(sorted(rcpts), ["bob@example.test", "carol@example.test"])
        self.assertTrue(content.startswith(b"Received: by mx.sluice.test (Sluice, from userid 0)"),
                        content[:200])
        for h in (b"\r\nDate: ", b"\r\nFrom: app@sender.test\r\n", b"\r\nMessage-ID: <"):
            self.assertIn(h, content)
        self.assertIn(b"\r\n.leading dot\r\nline two\r\n", content)
        mail_from, rcpts, content = by_subject[b"second"]
        self.assertEqual(mail_from, "<>")  # aiosmtpd's null sender
        self.assertEqual(rcpts, ["dave@example.test"])
        self.assertIn(b"\r\nFrom: root@mx.sluice.test\r\n", content)  # the null sender: the login
        self.assertEqual(self.maildrop_names(), [])

    def test_eof_in_the_middle_of_data_leaves_no_file(self):
        c = self.bs()
        c.reply()
        c.send(b"EHLO app\r\nMAIL FROM:<app@sender.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        self.assertTrue(c.reply().startswith(b"250-"))
        self.assertEqual(c.reply(), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.reply(), b"250 2.1.5 Ok\r\n")
        self.assertTrue(c.reply().startswith(b"354 "))
        c.send(b"Subject: cut short\r\n\r\nhalf of it\r\n.")
        rc, err = c.finish()
        self.assertEqual(rc, 0, err)
        self.assertIn(b"middle of DATA", err)
        self.assertEqual(self.maildrop_names(), [])
        # A complete message afterwards shows the daemon was watching.
        c = self.bs()
        c.reply()
        c.send(b"HELO app\r\nMAIL FROM:<app@sender.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
               b"Subject: whole\r\n\r\nall of it\r\n.\r\nQUIT\r\n")
        for _ in range(4):
            c.reply()
        self.assertTrue(c.reply().startswith(b"250 2.0.0 Ok: queued as "))
        self.assertEqual(c.reply(), b"221 2.0.0 Bye\r\n")
        self.assertEqual(c.finish()[0], 0)
        msgs = self.delivered(1)
        self.assertEqual(len(msgs), 1)
        self.assertIn(b"Subject: whole", msgs[0][2])

    def test_message_over_the_size_limit_is_refused(self):
        limit = 64 * 1024  # the [limits] of make_daemon below
        c = self.bs()
        c.reply()
        ehlo = c.cmd(b"EHLO app")
        self.assertIn(b"250-SIZE %d\r\n" % (limit - 1024), ehlo)
        self.assertEqual(c.cmd(b"MAIL FROM:<app@sender.test> SIZE=%d" % limit),
                         b"552 5.3.4 Message size exceeds fixed limit\r\n")
        self.assertEqual(c.cmd(b"MAIL FROM:<app@sender.test>"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.cmd(b"RCPT TO:<bob@example.test>"), b"250 2.1.5 Ok\r\n")
        self.assertTrue(c.cmd(b"DATA").startswith(b"354 "))
        c.send(b"Subject: big\r\n\r\n" + (b"x" * 900 + b"\r\n") * 80 + b".\r\n")
        self.assertEqual(c.reply(), b"552 5.3.4 Error: message size exceeds fixed limit\r\n")
        self.assertEqual(c.cmd(b"QUIT"), b"221 2.0.0 Bye\r\n")
        self.assertEqual(c.finish()[0], 0)
        self.assertEqual(self.maildrop_names(), [])

    def make_daemon(self, extra, dns_servers):
        d = super().make_daemon(extra, dns_servers)
        with open(d.config_path) as f:
            text = f.read()
        d.write_config(text.replace("[dns]", "[limits]\nmax_message_size = \"64K\"\n[dns]", 1))
        return d

    @unittest.skipUnless(shutil.which("php") and os.path.exists(SYMFONY_MAILER),
                         "needs php-cli and php-symfony-mailer (scripts/deps --test)")
    def test_symfony_mailer_sendmail_transport(self):
        """Symfony Mailer's own sendmail transport in -bs mode, two messages
        through one sluice-sendmail process, Bcc removed by Symfony."""
        script = os.path.join(self.d.dir, "send.php")
        with open(script, "w") as f:
            f.write(SYMFONY_SCRIPT % SYMFONY_MAILER)
        command = "%s -C %s -bs" % (SENDMAIL, self.d.config_path)
        r = subprocess.run(["php", script, command], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout, b"sent\n", r.stderr)
        got = sorted(self.delivered(2), key=lambda m: m[2].split(b"Subject: ")[1])
        for i, (mail_from, rcpts, content) in enumerate(got, 1):
            self.assertEqual(mail_from, "app@sender.test")
            self.assertEqual(sorted(rcpts), ["bob@example.test", "carol@example.test"])
            self.assertIn(b"Subject: symfony %d\r\n" % i, content)
            self.assertNotIn(b"carol", content)  # Bcc only in the envelope
            self.assertIn(b"(Sluice, from userid 0)", content)

    def test_recipients_as_arguments_are_a_usage_error(self):
        r = subprocess.run([SENDMAIL, "-C", self.d.config_path, "-bs", "bob@example.test"],
                           input=b"", capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 64)
        self.assertIn(b"RCPT TO", r.stderr)


@unittest.skipUnless(have_root(), "needs root: a setgid binary and another user")
class BsAsNobody(ts.NonRootUser):  # (not imported by name: it would run here too)
    """Laravel's '/usr/sbin/sendmail -bs -i' run by a web server's user
    through the installed setgid binary: the dialogue on a pipe, the
    maildrop written with the group's privilege, the uid in Received."""

    def test_laravel_command_line_as_nobody(self):
        dialogue = (b"EHLO app.example\r\nMAIL FROM:<www@sender.test>\r\nRCPT TO:<bob@example.test>\r\n"
                    b"DATA\r\nSubject: from laravel\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        r = self.sendmail_as_nobody_with_the_system_config(["-bs", "-i"], dialogue)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"\r\n250 2.0.0 Ok: queued as ", r.stdout)
        self.assertTrue(r.stdout.endswith(b"221 2.0.0 Bye\r\n"), r.stdout)
        mail_from, rcpts, content = self.delivered()[0]
        self.assertEqual(mail_from, "www@sender.test")
        self.assertEqual(rcpts, ["bob@example.test"])
        self.assertIn(b"(Sluice, from userid 65534)", content)


# Only the test above: the inherited ones run in test_sendmail.
for _name in [n for n in dir(ts.NonRootUser) if n.startswith("test_")]:
    setattr(BsAsNobody, _name, None)


if __name__ == "__main__":
    unittest.main()
