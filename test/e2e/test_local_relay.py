"""Applications on the local relay (issue 13): what broke when real programs
used the relay listener, each reproduced and then shown fixed.

- an application's connection pool (smtp-source -s 200) from a trusted
  address is served, not refused at the banner;
- mail without Date, Message-ID or From gets them on the relay listener
  ([relay] add_missing_headers, on by default);
- a command line that never ends is answered 500 5.5.2 before it ends, and
  the connection is closed once it passes 64 KB;
- a message with more Received fields than limits.max_hops is refused with
  554 5.4.6;
- two daemons that are each other's relayhost stop looping (the hop limit),
  and their spools empty again.

Zone and sinks come from test_delivery.py: example.test's MX is a recording
sink on 127.0.0.2; sender.test's (bounces) one on 127.0.0.3.
"""
import email
import email.policy
import os
import shutil
import subprocess
import time
import unittest

import json

import test_delivery as td
from harness import Client, Sluiced, failed

SLUICECTL = os.environ.get("SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))
SENDMAIL = os.environ.get("SLUICE_SENDMAIL",
                          os.path.join(os.path.dirname(__file__), "../../build/exe/sluice-sendmail"))


def received_fields(n):
    return "".join("Received: from hop%d.example.net by hop%d.example.org; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                   % (i, i + 1) for i in range(n))


class TrustedPool(td.Delivery):
    """Postfix exempts mynetworks from its per-client limits; so does Sluice.
    Before: the 51st connection from 127.0.0.1 got 421 at the banner and
    smtp-source exited non-zero."""

    def test_a_pool_of_200_connections_is_served_and_delivered(self):
        self.d.wait_log("conn=1 disconnect")  # the harness's start-up probe
        n = 200
        p = subprocess.run(["/usr/sbin/smtp-source", "-s", "200", "-m", str(n), "-l", "512",
                            "-f", "app@sender.test", "-t", "pool@example.test",
                            "127.0.0.1:%d" % self.d.port], capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        self.assertNotIn("too many connections", self.d.log())
        td.wait_for(lambda: len(self.mx.messages) >= n, timeout=60, what="%d deliveries" % n)
        self.assertEqual(len(self.mx.messages), n)

    def test_an_untrusted_address_still_has_the_limit(self):
        # The default limit of 50 holds for everyone outside trusted_networks;
        # the relay listener's trust comes from [relay] (127.0.0.0/8 here), so
        # use a listener whose client is outside it: a second daemon that
        # trusts only 127.0.0.9.
        other = Sluiced(trusted=["127.0.0.9/32"], limits={"max_connections_per_client": 3})
        try:
            other.start()
            other.wait_log("conn=1 disconnect")
            held = [Client(other.port) for _ in range(3)]
            self.assertEqual([h.code() for h in held], [220] * 3)
            extra = Client(other.port)
            self.assertEqual(extra.reply()[:9], b"421 4.7.0")
            trusted = [Client(other.port, source="127.0.0.9") for _ in range(5)]
            self.assertEqual([t.code() for t in trusted], [220] * 5)
            for c in held + trusted + [extra]:
                c.close()
        finally:
            other.stop()
            shutil.rmtree(other.dir, ignore_errors=True)


class MissingHeaders(td.Delivery):
    """Python's EmailMessage sets neither Date nor Message-ID; Gmail refuses
    mail without a Message-ID. Before: the relay port passed it on as sent."""

    def test_date_message_id_and_from_are_added_on_the_relay_listener(self):
        self.submit("app@sender.test", ["user@example.test"], "Subject: bare\r\n\r\nno headers\r\n")
        td.wait_for(lambda: self.mx.messages, what="delivery")
        msg = email.message_from_bytes(self.mx.messages[0][2], policy=email.policy.SMTP)
        self.assertEqual(msg["From"], "app@sender.test")
        self.assertRegex(msg["Message-ID"], r"^<\d{14}\.[0-9A-Z]+@mx\.sluice\.test>$")
        self.assertIsNotNone(msg["Date"].datetime)
        self.assertEqual(msg["Subject"], "bare")
        self.assertEqual(msg.get_content().strip(), "no headers")
        # The log's accept line names the Message-ID that was added.
        self.assertIn("msgid=%s" % msg["Message-ID"], self.d.log())

    def test_the_senders_own_fields_are_kept(self):
        own = ("From: App <app@sender.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
               "Message-ID: <own@sender.test>\r\nSubject: full\r\n\r\nbody\r\n")
        self.submit("bounces@sender.test", ["user@example.test"], own)
        td.wait_for(lambda: self.mx.messages, what="delivery")
        content = self.mx.messages[0][2]
        self.assertEqual(content.count(b"\nFrom: "), 1)
        self.assertEqual(content.count(b"\nDate: "), 1)
        self.assertEqual(content.count(b"\nMessage-ID: "), 1)
        self.assertIn(b"From: App <app@sender.test>\r\n", content)


class MissingHeadersOff(td.Delivery):
    delivery_extra = "[relay]\nadd_missing_headers = false\n"

    def test_the_message_stays_as_sent(self):
        self.submit("app@sender.test", ["user@example.test"], "Subject: bare\r\n\r\nno headers\r\n")
        td.wait_for(lambda: self.mx.messages, what="delivery")
        content = self.mx.messages[0][2]
        for name in (b"Date:", b"Message-ID:", b"From:"):
            self.assertNotIn(b"\n" + name, content)


class EndlessLine(unittest.TestCase):
    """RFC 5321 §4.5.3.1.4. Before: the line was dropped silently until its
    end, so the client learnt nothing, however long it went on."""

    def setUp(self):
        self.d = Sluiced().start()

    def tearDown(self):
        self.d.stop()
        shutil.rmtree(self.d.dir, ignore_errors=True)

    def test_500_before_the_line_ends_and_closed_past_64_kb(self):
        c = Client(self.d.port)
        self.assertEqual(c.code(), 220)
        c.send("NOOP " + "a" * 2000)  # no line end
        c.sock.settimeout(5)
        self.assertEqual(c.reply(), b"500 5.5.2 Error: line too long\r\n")
        for _ in range(15):  # ~62 KB in all: still open, nothing more said
            c.send("a" * 4000)
        c.send("\r\nNOOP\r\n")
        self.assertEqual(c.reply(), b"250 2.0.0 Ok\r\n")
        c.send("b" * 70000)
        self.assertEqual(c.reply(), b"500 5.5.2 Error: line too long\r\n")
        self.assertEqual(c.reply(), b"421 4.7.0 Error: line too long, closing connection\r\n")
        self.assertTrue(c.closed())
        c.close()
        ok = Client(self.d.port)
        self.assertEqual(ok.code(), 220)
        self.assertEqual(ok.cmd("QUIT")[:3], b"221")
        ok.close()
        self.assertIn("421 4.7.0 Error: line too long, closing connection", self.d.log())


class HopLimit(unittest.TestCase):
    """RFC 5321 §6.3: a message that has passed limits.max_hops (100)
    Received fields is refused with 554 5.4.6."""

    def setUp(self):
        self.d = Sluiced(limits={"max_message_size": "1M"}).start()

    def tearDown(self):
        self.d.stop()
        shutil.rmtree(self.d.dir, ignore_errors=True)

    def send(self, hops):
        c = Client(self.d.port)
        c.code()
        c.cmd("EHLO loop.test")
        c.cmd("MAIL FROM:<a@sender.test>")
        c.cmd("RCPT TO:<b@example.test>")
        self.assertEqual(c.cmd("DATA")[:3], b"354")
        c.send(received_fields(hops) + "Subject: hops\r\n\r\nx\r\n.\r\n")
        r = c.reply()
        c.cmd("QUIT")
        c.close()
        return r

    def test_101_received_fields_are_refused_100_accepted(self):
        self.assertEqual(self.send(101), b"554 5.4.6 Error: too many hops\r\n")
        self.assertEqual(self.send(100)[:3], b"250")
        self.d.stop()
        self.assertEqual(len(self.d.spool_messages(body=False)), 1)
        self.assertIn("554 5.4.6", self.d.log())

    def test_sluice_sendmail_refuses_past_max_hops_too(self):
        def sendmail(hops):
            return subprocess.run([SENDMAIL, "-C", self.d.config_path, "b@example.test"],
                                  input=(received_fields(hops) + "Subject: hops\r\n\r\nx\r\n").encode(),
                                  capture_output=True, timeout=30)
        r = sendmail(101)
        self.assertEqual(r.returncode, 65, r.stderr)  # EX_DATAERR
        self.assertIn(b"101 Received header fields, more than limits.max_hops (100)", r.stderr)
        self.assertEqual(sendmail(100).returncode, 0)


class TwoDaemonsEachOthersRelayhost(unittest.TestCase):
    """A sends everything to B and B to A. Before: the message went round
    for ever, a new queue file at every hop. Now each hop adds a Received
    field until one of them refuses it (554 5.4.6); the bounce (null sender)
    loops the same way and is dropped; both spools empty again."""

    def setUp(self):
        self.a = Sluiced()
        self.b = Sluiced()
        for me, other, name in ((self.a, self.b, "a"), (self.b, self.a, "b")):
            with open(me.config_path) as f:
                text = f.read().replace('hostname = "mx.sluice.test"', 'hostname = "%s.sluice.test"' % name)
            text += '[delivery]\nrelayhost = "[127.0.0.1]:%d"\nretry_schedule = ["1s"]\n' % other.port
            me.write_config(text)
        self.a.start()
        self.b.start()

    def tearDown(self):
        for d in (self.a, self.b):
            d.stop()
            if failed(self):
                print("---- %s ----\n%s" % (d.config_path, d.log()[-4000:]))
            shutil.rmtree(d.dir, ignore_errors=True)

    @staticmethod
    def queued(d):
        r = subprocess.run([SLUICECTL, "--config", d.config_path, "status", "--json"],
                           capture_output=True, timeout=30, check=True)
        return json.loads(r.stdout)["queue"]["messages"]

    def accepted(self):
        return sum(d.log().count(": accept conn=") for d in (self.a, self.b))

    def test_the_loop_ends_and_the_spools_empty(self):
        import smtplib
        with smtplib.SMTP("127.0.0.1", self.a.port, timeout=10) as s:
            s.sendmail("app@sender.test", ["someone@example.test"], "Subject: loop\r\n\r\nround\r\n")
        td.wait_for(lambda: "554 5.4.6" in self.a.log() + self.b.log(), timeout=120,
                    what="a 554 5.4.6 refusal")
        # The bounce goes round once more and is dropped (null sender);
        # then nothing moves any more.
        deadline = time.time() + 120
        last = -1
        while time.time() < deadline:
            n = self.accepted()
            if n == last and self.queued(self.a) == 0 and self.queued(self.b) == 0:
                break
            last = n
            time.sleep(1.0)
        self.assertEqual(self.queued(self.a), 0)
        self.assertEqual(self.queued(self.b), 0)
        # Each copy is one hop: at most 101 for the message and 101 for its
        # bounce, however long the test had waited.
        self.assertLessEqual(self.accepted(), 2 * 102 + 2)
        time.sleep(2)
        self.assertEqual(self.accepted(), last)


if __name__ == "__main__":
    unittest.main()
