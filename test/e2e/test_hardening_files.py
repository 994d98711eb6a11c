"""Issue 11, finding 1: the daemon's account must never become root at the
next start. sluiced starts as root and runs as `user`; everything under
spool_dir is writable by that account, so whatever it plants there (a
symlink instead of the spool's lock, a maildrop directory swapped with a
symlink while root sets its owner, a hard link to a root file in the
maildrop) must never be followed, re-owned or moved by root.

Each test plays the attacker as a temporary account (removed afterwards,
even when the test fails) that the daemon runs as, and checks that a
root-owned file keeps its owner, mode and content, and that the dropped
daemon holds no descriptor on it.
"""
import ctypes
import os
import select
import signal
import smtplib
import subprocess
import time
import unittest

from harness import SLUICED, Sluiced, temporary_account

SLUICECTL = os.environ.get("SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))
SENDMAIL = os.environ.get("SLUICE_SENDMAIL",
                          os.path.join(os.path.dirname(__file__), "../../build/exe/sluice-sendmail"))
ACCOUNT = "sluicehard"
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def as_account(acct, fn):
    """Runs fn() in a child process with the account's uid and gid only."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(acct.pw_gid)
            os.setuid(acct.pw_uid)
            fn()
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported through the exit code
            os.write(2, ("as_account: %r\n" % e).encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise AssertionError("the attacker's step failed")


def root_file(path, mode=0o600, content=b"root only\n"):
    with open(path, "wb") as f:
        f.write(content)
    os.chown(path, 0, 0)
    os.chmod(path, mode)
    return snapshot(path)


def snapshot(path):
    st = os.lstat(path)
    with open(path, "rb") as f:
        return (st.st_uid, st.st_gid, oct(st.st_mode), f.read())


def fds_pointing_at(pid, path):
    found = []
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except FileNotFoundError:
        return found
    for n in names:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, n)) == path:
                found.append(n)
        except OSError:
            pass
    return found


def start_and_wait(d, timeout=10):
    """Starts d; True once it logs that it runs as the user, False if it exits."""
    skip = len(d.log())
    d.start(wait=False)
    proc = d.proc
    deadline = time.time() + timeout
    while time.time() < deadline:
        if "running as " + ACCOUNT in d.log()[skip:]:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("sluiced neither started nor stopped:\n" + d.log())


@unittest.skipUnless(os.geteuid() == 0, "needs root")
class PlantedFiles(unittest.TestCase):
    def setUp(self):
        account = temporary_account(ACCOUNT)
        self.acct = account.__enter__()
        self.addCleanup(account.__exit__, None, None, None)
        self.d = Sluiced(user=ACCOUNT)
        os.chmod(self.d.dir, 0o711)  # the account must reach its spool
        self.addCleanup(self.d.cleanup)

    def tearDown(self):
        if getattr(self, "_outcome", None) and not self._outcome.success:
            print(self.d.log()[-4000:])

    def first_start(self):
        """Makes the spool as the account, as any installation has it."""
        self.d.start()
        self.d.wait_log("running as " + ACCOUNT)
        self.assertEqual(self.d.stop(), 0)

    def test_planted_lock_symlink_is_never_followed(self):
        self.first_start()
        lock = os.path.join(self.d.spool, "lock")
        target = os.path.join(self.d.dir, "root-only")
        before = root_file(target)
        secret_dir = os.path.join(self.d.dir, "root-dir")
        os.mkdir(secret_dir, 0o700)
        created = os.path.join(secret_dir, "made-by-root")

        for link_to in (target, created):
            def plant():
                os.unlink(lock)
                os.symlink(link_to, lock)
            as_account(self.acct, plant)
            running = start_and_wait(self.d)
            if running:
                self.assertEqual(fds_pointing_at(self.d.proc.pid, target), [],
                                 "the dropped daemon holds a descriptor on a root-only file")
                self.d.stop()
            else:
                self.assertIn(lock, self.d.log())
                self.assertIn("symbolic link", self.d.log())
            self.assertEqual(snapshot(target), before)
            self.assertFalse(os.path.lexists(created), "root created a file through the lock symlink")

    def test_maildrop_swap_race_never_reowns_a_root_file(self):
        """renameat2(RENAME_EXCHANGE) swaps the maildrop directory with a
        symlink to a root file, again and again, while sluiced restarts."""
        self.first_start()
        target = os.path.join(self.d.dir, "root-only")
        before = root_file(target)
        maildrop = os.path.join(self.d.spool, "maildrop").encode()
        decoy = os.path.join(self.d.spool, "decoy").encode()
        as_account(self.acct, lambda: os.symlink(target, decoy))

        swapper = os.fork()
        if swapper == 0:
            try:
                os.setgroups([])
                os.setgid(self.acct.pw_gid)
                os.setuid(self.acct.pw_uid)
                libc = ctypes.CDLL(None, use_errno=True)
                while True:
                    libc.renameat2(AT_FDCWD, maildrop, AT_FDCWD, decoy, RENAME_EXCHANGE)
            finally:
                os._exit(1)
        try:
            iterations, ran, deadline = 0, 0, time.time() + 6
            while iterations < 300 and time.time() < deadline:
                iterations += 1
                proc = subprocess.Popen([SLUICED, "--config", self.d.config_path],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                out = b""
                give_up = time.time() + 5
                while time.time() < give_up:
                    r, _, _ = select.select([proc.stdout], [], [], 0.5)
                    if not r:
                        continue
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    out += chunk
                    if not chunk or b"running as" in out:
                        break
                if b"running as" in out:
                    ran += 1
                    proc.send_signal(signal.SIGTERM)
                proc.stdout.close()
                proc.wait(20)
                self.assertEqual(snapshot(target), before,
                                 "iteration %d re-owned or re-moded a root file:\n%s"
                                 % (iterations, out.decode(errors="replace")[-3000:]))
        finally:
            os.kill(swapper, signal.SIGKILL)
            os.waitpid(swapper, 0)
        print("swap race: %d restarts, %d ran as the user" % (iterations, ran))
        self.assertGreaterEqual(iterations, 10)

    def test_hard_link_in_maildrop_is_never_moved_or_reowned(self):
        self.first_start()
        target = os.path.join(self.d.dir, "root-only")
        # World-readable, as most of /etc is: the daemon can read it, and so
        # used to move it to corrupt/ (then re-owned at the next start).
        before_owner = root_file(target, mode=0o644)[:3]
        link = os.path.join(self.d.spool, "maildrop", "0000000000000001aaaa")
        # The account may link a file it does not own only where
        # fs.protected_hardlinks is 0, as on many older systems: so here,
        # restored at once. Where the sysctl cannot be written (a
        # container), root makes the same link: the state is the same.
        try:
            with open("/proc/sys/fs/protected_hardlinks") as f:
                protected = f.read().strip()
            with open("/proc/sys/fs/protected_hardlinks", "w") as f:
                f.write("0")
        except OSError:
            protected = None
        try:
            if protected is None:
                os.link(target, link)
            else:
                as_account(self.acct, lambda: os.link(target, link))
        finally:
            if protected is not None:
                with open("/proc/sys/fs/protected_hardlinks", "w") as f:
                    f.write(protected)
        for _ in range(2):  # picked up at the first start, re-owned at the next (before the fix)
            self.d.start()
            self.d.wait_log("running as " + ACCOUNT)
            self.d.wait_log("0000000000000001aaaa")
            self.assertEqual(self.d.stop(), 0)
            self.assertEqual(snapshot(target)[:3], before_owner)
        self.assertFalse(os.path.lexists(link))
        self.assertFalse(os.path.lexists(os.path.join(self.d.spool, "corrupt", "0000000000000001aaaa")))
        self.assertEqual(os.stat(target).st_nlink, 1)

    def test_a_spool_owned_by_someone_else_is_an_error_not_reowned(self):
        """Upgrading from user = "root": the files stay root's and the start
        names the file and the fix instead of re-owning them silently."""
        with open(self.d.config_path) as f:
            ours = f.read()
        root_d = Sluiced(user="root", workdir=self.d.dir)  # (writes its own sluice.toml there)
        root_d.start()
        self.assertEqual(root_d.stop(), 0)
        self.d.write_config(ours)
        self.assertFalse(start_and_wait(self.d))
        self.assertNotEqual(self.d.proc.returncode, 0)
        self.assertIn("chown -R " + ACCOUNT, self.d.log())
        self.assertEqual(os.stat(os.path.join(self.d.spool, "segments")).st_uid, 0)

    def test_normal_start_as_the_user(self):
        self.d.start()
        self.d.wait_log("running as " + ACCOUNT)
        with smtplib.SMTP("127.0.0.1", self.d.port, timeout=10) as s:
            s.sendmail("alice@sender.test", ["bob@example.test"], "Subject: t\r\n\r\nhi\r\n")
        r = subprocess.run([SENDMAIL, "-C", self.d.config_path, "carol@example.test"],
                           input=b"Subject: dropped\n\nhi\n", capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.d.wait_log("accept maildrop=")
        self.assertEqual(self.d.stop(), 0)
        # Restart: nothing is re-owned, everything was made with the right owner.
        self.d.start()
        self.d.wait_log("running as " + ACCOUNT)
        self.assertEqual(self.d.stop(), 0)
        for root, dirs, files in os.walk(self.d.spool):
            for name in dirs + files:
                p = os.path.join(root, name)
                self.assertEqual(os.lstat(p).st_uid, self.acct.pw_uid, p)
        msgs = self.d.spool_messages(body=False)
        self.assertEqual(sorted(m["recipients"][0]["address"] for m in msgs),
                         ["bob@example.test", "carol@example.test"])


if __name__ == "__main__":
    unittest.main()
