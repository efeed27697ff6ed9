"""bench/load.py's status-read phases: GET /v1/jobs/{id} and /easy/query from a separate load
process (bench/read_load.py), against the one `serve` process and then against N API
processes sharing a port (bench/api_process.py), in the same run; their ratio is the figure.

Each phase reports reads/s, latency p50/p99, the CPU of the server processes and of the load
process (both share the machine's cores: on 2 cores the load process's own CPU is not free),
server CPU per read (the figure least moved by other load), and the machine's busy %.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from bench.service_process import Service, free_port, wait_until

READ_LOAD = Path(__file__).with_name("read_load.py")
API_PROCESS = Path(__file__).with_name("api_process.py")
EASY_EVERY = 5  # one read in five is a HeyGem poll, as in the polling phases
START_TIMEOUT_S = 90.0


def write_paths(path: Path, job_ids: list[str], codes: list[str]) -> Path:
    """The read mix for read_load.py: four job reads for each HeyGem query."""
    lines = [f"job /v1/jobs/{job_id}" for job_id in job_ids]
    easy = [f"easy /easy/query?code={code}" for code in codes]
    wanted = max(1, len(lines) // (EASY_EVERY - 1)) if easy else 0
    lines += (easy * (wanted // max(len(easy), 1) + 1))[:wanted]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def run_reads(
    url: str, paths: Path, servers: list[psutil.Process], connections: int, seconds: float
) -> dict[str, Any]:  # Any: JSON-safe figures
    """One phase: the load process against `url`; the servers' CPU while it ran."""
    command = [sys.executable, str(READ_LOAD), url, "--paths-file", str(paths)]
    command += ["--connections", str(connections), "--seconds", str(seconds)]
    machine_before, server_before = psutil.cpu_times(), cpu_seconds(servers)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the load process failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout)
    server_s = cpu_seconds(servers) - server_before
    machine = psutil.cpu_times()
    busy_all = sum(machine) - sum(machine_before)
    idle = (machine.idle + machine.iowait) - (machine_before.idle + machine_before.iowait)
    figures.update(
        server_processes=len(servers),
        server_cpu_pct=round(100 * server_s / wall, 1),
        server_cpu_ms_per_read=round(1000 * server_s / max(figures["requests"], 1), 3),
        machine_busy_pct=round(100 * (1 - idle / max(busy_all, 1e-9)), 1),
    )
    return figures


@contextlib.contextmanager
def api_processes(service: Service, count: int, root: Path) -> Iterator[tuple[str, list[Any]]]:
    """`count` API-only processes of the service's app on one new port: (URL, processes)."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(count):
            ready = root / f"ready-{index}"
            command = [sys.executable, str(API_PROCESS), "--port", str(port)]
            command += ["--data-dir", str(service.data_dir), "--ready-file", str(ready)]
            with (root / f"api-{index}.log").open("ab") as log:
                started.append(
                    subprocess.Popen(command, env=service.env, stdout=log, stderr=subprocess.STDOUT)
                )
        for index, process in enumerate(started):
            wait_until(
                functools.partial(_started, process, root, index),
                timeout_s=START_TIMEOUT_S,
                what=f"API process {index} to start",
            )
        yield f"http://127.0.0.1:{port}", [psutil.Process(p.pid) for p in started]
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _started(process: subprocess.Popen[bytes], root: Path, index: int) -> bool:
    if process.poll() is not None:
        log = (root / f"api-{index}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"API process {index} exited:\n{log}")
    return (root / f"ready-{index}").exists()


def compare_reads(
    service: Service,
    job_ids: list[str],
    codes: list[str],
    root: Path,
    *,
    processes: int,
    connections: int,
    seconds: float,
) -> dict[str, Any]:  # Any: JSON-safe figures
    """Status reads against the one `serve` process, then against `processes` API processes."""
    paths = write_paths(root / "read-paths.txt", job_ids, codes)
    print("phase 5 reads, 1 process: running", file=sys.stderr, flush=True)
    one = run_reads(service.url, paths, [psutil.Process(service.process.pid)], connections, seconds)
    with api_processes(service, processes, root / "api") as (url, servers):
        print(f"phase 6 reads, {processes} processes: running", file=sys.stderr, flush=True)
        many = run_reads(url, paths, servers, connections, seconds)
    return {
        "cpu_count": os.cpu_count(),
        "one_process": one,
        "n_processes": many,
        "ratio_reads_per_s": round(many["reads_per_s"] / max(one["reads_per_s"], 1e-9), 2),
    }


def print_reads(figures: dict[str, Any]) -> None:
    print("\n== status reads (GET /v1/jobs/{id} + /easy/query, separate load process)")
    head = f"{'servers':>7} {'reads/s':>8} {'p50':>6} {'p99':>6} {'max':>6} {'server CPU':>10}"
    print(head + f" {'ms/read':>7} {'load CPU':>8} {'machine':>7}  replies")
    for key in ("one_process", "n_processes"):
        f = figures[key]
        print(
            f"{f['server_processes']:>7} {f['reads_per_s']:>8} {f['p50_ms']:>6} {f['p99_ms']:>6} "
            f"{f['max_ms']:>6} {f['server_cpu_pct']:>9}% {f['server_cpu_ms_per_read']:>7} "
            f"{f['load_cpu_pct']:>7}% {f['machine_busy_pct']:>6}%  "
            + " ".join(f"{k}:{v}" for k, v in f["statuses"].items())
        )
    print(
        f"ratio N/1 processes: {figures['ratio_reads_per_s']} "
        f"(latency in ms; CPU % of one core; machine: busy % of all {figures['cpu_count']} cores)"
    )
