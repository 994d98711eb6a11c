#!/usr/bin/python3
"""crash.py — the crash harness: proves that a message sluiced answered 250
for is never lost, however often the daemon is killed with SIGKILL.

What it does (docs/spool.md, "Crash safety: what the harness shows"):

  Phase 1, accept under kill. C client threads send mail to sluiced's relay
  listener with smtplib, each message carrying a unique token (in the
  Subject and the body). A token counts as *acked* only when the reply to
  its DATA was 250. sluiced delivers at the same time, through
  `[delivery] relayhost`, to an aiosmtpd sink in this process. Meanwhile
  the harness kills sluiced with SIGKILL at random (seeded) moments and
  restarts it on the same spool, CYCLES times; clients reconnect and carry
  on. So kills land in accepting, in recovery and in delivery.
  Phase 2, kill during delivery. The sink is armed: the next message it
  receives kills sluiced, in turn: before the sink answers 250
  ("before-250": the sink has the message, Sluice never hears of it);
  together with the 250 ("with-250": the reply is written and the kill
  follows within microseconds, before Sluice can have recorded it); or
  after it ("after-250": at the sink's next loop turn or up to 10 ms later,
  when Sluice has usually recorded it already). Restart. Messages the sink
  got but Sluice had not recorded are sent again: duplicates, expected and
  counted.
  Phase 3, drain. The last restart runs with a plain sink until every acked
  token has arrived and nothing moves any more; then SIGTERM, and the spool
  must be empty (read back with spool_dump).

Report: acked, delivered, lost (acked but never delivered: must be 0),
duplicated (and why: every duplicate's earlier copy must have been received
by a run of sluiced that was then killed), unacked but delivered (the kill
came between the commit and the client reading the 250: fine), corrupt
deliveries, bounces. Exit status 1 if anything was lost, corrupt, bounced,
unexplained or left in the spool, or if sluiced died by itself; 0 otherwise.

Each run of sluiced gets its own hostname (runN.crash.test), which it uses
in EHLO when it delivers, so the sink knows which run sent each copy.

Environment: SLUICED (the daemon), SPOOL_DUMP (test/spool_dump; if unset it
is looked for beside SLUICED's build tree). Use /usr/bin/python3 (Debian's,
which has aiosmtpd).

    SLUICED=build/exe/sluiced test/crash/crash.py --cycles 100
"""
import argparse
import asyncio
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

from aiosmtpd.controller import Controller

logging.getLogger("mail.log").setLevel(logging.CRITICAL)  # aiosmtpd's noise about peers that vanish

HERE = os.path.dirname(os.path.abspath(__file__))
SENDER = "sender@crash.test"
RCPT = "rcpt@sink.test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- messages ---------------------------------------------------------------

def make_body(tok):
    """The message for a token, fixed by the token alone, so the sink can check
    every byte it receives. Mostly small; 9% about 20 KB; 1% about 150 KB (so
    the content spans several 64 KiB CHUNK records). A line starting with a dot
    checks the dot-stuffing both ways."""
    h = int(hashlib.sha256(tok.encode()).hexdigest()[:8], 16)
    r = h % 100
    size = 150_000 if r == 0 else 20_000 if r < 10 else 400 + h % 2600
    # A complete header section (Date too): the relay listener adds nothing.
    head = ("From: <%s>\r\nTo: <%s>\r\nSubject: crash token %s\r\nMessage-ID: <%s@crash.test>\r\n"
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
            "token: %s\r\n.a line with a leading dot\r\n" % (SENDER, RCPT, tok, tok, tok))
    parts = [head]
    n = len(head)
    j = 0
    while n < size:
        line = "%s line %06d %s\r\n" % (tok, j, "x" * (h % 40))
        parts.append(line)
        n += len(line)
        j += 1
    return "".join(parts)


SUBJECT_RE = re.compile(rb"^Subject: crash token (\S+)\r$", re.M)
RUN_RE = re.compile(r"^run(\d+)\.crash\.test$")


# ---- the sink -----------------------------------------------------------------

class Sink:
    """aiosmtpd handler: records every message it is given (token, which run of
    sluiced sent it, when, whether the content is exactly what was sent), and,
    when armed, kills sluiced around its 250."""

    def __init__(self):
        self.lock = threading.Lock()
        self.receipts = {}      # token -> [(run, time)]
        self.corrupt = []       # (token, run, why)
        self.bounces = []       # (run, subject line or content head)
        self.unknown = []       # content heads without a token
        self.total = 0
        self.last_receipt = time.monotonic()
        self.armed = None       # (pid, mode, delay) while armed
        self.fired = threading.Event()
        self.fire_info = None   # (token, run, mode, delay, kill time)

    def arm(self, pid, mode, delay):
        with self.lock:
            self.fired.clear()
            self.fire_info = None
            self.armed = (pid, mode, delay)

    def disarm(self):
        with self.lock:
            self.armed = None

    async def handle_DATA(self, server, session, envelope):
        content = envelope.content
        m = RUN_RE.match(session.host_name or "")
        run = int(m.group(1)) if m else -1
        now = time.monotonic()
        mail_from = envelope.mail_from or ""
        with self.lock:
            self.total += 1
            self.last_receipt = now
            if mail_from in ("", "<>"):
                self.bounces.append((run, content[:300]))
                return "250 2.0.0 Ok: bounce noted"
            t = SUBJECT_RE.search(content)
            if not t:
                self.unknown.append((run, content[:300]))
                return "250 2.0.0 Ok: no token"
            tok = t.group(1).decode()
            self.receipts.setdefault(tok, []).append((run, now))
            expected = make_body(tok).encode()
            if not content.startswith(b"Received: "):
                self.corrupt.append((tok, run, "no Received header first"))
            elif not content.endswith(expected):
                self.corrupt.append((tok, run, "content differs from what was sent"))
            elif envelope.rcpt_tos != [RCPT] or mail_from != SENDER:
                self.corrupt.append((tok, run, "envelope %r -> %r" % (mail_from, envelope.rcpt_tos)))
            armed, self.armed = self.armed, None
        if armed:
            pid, mode, delay = armed

            def kill():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.fire_info = (tok, run, mode, delay, time.monotonic())
                self.fired.set()

            if mode == "before-250":
                kill()  # the 250 below goes to a dead peer
            elif mode == "with-250":
                # The 250 goes on the wire and the kill follows within
                # microseconds: Sluice has the reply in its socket but cannot
                # have made its spool update durable yet. (aiosmtpd then
                # writes the 250 again, to a dead peer.)
                server.transport.write(b"250 2.0.0 Ok: the sink has it\r\n")
                kill()
            else:
                asyncio.get_running_loop().call_later(delay, kill)
        return "250 2.0.0 Ok: the sink has it"


# ---- sluiced ------------------------------------------------------------------

class Daemon:
    """sluiced on a private spool; each start writes the configuration anew
    with the run's own hostname."""

    def __init__(self, binary, workdir, sink_port):
        self.binary = binary
        self.dir = workdir
        self.spool = os.path.join(workdir, "spool")
        self.port = free_port()
        self.sink_port = sink_port
        self.config_path = os.path.join(workdir, "sluice.toml")
        self.log_path = os.path.join(workdir, "sluiced.log")
        self.proc = None
        self.run = 0
        self.started_at = 0.0

    def write_config(self):
        text = "\n".join([
            'hostname = "run%d.crash.test"' % self.run,
            'user = "root"',  # an unknown account is fatal; root on purpose here
            'spool_dir = "%s"' % self.spool,
            'control_socket = "%s"' % os.path.join(self.dir, "control.sock"),
            "[[listener]]",
            'address = "127.0.0.1:%d"' % self.port,
            'mode = "relay"',
            "[dns]",
            'servers = ["127.0.0.1:9"]',   # never asked: the relayhost is an address
            "[delivery]",
            'relayhost = "[127.0.0.1]:%d"' % self.sink_port,
            'retry_schedule = ["1s"]',
            'tls = "none"',
        ]) + "\n"
        with open(self.config_path, "w") as f:
            f.write(text)

    def start(self, wait=True):
        self.run += 1
        self.write_config()
        with open(self.log_path, "ab") as logf:
            logf.write(b"==== crash.py: run %d ====\n" % self.run)
            logf.flush()
            self.proc = subprocess.Popen([self.binary, "--config", self.config_path],
                                         stdout=logf, stderr=subprocess.STDOUT)
        self.started_at = time.monotonic()
        if wait:
            self.wait_listening()

    def wait_listening(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.recv(100)
                return True
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("sluiced did not start listening in %ds" % timeout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout=30):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return "SIGTERM ignored for %ds" % timeout
        return None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


# ---- the clients --------------------------------------------------------------

class Clients:
    """C threads sending one message after another over smtplib; a connection
    error (sluiced killed, not yet listening) means reconnect and go on."""

    def __init__(self, port, nonce):
        self.port = port
        self.nonce = nonce
        self.lock = threading.Lock()
        self.attempted = set()     # DATA was sent (or about to be)
        self.acked = {}            # token -> (queue id, phase)
        self.refused = {}          # token -> reply to DATA other than 250
        self.phase = "1"
        self.stop_ev = threading.Event()
        self.threads = []
        self.counter = 0

    def token(self, who):
        with self.lock:
            self.counter += 1
            return "%s-%s-%d" % (self.nonce, who, self.counter)

    def send_some(self, who, count=None):
        """Send until stopped (count None) or until `count` messages were tried.
        Returns the number tried."""
        tried = 0
        while not self.stop_ev.is_set() and (count is None or tried < count):
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=15,
                                  local_hostname="%s.client.test" % who) as s:
                    s.ehlo()
                    while not self.stop_ev.is_set() and (count is None or tried < count):
                        tok = self.token(who)
                        body = make_body(tok)
                        code, _ = s.mail(SENDER)
                        if code != 250:
                            break
                        code, _ = s.rcpt(RCPT)
                        if code != 250:
                            break
                        with self.lock:
                            self.attempted.add(tok)
                        tried += 1
                        code, resp = s.data(body)
                        with self.lock:
                            if code == 250:
                                q = re.search(rb"queued as ([0-9A-F]{16})", resp)
                                self.acked[tok] = (q.group(1).decode() if q else "?", self.phase)
                            else:
                                self.refused[tok] = (code, resp)
                        if code != 250:
                            break
            except (OSError, smtplib.SMTPException):
                pass
            time.sleep(0.02)  # refused, cut off or a 4xx: a moment, then a new connection
        return tried

    def start(self, n):
        for i in range(n):
            t = threading.Thread(target=self.send_some, args=("c%d" % i,), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(60)
        self.threads = []
        self.stop_ev.clear()


# ---- the run ------------------------------------------------------------------

def spool_dump_path(sluiced):
    p = os.environ.get("SPOOL_DUMP")
    if p:
        return p
    guess = os.path.normpath(os.path.join(os.path.dirname(sluiced), "..", "test", "spool_dump"))
    return guess if os.path.exists(guess) else None


def kill_delay(rng):
    """How long after Popen to kill: now and then within the first 50 ms (in
    recovery, before the listeners are up), mostly somewhere in the first
    second of work."""
    if rng.random() < 0.15:
        return rng.uniform(0.0, 0.05)
    return rng.uniform(0.1, 1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=5, help="SIGKILL/restart cycles under load (phase 1)")
    ap.add_argument("--clients", type=int, default=4, help="concurrent sending clients")
    ap.add_argument("--seed", type=int, default=None, help="seed of the kill schedule (default: random, printed)")
    ap.add_argument("--delivery-kills", type=int, default=None,
                    help="kills timed by the sink in phase 2 (default: max(3, cycles/5))")
    ap.add_argument("--keep", action="store_true", help="keep the work directory even when all is well")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()

    sluiced = os.environ.get("SLUICED") or os.path.normpath(os.path.join(HERE, "../../build/exe/sluiced"))
    if not os.path.exists(sluiced):
        sys.exit("crash.py: no sluiced at %s (set SLUICED)" % sluiced)
    dump = spool_dump_path(sluiced)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    dkills = args.delivery_kills if args.delivery_kills is not None else max(3, args.cycles // 5)
    rng = random.Random(seed)
    t0 = time.monotonic()
    print("crash.py: seed=%d cycles=%d clients=%d delivery-kills=%d sluiced=%s"
          % (seed, args.cycles, args.clients, dkills, sluiced), flush=True)

    work = tempfile.mkdtemp(prefix="sluice-crash-")
    sink = Sink()
    sink_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port, ready_timeout=10)
    controller.start()
    d = Daemon(sluiced, work, sink_port)
    clients = Clients(d.port, "%x" % seed)

    run_end = {}        # run -> (kind, monotonic time of the kill or stop)
    unexpected = []     # (run, returncode): sluiced died without being killed
    problems = []
    p2 = []             # phase-2 kills: dict(run, mode, delay, token)
    p1_kills = 0

    def died_by_itself(where):
        rc = d.proc.returncode
        unexpected.append((d.run, rc))
        run_end[d.run] = ("exited %s" % rc, time.monotonic())
        problems.append("sluiced run %d exited by itself (status %s) %s" % (d.run, rc, where))

    try:
        # Phase 1: load + random SIGKILLs.
        d.start()
        clients.start(args.clients)
        for cycle in range(args.cycles):
            delay = kill_delay(rng)
            remaining = delay - (time.monotonic() - d.started_at)
            if remaining > 0:
                time.sleep(remaining)
            if not d.alive():
                died_by_itself("during phase 1")
            else:
                d.kill9()
                run_end[d.run] = ("phase1-kill", time.monotonic())
                p1_kills += 1
            time.sleep(rng.uniform(0.0, 0.1))   # down for a moment: clients see refusals
            d.start(wait=False)
            if len(unexpected) > 3:
                raise RuntimeError("sluiced keeps dying by itself")
        if not d.wait_listening():
            died_by_itself("at start")
            d.start()
        time.sleep(0.3)
        clients.stop()
        phase1_acked = len(clients.acked)
        print("phase 1: %d kills, %d acked, %.1fs" % (p1_kills, phase1_acked, time.monotonic() - t0),
              flush=True)

        # Phase 2: the sink kills sluiced around its 250.
        clients.phase = "2"
        for k in range(dkills):
            mode = ("before-250", "with-250", "after-250")[k % 3]
            # after-250: half the time at the sink's next loop turn (the 250 is
            # on the wire, Sluice has barely read it), else up to 10 ms later.
            delay = 0.0 if mode != "after-250" or rng.random() < 0.5 else rng.uniform(0.0, 0.01)
            if not d.alive():
                died_by_itself("during phase 2")
                d.start()
            sink.arm(d.proc.pid, mode, delay)
            # Something to deliver: a few fresh messages (the queue may also
            # still hold phase 1's, whose delivery then trips the kill).
            sender = threading.Thread(target=clients.send_some, args=("p2k%d" % k, 3), daemon=True)
            sender.start()
            if not sink.fired.wait(60):
                sink.disarm()
                problems.append("phase 2: no delivery reached the sink within 60s (run %d)" % d.run)
                sender.join(30)
                break
            d.proc.wait()
            tok, run, mode_, delay_, when = sink.fire_info
            run_end[d.run] = ("phase2-" + mode, when)
            if d.proc.returncode != -signal.SIGKILL:
                problems.append("phase 2: run %d ended with %s, not SIGKILL" % (d.run, d.proc.returncode))
            p2.append(dict(run=d.run, mode=mode, delay_ms=round(delay * 1000, 1), token=tok))
            d.start()
            sender.join(60)  # it may have been cut off by the kill: it reconnects now
        print("phase 2: %d kills by the sink, %.1fs" % (len(p2), time.monotonic() - t0), flush=True)

        # Phase 3: drain into the plain sink, stop, check the spool is empty.
        drain_deadline = time.monotonic() + 60 + len(clients.acked) / 100
        left = None
        for attempt in range(4):
            if not d.alive():
                d.start()
            while time.monotonic() < drain_deadline:
                if not d.alive():
                    died_by_itself("during the drain")
                    d.start()
                with sink.lock:
                    missing = [t for t in clients.acked if t not in sink.receipts]
                    quiet = time.monotonic() - sink.last_receipt
                if not missing and quiet > 2.0:
                    break
                if quiet > 15.0:
                    break  # nothing has moved for a while (retries come every ~1s): look at the spool
                time.sleep(0.2)
            err = d.stop()
            run_end[d.run] = ("sigterm", time.monotonic())
            if err:
                problems.append("run %d: %s" % (d.run, err))
            elif d.proc.returncode != 0:
                problems.append("run %d: SIGTERM exit status %s" % (d.run, d.proc.returncode))
            if dump is None:
                break
            out = subprocess.run([dump, d.spool], capture_output=True, timeout=120)
            if out.returncode != 0:
                problems.append("spool_dump failed: %s" % out.stderr.decode(errors="replace"))
                break
            left = [json.loads(l) for l in out.stdout.decode().splitlines() if l.strip()]
            if not left or time.monotonic() >= drain_deadline:
                break
            # Still something queued (deferred, or an unacked message still on
            # its way): run again and give it its retry.
            drain_deadline = max(drain_deadline, time.monotonic() + 15)
    finally:
        clients.stop_ev.set()
        if d.alive():
            d.kill9()
        controller.stop()

    elapsed = time.monotonic() - t0

    # ---- the figures ----
    acked = clients.acked
    receipts = sink.receipts
    lost = sorted(t for t in acked if t not in receipts)
    delivered = len(receipts)
    unacked_delivered = sorted(t for t in receipts if t not in acked)
    not_attempted = [t for t in unacked_delivered if t not in clients.attempted]
    dups = {t: r for t, r in receipts.items() if len(r) > 1}
    extra_copies = sum(len(r) - 1 for r in dups.values())
    explained = {"phase2-before-250": 0, "phase2-with-250": 0, "phase2-after-250": 0, "phase1-kill": 0}
    unexplained = []
    max_gap = 0.0
    for t, copies in dups.items():
        copies = sorted(copies, key=lambda c: c[1])
        why = None
        for run, when in copies[:-1]:
            kind, end = run_end.get(run, ("running", None))
            if kind.startswith("phase2") or kind == "phase1-kill":
                max_gap = max(max_gap, end - when)
                if why is None or kind.startswith("phase2"):
                    why = kind
            else:
                why = None
                break
        if why is None:
            unexplained.append((t, [(r, run_end.get(r, ("running", 0))[0]) for r, _ in copies]))
        else:
            explained[why] += 1
    for e in p2:
        e["duplicated"] = len(receipts.get(e["token"], [])) > 1
    left_ids = [m["id"] for m in left] if left else []
    left_acked = [t for t, (q, _) in acked.items() if q in set(left_ids)]

    warnings = [l for l in d.log().splitlines() if ": warning: " in l or ": error: " in l]
    torn = sum(1 for l in warnings if "spool recovery" in l and "torn" in l)

    figures = dict(
        seed=seed, cycles=args.cycles, clients=args.clients, seconds=round(elapsed, 1), runs=d.run,
        kills_phase1=p1_kills, kills_phase2=len(p2), attempted=len(clients.attempted),
        acked=len(acked), refused=len(clients.refused), delivered=delivered, lost=len(lost),
        duplicated=len(dups), extra_copies=extra_copies, duplicates_explained=explained,
        duplicates_unexplained=len(unexplained), unacked_delivered=len(unacked_delivered),
        corrupt=len(sink.corrupt), bounces=len(sink.bounces), unknown=len(sink.unknown) + len(not_attempted),
        left_in_spool=(len(left) if left is not None else None), unexpected_exits=len(unexpected),
        max_receipt_to_kill_ms=round(max_gap * 1000, 1), phase2=p2,
        log_warnings=len(warnings), recovery_torn_tails=torn)

    print()
    print("==== crash harness report ====")
    print("seed %d, %d cycles, %d clients, %.1f s, %d runs of sluiced" % (seed, args.cycles, args.clients,
                                                                        elapsed, d.run))
    print("kills: %d at random moments (phase 1), %d timed by the sink (phase 2); died by itself: %d"
          % (p1_kills, len(p2), len(unexpected)))
    print("sent (DATA tried): %d   acked (250): %d   refused: %d" % (len(clients.attempted), len(acked),
                                                                    len(clients.refused)))
    print("delivered (distinct tokens): %d   of which unacked but delivered: %d" % (delivered,
                                                                                  len(unacked_delivered)))
    print("LOST (acked, never delivered): %d" % len(lost))
    print("duplicated: %d tokens (%d extra copies)" % (len(dups), extra_copies))
    print("  explained by a kill during delivery: phase 2 before-250: %d, with-250: %d, after-250: %d; "
          "phase 1 random kill: %d" % (explained["phase2-before-250"], explained["phase2-with-250"],
                                       explained["phase2-after-250"], explained["phase1-kill"]))
    print("  unexplained (earlier copy from a run that was not killed): %d" % len(unexplained))
    print("  longest time from an earlier copy reaching the sink to the kill: %.1f ms" % (max_gap * 1000))
    for mode in ("before-250", "with-250", "after-250"):
        es = [e for e in p2 if e["mode"] == mode]
        if es:
            print("  phase 2 %s: %d kills, the triggering message sent again after %d of them"
                  % (mode, len(es), sum(e["duplicated"] for e in es)))
    print("corrupt deliveries: %d   bounces: %d   unknown: %d" % (len(sink.corrupt), len(sink.bounces),
                                                                 len(sink.unknown) + len(not_attempted)))
    print("left in the spool after the drain: %s" % ("not checked (no spool_dump)" if left is None
                                                      else len(left)))
    print("daemon warnings/errors in the log: %d (spool recovery torn tails: %d)" % (len(warnings), torn))
    for w in warnings[:5]:
        print("  " + w)

    fail = list(problems)
    if lost:
        fail.append("%d acked messages never delivered%s: %s" % (
            len(lost), " (%d still in the spool)" % len(left_acked) if left_acked else "",
            ", ".join("%s(id %s)" % (t, acked[t][0]) for t in lost[:10])))
    if unexplained:
        fail.append("%d unexplained duplicates: %s" % (len(unexplained), unexplained[:5]))
    if sink.corrupt:
        fail.append("%d corrupt deliveries: %s" % (len(sink.corrupt), sink.corrupt[:5]))
    if sink.bounces:
        fail.append("%d bounces: %s" % (len(sink.bounces), sink.bounces[:3]))
    if sink.unknown or not_attempted:
        fail.append("%d deliveries of messages never sent: %s" % (len(sink.unknown) + len(not_attempted),
                                                                (sink.unknown + not_attempted)[:3]))
    if left:
        fail.append("%d messages still in the spool after the drain: %s" % (len(left), left_ids[:10]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(figures, problems=fail), f, indent=1)
    if fail:
        print("FAIL:")
        for p in fail:
            print("  - " + p)
        print("work directory kept: %s (sluiced.log, spool/)" % work)
        print("reproduce: SLUICED=%s %s --cycles %d --clients %d --seed %d" % (
            sluiced, os.path.abspath(__file__), args.cycles, args.clients, seed))
        return 1
    print("PASS: nothing acked was lost")
    if args.keep:
        print("work directory kept: %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
