"""sluicectl dkim keygen and sluicectl dns-records, end to end, with no daemon.

keygen: both key types, the file's mode and owner, the directory it makes,
refusal to overwrite. dns-records: its output parsed back (by dnslib, as a
zone file) and each DKIM p= compared with the key file's public key as
openssl prints it. --check: the printed records served by a real DNS server
on loopback (dns/testdata/fake_dns.py, dnslib), in four states: all
published (exit 0), one DKIM key different, DMARC missing, and a PTR whose
name does not resolve back to the address (each exit 1, with its line).
"""
import base64
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import unittest

from dnslib import QTYPE, RR

import harness
from harness import Sluiced
from test_delivery import FakeDns

SLUICECTL = os.environ.get("SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))

SOA = "test. 3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 600\n"
DOMAIN = "example.test"
HOST = "mx.sluice.test"  # the harness's hostname
IPS = ["192.0.2.10", "2001:db8::10"]


def ctl(config, *args):
    return subprocess.run([SLUICECTL, "--config", config] + list(args), capture_output=True, text=True,
                          timeout=60)


def public_key_b64(key_file):
    """The key's p= as openssl (not BoringSSL) sees it: the SubjectPublicKeyInfo
    for RSA, the raw 32 octets for Ed25519 (RFC 8463)."""
    pem = subprocess.run(["openssl", "pkey", "-in", key_file, "-pubout"], capture_output=True, text=True,
                         check=True).stdout
    der = base64.b64decode("".join(l for l in pem.splitlines() if not l.startswith("-----")))
    text = subprocess.run(["openssl", "pkey", "-in", key_file, "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout
    if "ED25519" in text:
        return base64.b64encode(der[-32:]).decode()
    return base64.b64encode(der).decode()


def txt_records(zone_text):
    """{name: [joined TXT text]} and the other records, read by dnslib."""
    txt, other = {}, []
    for rr in RR.fromZone(zone_text):
        if rr.rtype == QTYPE.TXT:
            txt.setdefault(str(rr.rname), []).append(b"".join(rr.rdata.data).decode())
        else:
            other.append((str(rr.rname), QTYPE[rr.rtype], str(rr.rdata)))
    return txt, other


def tags(text):
    return dict(p.strip().split("=", 1) for p in text.split(";") if p.strip())


class Keygen(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-keygen-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.d = Sluiced(workdir=self.dir)  # only its configuration; never started

    def keygen(self, selector, *extra, out=None):
        out = out or os.path.join(self.dir, "keys", "%s.%s.key" % (DOMAIN, selector))
        return out, ctl(self.d.config_path, "dkim", "keygen", "--domain", DOMAIN, "--selector", selector,
                        "--out", out, *extra)

    def test_both_types_mode_record_and_refusal(self):
        for selector, extra, k in (("s1", ["--bits", "2048"], "rsa"), ("s2", ["--type", "ed25519"], "ed25519")):
            path, r = self.keygen(selector, *extra)
            self.assertEqual(r.returncode, 0, r.stderr)
            st = os.stat(path)
            self.assertEqual(st.st_mode & 0o7777, 0o640)
            self.assertEqual(os.stat(os.path.dirname(path)).st_mode & 0o7777, 0o750)
            # The record line as dns-records prints it, and the table to paste.
            txt, _ = txt_records(r.stdout.split("\n\n")[0])  # before the [[dkim]] table
            name = "%s._domainkey.%s." % (selector, DOMAIN)
            self.assertEqual(list(txt), [name])
            t = tags(txt[name][0])
            self.assertEqual((t["v"], t["k"]), ("DKIM1", k))
            self.assertEqual(t["p"], public_key_b64(path))
            self.assertIn('[[dkim]]\ndomain = "%s"\nselector = "%s"\nprivate_key = "%s"\n'
                          % (DOMAIN, selector, path), r.stdout)
            if k == "rsa":
                text = subprocess.run(["openssl", "pkey", "-in", path, "-noout", "-text"], capture_output=True,
                                      text=True, check=True).stdout
                self.assertIn("(2048 bit", text)
            else:
                self.assertEqual(len(t["p"]), 44)
        # A second keygen to the same file is refused and leaves it alone.
        with open(path, "rb") as f:
            before = f.read()
        _, r = self.keygen("s2", "--type", "ed25519")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("already exists", r.stderr)
        self.assertEqual(r.stdout, "")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_bad_arguments(self):
        _, r = self.keygen("s1", "--bits", "1000")
        self.assertEqual(r.returncode, 2)
        self.assertIn("1024 to 8192", r.stderr)
        r = ctl(self.d.config_path, "dkim", "keygen", "--domain", "exa mple.test", "--selector", "s1",
                "--out", os.path.join(self.dir, "k"))
        self.assertEqual(r.returncode, 2)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "k")))

    @unittest.skipUnless(os.geteuid() == 0, "needs root (chown)")
    def test_group_is_the_daemons_when_run_as_root(self):
        with harness.temporary_account("sluicekeytest") as acct:
            with open(self.d.config_path) as f:
                text = f.read()
            self.d.write_config(text.replace('user = "root"', 'user = "sluicekeytest"'))
            path, r = self.keygen("s3", "--type", "ed25519")
            self.assertEqual(r.returncode, 0, r.stderr)
            st = os.stat(path)
            self.assertEqual((st.st_uid, st.st_gid), (0, acct.pw_gid))
            self.assertEqual(os.stat(os.path.dirname(path)).st_gid, acct.pw_gid)
        # No readable configuration: said so, and the file stays root's.
        r = ctl(os.path.join(self.dir, "missing.toml"), "dkim", "keygen", "--domain", DOMAIN,
                "--selector", "s4", "--out", os.path.join(self.dir, "k4.key"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("stays root:root", r.stderr)
        self.assertEqual(os.stat(os.path.join(self.dir, "k4.key")).st_gid, 0)


class DnsRecords(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-dnsrec-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.keys = {}
        probe = Sluiced(workdir=self.dir)
        for selector, extra in (("rsa1", []), ("ed1", ["--type", "ed25519"])):
            path = os.path.join(self.dir, "keys", "%s.key" % selector)
            r = ctl(probe.config_path, "dkim", "keygen", "--domain", DOMAIN, "--selector", selector,
                    "--out", path, *extra)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.keys[selector] = path
        self.tables = "".join('[[dkim]]\ndomain = "%s"\nselector = "%s"\nprivate_key = "%s"\n'
                              % (DOMAIN, s, p) for s, p in self.keys.items())
        self.dns = None

    def tearDown(self):
        if self.dns:
            self.dns.stop()

    def config(self, dns_port=9):
        return Sluiced(workdir=self.dir, extra=self.tables, dns_servers=["127.0.0.1:%d" % dns_port]).config_path

    def records(self, *extra):
        args = ["dns-records"] + [a for ip in IPS for a in ("--ip", ip)] + list(extra)
        return ctl(self.config(), *args)

    def test_output_parses_back_and_matches_the_keys(self):
        r = self.records()
        self.assertEqual(r.returncode, 0, r.stderr)
        txt, other = txt_records(r.stdout)
        self.assertEqual(txt["%s." % DOMAIN], ["v=spf1 ip4:192.0.2.10 ip6:2001:db8::10 ~all"])
        for selector, path in self.keys.items():
            (record,) = txt["%s._domainkey.%s." % (selector, DOMAIN)]
            self.assertEqual(tags(record)["p"], public_key_b64(path))
        # The RSA record is longer than 255 octets: several strings, joined back.
        self.assertRegex(r.stdout, r'rsa1\._domainkey\.example\.test\. +IN TXT \( "v=DKIM1; k=rsa; p=[^"]+" "[^"]+" \)')
        self.assertEqual(txt["_dmarc.%s." % DOMAIN], ["v=DMARC1; p=none; rua=mailto:postmaster@%s" % DOMAIN])
        self.assertEqual(txt["_smtp._tls.%s." % DOMAIN], ["v=TLSRPTv1; rua=mailto:postmaster@%s" % DOMAIN])
        self.assertEqual(sorted(other), sorted([
            (HOST + ".", "A", "192.0.2.10"), (HOST + ".", "AAAA", "2001:db8::10"),
            ("10.2.0.192.in-addr.arpa.", "PTR", HOST + "."),
            ("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "PTR", HOST + ".")]))
        # --json carries the same records, unsplit.
        j = json.loads(self.records("--json").stdout)
        values = {(x["name"], x["type"]): x["value"] for d in j["domains"] for x in d["records"]}
        for name, texts in txt.items():
            self.assertEqual(values[(name, "TXT")], texts[0])
        self.assertNotIn("status", j["domains"][0]["records"][0])

    def test_a_key_that_cannot_be_read_is_named(self):
        with open(self.keys["ed1"], "w") as f:
            f.write("not a key\n")
        r = self.records()
        self.assertEqual(r.returncode, 3)
        self.assertIn("%s ([[dkim]] 2 (example.test, selector ed1)): not a PEM private key" % self.keys["ed1"],
                      r.stderr)

    def check(self, zone):
        if self.dns:
            self.dns.stop()
        self.dns = FakeDns(self.dir, SOA + zone)
        args = ["dns-records", "--check"] + [a for ip in IPS for a in ("--ip", ip)]
        return ctl(self.config(self.dns.port), *args)

    def assert_line(self, output, status, name, rest=""):
        pattern = "^" + re.escape("%-14s%s" % (status, name)) + r" IN [A-Z]+ \([^)]+\)" + rest
        self.assertRegex(output, re.compile(pattern, re.M))

    def test_check_in_four_states(self):
        published = self.records().stdout
        with self.subTest("every record published"):
            r = self.check(published)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(len(re.findall(r"^ok  ", r.stdout, re.M)), 9, r.stdout)
            self.assertIn("all 9 records are published as they should be", r.stdout)
            j = json.loads(ctl(self.config(self.dns.port), "dns-records", "--check", "--json",
                               *[a for ip in IPS for a in ("--ip", ip)]).stdout)
            self.assertEqual({x["status"] for d in j["domains"] for x in d["records"]}, {"ok"})

        with self.subTest("one DKIM key different"):
            other = os.path.join(self.dir, "other.key")
            subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", other], check=True,
                           capture_output=True)
            wrong = public_key_b64(other)
            zone = re.sub(r'(ed1\._domainkey\S+ +IN TXT "v=DKIM1; k=ed25519; p=)[^"]+', r"\g<1>" + wrong, published)
            self.assertNotEqual(zone, published)
            r = self.check(zone)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assert_line(r.stdout, "different", "ed1._domainkey.example.test.",
                             r': published "v=DKIM1; k=ed25519; p=%s": its p= is another key' % re.escape(wrong))
            self.assert_line(r.stdout, "ok", "rsa1._domainkey.example.test.")
            self.assertIn("1 of 9 records are not right", r.stdout)

        with self.subTest("DMARC missing"):
            zone = "".join(l for l in published.splitlines(True) if not l.startswith("_dmarc."))
            r = self.check(zone)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assert_line(r.stdout, "missing", "_dmarc.example.test.")
            self.assertIn("1 of 9 records are not right", r.stdout)

        with self.subTest("PTR not forward-confirmed"):
            zone = published.replace("IN A   192.0.2.10", "IN A   192.0.2.99")
            self.assertNotEqual(zone, published)
            r = self.check(zone)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assert_line(r.stdout, "different", "10.2.0.192.in-addr.arpa.",
                             ": published mx.sluice.test.: not forward-confirmed: the PTR names mx.sluice.test, "
                             "which does not resolve to 192.0.2.10")
            self.assert_line(r.stdout, "ok",
                             "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.")
            self.assert_line(r.stdout, "different", HOST + ".", ": published 192.0.2.99")

    def test_check_when_dns_does_not_answer(self):
        r = ctl(self.config(9), "dns-records", "--check", "--ip", IPS[0])
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assert_line(r.stdout, "lookup failed", "example.test.")
        self.assertIn("could not be looked up", r.stdout)


if __name__ == "__main__":
    unittest.main()
