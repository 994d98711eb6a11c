"""GET /metrics end to end (docs/observability.md, "Metrics"): a real sluiced
with [http] on loopback delivers through its own DNS (fake_dns.py) to an
aiosmtpd sink (test_delivery's Delivery base); /metrics is read with
Prometheus's own parser (python3-prometheus-client) and its counters are
checked to move with the traffic:

- every family has HELP and TYPE, the Content-Type is the 0.0.4 one, and
  the metrics SPEC.md names are there;
- a message accepted and sent moves received{listener}, deliveries{sent},
  the delivery and spool-commit histograms, the fsync batches, the DNS
  lookups, and the connection gauges while connections are open;
- a sink answering 451 moves deliveries{deferred} and the queue gauges; a
  550 moves deliveries{bounced} and bounces{class="5.1"} (and the bounce
  Sluice writes is not counted as received);
- a refused SMTP command moves smtp_rejections_total{code};
- a delivery over STARTTLS moves tls_handshakes_total{outbound,ok};
- a message POSTed to /api/v1/messages counts as received from "api".
"""
import json
import os
import smtplib
import subprocess
import time
import unittest
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

import harness
import test_delivery as td

SLUICECTL = os.environ.get("SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))

SPEC_FAMILIES = {
    "sluice_messages_received_total": "counter",
    "sluice_deliveries_total": "counter",
    "sluice_queue_messages": "gauge",
    "sluice_connections": "gauge",
    "sluice_delivery_seconds": "histogram",
    "sluice_spool_commit_seconds": "histogram",
    # What an operator alerts on.
    "sluice_tls_handshakes_total": "counter",
    "sluice_dns_lookups_total": "counter",
    "sluice_bounces_total": "counter",
    "sluice_spool_bytes": "gauge",
    "sluice_spool_fsync_batch_messages": "histogram",
    "sluice_smtp_rejections_total": "counter",
    "sluice_auth_failures_total": "counter",
    "sluice_warnings_total": "counter",
    "sluice_http_requests_total": "counter",
    "sluice_start_time_seconds": "gauge",
    "sluice_build_info": "gauge",
}


class Scrape:
    """One /metrics answer: the raw text, and every sample by (name, labels)."""

    def __init__(self, port):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
            self.status = r.status
            self.content_type = r.headers.get("Content-Type")
            self.text = r.read().decode("utf-8")
        self.families = list(text_string_to_metric_families(self.text))
        self.samples = {}
        for f in self.families:
            for s in f.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def get(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())), 0.0)


class MetricsBase(td.Delivery):
    def make_daemon(self, extra, dns_servers):
        self.http_port = harness.free_port()
        extra += '\n[http]\naddress = "127.0.0.1:%d"\n' % self.http_port
        return harness.Sluiced(extra=extra, dns_servers=dns_servers)

    def scrape(self):
        return Scrape(self.http_port)

    def wait_metric(self, name, at_least, timeout=20, **labels):
        deadline = time.time() + timeout
        while True:
            m = self.scrape()
            if m.get(name, **labels) >= at_least:
                return m
            if time.time() > deadline:
                raise AssertionError("%s%s stayed at %s (wanted >= %s):\n%s"
                                     % (name, labels, m.get(name, **labels), at_least, m.text))
            time.sleep(0.1)

    @property
    def listener(self):
        return "127.0.0.1:%d" % self.d.port


class Metrics(MetricsBase):
    def test_format_and_every_family_with_help_and_type(self):
        m = self.scrape()
        self.assertEqual(m.status, 200)
        self.assertEqual(m.content_type, "text/plain; version=0.0.4; charset=utf-8")
        types, helps = {}, {}
        for line in m.text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.assertNotIn(name, types, "family %s printed twice" % name)
                types[name] = kind
            elif line.startswith("# HELP "):
                name = line.split(" ", 3)[2]
                helps[name] = line.split(" ", 3)[3]
            elif line:
                # Every sample belongs to a family announced before it.
                name = line.split("{", 1)[0].split(" ", 1)[0]
                base = name
                for suffix in ("_bucket", "_sum", "_count"):
                    if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
                        base = name[: -len(suffix)]
                self.assertIn(base, types, line)
        self.assertEqual(set(types), set(helps))
        for name, help_text in helps.items():
            self.assertTrue(help_text.strip(), name)
        for name, kind in SPEC_FAMILIES.items():
            if name == "sluice_http_requests_total":
                continue  # made at the first request: this scrape's is counted after it is answered
            self.assertEqual(types.get(name), kind, name)
        for f in m.families:
            self.assertTrue(f.documentation, f.name)
            self.assertIn(f.type, ("counter", "gauge", "histogram"), f.name)
        # Labels and fixed values as documented.
        for state in ("queued", "deferred", "held"):
            self.assertIn(("sluice_queue_messages", frozenset({("state", state)})), m.samples)
        for status in ("sent", "deferred", "bounced", "expired"):
            self.assertIn(("sluice_deliveries_total", frozenset({("status", status)})), m.samples)
        self.assertIn(("sluice_messages_received_total", frozenset({("listener", self.listener)})),
                      m.samples)
        self.assertEqual(m.get("sluice_build_info", version=self.build_version(m)), 1)
        self.assertLess(abs(m.get("sluice_start_time_seconds") - time.time()), 120)
        self.assertGreater(m.get("sluice_spool_free_bytes"), 0)
        # A histogram's buckets are cumulative and end with +Inf = _count.
        buckets = [(float(dict(k[1])["le"]), v) for k, v in m.samples.items()
                   if k[0] == "sluice_delivery_seconds_bucket"]
        buckets.sort()
        self.assertEqual(buckets[-1][0], float("inf"))
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))
        self.assertEqual(buckets[-1][1], m.get("sluice_delivery_seconds_count"))
        # The scrape itself is counted (after it was answered); a path no
        # route takes is counted as route="other".
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen("http://127.0.0.1:%d/nothing-here" % self.http_port, timeout=10)
        self.assertEqual(e.exception.code, 404)
        m = self.scrape()
        self.assertGreaterEqual(m.get("sluice_http_requests_total", route="/metrics", status="200"), 1)
        self.assertEqual(m.get("sluice_http_requests_total", route="other", status="404"), 1)

    @staticmethod
    def build_version(m):
        for (name, labels) in m.samples:
            if name == "sluice_build_info":
                return dict(labels)["version"]
        raise AssertionError("no sluice_build_info")

    def test_counters_move_with_a_message_sent(self):
        before = self.scrape()
        # An SMTP session held open shows in the inbound connection gauge.
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=10) as s:
            s.ehlo("client.test")
            during = self.scrape()
            self.assertGreaterEqual(during.get("sluice_connections", direction="inbound"), 1)
            self.assertGreaterEqual(during.get("sluice_connections", direction="http"), 1)  # this scrape
            s.sendmail("alice@sender.test", ["bob@example.test", "carol@example.test"],
                       "From: alice@sender.test\r\nSubject: metrics\r\n\r\nbody\r\n")
        td.wait_for(lambda: self.mx.messages, what="the sink to get the message")
        after = self.wait_metric("sluice_deliveries_total",
                                 before.get("sluice_deliveries_total", status="sent") + 2, status="sent")
        self.assertEqual(after.get("sluice_messages_received_total", listener=self.listener),
                         before.get("sluice_messages_received_total", listener=self.listener) + 1)
        self.assertEqual(after.get("sluice_delivery_seconds_count"),
                         before.get("sluice_delivery_seconds_count") + 2)
        self.assertGreater(after.get("sluice_delivery_seconds_sum"), before.get("sluice_delivery_seconds_sum"))
        self.assertLess(after.get("sluice_delivery_seconds_sum") - before.get("sluice_delivery_seconds_sum"), 60)
        self.assertGreaterEqual(after.get("sluice_spool_commit_seconds_count"),
                                before.get("sluice_spool_commit_seconds_count") + 1)
        self.assertGreaterEqual(after.get("sluice_spool_fsync_batch_messages_count"),
                                before.get("sluice_spool_fsync_batch_messages_count") + 1)
        self.assertGreaterEqual(after.get("sluice_spool_fsync_batch_messages_sum"),
                                before.get("sluice_spool_fsync_batch_messages_sum") + 1)
        self.assertGreaterEqual(after.get("sluice_dns_lookups_total", type="mx", outcome="ok"),
                                before.get("sluice_dns_lookups_total", type="mx", outcome="ok") + 1)
        self.assertGreaterEqual(after.get("sluice_connections_accepted_total"),
                                before.get("sluice_connections_accepted_total") + 1)
        self.assertGreater(after.get("sluice_spool_bytes"), 0)
        # Delivery keeps the connection to the sink open for reuse for a while.
        self.assertGreaterEqual(after.get("sluice_connections", direction="outbound"), 0)
        self.assertEqual(after.get("sluice_deliveries_total", status="deferred"),
                         before.get("sluice_deliveries_total", status="deferred"))

    def test_a_451_moves_deferred_and_the_queue(self):
        self.mx.rules["later@example.test"] = ["451 4.3.0 try again later"] * 100
        before = self.scrape()
        self.submit("alice@sender.test", ["later@example.test"])
        after = self.wait_metric("sluice_deliveries_total",
                                 before.get("sluice_deliveries_total", status="deferred") + 1,
                                 status="deferred")
        # Deferred until its retry; the message waits in the queue meanwhile.
        after = self.wait_metric("sluice_queue_messages", 1, state="deferred")
        self.assertEqual(after.get("sluice_deliveries_total", status="sent"),
                         before.get("sluice_deliveries_total", status="sent"))
        self.assertGreaterEqual(after.get("sluice_queue_jobs") + after.get("sluice_queue_messages", state="deferred"), 1)

    def test_a_550_moves_bounced_and_the_bounce_class(self):
        self.mx.rules["nobody@example.test"] = ["550 5.1.1 no such user"]
        before = self.scrape()
        self.submit("alice@sender.test", ["nobody@example.test"])
        after = self.wait_metric("sluice_bounces_total",
                                 before.get("sluice_bounces_total", **{"class": "5.1"}) + 1, **{"class": "5.1"})
        self.assertEqual(after.get("sluice_deliveries_total", status="bounced"),
                         before.get("sluice_deliveries_total", status="bounced") + 1)
        # The bounce goes to sender.test's MX; it is not a message received.
        td.wait_for(lambda: self.bounce_mx.messages, what="the bounce at the sender's MX")
        final = self.wait_metric("sluice_deliveries_total",
                                 before.get("sluice_deliveries_total", status="sent") + 1, status="sent")
        received = sum(v for (n, _), v in final.samples.items() if n == "sluice_messages_received_total")
        received_before = sum(v for (n, _), v in before.samples.items() if n == "sluice_messages_received_total")
        self.assertEqual(received, received_before + 1)

    def test_a_refused_command_moves_the_rejections(self):
        before = self.scrape()
        c = harness.Client(self.d.port)
        c.reply()  # greeting
        c.cmd("EHLO client.test")
        r = c.cmd("RCPT TO:<bob@example.test>")  # no MAIL FROM yet
        self.assertTrue(r.startswith(b"503 5.5.1"), r)
        c.cmd("QUIT")
        c.close()
        after = self.wait_metric("sluice_smtp_rejections_total",
                                 before.get("sluice_smtp_rejections_total", code="5.5") + 1, code="5.5")
        self.assertEqual(after.get("sluice_auth_failures_total"), before.get("sluice_auth_failures_total"))


class OutboundTls(MetricsBase):
    sink_tls = True  # the sink offers STARTTLS with a self-signed certificate: opportunistic TLS

    def test_a_starttls_delivery_moves_the_outbound_handshakes(self):
        before = self.scrape()
        self.submit("alice@sender.test", ["bob@example.test"])
        after = self.wait_metric("sluice_deliveries_total",
                                 before.get("sluice_deliveries_total", status="sent") + 1, status="sent")
        self.assertEqual(after.get("sluice_tls_handshakes_total", direction="outbound", outcome="ok"),
                         before.get("sluice_tls_handshakes_total", direction="outbound", outcome="ok") + 1)
        self.assertEqual(after.get("sluice_tls_handshakes_total", direction="outbound", outcome="failed"), 0)


class ApiMetrics(MetricsBase):
    """A message through POST /api/v1/messages counts as received from "api"."""

    def make_daemon(self, extra, dns_servers):
        self.http_port = harness.free_port()
        keys_file = os.path.join(self.work, "api-keys")
        extra += '\n[http]\naddress = "127.0.0.1:%d"\napi_keys_file = "%s"\n' % (self.http_port, keys_file)
        d = harness.Sluiced(extra=extra, dns_servers=dns_servers)
        r = subprocess.run([SLUICECTL, "--config", d.config_path, "api-key", "new", "app", "--senders",
                            "@sender.test"], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.key = r.stdout.decode().strip()
        return d

    def test_an_api_message_counts_as_received_from_api(self):
        td.wait_for(lambda: self._listening("127.0.0.1", self.http_port), what="the HTTP listener")
        before = self.scrape()
        req = urllib.request.Request(
            "http://127.0.0.1:%d/api/v1/messages" % self.http_port, method="POST",
            data=json.dumps({"from": "app@sender.test", "to": ["b@example.test", "c@example.test"],
                             "subject": "hi", "text": "hello"}).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + self.key})
        with urllib.request.urlopen(req, timeout=20) as r:
            self.assertEqual(r.status, 202)
        after = self.wait_metric("sluice_deliveries_total",
                                 before.get("sluice_deliveries_total", status="sent") + 2, status="sent")
        self.assertEqual(after.get("sluice_messages_received_total", listener="api"),
                         before.get("sluice_messages_received_total", listener="api") + 1)
        self.assertEqual(after.get("sluice_http_requests_total", route="/api/v1/messages", status="202"), 1)


if __name__ == "__main__":
    unittest.main()
