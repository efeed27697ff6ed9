"""Latency of the submit-time probe: in the calling process vs in a child (IsolatedProbe).

Usage: python bench/probe_latency.py [--runs 20] [FILE ...]
Without files it probes the demo's speech WAV, 512² template MP4 and photo. Prints JSON: per file,
the median and p90 milliseconds of each way, and the first isolated call (which starts the
fork server) on its own. Imports happen in main(): each probe child imports the main
module again (multiprocessing does), and a server's main module imports nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _timed_ms(call: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000.0)
    return times


def _figures(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    from talkingface.config import Settings
    from talkingface.media.probe import probe
    from talkingface.media.probe_process import IsolatedProbe
    from talkingface.samples import make_demo_inputs

    isolated = IsolatedProbe.from_settings(Settings())
    with tempfile.TemporaryDirectory() as scratch:
        demo = make_demo_inputs(scratch)
        files = args.files or [demo.audio_path, demo.video_path, demo.photo_path]
        began = time.perf_counter()
        isolated(files[0])
        report: dict[str, object] = {
            "first_isolated_ms": round((time.perf_counter() - began) * 1000.0, 1)
        }
        for path in files:
            report[path.name] = {
                "in_process": _figures(_timed_ms(lambda p=path: probe(p), args.runs)),
                "isolated": _figures(_timed_ms(lambda p=path: isolated(p), args.runs)),
            }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
