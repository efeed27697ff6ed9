"""Prometheus metrics: live figures read from the store and the executor at scrape time,
plus counters and histograms the scheduler updates as attempts end.

One registry per service (no global state): `ServiceMetrics(store, workers_view)` is built
by create_app and handed to the scheduler, which calls `attempt_ended` / `job_succeeded`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from talkingface.executors.base import WorkerInfo
from talkingface.jobs.states import JobState, WorkerState
from talkingface.jobs.stats import compute_stats
from talkingface.jobs.store import JobStore

DURATION_BUCKETS_S = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
WAIT_BUCKETS_S = (0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


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
        process = psutil.Process()
        with process.oneshot():
            cpu = process.cpu_times()
            rss = process.memory_info().rss
        yield GaugeMetricFamily(
            "talkingface_process_cpu_seconds",
            "CPU time of the service process",
            value=cpu.user + cpu.system,
        )
        yield GaugeMetricFamily(
            "talkingface_process_rss_bytes", "Resident memory of the service process", value=rss
        )
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
    """The service's registry: live gauges plus what the scheduler observes."""

    def __init__(
        self, store: JobStore, workers: Callable[[], list[WorkerInfo]], data_dir: Path
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_LiveCollector(store, workers, data_dir))
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

    def attempt_ended(self, outcome: str, code: str | None) -> None:
        self.attempts.labels(outcome=outcome, code=code or "").inc()

    def job_started(self, queue_wait_s: float) -> None:
        self.queue_wait.observe(max(0.0, queue_wait_s))

    def job_succeeded(self, duration_s: float, frames: int) -> None:
        self.attempt_ended("succeeded", None)
        self.job_duration.observe(max(0.0, duration_s))
        self.frames.inc(frames)

    def render(self) -> bytes:
        return generate_latest(self.registry)
