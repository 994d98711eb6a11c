"""sluicectl end to end: the real daemon's control socket, every command in
both output forms, against the delivery sinks of test_delivery (fake DNS,
aiosmtpd on 127.0.0.2 for example.test and 127.0.0.3 for sender.test).

The retry schedule is one hour, so a deferred message stays deferred unless
an administrator acts.
"""
import json
import os
import re
import smtplib
import stat
import subprocess
import threading
import time
import unittest

import test_delivery as td
from harness import Sluiced

SLUICECTL = os.environ.get("SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))
QUEUE_ID = re.compile(r"^[0-9A-F]{16}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class ControlCase(td.Delivery):
    def make_daemon(self, extra, dns_servers):
        extra = extra.replace('retry_schedule = ["1s"]', 'retry_schedule = ["1h"]')
        return Sluiced(extra=extra, dns_servers=dns_servers)

    def ctl(self, *args, user=None, check=True):
        cmd = [SLUICECTL, "--config", self.d.config_path] + list(args)
        if user is not None:
            cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
        r = subprocess.run(cmd, capture_output=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError("%s exited %d: %s" % (cmd, r.returncode, r.stderr.decode()))
        return r

    def ctl_json(self, *args):
        return json.loads(self.ctl(*args, "--json").stdout)

    def deferred_message(self, rcpt="bob@example.test", reply="451 4.3.0 greylisted, try later"):
        """Submits one message whose only attempt is deferred; returns its id."""
        self.mx.rules[rcpt] = [reply]
        before = set(m["id"] for m in self.ctl_json("queue", "list")["messages"])
        self.submit("alice@sender.test", [rcpt])
        td.wait_for(lambda: self.d.log().count("to=<%s>" % rcpt) >= 1 and "status=deferred" in self.d.log(),
                    what="the deferral")
        ids = [m["id"] for m in self.ctl_json("queue", "list")["messages"] if m["id"] not in before]
        self.assertEqual(len(ids), 1)
        return ids[0]


class Listing(ControlCase):
    def test_list_and_show_in_both_forms(self):
        mid = self.deferred_message()
        listing = self.ctl_json("queue", "list")
        self.assertEqual(len(listing["messages"]), 1)
        m = listing["messages"][0]
        self.assertEqual(m["id"], mid)
        self.assertTrue(QUEUE_ID.match(m["id"]))
        self.assertEqual(m["state"], "deferred")
        self.assertGreater(m["size"], 0)
        self.assertTrue(RFC3339.match(m["arrival_time"]), m)
        self.assertTrue(RFC3339.match(m["next_attempt"]), m)
        self.assertGreater(m["next_attempt"], m["arrival_time"])
        self.assertEqual(m["attempts"], 1)
        self.assertEqual(m["sender"], "alice@sender.test")
        self.assertEqual(m["recipients"], [{"address": "bob@example.test", "status": "deferred",
                                            "last_reply": "451 4.3.0 greylisted, try later"}])
        # Only that state.
        self.assertEqual(len(self.ctl_json("queue", "list", "--state", "deferred")["messages"]), 1)
        self.assertEqual(self.ctl_json("queue", "list", "--state", "held")["messages"], [])

        human = self.ctl("queue", "list").stdout.decode()
        self.assertIn(mid, human)
        self.assertIn("deferred", human)
        self.assertIn("alice@sender.test", human)
        self.assertIn("bob@example.test", human)
        self.assertIn("greylisted", human)
        self.assertRegex(human, r"1 message")

        shown = self.ctl_json("queue", "show", mid, "--body")["message"]
        self.assertEqual(shown["id"], mid)
        self.assertEqual(shown["recipients"][0]["address"], "bob@example.test")
        self.assertIn("history", shown)
        self.assertTrue(any("greylisted" in h.get("reply", "") for h in shown["history"]), shown["history"])
        import base64
        self.assertIn(b"The body.", base64.b64decode(shown["body_base64"]))
        human = self.ctl("queue", "show", mid, "--body").stdout.decode()
        self.assertIn("bob@example.test", human)
        self.assertIn("The body.", human)
        self.assertIn("greylisted", human)

    def test_empty_queue(self):
        self.assertEqual(self.ctl_json("queue", "list")["messages"], [])
        self.assertIn("empty", self.ctl("queue", "list").stdout.decode().lower())

    def test_status(self):
        self.deferred_message()
        st = self.ctl_json("status")
        self.assertTrue(st["version"])
        self.assertGreaterEqual(st["uptime_seconds"], 0)
        self.assertIn("in", st["connections"])
        self.assertIn("out", st["connections"])
        self.assertEqual(st["queue"]["deferred"], 1)
        self.assertEqual(st["queue"]["held"], 0)
        human = self.ctl("status").stdout.decode()
        self.assertIn("sluiced %s" % st["version"], human)
        for words in ("(up ", "connections in", "connections out", "1 deferred", "0 held", "0 queued"):
            self.assertIn(words, human.lower())

    def test_shaping_in_both_forms(self):
        # No [cluster]: the limits are this node's. The sites depend on what
        # the daemon has shaped (none before the Shaper is wired in); both
        # forms must agree on them.
        self.deferred_message()
        sh = self.ctl_json("shaping")
        self.assertTrue(sh["ok"])
        self.assertEqual(sh["store"], "local")
        human = self.ctl("shaping").stdout.decode()
        self.assertTrue(human.startswith("Store: this node only\n"), human)
        if not sh["sites"]:
            self.assertIn("no active sites", human)
        for site in sh["sites"]:
            self.assertIn("\n%s (" % site["site"], human)
            self.assertLessEqual(site["concurrency"], site["max_concurrency"])
            if site["automation"] is not None:
                self.assertTrue(RFC3339.match(site["automation"]["until"]))
        self.assertEqual(self.ctl("shaping", "--site", "x", check=False).returncode, 2)


class Actions(ControlCase):
    def test_hold_prevents_delivery_through_a_flush_until_release(self):
        mid = self.deferred_message()
        r = self.ctl("queue", "hold", mid)
        self.assertIn(mid, r.stdout.decode())
        self.assertEqual(self.ctl_json("queue", "list")["messages"][0]["state"], "held")
        self.assertIsNone(self.ctl_json("queue", "list")["messages"][0]["next_attempt"])
        self.ctl("queue", "flush", mid)
        self.ctl("queue", "flush")
        time.sleep(1.5)
        self.assertEqual(self.mx.messages, [])
        self.ctl_json("queue", "release", mid)
        self.assertEqual(self.ctl_json("queue", "list")["messages"][0]["state"], "deferred")
        self.ctl("queue", "flush", mid)
        td.wait_for(lambda: self.mx.messages, what="delivery after release and flush")
        self.assertEqual(self.mx.messages[0][1], ["bob@example.test"])
        td.wait_for(lambda: self.ctl_json("queue", "list")["messages"] == [], what="an empty queue")

    def test_hold_survives_a_restart(self):
        mid = self.deferred_message()
        self.ctl("queue", "hold", mid)
        self.d.stop()
        self.d.start()
        self.assertEqual(self.ctl_json("queue", "list")["messages"][0]["state"], "held")

    def test_flush_delivers_a_deferred_message_at_once(self):
        mid = self.deferred_message()
        time.sleep(0.5)
        self.assertEqual(self.mx.messages, [])
        out = self.ctl_json("queue", "flush", mid)
        self.assertEqual(out["ids"], [mid])
        td.wait_for(lambda: self.mx.messages, what="delivery after flush")
        self.d.wait_log("status=sent")

    def test_bounce_returns_the_message_to_the_senders_mx(self):
        mid = self.deferred_message()
        self.ctl("queue", "bounce", mid)
        td.wait_for(lambda: self.bounce_mx.messages, what="the DSN at the sender's MX")
        mail_from, rcpts, content = self.bounce_mx.messages[0]
        self.assertEqual(mail_from, "<>")  # aiosmtpd's spelling of the null sender
        self.assertEqual(rcpts, ["alice@sender.test"])
        self.assertIn(b"multipart/report", content)
        self.assertIn(b"bob@example.test", content)
        self.assertEqual(self.mx.messages, [])
        td.wait_for(lambda: self.ctl_json("queue", "list")["messages"] == [], what="an empty queue")

    def test_delete_removes_without_notice(self):
        mid = self.deferred_message()
        other = self.deferred_message("carol@example.test")
        self.ctl("queue", "delete", mid)
        ids = [m["id"] for m in self.ctl_json("queue", "list")["messages"]]
        self.assertEqual(ids, [other])
        self.ctl("queue", "delete", "--all")
        self.assertEqual(self.ctl_json("queue", "list")["messages"], [])
        time.sleep(0.5)
        self.assertEqual(self.bounce_mx.messages, [])
        self.d.stop()
        self.assertEqual(self.d.spool_messages(body=False), [])

    def test_unknown_ids_exit_1_naming_them_and_touch_nothing(self):
        mid = self.deferred_message()
        for verb in ("hold", "release", "flush", "bounce", "delete", "show"):
            args = ["queue", verb, mid, "FFFFFFFFFFFFFFFF"] if verb != "show" else ["queue", "show", "FFFFFFFFFFFFFFFF"]
            r = self.ctl(*args, check=False)
            self.assertEqual(r.returncode, 1, (verb, r.stdout, r.stderr))
            self.assertIn(b"FFFFFFFFFFFFFFFF", r.stderr)
            r = self.ctl(*(args + ["--json"]), check=False)
            self.assertEqual(r.returncode, 1, (verb, r.stdout, r.stderr))
        m = self.ctl_json("queue", "list")["messages"]
        self.assertEqual([(x["id"], x["state"]) for x in m], [(mid, "deferred")])
        self.assertEqual(self.mx.messages, [])
        self.assertEqual(self.bounce_mx.messages, [])


class Access(ControlCase):
    @unittest.skipUnless(os.geteuid() == 0, "needs root to run as another user")
    def test_a_user_without_rights_is_refused(self):
        sock = os.path.join(self.d.dir, "control.sock")
        st = os.stat(sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        os.chmod(self.d.dir, 0o711)
        os.chmod(self.d.config_path, 0o644)
        r = self.ctl("status", user=65534, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"permission denied", r.stderr.lower())
        # Even if the file mode were loosened, the daemon checks the peer.
        os.chmod(sock, 0o666)
        r = self.ctl("queue", "list", user=65534, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"uid 65534 may not use the control socket", r.stderr)
        self.assertIn("uid=65534", self.d.log().replace("uid ", "uid="))
        # The daemon is fine afterwards.
        self.assertEqual(self.ctl_json("queue", "list")["messages"], [])

    def test_daemon_not_running(self):
        self.d.stop()
        r = self.ctl("status", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"sluiced", r.stderr)

    def test_garbage_on_the_socket_gets_an_error_and_the_daemon_stays_up(self):
        import socket
        sock = os.path.join(self.d.dir, "control.sock")
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(sock)
            s.sendall(b"this is not json\n{\"command\":\"queue.nope\"}\n\x00\xff{]\n")
            buf = b""
            while buf.count(b"\n") < 3:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        replies = [json.loads(l) for l in buf.splitlines()]
        self.assertEqual(len(replies), 3)
        self.assertTrue(all(r["ok"] is False for r in replies))
        self.assertTrue(self.ctl_json("status")["version"])


class StrictRequests(ControlCase):
    """Finding 7 of the hardening review: with duplicate keys the last one
    won, so {"command":"status","command":"queue.delete","all":true} deleted
    the whole queue; {"ids":[],"all":true} deleted everything though "not
    both" was documented. Both are refused now, and nothing is touched."""

    def raw(self, *lines):
        import socket
        sock = os.path.join(self.d.dir, "control.sock")
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(sock)
            s.sendall(b"".join(l + b"\n" for l in lines))
            buf = b""
            while buf.count(b"\n") < len(lines):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return [json.loads(l) for l in buf.splitlines()]

    def test_duplicate_keys_and_contradictions_delete_nothing(self):
        mid = self.deferred_message()
        replies = self.raw(b'{"command":"status","command":"queue.delete","all":true}',
                           b'{"command":"queue.delete","ids":[],"all":true}',
                           b'{"command":"queue.delete","all":true,"ids":["%s"]}' % mid.encode(),
                           b'{"command":"queue.delete","ids":["%s"],"ids":["%s"]}' % (mid.encode(), mid.encode()))
        self.assertEqual(len(replies), 4, replies)
        for r in replies:
            self.assertIs(r["ok"], False, r)
            self.assertEqual(r["error"], "bad_request", r)
        self.assertIn("more than once", replies[0]["message"])
        self.assertIn("not both", replies[1]["message"])
        m = self.ctl_json("queue", "list")["messages"]
        self.assertEqual([x["id"] for x in m], [mid])
        # A well-formed request still works afterwards.
        self.ctl("queue", "delete", mid)
        self.assertEqual(self.ctl_json("queue", "list")["messages"], [])


class Busy(ControlCase):
    """Thousands of messages listed while mail keeps flowing in."""

    def make_daemon(self, extra, dns_servers):
        # DNS that never answers usefully: every message stays deferred.
        extra = extra.replace('retry_schedule = ["1s"]', 'retry_schedule = ["1h"]')
        return Sluiced(extra=extra, dns_servers=["127.0.0.1:9"])

    def smtp_source(self, n, sessions=10):
        return subprocess.Popen(["/usr/sbin/smtp-source", "-s", str(sessions), "-m", str(n), "-l", "1024",
                                 "-f", "load@sender.test", "-t", "sink@example.test",
                                 "127.0.0.1:%d" % self.d.port], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)

    def test_thousands_listed_while_mail_flows(self):
        first = self.smtp_source(3000)
        self.assertEqual(first.wait(240), 0, first.stderr.read())
        td.wait_for(lambda: self.ctl_json("status")["queue"]["messages"] >= 3000, timeout=60,
                    what="3000 messages in the queue")
        more = self.smtp_source(3000, sessions=5)
        listings = []
        while more.poll() is None:
            t0 = time.time()
            r = self.ctl("queue", "list", "--json")
            listings.append((time.time() - t0, len(json.loads(r.stdout)["messages"])))
            human = self.ctl("queue", "list").stdout.decode()
            self.assertIn("messages", human.splitlines()[-1])
        self.assertEqual(more.returncode, 0, more.stderr.read())
        self.assertGreaterEqual(len(listings), 1)
        self.assertTrue(all(n >= 3000 for _, n in listings), listings)
        # The flow carried on: every message of the second run was accepted.
        td.wait_for(lambda: self.ctl_json("status")["queue"]["messages"] >= 6000, timeout=60,
                    what="6000 messages in the queue")
        # Acting on all of them at once works too.
        out = self.ctl_json("queue", "delete", "--all")
        self.assertGreaterEqual(out["count"], 6000)
        self.assertEqual(self.ctl_json("queue", "list")["messages"], [])
        print("\nlisting %d messages took %.2f s at most while mail flowed" % (
            max(n for _, n in listings), max(t for t, _ in listings)))


if __name__ == "__main__":
    unittest.main()
