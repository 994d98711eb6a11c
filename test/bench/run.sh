#!/bin/sh
# run.sh — the Sluice vs Postfix benchmark in one command (as root):
#   test/bench/run.sh [--messages N] [--rounds R] [--out PREFIX] ...
# SLUICED and LOADGEN name the binaries (default: build/exe/sluiced and
# build/test/bench/sluice_loadgen, built there if missing). `--help` lists
# every option; docs/performance.md explains what is measured and how.
exec /usr/bin/python3 "$(dirname "$0")/bench.py" "$@"
