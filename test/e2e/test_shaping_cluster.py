"""Several nodes (docs/shaping.md, "Several nodes"): three sluiced, each
with its own spool, share one Debian redis-server (started here on a Unix
socket with --save '') through [cluster] redis, and deliver to one sink
through the same fake DNS.

- a site rate of 6/s is held by the three together, within 10 %;
- redis-server killed in the middle of a run: each node says it falls back
  to its share, and every message is still delivered.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from aiosmtpd.controller import Controller

import harness
import test_delivery as td
from test_shaping import CountingController, CountingSink

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class Redis:
    def __init__(self, workdir, password=None):
        self.sock = os.path.join(workdir, "redis.sock")
        self.log = os.path.join(workdir, "redis.log")
        extra = ["--requirepass", password] if password else []
        self.proc = subprocess.Popen([REDIS, "--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700",
                                      "--save", "", "--appendonly", "no", "--logfile", self.log] + extra,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        td.wait_for(lambda: os.path.exists(self.sock), timeout=10, what="redis-server's socket")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


class ThreeNodes(unittest.TestCase):
    nodes = 3
    rate = 6

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="sluice-cluster-")
        self.port = td.sink_port()
        self.dns = td.FakeDns(self.work, td.ZONE)
        self.mx = CountingSink()
        self.sink = CountingController(self.mx, hostname="127.0.0.2", port=self.port)
        self.sink.start()
        self.redis = Redis(self.work)
        extra = ('[delivery]\nport = %d\nretry_schedule = ["1s"]\n'
                 '[[shaping.site]]\nname = "example"\nmx = ["mx.example.test"]\nrate = "%d/s"\n'
                 '[cluster]\nredis = "unix:%s"\n' % (self.port, self.rate, self.redis.sock))
        self.d = []
        try:
            for _ in range(self.nodes):
                n = harness.Sluiced(extra=extra, dns_servers=["127.0.0.1:%d" % self.dns.port])
                self.d.append(n)
                n.start()
        except Exception:
            self.tearDown()
            raise

    def tearDown(self):
        failed = harness.failed(self)
        for n in self.d:
            n.stop()
            if failed:
                print("---- node %s ----\n%s" % (n.port, n.log()[-4000:]))
            shutil.rmtree(n.dir, ignore_errors=True)
        self.redis.kill()
        self.sink.stop()
        self.dns.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def submit_everywhere(self, per_node, tag):
        body = ("From: sender@sender.test\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                "Subject: cluster\r\n\r\nbody\r\n")
        errors = []

        def submit(i, node):
            try:
                import smtplib
                with smtplib.SMTP("127.0.0.1", node.port, timeout=30) as s:
                    for k in range(per_node):
                        s.sendmail("sender@sender.test", ["%s-%d-%d@example.test" % (tag, i, k)], body)
            except Exception as e:  # reported below, in the test's thread
                errors.append(e)

        threads = [threading.Thread(target=submit, args=(i, n)) for i, n in enumerate(self.d)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])

    def test_a_shared_rate_holds_across_three_nodes_and_survives_redis_dying(self):
        per_node = 20
        total = per_node * self.nodes
        self.submit_everywhere(per_node, "a")
        td.wait_for(lambda: len(self.mx.arrivals) >= total, timeout=90, what="%d messages" % total)
        a = sorted(self.mx.arrivals)
        rate = (total - 1) / (a[-1] - a[0])
        per_node_counts = [sum(1 for m in self.mx.messages if m[1][0].startswith("a-%d-" % i))
                           for i in range(self.nodes)]
        print("shared rate %d/s over %d nodes: measured %.2f messages/s over %d messages (per node %s)"
              % (self.rate, self.nodes, rate, total, per_node_counts))
        self.assertGreater(rate, self.rate * 0.9)
        self.assertLess(rate, self.rate * 1.1)

        # Redis dies in the middle of the next run: delivery goes on.
        before = len(self.mx.arrivals)
        self.submit_everywhere(per_node, "b")
        td.wait_for(lambda: len(self.mx.arrivals) >= before + 10, timeout=30, what="the second run to start")
        self.redis.kill()
        killed_at = time.monotonic()
        td.wait_for(lambda: len(self.mx.arrivals) >= before + total, timeout=90,
                    what="every message after redis died")
        after = sorted(t for t in self.mx.arrivals if t > killed_at)
        if len(after) > 1:
            print("after redis died: %d messages at %.2f messages/s (each node on its share)"
                  % (len(after), (len(after) - 1) / (after[-1] - after[0])))
        for n in self.d:
            self.assertIn("falls back to its share", n.log())


class Password(unittest.TestCase):
    """[cluster] redis_password_file: the right password shares the store;
    a wrong one is logged and the node runs on its own share."""

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="sluice-cluster-pw-")
        self.redis = Redis(self.work, password="s3cret-redis")
        self.nodes = []

    def tearDown(self):
        failed = harness.failed(self)
        for n in self.nodes:
            n.stop()
            if failed:
                print(n.log()[-3000:])
            shutil.rmtree(n.dir, ignore_errors=True)
        self.redis.kill()
        shutil.rmtree(self.work, ignore_errors=True)

    def node(self, password):
        pw = os.path.join(self.work, "pw-%d" % len(self.nodes))
        with open(pw, "w") as f:
            f.write("  %s \n" % password)
        os.chmod(pw, 0o600)
        n = harness.Sluiced(extra='[cluster]\nredis = "unix:%s"\nredis_password_file = "%s"\n'
                            % (self.redis.sock, pw))
        self.nodes.append(n)
        n.start()
        return n

    def store(self, n):
        import json
        r = subprocess.run([os.environ.get("SLUICECTL", "sluicectl"), "--config", n.config_path, "shaping", "--json"],
                           capture_output=True, timeout=30)
        return json.loads(r.stdout)["store"]

    def test_the_right_password_shares_a_wrong_one_falls_back(self):
        good = self.node("s3cret-redis")
        td.wait_for(lambda: "nodes)" in self.store(good), timeout=10, what="the store up")
        self.assertTrue(self.store(good).startswith("redis "), self.store(good))
        bad = self.node("wrong")
        td.wait_for(lambda: "unreachable" in self.store(bad), timeout=10, what="the fallback")
        self.assertIn("falls back to its share", bad.log())
        for n in self.nodes:
            self.assertNotIn("s3cret-redis", n.log())  # never logged


if __name__ == "__main__":
    unittest.main()
