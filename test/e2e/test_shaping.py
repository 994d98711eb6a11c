"""Shaping end to end (docs/shaping.md): a real sluiced delivers through its
own DNS (fake_dns.py) to an aiosmtpd sink that records when each message
arrived and how many sessions were open at once.

- a site's rate of 5/s holds within 10 % over 60 messages;
- a site's `connections = 2` is never exceeded, over three domains whose MX
  hosts make them one site (and is reached: the limit is what holds it);
- a "421 4.7.28" reply fires its [[shaping.rule]]: the log says so and
  `sluicectl shaping --json` shows the automation in force with its expiry;
- a suspending rule stops delivery to the site, the messages wait deferred.
"""
import json
import os
import smtplib
import subprocess
import threading
import time
import unittest

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

import harness
import test_delivery as td

SLUICECTL = os.environ.get("SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))

# Three domains served by the same MX host: one site.
ZONE = td.ZONE + """\
two.test.          300 IN MX 10 mx.example.test.
three.test.        300 IN MX 10 mx.example.test.
"""


class CountingSink(td.SinkHandler):
    """SinkHandler that also records each message's arrival time and the
    largest number of sessions open at once; `mail_replies` are given to
    MAIL FROM in turn (None accepts)."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.open = set()  # sessions connected that have not said QUIT or gone
        self.max_open = 0
        self.arrivals = []
        self.mail_replies = []

    def connected(self, server):
        with self.lock:
            self.open.add(server)
            self.max_open = max(self.max_open, len(self.open))

    def disconnected(self, server):
        # At QUIT, or when the connection goes without one: a client that
        # says QUIT and waits for the close before it opens the next
        # connection has the sink's count in the same order as its own.
        with self.lock:
            self.open.discard(server)

    async def handle_QUIT(self, server, session, envelope):
        self.disconnected(server)
        return "221 Bye"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_replies:
            r = self.mail_replies.pop(0)
            if r is not None:
                return r
        envelope.mail_from = address
        return "250 2.1.0 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        with self.lock:
            self.arrivals.append(time.monotonic())
        return reply


class CountingController(Controller):
    def factory(self):
        handler = self.handler

        class Counted(SMTP):
            def connection_made(self, transport):
                handler.connected(self)
                super().connection_made(transport)

            def connection_lost(self, exc):
                handler.disconnected(self)
                super().connection_lost(exc)

        return Counted(self.handler, **self.SMTP_kwargs)


class Base(td.Delivery):
    zone = ZONE
    shaping = ""

    def setUp(self):
        # The recipients' sink counts; the base class starts it as c1.
        orig = td.SinkHandler
        td.SinkHandler = CountingSink
        orig_controller = td.Controller
        td.Controller = CountingController
        try:
            super().setUp()
        finally:
            td.SinkHandler = orig
            td.Controller = orig_controller

    def make_daemon(self, extra, dns_servers):
        return harness.Sluiced(extra=extra + self.shaping, dns_servers=dns_servers)

    def ctl(self, *args):
        r = subprocess.run([SLUICECTL, "--config", self.d.config_path] + list(args),
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r.stdout.decode()

    def submit_many(self, rcpts):
        """One message per recipient, over one SMTP session to sluiced."""
        body = ("From: sender@sender.test\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                "Subject: shaping\r\n\r\nbody\r\n")
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=30) as s:
            for r in rcpts:
                s.sendmail("sender@sender.test", [r], body)


class SiteRate(Base):
    shaping = '\n[[shaping.site]]\nname = "example"\nmx = ["mx.example.test"]\nrate = "5/s"\n'

    def test_a_rate_of_5_per_second_holds_within_10_percent(self):
        n = 60
        self.submit_many(["r%d@example.test" % i for i in range(n)])
        td.wait_for(lambda: len(self.mx.arrivals) >= n, timeout=60, what="60 messages at the sink")
        a = sorted(self.mx.arrivals)
        rate = (n - 1) / (a[-1] - a[0])
        print("site rate 5/s: measured %.2f messages/s over %d messages" % (rate, n))
        self.assertGreater(rate, 4.5)
        self.assertLess(rate, 5.5)


class SiteConnections(Base):
    shaping = '\n[shaping]\nconnections = 2\nadaptive = false\n'

    def setUp(self):
        super().setUp()
        self.mx.data_delay = 0.3  # sessions overlap

    def test_two_connections_are_never_exceeded_across_the_sites_domains(self):
        rcpts = []
        for i in range(10):
            rcpts += ["a%d@example.test" % i, "b%d@two.test" % i, "c%d@three.test" % i]
        self.submit_many(rcpts)
        td.wait_for(lambda: len(self.mx.messages) >= len(rcpts), timeout=60, what="30 messages at the sink")
        print("connections = 2: at most %d sessions open at the sink" % self.mx.max_open)
        self.assertLessEqual(self.mx.max_open, 2)
        self.assertEqual(self.mx.max_open, 2)  # reached: the limit, not the load, holds it
        # Without shaping's limit the same load opens more (per destination: 20).


class RuleOnReply(Base):
    shaping = ('\n[[shaping.rule]]\nsite = "*"\nreply = "4.7.28"\nrate = "10/m"\nconnections = 1\n'
               'duration = "30m"\n')

    def test_421_4_7_28_fires_the_rule_and_sluicectl_shows_it(self):
        self.mx.mail_replies = ["421 4.7.28 Our system has detected an unusual rate of unsolicited mail"]
        self.submit_many(["x@example.test"])
        self.d.wait_log("matched the rule at", timeout=20)
        line = [l for l in self.d.log().splitlines() if "matched the rule at" in l][0]
        self.assertIn("reply=\"421 4.7.28 Our system", line)
        self.assertIn("rate=10/m connections=1 for 1800s", line)
        shown = json.loads(self.ctl("shaping", "--json"))
        sites = [s for s in shown["sites"] if "example.test" in s["domains"]]
        self.assertEqual(len(sites), 1, shown)
        auto = sites[0]["automation"]
        self.assertIsNotNone(auto, shown)
        self.assertEqual(auto["rate"], "10/m")
        self.assertEqual(auto["connections"], 1)
        self.assertFalse(auto["suspended"])
        self.assertGreater(auto["expires_in"], 1700)
        self.assertLessEqual(auto["expires_in"], 1800)
        self.assertIn("4.7.28", auto["reason"])
        self.assertEqual(sites[0]["rate"], "10/m")
        text = self.ctl("shaping")
        self.assertIn("10/m", text)
        # The message itself was deferred, and is delivered on its retry
        # (10/m leaves room for it).
        td.wait_for(lambda: len(self.mx.messages) >= 1, timeout=30, what="the retry")


class Suspend(Base):
    shaping = '\n[[shaping.rule]]\nsite = "*"\nreply = "/^421 .*TS03/"\nsuspend = "2h"\n'

    def test_a_suspending_rule_holds_the_sites_mail_back(self):
        self.mx.mail_replies = ["421 4.7.0 [TS03] All messages from 127.0.0.1 will be permanently deferred"]
        self.submit_many(["y@example.test"])
        self.d.wait_log("matched the rule at", timeout=20)
        self.submit_many(["z%d@two.test" % i for i in range(3)] + ["w@example.test"])
        time.sleep(4)  # several retries (retry_schedule 1s) would have come and gone
        self.assertEqual(self.mx.messages, [])
        shown = json.loads(self.ctl("shaping", "--json"))
        auto = [s for s in shown["sites"] if "example.test" in s["domains"]][0]["automation"]
        self.assertTrue(auto["suspended"])
        self.assertGreater(auto["expires_in"], 7000)
        queued = json.loads(self.ctl("queue", "list", "--json"))
        self.assertGreaterEqual(len(queued["messages"]), 5, queued)


if __name__ == "__main__":
    unittest.main()
