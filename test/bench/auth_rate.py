#!/usr/bin/python3
"""auth_rate.py HOST PORT LOGIN PASSWORD [THREADS] [SECONDS]

Measures, against a running sluiced's implicit-TLS (465-style) listener:
  - TLS handshakes per second (connect, handshake, read the 220, close), and
  - logins per second (connect, handshake, EHLO, AUTH PLAIN, QUIT),
each with THREADS concurrent clients for SECONDS. The certificate is not
verified (a self-signed one is expected). Prints one line per figure.
"""
import smtplib
import socket
import ssl
import sys
import threading
import time


def run(fn, threads, seconds):
    stop = time.time() + seconds
    counts = [0] * threads
    errors = [0] * threads

    def worker(i):
        while time.time() < stop:
            try:
                fn()
                counts[i] += 1
            except Exception:
                errors[i] += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.time() - start), sum(errors)


def main():
    host, port, login, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 5
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def handshake():
        with socket.create_connection((host, port), timeout=10) as raw:
            with ctx.wrap_socket(raw) as s:
                if not s.recv(512).startswith(b"220"):
                    raise RuntimeError("no greeting")

    def login_once():
        with smtplib.SMTP_SSL(host, port, context=ctx, timeout=10) as s:
            s.login(login, password)

    rate, err = run(handshake, threads, seconds)
    print(f"tls handshakes/s: {rate:.0f} ({threads} clients, {seconds:.0f}s, {err} errors)")
    rate, err = run(login_once, threads, seconds)
    print(f"logins/s (TLS + EHLO + AUTH PLAIN): {rate:.0f} ({threads} clients, {seconds:.0f}s, {err} errors)")


if __name__ == "__main__":
    main()
