"""Issue 11, finding 5: a local user can fill the spool.

- sluice-sendmail under `ulimit -f` (RLIMIT_FSIZE) with a 10 MB message:
  it must exit EX_TEMPFAIL (75) and leave no `.tmp` in the maildrop (before
  the fix, SIGXFSZ killed it and the partial file stayed for 24 hours);
  killed with SIGTERM while its input trickles in, it exits 75 and leaves
  nothing either.
- A small tmpfs spool: SMTP clients fill it; MAIL FROM is refused with
  `452 4.3.1` while the file system still has `limits.min_free_space`
  left (before: it filled to the last byte and commits failed with 451).
  Then `sluicectl queue delete --all` must give the space back within a
  minute (before: the segment being written was never reclaimed), new mail
  is accepted again, and delivering a spool's worth of mail gives its space
  back too.

Needs root (tmpfs mount, RLIMIT_FSIZE is not); the tmpfs is unmounted in
tearDown even when a test fails.
"""
import os
import resource
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
import unittest

import test_delivery as td
import harness
from harness import Sluiced

SENDMAIL = os.environ.get("SLUICE_SENDMAIL",
                          os.path.join(os.path.dirname(__file__), "../../build/exe/sluice-sendmail"))
SLUICECTL = os.environ.get("SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))

EX_TEMPFAIL = 75
MIB = 1 << 20


def have_root():
    return os.geteuid() == 0


def wait_for_handlers(pid, signals=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)):
    """Waits until process `pid` catches every signal in `signals` (its
    /proc status SigCgt mask), so a test signals the program, not the start
    of the process before main() ran (slow under the sanitizers)."""
    want = 0
    for sig in signals:
        want |= 1 << (int(sig) - 1)
    deadline = time.time() + 20
    while time.time() < deadline:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("SigCgt:") and int(line.split()[1], 16) & want == want:
                    return
        time.sleep(0.01)
    raise AssertionError("process %d never caught its stop signals" % pid)


def leftovers(maildrop):
    return sorted(n for n in os.listdir(maildrop))


class SendmailLimits(unittest.TestCase):
    def setUp(self):
        self.d = Sluiced()
        self.d.start()
        self.maildrop = os.path.join(self.d.spool, "maildrop")

    def tearDown(self):
        self.d.stop()
        shutil.rmtree(self.d.dir, ignore_errors=True)

    def sendmail_cmd(self):
        return [SENDMAIL, "-C", self.d.config_path, "-i", "-f", "alice@sender.test", "bob@example.test"]

    def test_file_size_limit_leaves_nothing_and_tempfails(self):
        body = b"Subject: big\n\n" + (b"x" * 999 + b"\n") * (10 * 1024)  # 10 MB

        def small_fsize():
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 * MIB, 1 * MIB))

        r = subprocess.run(self.sendmail_cmd(), input=body, capture_output=True, timeout=60,
                           preexec_fn=small_fsize)
        self.assertEqual(leftovers(self.maildrop), [], "a partial file stayed in the maildrop")
        self.assertEqual(r.returncode, EX_TEMPFAIL, r.stderr)
        self.assertIn(b"try again later", r.stderr)

    def test_sigterm_while_reading_leaves_nothing_and_tempfails(self):
        p = subprocess.Popen(self.sendmail_cmd(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            wait_for_handlers(p.pid)
            p.stdin.write(b"Subject: slow\n\n")
            for _ in range(20):
                p.stdin.write(b"a line that comes slowly\n")
                p.stdin.flush()
                time.sleep(0.01)
            p.send_signal(signal.SIGTERM)
            rc = p.wait(10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                try:
                    f.close()
                except OSError:
                    pass
        self.assertEqual(rc, EX_TEMPFAIL)
        self.assertEqual(leftovers(self.maildrop), [])

    def test_stale_temporary_files_go_after_an_hour(self):
        old = os.path.join(self.maildrop, "0" * 37 + ".tmp")
        young = os.path.join(self.maildrop, "1" * 37 + ".tmp")
        for path, age in ((old, 2 * 3600), (young, 600)):
            with open(path, "wb") as f:
                f.write(b"x" * 1000)
            os.utime(path, (time.time() - age, time.time() - age))
        # A submission makes the daemon scan the maildrop at once.
        r = subprocess.run(self.sendmail_cmd(), input=b"Subject: t\n\nhi\n", capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.d.wait_log("removed a temporary file older than 3600 s", timeout=10)
        self.assertFalse(os.path.exists(old))
        self.assertTrue(os.path.exists(young))

    def test_every_stopping_signal_exits_tempfail(self):
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            p = subprocess.Popen(self.sendmail_cmd(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            wait_for_handlers(p.pid)
            p.stdin.write(b"Subject: x\n\nbody\n")
            p.stdin.flush()
            time.sleep(0.1)
            p.send_signal(sig)
            rc = p.wait(10)
            p.stdin.close()
            self.assertEqual(rc, EX_TEMPFAIL, "signal %s" % sig)
        self.assertEqual(leftovers(self.maildrop), [])


class Handler(td.SinkHandler):
    """The relayhost: refuses every recipient with 451 while `refuse` is set."""

    refuse = True

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return "451 4.3.0 not now"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@unittest.skipUnless(have_root(), "needs root to mount a tmpfs")
class SmallSpool(unittest.TestCase):
    """A 64 MiB tmpfs spool with max_message_size 1M: reserve 1.5 MiB."""

    FS = 64 * MIB
    RESERVE = 1536 * 1024
    MESSAGE = 900 * 1024

    def setUp(self):
        from aiosmtpd.controller import Controller
        self.mounted = None
        self.d = None
        self.controller = None
        self.work = tempfile.mkdtemp(prefix="sluice-space-")
        try:
            self.sink = Handler()
            self.sink.refuse = True
            port = td.sink_port()
            self.controller = Controller(self.sink, hostname="127.0.0.2", port=port)
            self.controller.start()
            extra = ('[delivery]\nrelayhost = "[127.0.0.2]:%d"\nretry_schedule = ["1s"]\n' % port)
            self.d = Sluiced(extra=extra, limits={"max_message_size": "1M"}, workdir=self.work)
            os.makedirs(self.d.spool)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % self.FS, "tmpfs", self.d.spool],
                           check=True, capture_output=True)
            self.mounted = self.d.spool
            self.d.start()
        except BaseException:
            self.tearDown()
            raise

    def tearDown(self):
        if self.d:
            self.d.stop()
            if self._failed():
                print("---- sluiced log ----\n" + self.d.log()[-6000:])
        if self.controller:
            self.controller.stop()
        if self.mounted:
            for _ in range(50):
                if subprocess.run(["umount", self.mounted], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            self.mounted = None
        shutil.rmtree(self.work, ignore_errors=True)

    def _failed(self):
        return harness.failed(self)

    def free(self):
        st = os.statvfs(self.d.spool)
        return st.f_bavail * st.f_frsize

    def ctl(self, *args):
        r = subprocess.run([SLUICECTL, "--config", self.d.config_path] + list(args), capture_output=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.decode()

    def fill(self, limit=200):
        """Sends MESSAGE-sized mail until the server refuses; returns
        (accepted, the refusal as (command, reply), free bytes at that moment)."""
        body = b"Subject: fill\r\n\r\n" + (b"y" * 998 + b"\r\n") * (self.MESSAGE // 1000)
        accepted = 0
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=30) as s:
            s.ehlo("filler.test")
            for _ in range(limit):
                code, text = s.mail("alice@sender.test", ["SIZE=%d" % len(body)])
                if code != 250:
                    return accepted, ("MAIL", code, text), self.free()
                code, text = s.rcpt("bob@example.test")
                self.assertEqual(code, 250, text)
                code, text = s.data(body)
                if code != 250:
                    return accepted, ("DATA", code, text), self.free()
                accepted += 1
        self.fail("%d messages accepted on a %d MiB spool" % (accepted, self.FS // MIB))

    def wait_free(self, want, timeout=60, what=""):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.free() >= want:
                return time.time()
            time.sleep(0.2)
        self.fail("free space stayed at %d bytes (wanted %d) %s" % (self.free(), want, what))

    def test_reserve_then_delete_then_delivery_give_space_back(self):
        accepted, refusal, free_then = self.fill()
        self.assertGreater(accepted, 30, refusal)
        self.assertEqual(refusal[:2], ("MAIL", 452), refusal)
        self.assertIn(b"4.3.1", refusal[2])
        # The refusal came while the reserve was still there, and it holds.
        self.assertGreaterEqual(free_then, self.RESERVE - 256 * 1024, "reserve not kept")
        self.assertGreaterEqual(self.free(), self.RESERVE - 256 * 1024)
        self.d.wait_log("reject")
        # Another process takes the disk below the reserve: maildrop files
        # then wait where they are.
        filler = os.path.join(self.d.spool, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, self.free() - MIB))
        time.sleep(1.1)  # the daemon trusts its figure for a second
        sendmail = [SENDMAIL, "-C", self.d.config_path, "-f", "alice@sender.test", "bob@example.test"]
        r = subprocess.run(sendmail, input=b"Subject: local\n\nwaits\n", capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.d.wait_log("waiting for space", timeout=10)
        maildrop = os.path.join(self.d.spool, "maildrop")
        self.assertEqual(len(os.listdir(maildrop)), 1)
        os.unlink(filler)

        # The administrator deletes the mail: the space comes back.
        t0 = time.time()
        self.ctl("queue", "delete", "--all")
        t1 = self.wait_free(self.FS - 8 * MIB, what="after queue delete --all")
        print("space back %.1fs after queue delete --all" % (t1 - t0))
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=30) as s:
            s.sendmail("alice@sender.test", ["bob@example.test"], b"Subject: again\r\n\r\nhello\r\n")
        # A new drop makes pickup look again: both files go into the spool.
        r = subprocess.run(sendmail, input=b"Subject: local 2\n\nnow\n", capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        td.wait_for(lambda: os.listdir(maildrop) == [], timeout=15, what="the maildrop to be picked up")

        # Fill again and let the relayhost take everything: delivery frees it too.
        accepted, refusal, _ = self.fill()
        self.assertEqual(refusal[:2], ("MAIL", 452), refusal)
        self.sink.refuse = False
        td.wait_for(lambda: len(self.sink.messages) >= accepted + 3, timeout=60,
                    what="the relayhost to get %d messages" % (accepted + 3))
        t0 = time.time()
        t1 = self.wait_free(self.FS - 8 * MIB, what="after delivery")
        print("space back %.1fs after the last delivery" % (t1 - t0))
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=30) as s:
            s.sendmail("alice@sender.test", ["bob@example.test"], b"Subject: after\r\n\r\nhello\r\n")


if __name__ == "__main__":
    unittest.main()
