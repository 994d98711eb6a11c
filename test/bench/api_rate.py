#!/usr/bin/python3
"""api_rate.py [--messages N] [--connections C] [--rounds R] — the injection
rate through the HTTP API next to the SMTP rate, on one sluiced, same
machine, same content.

sluiced runs with its relay listener and `[http] address` on loopback;
sluice_loadgen offers N messages of --size octets over C keep-alive
connections, as fast as they are accepted, first over SMTP (MAIL, RCPT,
DATA pipelined), then as POST /api/v1/messages ({"from", "to", "content"},
the same message), alternating for R rounds. Delivery goes nowhere (the
e2e harness's closed DNS port), so only intake is measured: each message is
durably in the spool when its 250 or 202 arrives. Prints the rate and the
accept latency of each round and the medians. Set SLUICED and LOADGEN:

  SLUICED=build/exe/sluiced LOADGEN=build/test/bench/sluice_loadgen \\
    /usr/bin/python3 test/bench/api_rate.py --messages 20000 --connections 20 --rounds 3
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import Sluiced, free_port  # noqa: E402

LOADGEN = os.environ.get("LOADGEN", "build/test/bench/sluice_loadgen")


def run_load(args, port, extra):
    cmd = [LOADGEN, "--port", str(port), "--messages", str(args.messages), "--connections",
           str(args.connections), "--rate", "1000000", "--size", str(args.size), "--json",
           "--from", "bench@sender.test", "--to", "sink@dest.test", "--timeout", "600"] + extra
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    key = "sluice_bench_" + os.urandom(16).hex()
    http_port = free_port()
    work = __import__("tempfile").mkdtemp(prefix="sluice-api-rate-")
    keys = os.path.join(work, "api-keys")
    with open(keys, "w") as f:
        f.write("bench:%s:@source.test\n" % hashlib.sha256(key.encode()).hexdigest())  # loadgen's sender
    os.chmod(keys, 0o600)
    d = Sluiced(extra='[http]\naddress = "127.0.0.1:%d"\napi_keys_file = "%s"\n' % (http_port, keys),
                limits={"max_connections": 4096})
    rows = {"smtp": [], "api": []}
    try:
        d.start()
        for r in range(args.rounds):
            for mode in ("smtp", "api"):
                if mode == "smtp":
                    res = run_load(args, d.port, [])
                else:
                    res = run_load(args, http_port, ["--api-key", key])
                rows[mode].append(res)
                print("round %d %-4s: %6d accepted, %d failed, %.0f msg/s, latency p50 %.2f ms p99 %.2f ms%s"
                      % (r + 1, mode, res["accepted"], res["failed"], res["achieved_rate"],
                         res["latency_ms"]["p50"], res["latency_ms"]["p99"],
                         "" if res["ok"] else " (%s)" % res.get("first_error", "")), flush=True)
        for mode in ("smtp", "api"):
            print("%s: median %.0f msg/s over %d rounds of %d messages, %d connections, %d-octet payload"
                  % (mode, statistics.median(x["achieved_rate"] for x in rows[mode]), args.rounds,
                     args.messages, args.connections, args.size))
    finally:
        d.stop()
        shutil.rmtree(d.dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
