"""SIGHUP re-reads everything that can change without rebinding (issue 13,
items 7 and 8; docs/configuration.md, "Reloading"):

- a wrong relayhost password fixed by SIGHUP alone: the first attempt gets
  535 (a warning, counted in `sluicectl status`), the password file is
  fixed, SIGHUP, `sluicectl queue flush`, and the mail is delivered with
  the new password (the relayhost is aiosmtpd with AUTH over STARTTLS and
  a certificate from a test CA);
- [dns] servers and [delivery] port take effect on reload;
- a listener change is logged as needing a restart, and the old listener
  keeps serving;
- a reload is all or nothing: a broken users file (its errors one per
  line, never joined by an escaped newline) keeps the running users *and*
  the running limits, and is counted as a configuration warning.
"""
import json
import os
import signal
import smtplib
import subprocess
import unittest

import test_delivery as td
from harness import Client, Sluiced, SubmissionSluiced, free_port, user_line
from test_delivery import wait_for

SLUICECTL = os.environ.get("SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))


def ctl(d, *args):
    r = subprocess.run([SLUICECTL, "--config", d.config_path] + list(args), capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("sluicectl %s exited %d: %s" % (args, r.returncode, r.stderr.decode()))
    return r.stdout.decode()


def status(d):
    return json.loads(ctl(d, "status", "--json"))


def config_text(d):
    with open(d.config_path) as f:
        return f.read()


def reload(d, done="reload: configuration re-read"):
    before = d.log().count(done)
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.log().count(done) > before, timeout=10, what=done)


class SlowRetries(td.Delivery):
    """Deliveries whose retries are an hour away: only a flush retries."""

    def make_daemon(self, extra, dns_servers):
        return Sluiced(extra=extra.replace('retry_schedule = ["1s"]', 'retry_schedule = ["1h"]'),
                       dns_servers=dns_servers)

    def flush_and_wait_delivery(self):
        ctl(self.d, "queue", "flush")
        wait_for(lambda: self.mx.messages, timeout=15, what="delivery after the reload")
        self.d.wait_log("status=sent")


class RelayhostPasswordFixedBySighup(SlowRetries):
    relayhost = lambda self: "[127.0.0.2]:%d" % self.port
    sink_tls = True
    sink_auth = ("relayuser", "wrong pass")   # what the file says at first
    sink_expects = ("relayuser", "right pass")  # what the relayhost wants

    def test_a_fixed_password_file_takes_effect_on_sighup(self):
        self.submit("alice@sender.test", ["carol@nowhere.invalid"])
        self.d.wait_log("status=deferred", timeout=15)
        self.assertIn("dsn=4.7.8", self.d.log())
        self.assertEqual(self.mx.messages, [])

        # The administrator fixes the file and reloads: nothing else.
        with open(os.path.join(self.work, "relay-password"), "w") as f:
            f.write("right pass\n")
        reload(self.d)
        self.flush_and_wait_delivery()
        self.assertIn("delivery: settings reloaded", self.d.log())
        self.assertEqual(self.auth_seen[-1][1:], (b"relayuser", b"right pass"))
        self.assertEqual(len(self.auth_seen), 2)

        # The failure was a warning an administrator finds with grep, naming
        # what to fix, and counted in sluicectl status.
        log = self.d.log()
        line = next(l for l in log.splitlines() if "relayhost login relayuser failed" in l)
        self.assertIn(" warning: ", line)
        self.assertIn("535 5.7.8", line)
        self.assertIn("delivery.relayhost_password_file", line)
        self.assertNotIn("wrong pass", log)
        self.assertNotIn("right pass", log)
        st = status(self.d)
        self.assertEqual(st["warnings"]["relayhost_auth"], 1)
        self.assertEqual(st["warnings"]["total"], 1)
        self.assertIn("relayhost login 1", ctl(self.d, "status"))
        self.assert_spool_empty()


class DnsServersReloaded(SlowRetries):
    def make_daemon(self, extra, dns_servers):
        self.good_dns = dns_servers
        return super().make_daemon(extra, ["127.0.0.1:9"])  # nothing answers there

    def test_new_dns_servers_take_effect_on_sighup(self):
        self.submit("alice@sender.test", ["bob@example.test"])
        self.d.wait_log("status=deferred", timeout=20)
        text = config_text(self.d).replace('"127.0.0.1:9"', '"%s"' % self.good_dns[0])
        self.d.write_config(text)
        reload(self.d)
        self.d.wait_log("(new resolver)")
        self.flush_and_wait_delivery()
        self.assertEqual(self.mx.messages[0][1], ["bob@example.test"])


class DeliveryPortReloaded(SlowRetries):
    def make_daemon(self, extra, dns_servers):
        self.closed_port = free_port("127.0.0.2")
        return super().make_daemon(extra.replace("port = %d" % self.port, "port = %d" % self.closed_port),
                                   dns_servers)

    def test_a_new_delivery_port_takes_effect_on_sighup(self):
        self.submit("alice@sender.test", ["bob@example.test"])
        self.d.wait_log("status=deferred", timeout=15)
        self.assertEqual(self.mx.messages, [])
        text = config_text(self.d).replace("port = %d" % self.closed_port, "port = %d" % self.port)
        self.d.write_config(text)
        reload(self.d)
        self.flush_and_wait_delivery()
        self.d.wait_log("relay=mx.example.test[127.0.0.2]:%d" % self.port)


class ListenerNeedsRestart(unittest.TestCase):
    def test_a_listener_change_is_logged_as_needing_a_restart(self):
        d = Sluiced()
        try:
            d.start()
            new_port = free_port()
            d.write_config(config_text(d).replace("127.0.0.1:%d" % d.port, "127.0.0.1:%d" % new_port))
            reload(d)
            line = next(l for l in d.log().splitlines() if "reload: listener changed" in l)
            self.assertIn(" warning: ", line)
            self.assertIn("127.0.0.1:%d=relay -> 127.0.0.1:%d=relay" % (d.port, new_port), line)
            self.assertIn("needs a restart", line)
            c = Client(d.port)   # the running listener stays
            self.assertEqual(c.code(), 220)
            c.close()
        finally:
            d.cleanup()


class BrokenUsersFileKeepsEverything(unittest.TestCase):
    def test_errors_one_per_line_and_nothing_changes(self):
        d = SubmissionSluiced(users=[user_line("alice@example.org", "Alice-pw-1")], relay=True,
                              limits={"max_recipients": 1})
        try:
            d.start()
            # A new limit and a broken users file in one reload: neither applies.
            d.write_config(config_text(d).replace("max_recipients = 1", "max_recipients = 5"))
            with open(d.users_path, "w") as f:
                f.write("carol@example.org\nbob:$6$x$y:@bad domain\n")
            d.proc.send_signal(signal.SIGHUP)
            d.wait_log("keeping the running one")
            lines = [l for l in d.log().splitlines() if "reload: users:" in l]
            self.assertGreaterEqual(len(lines), 2, d.log())
            for l in lines:
                self.assertIn(" warning: ", l)
            self.assertNotIn("\\x0a", d.log())
            self.assertEqual(status(d)["warnings"]["config"], len(lines))
            c = Client(d.relay_port)
            c.reply()
            c.cmd("HELO c")
            c.cmd("MAIL FROM:<a@example.org>")
            c.cmd("RCPT TO:<b@example.net>")
            self.assertEqual(c.cmd("RCPT TO:<c@example.net>")[:3], b"452")  # the old limit
            c.close()
            # The old accounts still log in.
            from harness import smtp_ssl, tls_context
            with smtp_ssl(d.port465, tls_context(d.cert_path)) as s:
                s.login("alice@example.org", "Alice-pw-1")
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
