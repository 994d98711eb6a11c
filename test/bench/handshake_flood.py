#!/usr/bin/python3
"""handshake_flood.py — what one client address can take from the others
(issue 11, finding 6). Prints figures; asserts nothing about speed.

Starts its own sluiced (SLUICED or --sluiced) in a temporary directory, with
a relay listener, an implicit-TLS (465-style) listener, a self-signed
certificate made by the daemon and a users file with one yescrypt login,
then measures, all on loopback:

  1. noop: the NOOP round trip of an unrelated client (127.0.0.2, relay
     listener, plain) with nothing else going on;
  2. flood: the same while WORKERS threads from 127.0.0.1 do TLS handshakes
     in a loop (connect, handshake, read the 220, close) — the issue's
     40-worker flood — and how many handshakes per second they got;
  3. guess: GUESSERS parallel TLS connections from 127.0.0.1 each sending
     AUTH PLAIN with wrong passwords as fast as the answers come
     (reconnecting after the 421 that ends a session), and the rate of
     answered guesses per second.

The flood and the guessers run in a child process so that their Python
threads do not compete with the probe for the interpreter lock.

    SLUICED=build/exe/sluiced python3 test/bench/handshake_flood.py
    python3 test/bench/handshake_flood.py --sluiced OLD/sluiced --delay ""   # no key
"""
import argparse
import base64
import multiprocessing
import os
import shutil
import socket
import ssl
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

LOGIN, PASSWORD = "alice@example.org", "Alice-pw-1"


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def flood(port, workers, seconds, out):
    """WORKERS threads doing handshakes from 127.0.0.1; out.value = count."""
    ctx = tls_ctx()
    stop = time.time() + seconds
    counts = [0] * workers

    def worker(i):
        while time.time() < stop:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10,
                                              source_address=("127.0.0.1", 0)) as raw:
                    with ctx.wrap_socket(raw) as s:
                        if s.recv(512).startswith(b"220"):
                            counts[i] += 1
            except OSError:
                pass

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.value = sum(counts)


def guess(port, conns, seconds, out):
    """CONNS sessions from 127.0.0.1 guessing passwords; out.value = answers."""
    ctx = tls_ctx()
    stop = time.time() + seconds
    counts = [0] * conns

    def session():
        raw = socket.create_connection(("127.0.0.1", port), timeout=30,
                                       source_address=("127.0.0.1", 0))
        s = ctx.wrap_socket(raw)
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if not line:
                    raise EOFError
                if line[3:4] != b"-":
                    return line

        reply()
        s.sendall(b"EHLO guess.test\r\n")
        reply()
        return s, f, reply

    def worker(i):
        n = 0
        while time.time() < stop:
            try:
                s, f, reply = session()
                with s:
                    while time.time() < stop:
                        n += 1
                        cred = base64.b64encode(("\0%s\0guess-%d-%d" % (LOGIN, i, n)).encode())
                        s.sendall(b"AUTH PLAIN " + cred + b"\r\n")
                        r = reply()
                        if not r.startswith(b"535"):
                            break  # the 421 after the third failure: reconnect
                        if time.time() < stop:
                            counts[i] += 1
            except (OSError, EOFError):
                pass

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.value = sum(counts)


def probe_rtts(port, seconds):
    """NOOP round trips (ms) of a client on 127.0.0.2, one every 10 ms."""
    c = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=("127.0.0.2", 0))
    f = c.makefile("rb")
    f.readline()
    c.sendall(b"EHLO probe.test\r\n")
    while f.readline()[3:4] == b"-":
        pass
    rtts = []
    stop = time.time() + seconds
    while time.time() < stop:
        t0 = time.perf_counter()
        c.sendall(b"NOOP\r\n")
        f.readline()
        rtts.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.01)
    c.close()
    return rtts


def summary(rtts):
    q = sorted(rtts)
    pick = lambda p: q[min(len(q) - 1, int(p * len(q)))]
    return "n=%d p50=%.2f p90=%.2f p99=%.2f max=%.2f ms" % (
        len(q), statistics.median(q), pick(0.9), pick(0.99), q[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sluiced", default=os.environ.get("SLUICED"))
    ap.add_argument("--workers", type=int, default=40)
    ap.add_argument("--guessers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--delay", default="1s",
                    help='limits.auth_failure_delay to write; "" writes no key (older builds)')
    args = ap.parse_args()
    if args.sluiced:
        os.environ["SLUICED"] = os.path.abspath(args.sluiced)
    import harness  # reads SLUICED at import

    limits = {"max_connections_per_client": 1000, "max_connections": 5000}
    if args.delay:
        limits["auth_failure_delay"] = args.delay
    d = harness.SubmissionSluiced(users=[harness.user_line(LOGIN, PASSWORD)], relay=True,
                                  limits=limits)
    d.start()
    try:
        print("sluiced: %s" % harness.SLUICED)
        print("idle    NOOP rtt: %s" % summary(probe_rtts(d.relay_port, 2)))

        ctx = multiprocessing.get_context("fork")
        count = ctx.Value("q", 0)
        p = ctx.Process(target=flood, args=(d.port465, args.workers, args.seconds + 1, count))
        p.start()
        time.sleep(0.5)
        rtts = probe_rtts(d.relay_port, args.seconds)
        p.join()
        print("flood   NOOP rtt: %s" % summary(rtts))
        print("flood   handshakes/s from %d workers: %.0f" %
              (args.workers, count.value / (args.seconds + 1)))

        count = ctx.Value("q", 0)
        p = ctx.Process(target=guess, args=(d.port465, args.guessers, args.seconds, count))
        p.start()
        p.join()
        print("guess   %d connections: %.1f answered wrong passwords/s" %
              (args.guessers, count.value / args.seconds))
    finally:
        d.stop()
        shutil.rmtree(d.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
