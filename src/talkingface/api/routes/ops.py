"""① Operations: statistics, workers, the process itself, liveness and readiness."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import psutil
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from talkingface.api.deps import SchedulerDep, SettingsDep, StorageDep, StoreDep
from talkingface.api.routes.cluster import leadership_check, scheduler_process
from talkingface.errors import InvalidRequestError, TalkingFaceError
from talkingface.jobs.stats import compute_stats
from talkingface.jobs.stats_history import MAX_BUCKETS, MAX_HOURS, bucket_count, stats_history
from talkingface.ops.alerts import AlertManager
from talkingface.ops.metrics import ServiceMetrics

router = APIRouter(tags=["ops"])


@router.get("/v1/stats", operation_id="read_stats")
def read_stats(store: StoreDep) -> dict[str, Any]:  # Any: the stats object of jobs.stats
    """Counts by state and error code, success rates, duration and queue-wait percentiles."""
    return compute_stats(store, now=datetime.now(UTC))


@router.get("/v1/stats/history", operation_id="read_stats_history")
def read_stats_history(
    store: StoreDep, hours: float = 24.0, bucket_minutes: int = 60
) -> dict[str, Any]:  # Any: the buckets of jobs.stats_history
    """Render jobs per time bucket: outcomes, success rate, throughput, duration and
    queue-wait percentiles, errors by code (docs/dashboard-api.md)."""
    problems = []
    if not 0 < hours <= MAX_HOURS:
        problems.append(f"hours must be more than 0 and at most {MAX_HOURS} (7 days)")
    if bucket_minutes < 1:
        problems.append("bucket_minutes must be at least 1")
    elif bucket_minutes > MAX_HOURS * 60:  # a bucket past the longest window overflows dates
        problems.append(f"bucket_minutes must be at most {MAX_HOURS * 60} (7 days)")
    elif not problems and bucket_count(hours, bucket_minutes) > MAX_BUCKETS:
        fewest = max(1, int(-(-hours * 60 // MAX_BUCKETS)))
        problems.append(
            f"{hours:g} hours in {bucket_minutes}-minute buckets is "
            f"{bucket_count(hours, bucket_minutes)} buckets, over the {MAX_BUCKETS} allowed; "
            f"use bucket_minutes={fewest} or more, or fewer hours"
        )
    if problems:
        raise InvalidRequestError(
            "; ".join(problems) + ".",
            details={"hours": hours, "bucket_minutes": bucket_minutes},
        )
    return stats_history(store, now=datetime.now(UTC), hours=hours, bucket_minutes=bucket_minutes)


class WorkerStatus(BaseModel):
    id: str
    pid: int | None
    scheduler_host: str | None = None  # the scheduler (leader) process that runs the worker,
    scheduler_pid: int | None = None  # None while no leader is known (GET /v1/cluster)
    state: str  # starting, ready, busy, lost
    job_id: str | None  # the job a busy worker runs
    attempt_id: str | None
    jobs_done: int  # attempts it finished since it was spawned
    uptime_s: float  # since it was spawned
    node: str | None = None  # the Ray node of a ray executor's actor; None: this machine


@router.get("/v1/workers", operation_id="list_workers")
def list_workers(scheduler: SchedulerDep) -> list[WorkerStatus]:
    """Every worker with its process id, state, the job it runs, jobs done and uptime, and
    the scheduler process that runs it (with several API processes: the leader's workers,
    whichever process answers)."""
    now_s = time.monotonic()
    host, pid = scheduler_process(scheduler)
    return [
        WorkerStatus(
            id=w.id,
            pid=w.pid,
            scheduler_host=host,
            scheduler_pid=pid,
            state=w.state.value,
            job_id=w.job_id,
            attempt_id=w.attempt_id,
            jobs_done=w.jobs_done,
            uptime_s=round(max(0.0, now_s - w.started_at_s), 1) if w.started_at_s else 0.0,
            node=w.node,
        )
        for w in scheduler.workers()
    ]


@router.get("/v1/process", operation_id="read_process")
def read_process() -> dict[str, Any]:  # Any: JSON-safe figures
    """This server process for leak hunting: threads by name, open descriptors, child
    processes and memory (a thread or descriptor count that only grows is a leak)."""
    process = psutil.Process()
    children = []
    for child in process.children(recursive=True):
        try:
            children.append({"pid": child.pid, "name": child.name(), "status": child.status()})
        except psutil.Error:  # it ended while we looked
            continue
    with process.oneshot():
        return {
            "pid": process.pid,
            "threads": dict(sorted(Counter(t.name for t in threading.enumerate()).items())),
            "native_threads": process.num_threads(),
            "open_fds": process.num_fds(),
            "rss_bytes": process.memory_info().rss,
            "children": children,
        }


@router.get("/metrics", operation_id="read_metrics", response_class=PlainTextResponse)
def read_metrics(request: Request) -> Response:
    """Prometheus text format: jobs by state and error code, attempt outcomes, durations and
    queue wait, queue depth, workers, frames, disk free, GPU (NVML), this process (the
    standard `process_*`) and each live worker's CPU and memory; docs/metrics.md lists them."""
    metrics: ServiceMetrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/alerts", operation_id="list_alerts")
def list_alerts(request: Request) -> dict[str, Any]:
    """Alerts firing now, and the recent firing/resolved changes (newest last)."""
    alerts: AlertManager = request.app.state.alerts
    return {"active": alerts.active(), "history": alerts.history()}


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", operation_id="check_health")
async def check_health() -> dict[str, str]:
    """The process answers (no store access). Async on purpose: it must not wait behind
    busy request threads, or a load balancer would mark a loaded server dead."""
    return {"status": "ok"}


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    operation_id="check_ready",
    responses={503: {"description": "Not ready; `checks` says which check failed."}},
)
def check_ready(
    settings: SettingsDep, store: StoreDep, storage: StorageDep, scheduler: SchedulerDep
) -> JSONResponse:
    """Ready when the store answers, a worker is ready or busy, results can be written and
    the disk has room."""
    checks: dict[str, dict[str, Any]] = {}  # Any: ok flag and a sentence
    try:
        store.ping()
        checks["store"] = {"ok": True, "message": "the job store answers"}
    except TalkingFaceError as exc:
        checks["store"] = {"ok": False, "message": exc.message}
    workers_ok = scheduler.is_ready()
    checks["workers"] = {
        "ok": workers_ok,
        "message": "a worker is ready or busy"
        if workers_ok
        else "no worker is ready yet (starting, lost, or the scheduler is not running)",
    }
    unwritable = storage.results_unwritable_reason()
    checks["results"] = {
        "ok": unwritable is None,
        "message": unwritable or "the results directory is writable",
    }
    free = storage.free_disk_bytes()
    minimum = settings.api.min_free_disk_bytes
    checks["disk"] = {
        "ok": free >= minimum,
        "message": f"{free} bytes free in the data directory (minimum {minimum}, "
        "api.min_free_disk_bytes)",
        "free_bytes": free,
    }
    leadership = leadership_check(scheduler)
    if leadership is not None:
        checks["scheduler"] = leadership
    ready = all(check["ok"] for check in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
