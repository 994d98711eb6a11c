"""[log] format = "json" end to end: every line sluiced writes is one JSON
object; receptions, deliveries, deferrals, bounces, expiries, rejections and
admin actions carry SPEC's fields (type, time, id, sender, recipient,
response {code, enhanced_code, text}, peer {name, address}, tls, delay,
attempts). And the text format is unchanged (the other e2e tests read it).
"""
import json
import os
import subprocess
import time
import unittest

import harness
from test_delivery import Delivery, wait_for

SLUICECTL = os.environ.get("SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))


class JsonLogs(Delivery):
    # One retry a second; the message that keeps being deferred expires after 3 s.
    delivery_extra = 'max_queue_lifetime = "3s"\n[log]\nformat = "json"\n'

    def lines(self):
        out = []
        for line in self.d.log().splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                self.fail("not a JSON line: %r" % line)
        return out

    def events(self, type_):
        return [o for o in self.lines() if o.get("type") == type_]

    def test_every_line_is_json_with_the_spec_fields(self):
        self.mx.rules["nobody@example.test"] = ["550 5.1.1 no such user"]
        self.mx.rules["later@example.test"] = ["451 4.3.0 try again later"] * 50
        self.submit("alice@sender.test", ["bob@example.test", "nobody@example.test", "later@example.test"])
        # A refused command: RCPT before MAIL.
        c = harness.Client(self.d.port)
        c.reply()
        c.cmd("EHLO client.test")
        self.assertEqual(c.cmd("RCPT TO:<x@example.test>")[:3], b"503")
        c.cmd("QUIT")
        c.close()

        wait_for(lambda: self.events("delivery"), what="a delivery event")
        wait_for(lambda: self.events("bounce"), what="a bounce event")
        wait_for(lambda: self.events("deferral"), what="a deferral event")
        wait_for(lambda: self.events("expiry"), timeout=20, what="an expiry event")
        subprocess.run([SLUICECTL, "--config", self.d.config_path, "queue", "flush"], check=True,
                       capture_output=True, timeout=20)
        wait_for(lambda: self.events("admin"), what="an admin event")

        receptions = self.events("reception")
        self.assertEqual(sorted(e["recipient"] for e in receptions),
                         ["bob@example.test", "later@example.test", "nobody@example.test"])
        qid = receptions[0]["id"]
        for e in receptions:
            self.assertEqual(e["id"], qid)
            self.assertEqual(e["sender"], "alice@sender.test")
            self.assertEqual(e["response"]["code"], 250)
            self.assertEqual(e["peer"]["address"], "127.0.0.1")
            self.assertEqual(e["source"], "smtp:127.0.0.1:%d" % self.d.port)
        for key in ("type", "time", "id", "sender", "recipient", "response", "peer", "tls", "delay", "attempts"):
            for t in ("reception", "delivery", "deferral", "bounce", "expiry"):
                self.assertIn(key, self.events(t)[0], "%s lacks %s" % (t, key))
        d = self.events("delivery")[0]
        self.assertEqual((d["id"], d["recipient"]), (qid, "bob@example.test"))
        self.assertEqual(d["peer"], {"name": "mx.example.test", "address": "127.0.0.2"})
        self.assertEqual(d["response"]["code"], 250)
        self.assertEqual(d["attempts"], 1)
        self.assertGreaterEqual(d["delay"], 0)
        self.assertRegex(d["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        b = self.events("bounce")[0]
        self.assertEqual(b["recipient"], "nobody@example.test")
        self.assertEqual(b["response"], {"code": 550, "enhanced_code": "5.1.1", "text": "no such user"})
        f = self.events("deferral")[0]
        self.assertEqual(f["recipient"], "later@example.test")
        self.assertEqual((f["response"]["code"], f["response"]["enhanced_code"]), (451, "4.3.0"))
        x = self.events("expiry")[0]
        self.assertEqual(x["recipient"], "later@example.test")
        self.assertGreaterEqual(x["attempts"], 2)
        self.assertGreaterEqual(x["delay"], 3)
        r = [e for e in self.events("rejection") if e["response"]["code"] == 503]
        self.assertTrue(r, self.events("rejection"))
        self.assertEqual(r[0]["peer"], {"name": "client.test", "address": "127.0.0.1"})
        a = self.events("admin")[0]
        self.assertIn("flush", a["action"])
        # The lines that are not events say what they are.
        logs = self.events("log")
        self.assertTrue(any("started" in o["message"] for o in logs))
        for o in logs:
            self.assertIn(o["level"], ("debug", "info", "warning", "error"))
            self.assertEqual(o["program"], "sluiced")


if __name__ == "__main__":
    unittest.main()
