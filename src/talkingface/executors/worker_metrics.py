"""④ A worker's own figures (CPU time, resident memory) for the server's /metrics, written in
prometheus-client's multiprocess mode into the directory its server made (ops/metrics.py).

A worker process cannot be scraped itself, and ProcessCollector reads only the process it
runs in; so each worker keeps two gauges in a memory-mapped file named by its pid, refreshed
by a daemon thread, and the server merges every worker's file on each scrape (the `pid` label
is prometheus-client's). A worker whose server made no directory (it does not serve metrics)
writes nothing.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psutil
from prometheus_client import Gauge, values

REFRESH_S = 5.0
MULTIPROCESS_DIR_NAME = "prometheus"  # under data_dir; one subdirectory per server pid


def multiprocess_dir(data_dir: Path, server_pid: int) -> Path:
    """Where the server with this pid and its workers keep the workers' metric files."""
    return data_dir / MULTIPROCESS_DIR_NAME / str(server_pid)


def start_worker_metrics(data_dir: Path, worker_id: str) -> threading.Thread | None:
    """Call once, at the start of a spawned worker: a thread that keeps the gauges fresh."""
    path = multiprocess_dir(data_dir, os.getppid())
    if not path.is_dir():
        return None
    # Multiprocess mode is chosen per process, by this variable and prometheus-client's value
    # class; this process is a worker entry point, so it may set both for itself.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    values.ValueClass = values.MultiProcessValue()
    cpu = Gauge(
        "talkingface_worker_cpu_seconds",
        "CPU time of a worker process",
        ["worker"],
        multiprocess_mode="liveall",
        registry=None,
    ).labels(worker=worker_id)
    rss = Gauge(
        "talkingface_worker_resident_memory_bytes",
        "Resident memory of a worker process",
        ["worker"],
        multiprocess_mode="liveall",
        registry=None,
    ).labels(worker=worker_id)
    process = psutil.Process()

    def refresh() -> None:
        while True:
            with process.oneshot():
                times = process.cpu_times()
                cpu.set(times.user + times.system)
                rss.set(process.memory_info().rss)
            time.sleep(REFRESH_S)

    thread = threading.Thread(target=refresh, name="tf-metrics", daemon=True)
    thread.start()
    return thread
