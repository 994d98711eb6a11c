#!/usr/bin/python3
"""bench.py — Sluice against Postfix, side by side, on this machine
(test/bench/run.sh is the one command; docs/performance.md is the method).

What one run does, in a private temporary directory, all on loopback:

  1. direct: smtp-source straight into smtp-sink, no MTA (the ceiling).
  2. rounds: for R rounds, A B C A B C: a fresh private Postfix (127.0.0.20,
     relayhost = an smtp-sink on 127.0.0.22), then a fresh sluiced (127.0.0.21,
     relayhost = an smtp-sink on 127.0.0.23), then the same sluiced with two
     [[dkim]] tables for the load's From domain ("Sluice with dual signing":
     an RSA-2048 and an Ed25519 key, made with openssl by bench_dkim.py),
     each loaded with the same `smtp-source -s S -m N -l L`. Per round:
     end-to-end messages/s (first message sent until the sink has received
     all N), accept messages/s (smtp-source's wall time), peak RSS and PSS,
     CPU seconds per 1,000 messages, and for sluiced its own count of spool
     fdatasyncs. Before the rounds, a few messages go through the dual-signing
     configuration into a sink that keeps them; unless each carries both
     signatures and they verify, that row is labelled "(not signed!)".
  3. fsync: a smaller separate run of each MTA under `strace -f -c`, counting
     fsync and fdatasync calls per message (proof that both still sync).
  4. latency: sluice_loadgen offers half of each MTA's peak accept rate
     (the median of its rounds) over persistent connections and reports the
     accept latency (final "." -> 250) p50/p90/p99/max.
  5. idle: sluiced's RSS with K idle connections (sluice_loadgen --idle K).

Prints a table per round and the medians, the Sluice / Postfix ratios, and
writes PREFIX.json and PREFIX.md. Exit status: 0 when everything ran and
every figure is a positive number; 1 otherwise; 77 (CTest's skip) when not
root, because a private Postfix needs root. Nothing here turns fsync off.
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from bench_dkim import OPENSSL, DkimKeyError, check_dump_dir, dkim_config, make_keys
from bench_mtas import (
    BenchError, DIRECT_SINK_HOST, HELO, IDLE_SOURCES, PF_HOST, PF_SINK_HOST, POSTCONF,
    POSTFIX, PostfixMta, RECIPIENT, REPO, SENDER, SKIP, SL_HOST, SL_SINK_HOST, SMTP_SINK,
    SMTP_SOURCE, STRACE, Sampler, Sink, SluiceMta, log, proc_pss_kib, proc_status_kib,
    smtp_source)


class Bench:
    def __init__(self, args):
        self.a = args
        self.work = args.workdir or tempfile.mkdtemp(prefix="sluice-bench-")
        os.makedirs(self.work, exist_ok=True)
        os.chmod(self.work, 0o755)
        self.serial = 0
        self.dkim_keys = []  # bench_dkim.make_keys(), for the sluice-dkim rounds

    def subdir(self, name):
        self.serial += 1
        d = os.path.join(self.work, "%02d-%s" % (self.serial, name))
        os.makedirs(d)
        os.chmod(d, 0o755)
        return d

    def make_mta(self, kind, d, relay, limits=None):
        if kind == "postfix":
            return PostfixMta(d, PF_HOST, relay)
        dkim = dkim_config(self.dkim_keys) if kind == "sluice-dkim" else None
        return SluiceMta(d, SL_HOST, relay, self.a.sluiced, limits, dkim)

    def round_timeout(self):
        # generous: 20 messages/s is far below anything either MTA does
        return 60 + self.a.messages / 20

    def direct(self):
        d = self.subdir("direct")
        sink = Sink(d, "sink", DIRECT_SINK_HOST)
        try:
            _, t = smtp_source(sink.host, sink.port, self.a.messages, self.a.sessions, self.a.size,
                               self.round_timeout())
        finally:
            sink.stop()
        return {"messages": self.a.messages, "seconds": t, "rate": self.a.messages / t}

    def one_round(self, kind, n):
        d = self.subdir("%s-round%d" % (kind, n))
        N = self.a.messages
        sink = Sink(d, "sink", PF_SINK_HOST if kind == "postfix" else SL_SINK_HOST, expect=N)
        mta = self.make_mta(kind, d, (sink.host, sink.port))
        stats = {}
        try:
            mta.start()
            time.sleep(self.a.settle)
            load1 = os.getloadavg()[0]
            sampler = Sampler(mta).start()
            cpu0 = mta.cpu_seconds()
            t0, accept_s = smtp_source(mta.host, mta.port, N, self.a.sessions, self.a.size,
                                       self.round_timeout())
            done_at = sink.wait(self.round_timeout())
            cpu1 = mta.cpu_seconds()
            sampler.stop()
            hwm = mta.hwm_kib() if kind != "postfix" else 0
            if done_at is None:
                raise BenchError("%s round %d: the sink received %d of %d messages in time\n%s" % (
                    kind, n, sink.received(), N, mta.log_tail()))
            stats = mta.stop()
        except BaseException:
            log("---- %s log ----\n%s" % (kind, mta.log_tail()))
            mta.stop()
            raise
        finally:
            sink.stop()
        e2e_s = done_at - t0
        row = {
            "mta": kind, "round": n, "messages": N,
            "e2e_seconds": e2e_s, "e2e_rate": N / e2e_s,
            "accept_seconds": accept_s, "accept_rate": N / accept_s,
            "cpu_seconds": cpu1 - cpu0, "cpu_per_1000": (cpu1 - cpu0) / N * 1000,
            "peak_rss_mib": max(sampler.peak_rss_kib, hwm) / 1024,
            "peak_rss_sampled_mib": sampler.peak_rss_kib / 1024,
            "peak_pss_mib": sampler.peak_pss_kib / 1024,
            "peak_processes": sampler.peak_procs,
            "rss_samples": sampler.samples,
            "loadavg_1m_before": load1,
        }
        if kind != "postfix":
            row["vm_hwm_mib"] = hwm / 1024
            row["spool"] = stats
            if stats.get("commits"):
                row["syncs_per_message"] = stats["syncs"] / stats["commits"]
        return row

    def dkim_check(self):
        """A few messages through the dual-signing configuration into a sink
        that keeps them (not timed): does each carry both signatures, and do
        they verify? (bench_dkim.check_messages)"""
        d = self.subdir("sluice-dkim-check")
        M = self.a.dkim_check_messages
        dump = os.path.join(d, "received")
        sink = Sink(d, "sink", SL_SINK_HOST, expect=M, dump_dir=dump)
        mta = self.make_mta("sluice-dkim", d, (sink.host, sink.port))
        try:
            mta.start()
            smtp_source(mta.host, mta.port, M, min(self.a.sessions, M), self.a.size, self.round_timeout())
            if sink.wait(self.round_timeout()) is None:
                raise BenchError("dual signing check: the sink received %d of %d" % (sink.received(), M))
            mta.stop()
        except BaseException:
            log("---- sluice log ----\n%s" % mta.log_tail())
            mta.stop()
            raise
        finally:
            sink.stop()
        return check_dump_dir(dump, self.dkim_keys)

    def fsync_count(self, kind):
        """A separate small run under strace -f -c: fsync and fdatasync calls
        per message accepted (strace slows the MTA, so no timing here)."""
        d = self.subdir("%s-fsync" % kind)
        M = self.a.fsync_messages
        sink = Sink(d, "sink", PF_SINK_HOST if kind == "postfix" else SL_SINK_HOST, expect=M)
        mta = self.make_mta(kind, d, (sink.host, sink.port))
        out = os.path.join(d, "strace.txt")
        tracer = None
        try:
            mta.start()
            pid = mta.master if kind == "postfix" else mta.proc.pid
            with open(os.path.join(d, "strace.err"), "wb") as errf:
                tracer = subprocess.Popen([STRACE, "-f", "-c", "-e", "trace=fsync,fdatasync,sync_file_range,sync,syncfs",
                                           "-o", out, "-p", str(pid)], stdout=errf, stderr=errf)
            # strace reports each attached thread; sluiced has its loop and
            # spool writer threads, Postfix's master forks the rest later.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with open(os.path.join(d, "strace.err"), "rb") as f:
                    if b"attached" in f.read():
                        break
                time.sleep(0.05)
            time.sleep(0.3)
            smtp_source(mta.host, mta.port, M, min(self.a.sessions, M), self.a.size, self.round_timeout() * 5)
            if sink.wait(self.round_timeout() * 5) is None:
                raise BenchError("%s fsync run: the sink received %d of %d" % (kind, sink.received(), M))
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
            tracer = None
            mta.stop()
        except BaseException:
            if tracer:
                tracer.kill()
            mta.stop()
            raise
        finally:
            sink.stop()
        calls = {}
        with open(out) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[-1] in ("fsync", "fdatasync", "sync_file_range", "sync", "syncfs"):
                    calls[parts[-1]] = int(parts[3])
        total = calls.get("fsync", 0) + calls.get("fdatasync", 0)
        return {"mta": kind, "messages": M, "calls": calls, "syncs_per_message": total / M}

    def latency(self, kind, rate):
        d = self.subdir("%s-latency" % kind)
        n = max(self.a.latency_min_messages, int(rate * self.a.latency_seconds))
        sink = Sink(d, "sink", PF_SINK_HOST if kind == "postfix" else SL_SINK_HOST)
        mta = self.make_mta(kind, d, (sink.host, sink.port))
        try:
            mta.start()
            time.sleep(self.a.settle)
            args = [self.a.loadgen, "--host", mta.host, "--port", str(mta.port),
                    "--connections", str(self.a.sessions), "--rate", "%.3f" % rate,
                    "--messages", str(n), "--warmup", str(n // 10), "--size", str(self.a.size),
                    "--from", SENDER, "--to", RECIPIENT, "--helo", HELO,
                    "--timeout", str(60 + 4 * n / rate), "--json"]
            r = subprocess.run(args, capture_output=True, timeout=120 + 4 * n / rate)
            try:
                res = json.loads(r.stdout.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                raise BenchError("sluice_loadgen printed no result (%d): %r" % (r.returncode, r.stdout + r.stderr))
            if r.returncode != 0:
                raise BenchError("sluice_loadgen against %s failed: %s" % (kind, json.dumps(res)))
            mta.stop()
        except BaseException:
            log("---- %s log ----\n%s" % (kind, mta.log_tail()))
            mta.stop()
            raise
        finally:
            sink.stop()
        res["mta"] = kind
        return res

    def idle(self):
        """sluiced's RSS before and with K idle connections."""
        K = self.a.idle_connections
        d = self.subdir("sluice-idle")
        sink = Sink(d, "sink", SL_SINK_HOST)
        limits = {"max_connections": K + 1000, "max_connections_per_client": K + 1000}
        mta = SluiceMta(d, SL_HOST, (sink.host, sink.port), self.a.sluiced, limits)
        mta.nofile = 2 * K + 1024
        gen = None
        try:
            mta.start()
            time.sleep(self.a.settle)
            before = proc_status_kib(mta.proc.pid, "VmRSS")
            before_pss = proc_pss_kib(mta.proc.pid)
            gen = subprocess.Popen([self.a.loadgen, "--host", mta.host, "--port", str(mta.port),
                                    "--idle", str(K), "--source", ",".join(IDLE_SOURCES),
                                    "--timeout", "300", "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            first = json.loads(gen.stdout.readline().decode() or "{}")
            if first.get("open") != K:
                raise BenchError("sluice_loadgen opened %s of %d idle connections: %s" % (
                    first.get("open"), K, json.dumps(first)))
            time.sleep(1.0)  # every session has sent its greeting and is waiting
            with_idle = proc_status_kib(mta.proc.pid, "VmRSS")
            with_idle_pss = proc_pss_kib(mta.proc.pid)
            hwm = proc_status_kib(mta.proc.pid, "VmHWM")
            gen.send_signal(signal.SIGTERM)
            end = json.loads(gen.stdout.readline().decode() or "{}")
            gen.wait(60)
            gen = None
            if end.get("still_open") != K:
                raise BenchError("idle connections were dropped: %s" % json.dumps(end))
            mta.stop()
        except BaseException:
            if gen:
                gen.kill()
            log("---- sluice log ----\n%s" % mta.log_tail())
            mta.stop()
            raise
        finally:
            sink.stop()
        return {"connections": K, "open_seconds": first.get("seconds"),
                "rss_before_mib": before / 1024, "rss_idle_mib": with_idle / 1024,
                "pss_before_mib": before_pss / 1024, "pss_idle_mib": with_idle_pss / 1024,
                "vm_hwm_mib": hwm / 1024,
                "kib_per_connection": (with_idle - before) / K}


# ---- report ------------------------------------------------------------------

KINDS = ("postfix", "sluice", "sluice-dkim")

COLUMNS = [
    ("e2e_rate", "e2e msg/s", "%.0f"),
    ("accept_rate", "accept msg/s", "%.0f"),
    ("peak_rss_mib", "peak RSS MiB", "%.1f"),
    ("peak_pss_mib", "peak PSS MiB", "%.1f"),
    ("cpu_per_1000", "CPU s/1k msg", "%.3f"),
]


def median_row(rows):
    out = {}
    for key, _, _ in COLUMNS:
        vals = [r[key] for r in rows if key in r]
        out[key] = statistics.median(vals) if vals else float("nan")
    return out


def machine_info(workdir):
    info = {"nproc": os.cpu_count(), "kernel": platform.release()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, timeout=10).stdout.decode()
        m = re.search(r"Model name:\s*(.+)", lscpu)
        info["cpu_model"] = m.group(1).strip() if m else "?"
        m = re.search(r"Hypervisor vendor:\s*(.+)", lscpu)
        if m:
            info["hypervisor"] = m.group(1).strip()
    except OSError:
        info["cpu_model"] = "?"
    try:
        fm = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", workdir],
                            capture_output=True, timeout=10).stdout.decode().split()
        info["disk"] = {"device": fm[0], "fstype": fm[1], "options": fm[2]}
        dev = os.path.basename(fm[0])
        rota = "/sys/block/%s/queue/rotational" % dev
        if os.path.exists(rota):
            info["disk"]["rotational"] = open(rota).read().strip() == "1"
    except (OSError, IndexError):
        pass
    with open("/proc/meminfo") as f:
        info["mem_total_mib"] = int(f.readline().split()[1]) // 1024
    try:
        r = subprocess.run([POSTCONF, "-d", "-h", "mail_version"], capture_output=True, timeout=10)
        info["postfix_version"] = r.stdout.decode().strip()
    except OSError:
        pass
    return info


def fmt_table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header)] + [line(r) for r in rows])


def md_table(header, rows):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] +
                     ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def label(result, kind):
    """The name a row shows: the dual-signing row says when the check found
    its mail unsigned, so that figure is never taken for a signed one."""
    if kind != "sluice-dkim":
        return kind
    return "sluice with dual signing" + ("" if result["dkim_check"]["signed"] else " (not signed!)")


def render(result):
    """(text for the terminal, markdown)"""
    header = ["round", "mta"] + [c[1] for c in COLUMNS] + ["syncs/msg"]
    rows = []
    for r in result["rounds"]:
        rows.append([str(r["round"]), label(result, r["mta"])] + [f % r[k] for k, _, f in COLUMNS] +
                    ["%.3f" % r["syncs_per_message"] if "syncs_per_message" in r else "-"])
    for kind in KINDS:
        m = result["median"][kind]
        rows.append(["median", label(result, kind)] + [f % m[k] for k, _, f in COLUMNS] + [""])
    for key, a, b in (("ratio", "sluice", "postfix"), ("ratio_dual_signing", "sluice-dkim", "postfix"),
                      ("ratio_signing_cost", "sluice-dkim", "sluice")):
        rows.append(["ratio", "%s / %s" % (label(result, a), label(result, b))] +
                    ["%.2fx" % result[key][k] for k, _, _ in COLUMNS] + [""])
    d = result["direct"]
    m = result["machine"]
    intro = [
        "Sluice vs Postfix %s, %s" % (m.get("postfix_version", "?"), result["started"]),
        "machine: %s CPUs (%s), %d MiB, disk %s %s, kernel %s" % (
            m["nproc"], m["cpu_model"], m["mem_total_mib"], m.get("disk", {}).get("device", "?"),
            m.get("disk", {}).get("fstype", "?"), m["kernel"]),
        "load: smtp-source -s %d -m %d -l %d, %d round(s) each, alternating postfix, sluice, "
        "sluice with dual signing" % (
            result["sessions"], result["messages"], result["size"], result["rounds_each"]),
        "direct (smtp-source -> smtp-sink, no MTA): %.0f msg/s" % d["rate"],
        dkim_check_line(result["dkim_check"]),
    ]
    fs = ["fsync proof (strace -f -c over %d messages): %s" % (
        result["fsync"][0]["messages"], ", ".join("%s %.3f fsync+fdatasync calls/msg (%s)" % (
            f["mta"], f["syncs_per_message"],
            " ".join("%s=%d" % kv for kv in sorted(f["calls"].items())) or "none")
            for f in result["fsync"]))]
    lat = []
    for l in result["latency"]:
        lat.append("%s at %.0f msg/s offered (half its peak accept rate; %d connections, %d measured): "
                   "achieved %.0f msg/s, accept latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms"
                   % (l["mta"], l["offered_rate"], l["connections"], l["measured"], l["achieved_rate"],
                      l["latency_ms"]["p50"], l["latency_ms"]["p90"], l["latency_ms"]["p99"],
                      l["latency_ms"]["max"]))
    i = result["idle"]
    idle = ["sluiced with %d idle connections: RSS %.1f MiB (%.1f MiB before; %.1f KiB per connection), "
            "PSS %.1f MiB" % (i["connections"], i["rss_idle_mib"], i["rss_before_mib"],
                              i["kib_per_connection"], i["pss_idle_mib"])]
    text = "\n".join(intro + ["", fmt_table(header, rows), ""] + fs + lat + idle)
    md = "\n".join(["# Sluice vs Postfix benchmark", ""] + ["- " + x for x in intro] + ["",
                    md_table(header, rows), ""] + ["- " + x for x in fs + lat + idle]) + "\n"
    return text, md


def dkim_check_line(c):
    verified = ("both verified by dkimpy in %d" % c["verified_by_all"] if c["verified_by_all"] is not None
                else "not verified (python3-dkim is missing)")
    line = ("dual signing check (%d messages through sluiced with the two [[dkim]] tables): "
            "both signatures in %d, %s" % (c["messages"], c["signed_by_all"], verified))
    return line + ("" if c["signed"] else ": NOT SIGNED (%s)" % c["problem"])


def check_figures(result):
    """Every figure is a positive finite number: the run measured something."""
    problems = []

    def pos(where, v):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            problems.append("%s = %r" % (where, v))

    pos("direct.rate", result["direct"]["rate"])
    for r in result["rounds"]:
        for k, _, _ in COLUMNS:
            pos("%s round %d %s" % (r["mta"], r["round"], k), r[k])
        if r["mta"] != "postfix":
            pos("%s round %d syncs_per_message" % (r["mta"], r["round"]), r.get("syncs_per_message"))
    for kind in KINDS:
        for k, _, _ in COLUMNS:
            pos("median %s %s" % (kind, k), result["median"][kind][k])
    for key in ("ratio", "ratio_dual_signing", "ratio_signing_cost"):
        for k, _, _ in COLUMNS:
            pos("%s %s" % (key, k), result[key][k])
    for f in result["fsync"]:
        pos("%s fsync syncs_per_message" % f["mta"], f["syncs_per_message"])
    for l in result["latency"]:
        for q in ("p50", "p99"):
            pos("%s latency %s" % (l["mta"], q), l["latency_ms"][q])
        pos("%s achieved_rate" % l["mta"], l["achieved_rate"])
    pos("idle rss", result["idle"]["rss_idle_mib"])
    return problems


# ---- main --------------------------------------------------------------------

def default_binary(env, path):
    return os.environ.get(env) or os.path.join(REPO, path)


def ensure_built(args):
    """Build sluiced / sluice_loadgen in the default build tree only when one
    of the default binaries is missing."""
    missing = [(p, t) for p, t, dflt in ((args.sluiced, "sluiced", os.path.join(REPO, "build/exe/sluiced")),
                                          (args.loadgen, "sluice_loadgen",
                                           os.path.join(REPO, "build/test/bench/sluice_loadgen")))
               if not os.path.exists(p) and p == dflt]
    if missing and os.path.isdir(os.path.join(REPO, "build")):
        log("building %s in %s/build" % (" ".join(t for _, t in missing), REPO))
        subprocess.run(["cmake", "--build", os.path.join(REPO, "build"), "--target"] + [t for _, t in missing],
                       check=True)
    for p in (args.sluiced, args.loadgen):
        if not os.path.exists(p):
            raise BenchError("no binary at %s (build it, or set SLUICED / LOADGEN)" % p)


def main(argv=None):
    p = argparse.ArgumentParser(description="Sluice against Postfix, side by side (docs/performance.md)")
    p.add_argument("--messages", type=int, default=20000, help="messages per round (default 20000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per MTA, alternating (default 3)")
    p.add_argument("--sessions", type=int, default=20, help="smtp-source -s and loadgen connections (20)")
    p.add_argument("--size", type=int, default=2048, help="smtp-source -l payload octets (2048)")
    p.add_argument("--fsync-messages", type=int, default=1000, help="messages in the strace run (1000)")
    p.add_argument("--dkim-check-messages", type=int, default=20,
                   help="messages kept and checked for both DKIM signatures (20)")
    p.add_argument("--latency-seconds", type=float, default=10, help="length of the latency run (10)")
    p.add_argument("--latency-min-messages", type=int, default=200, help="at least this many (200)")
    p.add_argument("--latency-rate", type=float, default=0,
                   help="offer this rate to both MTAs instead of half of each one's peak")
    p.add_argument("--idle-connections", type=int, default=10000, help="idle connections (10000)")
    p.add_argument("--settle", type=float, default=0.5, help="seconds between an MTA's start and its load")
    p.add_argument("--sluiced", default=default_binary("SLUICED", "build/exe/sluiced"))
    p.add_argument("--loadgen", default=default_binary("LOADGEN", "build/test/bench/sluice_loadgen"))
    p.add_argument("--out", help="write OUT.json and OUT.md (default ./sluice-bench-DATE)")
    p.add_argument("--workdir", help="work here instead of a new temporary directory")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, queues)")
    a = p.parse_args(argv)

    if os.geteuid() != 0:
        log("bench: skipped: a private Postfix instance needs root")
        return SKIP
    for tool in (POSTFIX, POSTCONF, SMTP_SOURCE, SMTP_SINK, STRACE, OPENSSL):
        if not os.path.exists(tool):
            log("bench: %s is missing (packages postfix, strace and openssl)" % tool)
            return 1
    started = datetime.datetime.now().astimezone()
    out = a.out or os.path.abspath("sluice-bench-%s" % started.strftime("%Y%m%d-%H%M%S"))
    try:
        ensure_built(a)
    except (BenchError, subprocess.CalledProcessError) as e:
        log("bench: %s" % e)
        return 1

    # CTest's timeout and a plain `kill` send SIGTERM: unwind like Ctrl-C so
    # that the private Postfix, sluiced and the sinks are stopped on the way.
    def on_term(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_term)
    b = Bench(a)
    result = {"started": started.isoformat(timespec="seconds"), "messages": a.messages,
              "rounds_each": a.rounds, "sessions": a.sessions, "size": a.size,
              "sluiced": os.path.realpath(a.sluiced), "machine": machine_info(b.work)}
    try:
        r = subprocess.run([a.sluiced, "--version"], capture_output=True, timeout=10)
        result["sluice_version"] = r.stdout.decode().strip()
        log("bench: work directory %s" % b.work)
        load = os.getloadavg()[0]
        if load > 0.5:
            log("bench: warning: load average %.2f before the run: other work shares the CPUs" % load)
        result["loadavg_1m_start"] = load

        log("direct: smtp-source -> smtp-sink, %d messages" % a.messages)
        result["direct"] = b.direct()
        log("  %.0f msg/s" % result["direct"]["rate"])

        domain = SENDER.split("@")[1]  # smtp-source writes From: <SENDER>
        b.dkim_keys = make_keys(os.path.join(b.work, "dkim"), domain)
        log("dual signing check: %d messages, [[dkim]] %s with an RSA-2048 and an Ed25519 key" % (
            a.dkim_check_messages, domain))
        result["dkim_check"] = b.dkim_check()
        log("  " + dkim_check_line(result["dkim_check"]))

        rows = []
        for n in range(1, a.rounds + 1):
            for kind in KINDS:
                log("round %d %s: %d messages" % (n, kind, a.messages))
                row = b.one_round(kind, n)
                rows.append(row)
                log("  e2e %.0f msg/s, accept %.0f msg/s, peak RSS %.1f MiB, CPU %.3f s/1k%s" % (
                    row["e2e_rate"], row["accept_rate"], row["peak_rss_mib"], row["cpu_per_1000"],
                    ", syncs/msg %.3f" % row["syncs_per_message"] if "syncs_per_message" in row else ""))
        result["rounds"] = rows
        med = {k: median_row([r for r in rows if r["mta"] == k]) for k in KINDS}
        result["median"] = med
        ratio = lambda x, y: {k: med[x][k] / med[y][k] if med[y][k] else float("nan") for k, _, _ in COLUMNS}
        result["ratio"] = ratio("sluice", "postfix")
        result["ratio_dual_signing"] = ratio("sluice-dkim", "postfix")
        result["ratio_signing_cost"] = ratio("sluice-dkim", "sluice")

        result["fsync"] = []
        for kind in ("postfix", "sluice"):
            log("fsync: %s under strace, %d messages" % (kind, a.fsync_messages))
            f = b.fsync_count(kind)
            result["fsync"].append(f)
            log("  %.3f fsync+fdatasync per message %s" % (f["syncs_per_message"], f["calls"]))

        result["latency"] = []
        for kind in ("postfix", "sluice"):
            rate = a.latency_rate or med[kind]["accept_rate"] / 2
            log("latency: %s at %.0f msg/s" % (kind, rate))
            l = b.latency(kind, rate)
            result["latency"].append(l)
            log("  p50 %.2f ms, p99 %.2f ms, achieved %.0f msg/s" % (
                l["latency_ms"]["p50"], l["latency_ms"]["p99"], l["achieved_rate"]))

        log("idle: sluiced with %d idle connections" % a.idle_connections)
        result["idle"] = b.idle()
        log("  RSS %.1f MiB" % result["idle"]["rss_idle_mib"])
    except (BenchError, DkimKeyError, subprocess.SubprocessError, OSError, ValueError) as e:
        log("bench: FAILED: %s: %s" % (type(e).__name__, e))
        log("bench: work directory kept: %s" % b.work)
        return 1
    except KeyboardInterrupt:
        log("bench: interrupted; work directory kept: %s" % b.work)
        return 1

    text, md = render(result)
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=2)
    with open(out + ".md", "w") as f:
        f.write(md)
    log("")
    log(text)
    log("")
    log("wrote %s.json and %s.md" % (out, out))

    # The summary as written must parse back and hold real figures.
    with open(out + ".json") as f:
        problems = check_figures(json.load(f))
    if problems:
        log("bench: FAILED: figures missing or not positive: %s" % "; ".join(problems))
        log("bench: work directory kept: %s" % b.work)
        return 1
    if a.keep:
        log("bench: work directory kept: %s" % b.work)
    else:
        shutil.rmtree(b.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
