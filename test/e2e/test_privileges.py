"""Privileges: started as root, sluiced binds its ports (a port below 1024
among them), makes its control socket and maildrop, then runs as `user`
(here: nobody) with no supplementary groups and no_new_privs — every thread.
It keeps working: mail is accepted and spooled, sluicectl and sendmail work,
and the spool it created belongs to the user.
"""
import os
import socket
import smtplib
import subprocess
import unittest

from harness import Sluiced, free_port

SLUICECTL = os.environ.get("SLUICECTL", os.path.join(os.path.dirname(__file__), "../../build/exe/sluicectl"))
SENDMAIL = os.environ.get("SLUICE_SENDMAIL",
                          os.path.join(os.path.dirname(__file__), "../../build/exe/sluice-sendmail"))
NOBODY = 65534


def low_port():
    for port in range(700, 1000):
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port below 1024")


def status_fields(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


@unittest.skipUnless(os.geteuid() == 0, "needs root")
class DropsToUser(unittest.TestCase):
    def setUp(self):
        self.port = low_port()
        self.d = Sluiced(user="nobody", listeners=[("127.0.0.1:%d" % self.port, "relay"),
                                                   ("127.0.0.1:%d" % free_port(), "relay")])
        os.chmod(self.d.dir, 0o711)  # nobody must reach its spool
        self.d.start()

    def tearDown(self):
        if getattr(self, "_outcome", None) and not self._outcome.success:
            print(self.d.log()[-4000:])
        self.d.cleanup()

    def test_every_thread_runs_as_the_user_without_a_way_back(self):
        self.d.wait_log("running as nobody")
        pid = self.d.proc.pid
        tasks = os.listdir("/proc/%d/task" % pid)
        self.assertGreaterEqual(len(tasks), 2)  # the loop and the spool writer at least
        for t in tasks:
            st = status_fields("/proc/%d/task/%s/status" % (pid, t))
            self.assertEqual(st["Uid"], [str(NOBODY)] * 4, t)
            self.assertEqual(st["Gid"], [str(NOBODY)] * 4, t)
            self.assertEqual(st.get("Groups", []), [], t)
            self.assertEqual(st["NoNewPrivs"], ["1"], t)
            self.assertEqual(st["CapEff"], ["0000000000000000"], t)

    def test_it_still_works_as_the_user(self):
        self.d.wait_log("running as nobody")
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
            s.sendmail("alice@sender.test", ["bob@example.test"], "Subject: after the drop\r\n\r\nhi\r\n")
        r = subprocess.run([SENDMAIL, "-C", self.d.config_path, "carol@example.test"],
                           input=b"Subject: dropped\n\nhi\n", capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.d.wait_log("accept maildrop=")
        r = subprocess.run([SLUICECTL, "--config", self.d.config_path, "queue", "list", "--json"],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"bob@example.test", r.stdout)
        self.assertIn(b"carol@example.test", r.stdout)
        for root, dirs, files in os.walk(self.d.spool):
            if os.path.basename(root) == "maildrop":
                continue
            for name in dirs + files:
                self.assertEqual(os.lstat(os.path.join(root, name)).st_uid, NOBODY, os.path.join(root, name))
        self.assertEqual(self.d.stop(), 0)
        msgs = self.d.spool_messages(body=False)
        self.assertEqual(sorted(m["recipients"][0]["address"] for m in msgs),
                         ["bob@example.test", "carol@example.test"])


class NoShell(unittest.TestCase):
    def test_no_binary_runs_a_shell_or_another_program(self):
        """Envelope data never reaches a shell: none of the binaries links
        or calls system(), popen() or the exec family."""
        build = os.path.dirname(os.path.abspath(os.environ.get("SLUICED", "../../build/exe/sluiced")))
        for b in ("sluiced", "sluicectl", "sluice-sendmail"):
            out = subprocess.run(["nm", "-D", "--undefined-only", os.path.join(build, b)],
                                 capture_output=True, text=True, check=True).stdout
            syms = {l.split()[-1].split("@")[0] for l in out.splitlines() if l.strip()}
            bad = syms & {"system", "popen", "execl", "execle", "execlp", "execv", "execve", "execvp",
                          "execvpe", "posix_spawn", "posix_spawnp", "fork", "vfork"}
            self.assertEqual(bad, set(), b)


if __name__ == "__main__":
    unittest.main()
