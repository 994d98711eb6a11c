"""Event webhooks end to end (SPEC "Observability and the HTTP interface",
docs/http-api.md "Webhooks"): sluiced delivers, defers and bounces mail to an
aiosmtpd sink (test_delivery's zone and sinks), and POSTs the events to a
local HTTPS receiver (http.server + ssl) whose certificate comes from a test
CA that delivery.ca_file trusts. The receiver is found through the fake DNS
(hooks.example.test -> 127.0.0.1), so SNI and the name check are real.

Checked: delivered, deferred and bounced events arrive as JSON arrays with
every SPEC field and unique event_ids; X-Sluice-Signature verifies with the
secret and its t is recent; a receiver that refuses connections, then answers
500, gets the events once it is back; events stored before a kill -9 arrive
after the restart; a receiver whose certificate is not from the CA gets
nothing. The retry back-off is shortened for the tests
(SLUICE_WEBHOOK_RETRY_SCALE=0.1: 1 s, 3 s, 6 s ...).
"""
import hashlib
import hmac
import http.server
import json
import os
import re
import ssl
import threading
import time
import unittest
from datetime import datetime, timezone

import harness
from harness import free_port
from test_delivery import ZONE, Delivery, wait_for
from testca import TestCa, self_signed

SECRET = "whsec_e2e_0123456789abcdef"
HOOK_HOST = "hooks.example.test"


class Receiver:
    """An HTTPS (or HTTP) server recording every POST: (headers, body bytes,
    receive time). `status` is the answer given."""

    def __init__(self, port, cert=None, key=None):
        self.port = port
        self.cert, self.key = cert, key
        self.posts = []
        self.status = 200
        self.server = None
        self.lock = threading.Lock()

    def start(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.lock:
                    outer.posts.append((dict(self.headers), body, time.time(), self.path))
                    status = outer.status
                payload = b"ok"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cert, self.key)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def events(self, status=200):
        """Every event of the POSTs answered `status`, in order."""
        out = []
        with self.lock:
            for headers, body, _, _ in self.posts:
                out.extend(json.loads(body))
        return out


class Webhooks(Delivery):
    receiver_cert = "ca"  # "ca": issued by the test CA; "self": self-signed

    def zone_text(self):
        return ZONE + "%s. 300 IN A 127.0.0.1\n" % HOOK_HOST

    def make_daemon(self, extra, dns_servers):
        self.ca = TestCa(self.work)
        if self.receiver_cert == "ca":
            cert, key = self.ca.issue("hooks", dns=[HOOK_HOST])
        else:
            cert, key = self_signed(self.work, "rogue", HOOK_HOST)
        self.hook_port = free_port()
        self.receiver = Receiver(self.hook_port, cert, key).start()
        secret = os.path.join(self.work, "webhook-secret")
        with open(secret, "w") as f:
            f.write(SECRET + "\nsecond line ignored\n")
        os.chmod(secret, 0o600)
        self.url = "https://%s:%d/hook?token=private" % (HOOK_HOST, self.hook_port)
        extra += 'ca_file = "%s"\n' % self.ca.cert
        extra += ('[[webhook]]\nurl = "%s"\nevents = ["delivered", "deferred", "bounced", "expired"]\n'
                  'secret_file = "%s"\n' % (self.url, secret))
        os.environ["SLUICE_WEBHOOK_RETRY_SCALE"] = "0.1"
        return harness.Sluiced(extra=extra, dns_servers=dns_servers)

    def tearDown(self):
        os.environ.pop("SLUICE_WEBHOOK_RETRY_SCALE", None)
        self.receiver.stop()
        super().tearDown()

    def check_signed(self, headers, body, received_at):
        self.assertEqual(headers.get("Content-Type"), "application/json")
        self.assertEqual(headers.get("User-Agent"), "Sluice")
        sig = headers.get("X-Sluice-Signature")
        self.assertIsNotNone(sig, headers)
        m = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", sig)
        self.assertIsNotNone(m, sig)
        t = int(m.group(1))
        self.assertLess(abs(received_at - t), 60, "t is not recent")
        want = hmac.new(SECRET.encode(), m.group(1).encode() + b"." + body, hashlib.sha256).hexdigest()
        self.assertTrue(hmac.compare_digest(want, m.group(2)), "the signature does not verify")

    def check_event(self, e):
        for field in ("event_id", "event", "id", "recipient", "sender", "time", "response", "attempts"):
            self.assertIn(field, e)
        self.assertRegex(e["event_id"], r"^[0-9a-f]{32}$")
        self.assertIn(e["event"], ("delivered", "deferred", "bounced", "expired"))
        self.assertTrue(e["id"])
        t = datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        self.assertLess(abs(time.time() - t.timestamp()), 300)
        self.assertEqual(set(e["response"]), {"code", "enhanced_code", "text"})
        self.assertIsInstance(e["response"]["code"], int)
        self.assertIsInstance(e["attempts"], int)

    def events_for(self, rcpt, kind):
        return [e for e in self.receiver.events() if e["recipient"] == rcpt and e["event"] == kind]


class WebhookEvents(Webhooks):
    def test_delivered_deferred_bounced_arrive_signed(self):
        self.mx.rules["bad@example.test"] = ["550 5.1.1 no such user"]
        self.mx.rules["later@example.test"] = ["450 4.2.0 try again later"]
        self.submit("alice@sender.test", ["bob@example.test", "bad@example.test", "later@example.test"])
        wait_for(lambda: self.events_for("bob@example.test", "delivered")
                 and self.events_for("bad@example.test", "bounced")
                 and self.events_for("later@example.test", "deferred")
                 and self.events_for("later@example.test", "delivered"),
                 timeout=30, what="delivered, bounced and deferred events")
        for headers, body, at, path in list(self.receiver.posts):
            self.assertEqual(path, "/hook?token=private")
            self.assertIsInstance(json.loads(body), list)
            self.check_signed(headers, body, at)
        events = self.receiver.events()
        for e in events:
            self.check_event(e)
        ids = [e["event_id"] for e in events]
        self.assertEqual(len(ids), len(set(ids)), "event_ids repeat")
        bob = self.events_for("bob@example.test", "delivered")[0]
        self.assertEqual(bob["sender"], "alice@sender.test")
        self.assertEqual(bob["response"]["code"], 250)
        bad = self.events_for("bad@example.test", "bounced")[0]
        self.assertEqual(bad["response"]["code"], 550)
        self.assertEqual(bad["response"]["enhanced_code"], "5.1.1")
        later = self.events_for("later@example.test", "deferred")[0]
        self.assertEqual(later["response"]["code"], 450)
        self.assertEqual(bob["id"], bad["id"])
        # One log line per POST, the url without its query; never the secret.
        self.d.wait_log("webhook https://%s:%d/hook: " % (HOOK_HOST, self.hook_port))
        log = self.d.log()
        self.assertIn("events sent, status 200", log)
        self.assertNotIn("token=private", log)
        self.assertNotIn(SECRET, log)
        # The queue is on disk under the spool, named from the url's hash.
        name = hashlib.sha256(self.url.encode()).hexdigest()[:32]
        self.assertTrue(os.path.isdir(os.path.join(self.d.spool, "webhooks", name)))

    def test_receiver_down_then_back(self):
        self.receiver.stop()  # connection refused
        self.submit("alice@sender.test", ["bob@example.test"])
        wait_for(lambda: self.mx.messages, what="the delivery")
        self.d.wait_log("events not sent, failed: ", timeout=15)
        self.receiver.status = 500
        self.receiver.start()
        wait_for(lambda: self.receiver.posts, timeout=20, what="a POST answered 500")
        self.d.wait_log("events not sent, status 500", timeout=5)
        self.receiver.status = 200
        wait_for(lambda: len(self.receiver.posts) >= 2, timeout=20, what="the retried POST")
        wait_for(lambda: self.d.log().count("events sent, status 200") >= 1, what="the log line")
        delivered = self.events_for("bob@example.test", "delivered")
        self.assertGreaterEqual(len(delivered), 2)  # the 500 one and the retry: the same event
        self.assertEqual(len({e["event_id"] for e in delivered}), 1)
        self.assertEqual(self.receiver.posts[0][1], self.receiver.posts[1][1])

    def test_events_stored_before_kill9_arrive_after_restart(self):
        self.receiver.stop()
        self.submit("alice@sender.test", ["bob@example.test", "carol@example.test"])
        wait_for(lambda: self.mx.messages, what="the delivery")
        # A failed POST means the events were stored (synced) first.
        self.d.wait_log("events not sent, failed: ", timeout=15)
        self.d.kill9()
        self.receiver.start()
        self.d.start()
        wait_for(lambda: self.events_for("bob@example.test", "delivered")
                 and self.events_for("carol@example.test", "delivered"),
                 timeout=20, what="the events stored before the kill")
        for headers, body, at, _ in self.receiver.posts:
            self.check_signed(headers, body, at)


class WebhookUnverifiedReceiver(Webhooks):
    receiver_cert = "self"

    def test_certificate_not_from_the_ca_gets_nothing(self):
        self.submit("alice@sender.test", ["bob@example.test"])
        wait_for(lambda: self.mx.messages, what="the delivery")
        self.d.wait_log("events not sent, failed: ", timeout=15)
        time.sleep(1.5)  # a retry (1 s) fails the same way
        self.assertEqual(self.receiver.posts, [])
        self.assertRegex(self.d.log(), r"events not sent, failed: [^\n]*tls")


if __name__ == "__main__":
    unittest.main()
