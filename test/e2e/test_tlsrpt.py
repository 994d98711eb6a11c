"""TLS-RPT (RFC 8460) end to end: sluiced delivers to example.test, whose
_smtp._tls TXT record asks for reports at reports@sender.test; the sessions
are counted (sluicectl tls-reports --json), kept across a restart, and
`sluicectl tls-reports send --include-today` mails the report to
sender.test's MX (127.0.0.3): multipart/report with a gzip JSON carrying
RFC 8460 §4.4's fields, DKIM-signed by the contact's domain (dkimpy
verifies it).
"""
import email
import email.policy
import gzip
import json
import os
import subprocess
import unittest

import harness
import test_delivery as td
from harness import Sluiced
from test_dkim import dkim_tables, printed_records, verify_all

SLUICECTL = harness.SLUICECTL if hasattr(harness, "SLUICECTL") else os.environ.get(
    "SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))

ZONE = td.ZONE + '_smtp._tls.example.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:reports@sender.test,https://r.example/x"\n'

TLS_REPORTS = '\n[tls_reports]\nenabled = true\norganization = "Sluice Test"\ncontact = "tlsrpt@sender.test"\n'


class Base(td.Delivery):
    zone = ZONE

    def make_daemon(self, extra, dns_servers):
        d = Sluiced(extra=extra + dkim_tables(self.work) + TLS_REPORTS, dns_servers=dns_servers)
        self.records = printed_records(d.config_path)
        return d

    def ctl(self, *args):
        r = subprocess.run([SLUICECTL, "--config", self.d.config_path] + list(args),
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r.stdout.decode()

    def counts(self):
        """{domain: (successful, failed, rua, failures)} summed over the days."""
        out = {}
        for day in json.loads(self.ctl("tls-reports", "--json"))["days"]:
            for d in day["domains"]:
                ok, failed, _, failures = out.get(d["domain"], (0, 0, [], []))
                for p in d["policies"]:
                    failures = failures + p["failures"]
                out[d["domain"]] = (ok + d["successful"], failed + d["failed"], d["rua"], failures)
        return out

    def deliver(self, n):
        for i in range(n):
            before = len(self.mx.messages)
            self.submit("alice@sender.test", ["bob%d@example.test" % i])
            td.wait_for(lambda: len(self.mx.messages) > before, what="message %d at the MX" % i)


class Counted(Base):
    sink_tls = True  # STARTTLS with a self-signed certificate: opportunistic TLS comes up

    def test_counts_survive_a_restart_and_the_report_arrives_signed(self):
        self.deliver(3)
        td.wait_for(lambda: self.counts().get("example.test", (0,))[0] >= 1, what="a counted session")
        ok, failed, rua, _ = self.counts()["example.test"]
        self.assertEqual(failed, 0)
        self.assertEqual(rua, ["reports@sender.test"])  # the https: address is not ours to use
        self.assertIn("example.test", self.ctl("tls-reports"))

        # A clean restart loses nothing.
        before = self.counts()
        self.d.stop()
        files = os.listdir(os.path.join(self.d.spool, "tlsrpt"))
        self.assertEqual(len(files), 1, files)
        self.assertTrue(files[0].endswith(".json"), files)
        self.d.start()
        self.assertEqual(self.counts(), before)

        out = json.loads(self.ctl("tls-reports", "send", "--include-today", "--json"))
        self.assertEqual(out["count"], 1)
        td.wait_for(lambda: any("reports@sender.test" in m[1] for m in self.bounce_mx.messages),
                    what="the report at sender.test's MX")
        mail_from, rcpts, content = [m for m in self.bounce_mx.messages if "reports@sender.test" in m[1]][0]
        self.assertIn(mail_from, ("", "<>"))  # the null sender
        self.assertEqual(rcpts, ["reports@sender.test"])

        self.assertEqual([ok for (_, _, ok) in verify_all(content, self.records)], [True, True])

        msg = email.message_from_bytes(content, policy=email.policy.default)
        self.assertEqual(msg["From"], "tlsrpt@sender.test")
        self.assertEqual(msg["TLS-Report-Domain"], "example.test")
        self.assertEqual(msg["TLS-Report-Submitter"], "sender.test")
        self.assertRegex(str(msg["Subject"]), r"^Report Domain: example\.test Submitter: sender\.test Report-ID: <.+>$")
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "tlsrpt")
        parts = list(msg.iter_parts())
        self.assertEqual([p.get_content_type() for p in parts], ["text/plain", "application/tlsrpt+gzip"])
        self.assertTrue(parts[1].get_filename().startswith("sender.test!example.test!"))
        report = json.loads(gzip.decompress(parts[1].get_payload(decode=True)))
        self.assertEqual(report["organization-name"], "Sluice Test")
        self.assertEqual(report["contact-info"], "tlsrpt@sender.test")
        self.assertIn(report["report-id"], str(msg["Subject"]))
        self.assertRegex(report["date-range"]["start-datetime"], r"^\d{4}-\d\d-\d\dT00:00:00Z$")
        self.assertRegex(report["date-range"]["end-datetime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(len(report["policies"]), 1)
        p = report["policies"][0]
        self.assertEqual(p["policy"]["policy-type"], "no-policy-found")
        self.assertEqual(p["policy"]["policy-domain"], "example.test")
        self.assertEqual(p["summary"], {"total-successful-session-count": ok, "total-failure-session-count": 0})
        self.assertNotIn("failure-details", p)

        # The day's counts went with the report; its file goes once it is spooled.
        self.assertEqual(self.counts(), {})
        td.wait_for(lambda: os.listdir(os.path.join(self.d.spool, "tlsrpt")) == [],
                    what="the day's file to go")


class NotOffered(Base):
    sink_tls = False  # the sink does not offer STARTTLS

    def test_plaintext_sessions_are_failures(self):
        self.deliver(1)
        td.wait_for(lambda: self.counts().get("example.test", (0, 0))[1] >= 1, what="a counted failure")
        ok, failed, _, failures = self.counts()["example.test"]
        self.assertEqual(ok, 0)
        self.assertEqual(failures[0]["result"], "starttls-not-supported")
        self.assertEqual(failures[0]["receiving_mx"], "mx.example.test")
        self.assertEqual(failures[0]["receiving_ip"], "127.0.0.2")


class Disabled(td.Delivery):
    zone = ZONE

    def test_nothing_is_counted_when_disabled(self):
        self.submit("alice@sender.test", ["bob@example.test"])
        td.wait_for(lambda: self.mx.messages, what="the message")
        r = subprocess.run([SLUICECTL, "--config", self.d.config_path, "tls-reports", "--json"],
                           capture_output=True, timeout=30)
        out = json.loads(r.stdout)
        self.assertEqual(out["enabled"], False)
        self.assertEqual(out["days"], [])
        r = subprocess.run([SLUICECTL, "--config", self.d.config_path, "tls-reports", "send"],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"enabled is false", r.stderr)


if __name__ == "__main__":
    unittest.main()
