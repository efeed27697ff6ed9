"""Run the CLI signal tests many times in a row and count passes (flakiness check, issue 9).

Usage: python bench/signal_repeat.py [--runs 20] [--select SUBSTRING]
Each run is a fresh pytest process over tests/integration/test_cli_signals.py (SIGINT → 130,
SIGTERM → 143, SIGINT inherited ignored → 130; no output left behind). Prints one line per
run and a JSON summary; exits 1 unless every run passed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_FILE = "tests/integration/test_cli_signals.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--select", default=None, help="pytest -k expression")
    args = parser.parse_args()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST_FILE]
    if args.select:
        command += ["-k", args.select]
    passed = 0
    failures: list[str] = []
    started = time.monotonic()
    for run in range(1, args.runs + 1):
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
        ok = done.returncode == 0
        passed += ok
        if not ok:
            failures.append(done.stdout[-4000:] + done.stderr[-2000:])
        sys.stderr.write(f"run {run:2}: {'pass' if ok else 'FAIL'}  {summary}\n")
    report = {
        "runs": args.runs,
        "passed": passed,
        "failed": args.runs - passed,
        "seconds": round(time.monotonic() - started, 1),
    }
    sys.stdout.write(json.dumps(report) + "\n")
    for text in failures:
        sys.stderr.write(text + "\n")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
