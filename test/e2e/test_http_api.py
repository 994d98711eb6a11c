"""POST /api/v1/messages end to end (docs/http-api.md, "Sending mail"):
sluiced with [http] on loopback and keys made by `sluicectl api-key new`;
the messages are delivered through the fake DNS to the aiosmtpd sink on
127.0.0.2 (test_delivery.Delivery) and read back with python's email
package; DKIM signatures checked with dkimpy against the records sluicectl
prints. Every error answer, Idempotency-Key, a kill -9 right after a 202,
and a second client: php-cli's HTTP stream wrapper.
"""
import base64
import email
import email.policy
import http.client
import json
import os
import shutil
import socket
import subprocess
import time
import unittest

from aiosmtpd.controller import Controller

import harness
import test_delivery as td
from harness import Sluiced, free_port
from test_dkim import SLUICECTL, dkim_tables, printed_records, verify_all

MAX_SIZE = 200_000


class ApiBase(td.Delivery):
    def make_daemon(self, extra, dns_servers):
        self.http_port = free_port()
        self.keys_file = os.path.join(self.work, "api-keys")
        extra += '[http]\naddress = "127.0.0.1:%d"\napi_keys_file = "%s"\n' % (self.http_port, self.keys_file)
        d = Sluiced(extra=extra + dkim_tables(self.work), dns_servers=dns_servers,
                    limits={"max_message_size": str(MAX_SIZE), "messages_per_login": "2/h"})
        self.records = printed_records(d.config_path)
        self.keys = {}
        for name, senders in (("shop", "@sender.test"), ("burst", "@sender.test"),
                              ("narrow", "only@sender.test")):
            self.keys[name] = self.new_key(d, name, senders)
        return d

    def new_key(self, d, name, senders):
        r = subprocess.run([SLUICECTL, "--config", d.config_path, "api-key", "new", name, "--senders", senders],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        key = r.stdout.decode().strip()
        self.assertTrue(key.startswith("sluice_"), key)
        self.assertNotIn(key, r.stderr.decode())
        return key

    def setUp(self):
        super().setUp()
        self.wait_http()

    def wait_http(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the HTTP listener never came up:\n" + self.d.log())

    def post(self, body, key="shop", content_type="application/json", headers=None):
        h = {"Content-Type": content_type} if content_type else {}
        if key is not None:
            h["Authorization"] = "Bearer " + self.keys.get(key, key)
        h.update(headers or {})
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=20)
        try:
            c.request("POST", "/api/v1/messages", body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            return r.status, parsed, dict(r.getheaders())
        finally:
            c.close()

    def delivered(self, n=1):
        td.wait_for(lambda: len(self.mx.messages) >= n, what="%d message(s) at the sink" % n)
        return self.mx.messages


class HttpApi(ApiBase):
    # ---- accepted messages ----

    def test_raw_content_arrives_intact(self):
        content = ("From: App <app@sender.test>\nTo: b@example.test\nSubject: raw\n"
                   "Date: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <raw1@sender.test>\n\n"
                   "Line one\n.leading dot\r\nlast line")
        status, body, _ = self.post({"from": "app@sender.test", "to": ["b@example.test"], "content": content})
        self.assertEqual(status, 202, body)
        self.assertEqual(body["recipients"], ["b@example.test"])
        mail_from, rcpts, got = self.delivered()[0]
        self.assertEqual((mail_from, rcpts), ("app@sender.test", ["b@example.test"]))
        expect = content.replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n"
        self.assertTrue(got.endswith(expect.encode()), got)
        head = got[: len(got) - len(expect)].decode()
        self.assertIn("Received: from [127.0.0.1] (API key shop)", head)
        self.assertIn("with HTTP id %s" % body["id"], head)
        self.assertIn("DKIM-Signature:", head)
        self.assertTrue(all(ok for (_, _, ok) in verify_all(got, self.records)), verify_all(got, self.records))
        self.assertNotIn(self.keys["shop"], self.d.log())
        self.d.wait_log("%s: accept api key=shop from=<app@sender.test>" % body["id"])

    def test_raw_content_gets_missing_fields(self):
        status, body, _ = self.post({"from": "app@sender.test", "to": ["b@example.test"],
                                     "content": "Subject: bare\n\nno From, Date or Message-ID\n"})
        self.assertEqual(status, 202, body)
        msg = email.message_from_bytes(self.delivered()[0][2], policy=email.policy.default)
        self.assertEqual(msg["From"], "app@sender.test")
        self.assertIsNotNone(msg["Date"])
        self.assertIsNotNone(msg["Message-ID"])

    def test_structured_mime(self):
        pdf = bytes(range(256)) * 40
        subject = ("Grüße aus Köln — 😀 " * 6).strip()
        req = {"from": "Jörg Shop <shop@sender.test>", "to": ["Bob <b@example.test>"], "cc": ["c@example.test"],
               "bcc": ["hidden@example.test"], "subject": subject, "text": "Hallo Bob,\nGrüße.\n.dot\n",
               "html": "<p>Hallo <b>Bob</b> – Grüße</p>", "headers": {"X-Campaign": "spring", "Reply-To": "help@sender.test"},
               "attachments": [{"filename": "Rechnung März.pdf", "content_type": "application/pdf",
                                "content": base64.b64encode(pdf).decode()},
                               {"filename": "notes.txt", "content_type": "text/plain",
                                "content": base64.encodebytes(b"plain notes\n").decode()}]}
        status, body, _ = self.post(req)
        self.assertEqual(status, 202, body)
        self.assertEqual(sorted(body["recipients"]), ["b@example.test", "c@example.test", "hidden@example.test"])
        mail_from, rcpts, raw = self.delivered()[0]
        self.assertEqual(sorted(rcpts), ["b@example.test", "c@example.test", "hidden@example.test"])
        self.assertNotIn(b"hidden@", raw.split(b"\r\n\r\n", 1)[0])
        for line in raw.split(b"\r\n"):
            self.assertLessEqual(len(line), 998)
        self.assertTrue(all(ok for (_, _, ok) in verify_all(raw, self.records)))
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.assertEqual(msg["Subject"], subject)
        self.assertEqual(msg["From"].addresses[0].display_name, "Jörg Shop")
        self.assertEqual(msg["From"].addresses[0].addr_spec, "shop@sender.test")
        self.assertEqual(msg["X-Campaign"], "spring")
        self.assertEqual(msg.get_content_type(), "multipart/mixed")
        parts = list(msg.iter_parts())
        self.assertEqual([p.get_content_type() for p in parts], ["multipart/alternative", "application/pdf", "text/plain"])
        alt = list(parts[0].iter_parts())
        self.assertEqual([p.get_content_type() for p in alt], ["text/plain", "text/html"])
        self.assertEqual(alt[0].get_content().replace("\r\n", "\n"), "Hallo Bob,\nGrüße.\n.dot\n")
        self.assertIn("Grüße", alt[1].get_content())
        self.assertEqual(parts[1].get_filename(), "Rechnung März.pdf")
        self.assertEqual(parts[1].get_content(), pdf)
        self.assertEqual(parts[2].get_filename(), "notes.txt")
        self.assertEqual(parts[2].get_payload(decode=True), b"plain notes\n")

    def test_text_only_and_html_only(self):
        self.assertEqual(self.post({"from": "a@sender.test", "to": ["b@example.test"], "text": "just text"})[0], 202)
        self.assertEqual(self.post({"from": "a@sender.test", "to": ["c@example.test"], "html": "<i>x</i>"})[0], 202)
        msgs = self.delivered(2)
        types = sorted(email.message_from_bytes(m[2], policy=email.policy.default).get_content_type() for m in msgs)
        self.assertEqual(types, ["text/html", "text/plain"])

    # ---- errors ----

    def test_errors(self):
        ok = {"from": "a@sender.test", "to": ["b@example.test"], "text": "t"}
        status, body, h = self.post(ok, key=None)
        self.assertEqual(status, 401, body)
        self.assertIn("Bearer", h.get("WWW-Authenticate", ""))
        self.assertEqual(self.post(ok, key="sluice_wrongwrongwrong")[0], 401)
        self.assertEqual(self.post(ok, content_type="text/plain")[0], 415)
        self.assertEqual(self.post(ok, content_type=None)[0], 415)
        status, body, _ = self.post(b"{not json", key="shop")
        self.assertEqual(status, 400)
        status, body, _ = self.post({"from": "a@sender.test", "to": ["b@example.test", "c@example.test", "no address"],
                                     "text": "t"})
        self.assertEqual((status, body["field"]), (400, "to[2]"), body)
        status, body, _ = self.post({"from": "a@sender.test", "to": ["b@example.test"], "text": "t",
                                     "subject": "x\r\nBcc: victim@example.test"})
        self.assertEqual((status, body["field"]), (400, "subject"))
        status, body, _ = self.post({"from": "a@sender.test", "to": ["b@example.test"],
                                     "attachments": [{"filename": "f", "content": "***"}]})
        self.assertEqual((status, body["field"]), (400, "attachments[0].content"))
        status, body, _ = self.post({"from": "a@other.test", "to": ["b@example.test"], "text": "t"})
        self.assertEqual((status, body.get("field")), (403, "from"), body)
        self.assertEqual(self.post({"from": "x@sender.test", "to": ["b@example.test"], "text": "t"}, key="narrow")[0], 403)
        big = base64.b64encode(os.urandom(MAX_SIZE)).decode()
        status, body, _ = self.post({"from": "a@sender.test", "to": ["b@example.test"],
                                     "attachments": [{"filename": "big.bin", "content": big}]})
        self.assertEqual(status, 413, body)
        self.d.wait_log("api reject key=shop client=127.0.0.1 status=413")
        self.assertNotIn(self.keys["shop"], self.d.log())
        time.sleep(0.5)
        self.assertEqual(self.mx.messages, [])

    def test_rate_limit_429(self):
        req = {"from": "a@sender.test", "to": ["b@example.test"], "text": "t"}
        self.assertEqual(self.post(req, key="burst")[0], 202)
        self.assertEqual(self.post(req, key="burst")[0], 202)
        status, body, h = self.post(req, key="burst")
        self.assertEqual(status, 429, body)
        self.assertGreater(int(h["Retry-After"]), 0)
        # Per key: another key still sends.
        self.assertEqual(self.post(req, key="shop")[0], 202)
        self.delivered(3)

    def test_idempotency_key(self):
        req = {"from": "a@sender.test", "to": ["b@example.test"], "text": "once"}
        s1, b1, _ = self.post(req, headers={"Idempotency-Key": "order-77"})
        s2, b2, h2 = self.post(req, headers={"Idempotency-Key": "order-77"})
        self.assertEqual((s1, s2), (202, 202))
        self.assertEqual(b1, b2)
        self.assertEqual(h2.get("Idempotent-Replayed"), "true")
        other = dict(req, text="changed")
        self.assertEqual(self.post(other, headers={"Idempotency-Key": "order-77"})[0], 422)
        self.delivered(1)
        time.sleep(1)
        self.assertEqual(len(self.mx.messages), 1)
        # It survives a restart.
        self.d.stop()
        self.d.start()
        self.wait_http()
        s3, b3, _ = self.post(req, headers={"Idempotency-Key": "order-77"})
        self.assertEqual((s3, b3), (202, b1))
        time.sleep(1)
        self.assertEqual(len(self.mx.messages), 1)

    def test_kill9_after_202_loses_nothing(self):
        self.c1.stop()  # the sink is down: the message waits in the queue
        status, body, _ = self.post({"from": "a@sender.test", "to": ["b@example.test"], "text": "durable"})
        self.assertEqual(status, 202, body)
        self.d.kill9()
        self.c1 = Controller(self.mx, hostname="127.0.0.2", port=self.port)
        self.c1.start()
        self.d.start()
        msgs = self.delivered()
        self.assertIn(("Received: from [127.0.0.1] (API key shop)").encode(), msgs[0][2])
        self.assertIn(b"durable", msgs[0][2])
        self.d.wait_log("%s: " % body["id"])

    def test_keys_reload(self):
        status, _, _ = self.post({"from": "a@sender.test", "to": ["b@example.test"], "text": "t"}, key="late")
        self.assertEqual(status, 401)
        self.keys["late"] = self.new_key(self.d, "late", "@sender.test")
        self.d.proc.send_signal(1)  # SIGHUP
        self.d.wait_log("reload: configuration re-read")
        self.assertEqual(self.post({"from": "a@sender.test", "to": ["b@example.test"], "text": "t"}, key="late")[0], 202)
        # A broken file on reload keeps the keys in force.
        with open(self.keys_file, "a") as f:
            f.write("broken line\n")
        self.d.proc.send_signal(1)
        self.d.wait_log("reload: configuration has errors")
        self.assertEqual(self.post({"from": "a@sender.test", "to": ["b@example.test"], "text": "t"}, key="late")[0], 202)

    def test_api_key_new_refuses(self):
        r = subprocess.run([SLUICECTL, "--config", self.d.config_path, "api-key", "new", "shop"],
                           capture_output=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stdout, b"")
        r = subprocess.run([SLUICECTL, "--config", self.d.config_path, "api-key", "new", "a:b"],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        link = os.path.join(self.work, "link-keys")
        os.symlink("/etc/passwd", link)
        with open(self.d.config_path) as f:
            cfg = f.read().replace(self.keys_file, link)
        alt = os.path.join(self.work, "alt.toml")
        with open(alt, "w") as f:
            f.write(cfg)
        r = subprocess.run([SLUICECTL, "--config", alt, "api-key", "new", "x"], capture_output=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(os.stat(self.keys_file).st_mode & 0o777, 0o640)

    def test_php_client(self):
        php = shutil.which("php")
        if not php:
            self.skipTest("php-cli is not installed")
        script = r"""
$body = json_encode(["from" => "php@sender.test", "to" => ["b@example.test"],
                     "subject" => "from PHP", "text" => "sent by php-cli"]);
$ctx = stream_context_create(["http" => [
  "method" => "POST", "ignore_errors" => true, "timeout" => 20,
  "header" => "Content-Type: application/json\r\nAuthorization: Bearer " . $argv[2] . "\r\n",
  "content" => $body]]);
$answer = file_get_contents($argv[1], false, $ctx);
echo $http_response_header[0], "\n", $answer, "\n";
"""
        url = "http://127.0.0.1:%d/api/v1/messages" % self.http_port
        r = subprocess.run([php, "-r", script, "--", url, self.keys["shop"]], capture_output=True, timeout=60)
        out = r.stdout.decode()
        self.assertIn(" 202 ", out.splitlines()[0], out + r.stderr.decode())
        answer = json.loads(out.splitlines()[1])
        msg = email.message_from_bytes(self.delivered()[0][2], policy=email.policy.default)
        self.assertEqual(msg["Subject"], "from PHP")
        self.assertEqual(msg.get_content().strip(), "sent by php-cli")
        self.d.wait_log("%s: accept api key=shop" % answer["id"])
        r = subprocess.run([php, "-r", script, "--", url, "sluice_bogus"], capture_output=True, timeout=60)
        self.assertIn(" 401 ", r.stdout.decode().splitlines()[0])


class HttpApiJsonLog(ApiBase):
    delivery_extra = '[log]\nformat = "json"\n'

    def test_reception_and_rejection_events(self):
        status, body, _ = self.post({"from": "a@sender.test", "to": ["b@example.test", "c@example.test"], "text": "t"})
        self.assertEqual(status, 202, body)
        self.assertEqual(self.post({"from": "a@other.test", "to": ["b@example.test"], "text": "t"})[0], 403)
        self.delivered()

        def events():
            return [json.loads(l) for l in self.d.log().splitlines() if l.strip()]
        td.wait_for(lambda: sum(1 for e in events() if e.get("type") == "rejection") == 1, what="the rejection event")
        rec = [e for e in events() if e.get("type") == "reception"]
        self.assertEqual(sorted(e["recipient"] for e in rec), ["b@example.test", "c@example.test"])
        for e in rec:
            self.assertEqual((e["id"], e["sender"], e["source"]), (body["id"], "a@sender.test", "api"))
        rej = [e for e in events() if e.get("type") == "rejection"][0]
        self.assertEqual((rej["source"], rej["sender"], rej["response"]["code"]), ("api", "a@other.test", 403))
        self.assertEqual(rej["peer"]["address"], "127.0.0.1")


if __name__ == "__main__":
    unittest.main()
