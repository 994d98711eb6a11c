"""bench_mtas.py — what a benchmark run (bench.py) starts and watches: a
private Postfix, a sluiced, smtp-sink receivers and smtp-source loads on
loopback, and the /proc readings (CPU, RSS, PSS) taken while they run."""

import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SKIP = 77

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
STRACE = "/usr/bin/strace"

PF_HOST, SL_HOST, PF_SINK_HOST, SL_SINK_HOST = "127.0.0.20", "127.0.0.21", "127.0.0.22", "127.0.0.23"
DIRECT_SINK_HOST = "127.0.0.24"
IDLE_SOURCES = ["127.0.0.31", "127.0.0.32", "127.0.0.33", "127.0.0.34"]
SENDER, RECIPIENT, HELO = "bench@source.test", "sink@dest.test", "source.test"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# ---- /proc -------------------------------------------------------------------

def listening(host, port):
    """True when something listens on host:port (IPv4), read from /proc so
    that no test connection disturbs the counting sinks."""
    want = "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(host))[0], port)
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[1] == want and parts[3] == "0A":
                return True
    return False


def wait_listening(host, port, timeout, what, alive=lambda: True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(host, port):
            return
        if not alive():
            raise BenchError("%s exited before listening on %s:%d" % (what, host, port))
        time.sleep(0.02)
    raise BenchError("%s is not listening on %s:%d after %ds" % (what, host, port, timeout))


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def proc_stat(pid):
    """(ppid, utime+stime+cutime+cstime in seconds) or None when gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces
    fields = data[data.rindex(")") + 2:].split()
    ppid = int(fields[1])
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ppid, ticks / CLK_TCK


def proc_status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_of(ppid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and st[0] == ppid:
                out.append(int(name))
    return out


class Sampler:
    """Every `interval` seconds, sums VmRSS and Pss over the MTA's processes
    (mta.pids()) and keeps the largest sums seen."""

    def __init__(self, mta, interval=0.1):
        self.mta, self.interval = mta, interval
        self.peak_rss_kib = self.peak_pss_kib = self.peak_procs = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        pids = self.mta.pids()
        rss = sum(proc_status_kib(p, "VmRSS") for p in pids)
        pss = sum(proc_pss_kib(p) for p in pids)
        self.peak_rss_kib = max(self.peak_rss_kib, rss)
        self.peak_pss_kib = max(self.peak_pss_kib, pss)
        self.peak_procs = max(self.peak_procs, len(pids))
        self.samples += 1

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._sample()


# ---- peers -------------------------------------------------------------------

class Sink:
    """smtp-sink on host:port. With `expect`, it exits on receiving that many
    messages (-M); a watcher thread notes the moment (waitpid, exact). -c
    writes its running counters to a file, for diagnostics. With `dump_dir`,
    each message goes to a file there (-d; for checks, never in a timed round)."""

    def __init__(self, workdir, name, host, expect=None, dump_dir=None):
        self.host, self.port = host, free_port(host)
        self.counter_path = os.path.join(workdir, "%s.counters" % name)
        self.expect = expect
        self.exited_at = None
        args = [SMTP_SINK, "-u", "postfix", "-c"]
        if expect:
            args += ["-M", str(expect)]
        if dump_dir:
            os.makedirs(dump_dir)
            shutil.chown(dump_dir, "postfix")  # the sink writes as -u postfix
            args += ["-d", os.path.join(dump_dir, "%H%M%S.")]
        args += ["%s:%d" % (host, self.port), "1024"]
        self._out = open(self.counter_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT)
        self._done = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()
        wait_listening(host, self.port, 10, "smtp-sink", lambda: not self._done.is_set())

    def _watch(self):
        self.proc.wait()
        self.exited_at = time.monotonic()
        self._done.set()

    def wait(self, timeout):
        """The time the sink exited (all messages in), or None on timeout."""
        self._done.wait(timeout)
        return self.exited_at

    def received(self):
        with open(self.counter_path, "rb") as f:
            counts = re.findall(rb"mesg=(\d+)", f.read())
        return int(counts[-1]) if counts else 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self._done.wait(10)
        self._out.close()


def smtp_source(host, port, messages, sessions, size, timeout):
    """Runs smtp-source; returns its wall time in seconds."""
    args = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", SENDER, "-t", RECIPIENT, "-M", HELO, "%s:%d" % (host, port)]
    t0 = time.monotonic()
    r = subprocess.run(args, capture_output=True, timeout=timeout)
    t = time.monotonic() - t0
    if r.returncode != 0:
        raise BenchError("smtp-source to %s:%d failed (%d): %s" % (
            host, port, r.returncode, (r.stdout + r.stderr).decode(errors="replace")[-2000:]))
    return t0, t


# ---- the two MTAs ------------------------------------------------------------

class PostfixMta:
    """A private Postfix instance: config, queue and data directories under
    `workdir`, smtpd on host:port only, relayhost = the sink, no local
    delivery. Postfix's defaults otherwise (its queue files are fsynced)."""

    name = "postfix"

    def __init__(self, workdir, host, relay):
        self.dir = os.path.join(workdir, "postfix")
        self.host, self.port = host, free_port(host)
        self.conf, self.queue, self.data = (os.path.join(self.dir, d) for d in ("conf", "queue", "data"))
        for d in (self.conf, self.queue, self.data):
            os.makedirs(d)
        for d in (workdir, self.dir):
            os.chmod(d, 0o755)
        shutil.chown(self.data, "postfix")
        self.maillog = os.path.join(self.dir, "maillog")
        main_cf = "\n".join([
            "compatibility_level = 3.6",
            "queue_directory = " + self.queue,
            "data_directory = " + self.data,
            "maillog_file = " + self.maillog,
            "maillog_file_prefixes = " + self.dir,
            "myhostname = bench-postfix.test",
            "mydomain = bench.test",
            # an address of a real interface (127.0.0.20 is routed to lo but
            # not configured on it); master.cf binds smtpd to host:port
            "inet_interfaces = loopback-only",
            "inet_protocols = ipv4",
            "mydestination =",
            "local_recipient_maps =",
            "local_transport = error:5.1.1 local delivery is disabled",
            "alias_maps =",
            "alias_database =",
            "mynetworks = 127.0.0.0/8",
            "relayhost = [%s]:%d" % relay,
            "smtpd_recipient_restrictions = permit_mynetworks, reject",
            "",
        ])
        services = [
            "%s:%d inet n - n - - smtpd" % (host, self.port),
            "pickup unix n - n 60 1 pickup", "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr", "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce", "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify", "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap", "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp", "showq unix n - n - - showq",
            "error unix - - n - - error", "retry unix - - n - - error",
            "discard unix - - n - - discard", "local unix - n n - - local",
            "anvil unix - - n - 1 anvil", "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(main_cf)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write("\n".join(services) + "\n")
        self.master = None

    def start(self):
        r = subprocess.run([POSTFIX, "-c", self.conf, "start"], capture_output=True, timeout=120)
        if r.returncode != 0:
            raise BenchError("postfix did not start (%d): %s\n%s" % (
                r.returncode, (r.stdout + r.stderr).decode(errors="replace"), self.log_tail()))
        pidfile = os.path.join(self.queue, "pid", "master.pid")
        deadline = time.monotonic() + 20
        while self.master is None and time.monotonic() < deadline:
            try:
                with open(pidfile) as f:
                    self.master = int(f.read().strip())
            except (OSError, ValueError):
                time.sleep(0.05)
        if self.master is None:
            raise BenchError("postfix wrote no %s\n%s" % (pidfile, self.log_tail()))
        wait_listening(self.host, self.port, 20, "postfix smtpd",
                       lambda: proc_stat(self.master) is not None)

    def pids(self):
        if self.master is None or proc_stat(self.master) is None:
            return []
        return [self.master] + children_of(self.master)

    def cpu_seconds(self):
        """master's own and reaped children's CPU (cutime/cstime), plus every
        live child's: monotone, since an exiting child moves into master's
        cutime when master reaps it."""
        return sum((proc_stat(p) or (0, 0))[1] for p in self.pids())

    def stop(self):
        subprocess.run([POSTFIX, "-c", self.conf, "stop"], capture_output=True, timeout=60)
        deadline = time.monotonic() + 20
        while self.master and proc_stat(self.master) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.master and proc_stat(self.master) is not None:
            subprocess.run([POSTFIX, "-c", self.conf, "abort"], capture_output=True, timeout=60)
        return {}

    def log_tail(self, n=4000):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""


class SluiceMta:
    """sluiced with one relay listener on host:port, relayhost = the sink,
    its spool under `workdir`. Its defaults otherwise (every message
    fdatasynced, in groups, before its 250). `dkim`: the [[dkim]] table
    lines to add (bench_dkim.dkim_config)."""

    name = "sluice"

    def __init__(self, workdir, host, relay, binary, limits=None, dkim=None):
        self.dir = os.path.join(workdir, "sluice")
        os.makedirs(self.dir)
        self.binary = binary
        self.host, self.port = host, free_port(host)
        self.log_path = os.path.join(self.dir, "sluiced.log")
        self.config_path = os.path.join(self.dir, "sluice.toml")
        lines = [
            'hostname = "bench-sluice.test"',
            'user = "root"',  # an unknown account is fatal; root on purpose here
            'spool_dir = "%s"' % os.path.join(self.dir, "spool"),
            'control_socket = "%s"' % os.path.join(self.dir, "control.sock"),
            "[[listener]]",
            'address = "%s:%d"' % (host, self.port),
            'mode = "relay"',
            "[delivery]",
            'relayhost = "[%s]:%d"' % relay,
        ]
        if limits:
            lines.append("[limits]")
            lines += ["%s = %s" % (k, json.dumps(v)) for k, v in limits.items()]
        lines += dkim or []
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None
        self.nofile = None

    def start(self):
        nofile = self.nofile

        def raise_limit():
            # Runs in the child before exec: never raise. Root may lift the
            # hard limit (CAP_SYS_RESOURCE); otherwise go up to it.
            if not nofile:
                return
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            if soft >= nofile:
                return
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, max(hard, nofile)))
            except (ValueError, OSError):
                try:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile, hard), hard))
                except (ValueError, OSError):
                    pass

        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "--config", self.config_path], stdout=self._logf,
                                     stderr=subprocess.STDOUT, preexec_fn=raise_limit)
        wait_listening(self.host, self.port, 20, "sluiced", lambda: self.proc.poll() is None)

    def pids(self):
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def cpu_seconds(self):
        return (proc_stat(self.proc.pid) or (0, 0))[1]

    def hwm_kib(self):
        return proc_status_kib(self.proc.pid, "VmHWM")

    def stop(self):
        """SIGTERM; returns the spool counters sluiced logs as it exits."""
        if self.proc is None:
            return {}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logf.close()
        m = re.search(r"spool: commits=(\d+) updates=(\d+) syncs=(\d+)", self.log_tail(20000))
        if not m:
            return {}
        return {"commits": int(m.group(1)), "updates": int(m.group(2)), "syncs": int(m.group(3))}

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""


# ---- the phases --------------------------------------------------------------
