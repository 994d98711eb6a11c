"""DKIM signing (issue 14): every source's mail leaves signed by the [[dkim]]
tables of its From domain — one RSA and one Ed25519 signature (dual
signing), with keys made by `sluicectl dkim keygen` — and Debian's dkimpy
verifies both against the DKIM records `sluicectl dns-records` prints;
changed content fails; other domains are not signed; a subdomain is signed
by its parent's tables; a login cannot borrow the domain for a From it may
not use; a message carrying our own valid signature is not signed twice;
key files others may read are refused, and a reload with a bad key keeps
the old keys.

Zone and sinks come from test_delivery.py: example.test's MX is a recording
sink on 127.0.0.2. The sending domain is sender.test.
"""
import json
import os
import smtplib
import ssl
import subprocess
import unittest

import test_delivery as td
import harness
from harness import Sluiced, SubmissionSluiced, user_line

SENDMAIL = os.environ.get("SLUICE_SENDMAIL",
                          os.path.join(os.path.dirname(__file__), "../../build/exe/sluice-sendmail"))
SLUICECTL = os.environ.get("SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))

HEADER = ("From: App <app@sender.test>\r\nTo: b@example.test\r\nSubject: signed?\r\n"
          "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <m1@sender.test>\r\n")
BODY = "Hello,\r\n\r\nthis line has  two spaces and a trailing one \r\n.dot line\r\n"


def make_key(path, kind, domain, selector):
    r = subprocess.run([SLUICECTL, "dkim", "keygen", "--domain", domain, "--selector", selector,
                        "--type", kind, "--out", path], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr


def dkim_tables(work, domain="sender.test", rsa_selector="rsa1", ed_selector="ed1"):
    """Two [[dkim]] tables for `domain`, their keys made by sluicectl."""
    text = ""
    for kind, selector in (("rsa", rsa_selector), ("ed25519", ed_selector)):
        path = os.path.join(work, "%s.%s.key" % (domain, selector))
        if not os.path.exists(path):
            make_key(path, kind, domain, selector)
        text += '[[dkim]]\ndomain = "%s"\nselector = "%s"\nprivate_key = "%s"\n' % (domain, selector, path)
    return text


def printed_records(config_path):
    """The DKIM records `sluicectl dns-records --json` says to publish: name -> TXT text."""
    r = subprocess.run([SLUICECTL, "--config", config_path, "dns-records", "--ip", "127.0.0.1", "--json"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    records = {}
    for block in json.loads(r.stdout)["domains"]:
        for rec in block["records"]:
            if rec["type"] == "TXT" and "._domainkey." in rec["name"]:
                records[rec["name"]] = rec["value"]
    assert len(records) == 2, records
    return records


def verify_all(message, records):
    """dkimpy's verdict for each DKIM-Signature of `message` (bytes), with a
    stubbed DNS serving `records`; a list of (d, s, ok)."""
    import dkim
    dns = lambda name, timeout=5: records.get(name.decode(), "").encode() or None
    d = dkim.DKIM(message)
    out = []
    sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
    for i, sig in enumerate(sigs):
        tags = dict(t.strip().split(b"=", 1) for t in sig.replace(b"\r\n", b"").split(b";") if b"=" in t)
        try:
            ok = d.verify(idx=i, dnsfunc=dns)
        except dkim.ValidationError:
            ok = False
        out.append((tags[b"d"].strip().decode(), tags[b"s"].strip().decode(), ok))
    return out


class Signed(td.Delivery):
    def make_daemon(self, extra, dns_servers):
        d = Sluiced(extra=extra + dkim_tables(self.work), dns_servers=dns_servers)
        self.records = printed_records(d.config_path)
        return d

    def deliver(self, header, body=BODY):
        self.submit("app@sender.test", ["b@example.test"], header + "\r\n" + body)
        n = len(self.mx.messages)
        td.wait_for(lambda: len(self.mx.messages) > n - 1 and self.mx.messages, what="the message at the MX")
        return self.mx.messages[-1][2]

    def test_relayed_mail_is_dual_signed_and_both_verify(self):
        content = self.deliver(HEADER)
        self.assertTrue(content.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; "
                                           b"d=sender.test; s=rsa1;"), content[:200])
        self.assertEqual(verify_all(content, self.records),
                         [("sender.test", "rsa1", True), ("sender.test", "ed1", True)])
        self.assertIn(b"a=ed25519-sha256", content)
        # From is oversigned: h= names it twice.
        self.assertRegex(content.decode(), r"h=From:From:")
        self.d.wait_log("dkim signed d=sender.test s=rsa1 a=rsa-sha256, d=sender.test s=ed1 a=ed25519-sha256")
        # Changed after signing: both fail. The test can fail.
        tampered = content.replace(b"two spaces", b"two  spaces and more")
        self.assertEqual(verify_all(tampered, self.records),
                         [("sender.test", "rsa1", False), ("sender.test", "ed1", False)])
        added = content.replace(b"Subject: signed?\r\n", b"Subject: signed?\r\nSubject: second\r\n")
        self.assertEqual([ok for (_, _, ok) in verify_all(added, self.records)], [False, False])

    def test_other_domains_are_not_signed(self):
        content = self.deliver(HEADER.replace("app@sender.test", "app@other.test"))
        self.assertNotIn(b"DKIM-Signature", content)

    def test_a_subdomain_is_signed_by_its_parent(self):
        content = self.deliver(HEADER.replace("app@sender.test", "news@mail.sender.test"))
        self.assertEqual(verify_all(content, self.records),
                         [("sender.test", "rsa1", True), ("sender.test", "ed1", True)])

    def test_no_from_or_two_from_fields_are_not_signed(self):
        content = self.deliver(HEADER + "From: second@sender.test\r\n")
        self.assertNotIn(b"DKIM-Signature", content)
        self.d.wait_log("dkim not signed: 2 From fields")

    def test_our_own_valid_signature_is_not_made_twice(self):
        content = self.deliver(HEADER)
        self.assertEqual(content.count(b"DKIM-Signature:"), 2)
        # The signed message comes back through the relay (a second hop of
        # ours): still two signatures, both valid.
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=10) as s:
            s.sendmail("app@sender.test", ["again@example.test"], content)
        td.wait_for(lambda: any("again@example.test" in m[1] for m in self.mx.messages), what="the second copy")
        again = [m for m in self.mx.messages if "again@example.test" in m[1]][0][2]
        self.assertEqual(again.count(b"DKIM-Signature:"), 2)
        self.assertEqual([ok for (_, _, ok) in verify_all(again, self.records)], [True, True])
        self.d.wait_log("(already signed)")

    def test_sendmail_mail_is_signed(self):
        r = subprocess.run([SENDMAIL, "-C", self.d.config_path, "-f", "app@sender.test", "b@example.test"],
                           input=(HEADER + "\r\n" + BODY).encode(), capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        td.wait_for(lambda: self.mx.messages, what="the message at the MX")
        content = self.mx.messages[0][2]
        self.assertIn(b"from userid", content)  # it came through the maildrop
        self.assertEqual([ok for (_, _, ok) in verify_all(content, self.records)], [True, True])


class SignedSubmission(td.Delivery):
    def make_daemon(self, extra, dns_servers):
        d = SubmissionSluiced(users=[user_line("alice@sender.test", "pw1", "sha512")],
                              extra=extra + dkim_tables(self.work), dns_servers=dns_servers)
        self.records = printed_records(d.config_path)
        return d

    def send(self, header):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", self.d.port587, timeout=10) as s:
            s.starttls(context=ctx)
            s.login("alice@sender.test", "pw1")
            s.sendmail("alice@sender.test", ["b@example.test"], header + "\r\n" + BODY)

    def test_submitted_mail_is_signed(self):
        self.send(HEADER.replace("app@", "alice@"))
        td.wait_for(lambda: self.mx.messages, what="the message at the MX")
        self.assertEqual(verify_all(self.mx.messages[0][2], self.records),
                         [("sender.test", "rsa1", True), ("sender.test", "ed1", True)])

    def test_a_login_cannot_borrow_the_domain_for_another_from(self):
        # MAIL FROM is alice's own address, but the From field is the CEO's:
        # accepted (as Postfix would), but not signed with the domain's key.
        self.send(HEADER.replace("app@", "ceo@"))
        td.wait_for(lambda: self.mx.messages, what="the message at the MX")
        self.assertNotIn(b"DKIM-Signature", self.mx.messages[0][2])
        self.d.wait_log("dkim not signed: the login may not use From <ceo@sender.test>")


class Keys(unittest.TestCase):
    def setUp(self):
        import tempfile
        self.work = tempfile.mkdtemp(prefix="sluice-dkim-")
        self.d = None

    def tearDown(self):
        import shutil
        if self.d:
            self.d.stop()
            shutil.rmtree(self.d.dir, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def test_a_key_others_may_read_is_refused_at_start(self):
        tables = dkim_tables(self.work)
        key = os.path.join(self.work, "sender.test.ed1.key")
        os.chmod(key, 0o644)
        self.d = Sluiced(extra=tables)
        self.d.start(wait=False)
        self.assertEqual(self.d.proc.wait(20), 1)
        self.assertIn("dkim: [[dkim]] 2 (sender.test, selector ed1): private_key %s: mode 0644 lets every "
                      "account read or change the key; chmod 0640" % key, self.d.log())
        check = subprocess.run([harness.SLUICED, "--check", "--config", self.d.config_path],
                               capture_output=True, timeout=30)
        self.assertNotEqual(check.returncode, 0)
        self.assertIn(b"mode 0644 lets every account read", check.stdout + check.stderr)

    def test_a_bad_key_on_reload_keeps_the_old_keys(self):
        tables = dkim_tables(self.work)
        self.d = Sluiced(extra=tables)
        self.d.start()
        self.d.wait_log("dkim: [[dkim]] 2 (sender.test, selector ed1) signs with a ed25519-sha256 key")
        bad = os.path.join(self.work, "broken.key")
        with open(bad, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        os.chmod(bad, 0o600)
        with open(self.d.config_path) as f:
            text = f.read()
        self.d.write_config(text.replace(os.path.join(self.work, "sender.test.ed1.key"), bad))
        import signal
        self.d.proc.send_signal(signal.SIGHUP)
        self.d.wait_log("reload: configuration has errors; keeping the running one")
        self.assertIn("[[dkim]] 2 (sender.test, selector ed1): private_key %s: not a PEM private key" % bad,
                      self.d.log())
        # Still signing with the old Ed25519 key.
        import smtplib as sm
        with sm.SMTP("127.0.0.1", self.d.port, timeout=10) as s:
            s.sendmail("app@sender.test", ["b@example.test"], HEADER + "\r\n" + BODY)
        self.d.wait_log("dkim signed d=sender.test s=rsa1 a=rsa-sha256, d=sender.test s=ed1 a=ed25519-sha256")


@unittest.skipUnless(os.geteuid() == 0, "needs root (accounts, dropping privileges)")
class KeysAsTheDaemonsUser(unittest.TestCase):
    """The deployment path: sluiced starts as root and drops to `user`, and
    reads the keys as that account, at start as on reload. Keys made by
    sluicectl dkim keygen (as root, with the configuration naming the user)
    are root:GROUP 0640 in a 0750 directory of that group: readable. A key
    only root can read is a start-up error naming the table."""

    def run_as(self, name, make_keys):
        """Starts sluiced as a new account `name` (removed after the test, after
        the daemon stops) with two tables whose keys make_keys(d, keydir, acct)
        writes."""
        import shutil
        import tempfile
        from harness import temporary_account
        acct = self.enterContext(temporary_account(name))
        work = tempfile.mkdtemp(prefix="sluice-dkim-user-")
        self.addCleanup(shutil.rmtree, work, True)
        os.chmod(work, 0o711)  # the account reaches the key directory, nothing more
        keydir = os.path.join(work, "dkim")
        tables = "".join('[[dkim]]\ndomain = "sender.test"\nselector = "%s"\nprivate_key = "%s/%s.key"\n'
                         % (s, keydir, s) for s in ("rsa1", "ed1"))
        d = Sluiced(user=acct.pw_name, extra=tables)
        self.addCleanup(shutil.rmtree, d.dir, True)
        self.addCleanup(d.stop)
        os.chmod(d.dir, 0o711)  # and its spool
        make_keys(d, keydir, acct)
        d.start(wait=False)
        return d, acct

    def test_keys_from_keygen_are_read_as_the_user_and_sign(self):
        def keygen(d, keydir, acct):
            for kind, selector in (("rsa", "rsa1"), ("ed25519", "ed1")):
                r = subprocess.run([SLUICECTL, "--config", d.config_path, "dkim", "keygen", "--domain", "sender.test",
                                    "--selector", selector, "--type", kind, "--out",
                                    os.path.join(keydir, selector + ".key")], capture_output=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
            st = os.stat(os.path.join(keydir, "ed1.key"))
            self.assertEqual((st.st_mode & 0o777, st.st_uid, st.st_gid), (0o640, 0, acct.pw_gid))
            self.assertEqual(os.stat(keydir).st_mode & 0o777, 0o750)
        d, acct = self.run_as("sluice-dkimkeys", keygen)
        d.wait_listening()
        d.wait_log("running as sluice-dkimkeys")
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
            s.sendmail("app@sender.test", ["b@example.test"], HEADER + "\r\n" + BODY)
        d.wait_log("dkim signed d=sender.test s=rsa1 a=rsa-sha256, d=sender.test s=ed1 a=ed25519-sha256")
        # A reload reads them again, as the account.
        import signal
        before = d.log().count("signs with a rsa-sha256 key")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reload: configuration re-read")
        self.assertEqual(d.log().count("signs with a rsa-sha256 key"), before + 1)

    def test_a_key_only_root_can_read_stops_the_start(self):
        def root_only(d, keydir, acct):
            os.makedirs(keydir, mode=0o755)
            for kind, selector in (("RSA", "rsa1"), ("ED25519", "ed1")):
                path = os.path.join(keydir, selector + ".key")
                subprocess.run(["openssl", "genpkey", "-algorithm", kind, "-out", path], check=True,
                               capture_output=True, timeout=60)
                os.chmod(path, 0o600)
        d, acct = self.run_as("sluice-dkimroot", root_only)
        self.assertEqual(d.proc.wait(20), 1)
        self.assertRegex(d.log(), r"error: dkim: \[\[dkim\]\] 1 \(sender.test, selector rsa1\): private_key "
                                  r"/\S+/dkim/rsa1.key: cannot open: Permission denied")


if __name__ == "__main__":
    unittest.main()
