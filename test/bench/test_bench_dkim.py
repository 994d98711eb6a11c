"""test_bench_dkim.py — the benchmark's dual-signing check (bench_dkim.py)
says "signed" only for mail that carries both signatures and verifies.

Keys come from bench_dkim.make_keys (openssl); the signed messages are made
by dkimpy, independently of Sluice, and written as smtp-sink -d dumps them.
Run by CTest as bench_dkim_check; exit 77 (skipped) without openssl or
python3-dkim.
"""
import base64
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

import bench_dkim

try:
    import dkim
except ImportError:
    dkim = None

MESSAGE = (b"From: <bench@source.test>\r\nTo: <sink@dest.test>\r\nSubject: load\r\n"
           b"Date: Sat,  5 Dec 2026 16:49:52 +0000 (UTC)\r\n"
           b"Message-Id: <0ea1.0003.0000@source.test>\r\n\r\n1XXXXXXXXXXXXXXXX\r\nXXXX\r\n")
SIGNED = [b"from", b"to", b"subject", b"date", b"message-id"]


def as_dumped(message):
    """A message as smtp-sink -d writes it: its own lines first, LF line
    ends, its Received field, an empty line at the end."""
    return (b"X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: bench-sluice.test\n"
            b"X-Mail-Args: <bench@source.test>\nX-Rcpt-Args: <sink@dest.test>\n"
            b"Received: from bench-sluice.test ([127.0.0.1])\n\tby smtp-sink (smtp-sink) with ESMTP id 1;\n"
            b"\tSat,  5 Dec 2026 16:50:57 +0000 (UTC)\n" + message.replace(b"\r\n", b"\n") + b"\n")


class DualSigningCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="bench-dkim-test-")
        cls.keys = bench_dkim.make_keys(os.path.join(cls.dir, "keys"), "source.test")
        cls.rsa, cls.ed = cls.keys

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def sign(self, key, message):
        if key["k"] == "rsa":
            with open(key["private_key"], "rb") as f:
                return dkim.sign(message, key["selector"].encode(), b"source.test", f.read(),
                                 include_headers=SIGNED)
        # dkimpy takes an Ed25519 key as its base64 seed: the last 32 octets
        # of the PKCS#8 DER
        der = subprocess.run([bench_dkim.OPENSSL, "pkey", "-in", key["private_key"], "-outform", "DER"],
                             capture_output=True, check=True).stdout
        return dkim.sign(message, key["selector"].encode(), b"source.test", base64.b64encode(der[-32:]),
                         signature_algorithm=b"ed25519-sha256", include_headers=SIGNED)

    def dual_signed(self):
        return self.sign(self.ed, MESSAGE) + self.sign(self.rsa, MESSAGE) + MESSAGE

    def check_dumps(self, *dumps):
        d = tempfile.mkdtemp(dir=self.dir)
        for i, data in enumerate(dumps):
            with open(os.path.join(d, "%d" % i), "wb") as f:
                f.write(data)
        return bench_dkim.check_dump_dir(d, self.keys)

    def test_keys_are_private_and_match_their_records(self):
        for key in self.keys:
            mode = stat.S_IMODE(os.stat(key["private_key"]).st_mode)
            self.assertEqual(mode, 0o600, key["private_key"])
        self.assertEqual(len(base64.b64decode(self.ed["p"])), 32)
        self.assertEqual(bench_dkim.dkim_config(self.keys)[:4],
                         ["[[dkim]]", 'domain = "source.test"', 'selector = "bench-rsa"',
                          'private_key = "%s"' % self.rsa["private_key"]])

    def test_both_signatures_that_verify_count_as_signed(self):
        r = self.check_dumps(as_dumped(self.dual_signed()), as_dumped(self.dual_signed()))
        self.assertEqual(r, {"messages": 2, "signed_by_all": 2, "verified_by_all": 2, "signed": True,
                             "problem": ""})

    def test_unsigned_mail_is_not_signed(self):
        r = self.check_dumps(as_dumped(MESSAGE))
        self.assertFalse(r["signed"])
        self.assertIn("carries 0 DKIM-Signature", r["problem"])

    def test_one_signature_is_not_enough(self):
        r = self.check_dumps(as_dumped(self.dual_signed()), as_dumped(self.sign(self.rsa, MESSAGE) + MESSAGE))
        self.assertFalse(r["signed"])
        self.assertEqual(r["signed_by_all"], 1)
        self.assertIn("message 2 carries 1 DKIM-Signature", r["problem"])

    def test_a_changed_body_does_not_verify(self):
        r = self.check_dumps(as_dumped(self.dual_signed()).replace(b"1XXXX", b"2XXXX"))
        self.assertFalse(r["signed"])
        self.assertEqual((r["signed_by_all"], r["verified_by_all"]), (1, 0))

    def test_a_signature_by_another_key_does_not_verify(self):
        other = bench_dkim.make_keys(os.path.join(self.dir, "other"), "source.test")
        forged = self.sign(other[1], MESSAGE) + self.sign(self.rsa, MESSAGE) + MESSAGE
        r = self.check_dumps(as_dumped(forged))
        self.assertFalse(r["signed"])
        self.assertIn("bench-ed", r["problem"])

    def test_no_message_is_not_signed(self):
        r = self.check_dumps()
        self.assertFalse(r["signed"])
        self.assertEqual(r["problem"], "no message was received")


if __name__ == "__main__":
    if dkim is None or not os.path.exists(bench_dkim.OPENSSL):
        print("test_bench_dkim: skipped: needs python3-dkim and openssl")
        sys.exit(77)
    unittest.main()
