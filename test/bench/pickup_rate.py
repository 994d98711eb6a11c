#!/usr/bin/python3
"""pickup_rate.py [FILES] — how fast sluiced takes maildrop files.

FILES messages (1,000 by default) are dropped with sluice-sendmail while the
daemon is stopped; then sluiced starts and this measures the time from its
start until its log shows FILES `accept maildrop=` lines, and until the
maildrop is empty again (files are removed after their commit). Delivery
goes nowhere (the e2e harness's closed DNS port), so only pickup is
measured. Uses test/e2e/harness.py; set SLUICED and SLUICE_SENDMAIL as for
the e2e tests:

  SLUICED=build/exe/sluiced SLUICE_SENDMAIL=build/exe/sluice-sendmail \\
    /usr/bin/python3 test/bench/pickup_rate.py 1000
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import Sluiced  # noqa: E402

SENDMAIL = os.environ["SLUICE_SENDMAIL"]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    d = Sluiced()
    try:
        d.start()
        d.stop()
        for i in range(n):
            subprocess.run([SENDMAIL, "-C", d.config_path, "-f", "a@x.test", "b@y.test"],
                           input=b"Subject: %d\n\nbody\n" % i, check=True)
        t0 = time.time()
        d.start(wait=False)
        accepted = 0
        while accepted < n and time.time() - t0 < 120:
            accepted = d.log().count("accept maildrop=")
            time.sleep(0.005)
        t_accepted = time.time() - t0
        maildrop = os.path.join(d.spool, "maildrop")
        while os.listdir(maildrop) and time.time() - t0 < 120:
            time.sleep(0.005)
        t_empty = time.time() - t0
        print("pickup: %d files accepted in %.2f s = %.0f files/s; maildrop empty after %.2f s"
              % (accepted, t_accepted, accepted / t_accepted, t_empty))
    finally:
        d.cleanup()


if __name__ == "__main__":
    main()
