"""Prometheus metrics: live figures read from the store and the executor at scrape time,
counters and histograms the scheduler updates as attempts end, the server process's own
figures (prometheus-client's ProcessCollector), and the workers' figures.

One registry per service: `ServiceMetrics(store, workers_view, data_dir)` is built by
create_app and handed to the scheduler, which calls `attempt_ended` / `job_succeeded`.
Worker processes are separate processes, so they write their figures in prometheus-client's
multiprocess mode (executors/worker_metrics.py) into `<data_dir>/prometheus/<server pid>/`, a
directory this server creates, reads on each scrape (MultiProcessCollector), cleans of dead
workers' live gauges, and removes when it stops; directories of dead servers are removed at
start. The `_created` series are off (`disable_created_metrics`): they double the output and
no dashboard here reads them. docs/metrics.md lists every name; a test checks it against a
real scrape.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from talkingface.executors.base import WorkerInfo
from talkingface.executors.worker_metrics import MULTIPROCESS_DIR_NAME, multiprocess_dir
from talkingface.jobs.states import JobState, WorkerState
from talkingface.jobs.stats import compute_stats
from talkingface.jobs.store import JobStore

DURATION_BUCKETS_S = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
WAIT_BUCKETS_S = (0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
_PID_OF_FILE = re.compile(r"_(\d+)\.db$")  # prometheus-client's <type>[_<mode>]_<pid>.db


class _LiveCollector(Collector):
    """Gauges computed on each scrape: nothing to keep in sync, nothing lost on restart."""

    def __init__(
        self, store: JobStore, workers: Callable[[], list[WorkerInfo]], data_dir: Path
    ) -> None:
        self.store, self.workers, self.data_dir = store, workers, data_dir

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = compute_stats(self.store, now=datetime.now(UTC))
        jobs = GaugeMetricFamily("talkingface_jobs", "Jobs in the store by state", labels=["state"])
        for state in JobState:
            jobs.add_metric([state.value], stats["by_state"].get(state.value, 0))
        yield jobs
        failed = GaugeMetricFamily(
            "talkingface_jobs_failed", "Failed jobs in the store by error code", labels=["code"]
        )
        for code, count in stats["failures_by_code"].items():
            failed.add_metric([code], count)
        yield failed
        yield GaugeMetricFamily(
            "talkingface_queue_depth", "Jobs waiting to start", value=self.store.queued_count()
        )
        workers = GaugeMetricFamily("talkingface_workers", "Workers by state", labels=["state"])
        counts = {state.value: 0 for state in WorkerState}
        for worker in self.workers():
            counts[worker.state.value] += 1
        for name, count in counts.items():
            workers.add_metric([name], count)
        yield workers
        yield from self._resources()

    def _resources(self) -> Iterator[GaugeMetricFamily]:
        free = shutil.disk_usage(self.data_dir).free if self.data_dir.exists() else 0
        yield GaugeMetricFamily(
            "talkingface_disk_free_bytes", "Free space in the data directory", value=free
        )
        yield from _gpu_metrics()


def _gpu_metrics() -> Iterator[GaugeMetricFamily]:
    """GPU utilisation and memory through NVML, when nvidia-ml-py and a GPU are present."""
    try:
        import pynvml
    except ImportError:
        return
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return
    util = GaugeMetricFamily("talkingface_gpu_utilization", "GPU busy fraction", labels=["gpu"])
    memory = GaugeMetricFamily("talkingface_gpu_memory_used_bytes", "GPU memory", labels=["gpu"])
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        util.add_metric([str(index)], pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0)
        memory.add_metric([str(index)], pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    yield util
    yield memory


class ServiceMetrics:
    """The service's registry: live gauges, what the scheduler observes, this process, and
    the workers' multiprocess files. `close()` removes the workers' directory."""

    def __init__(
        self, store: JobStore, workers: Callable[[], list[WorkerInfo]], data_dir: Path
    ) -> None:
        disable_created_metrics()  # process-wide in prometheus-client; this is its only user
        self.registry = CollectorRegistry()
        self.registry.register(_LiveCollector(store, workers, data_dir))
        ProcessCollector(registry=self.registry)
        self.multiprocess_dir = _fresh_multiprocess_dir(data_dir)
        MultiProcessCollector(self.registry, path=str(self.multiprocess_dir))
        self.attempts = Counter(
            "talkingface_attempts",
            "Attempts ended, by outcome and error code",
            ["outcome", "code"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "talkingface_job_duration_seconds",
            "Succeeded jobs: first start to finish",
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "talkingface_queue_wait_seconds",
            "Submit to first start",
            buckets=WAIT_BUCKETS_S,
            registry=self.registry,
        )
        self.frames = Counter(
            "talkingface_frames_rendered", "Frames of succeeded jobs", registry=self.registry
        )
        self.receipts = Counter(
            "talkingface_quality_receipts",
            "Quality receipts of succeeded jobs (evaluate), by outcome: measured, low_sync "
            "(under a floor) or failed (no figures)",
            ["outcome"],
            registry=self.registry,
        )

    def attempt_ended(self, outcome: str, code: str | None) -> None:
        self.attempts.labels(outcome=outcome, code=code or "").inc()

    def job_started(self, queue_wait_s: float) -> None:
        self.queue_wait.observe(max(0.0, queue_wait_s))

    def job_succeeded(self, duration_s: float, frames: int, *, receipt: str | None = None) -> None:
        """`receipt`: the job's receipt outcome (measured, low_sync, failed); None: none."""
        self.attempt_ended("succeeded", None)
        self.job_duration.observe(max(0.0, duration_s))
        self.frames.inc(frames)
        if receipt is not None:
            self.receipts.labels(outcome=receipt).inc()

    def render(self) -> bytes:
        _forget_dead_processes(self.multiprocess_dir)
        return generate_latest(self.registry)

    def close(self) -> None:
        shutil.rmtree(self.multiprocess_dir, ignore_errors=True)


def _fresh_multiprocess_dir(data_dir: Path) -> Path:
    """This server's empty directory; those of servers no longer running are removed."""
    parent = data_dir / MULTIPROCESS_DIR_NAME
    if parent.is_dir():
        for entry in parent.iterdir():
            if not entry.name.isdigit() or not psutil.pid_exists(int(entry.name)):
                shutil.rmtree(entry, ignore_errors=True)
    path = multiprocess_dir(data_dir, os.getpid())
    shutil.rmtree(path, ignore_errors=True)  # a previous run with this pid (a container's 1)
    path.mkdir(parents=True)
    return path


def _forget_dead_processes(path: Path) -> None:
    """Drop the live gauges of workers that have exited (their counters stay, summed)."""
    for file in path.glob("*.db"):
        found = _PID_OF_FILE.search(file.name)
        if found and not psutil.pid_exists(int(found.group(1))):
            mark_process_dead(int(found.group(1)), str(path))
