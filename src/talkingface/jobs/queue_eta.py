"""② The queue's time estimates: when each queued job starts and ends, from recent run times.

The typical run time is the median of the latest successes (`finished_at − started_at`), or
DEFAULT_JOB_S before any. A running job's remaining time is `elapsed × (1 − f) / f` once its
frame fraction f reaches MIN_FRACTION, else `typical − elapsed` (never below 0). Queued jobs
are then laid onto the worker slots in dispatch order: each starts when the earliest slot
frees (and not before its retry backoff ends) and runs for the typical time.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime

from talkingface.jobs.stats import percentile

DEFAULT_JOB_S = 60.0  # a job's expected run time before any job has succeeded here
MIN_FRACTION = 0.05  # below this, a job's own progress says too little about its end


@dataclass(frozen=True, slots=True)
class RunningJob:
    job_id: str
    fraction: float  # frames done / total; 0 while unknown
    elapsed_s: float  # since the current attempt started


@dataclass(frozen=True, slots=True)
class QueuedJob:
    job_id: str
    not_before_s: float  # seconds from now until its backoff ends (0: due)


@dataclass(frozen=True, slots=True)
class QueueEstimate:
    typical_duration_s: float
    basis: str  # "recent" (median of recent runs) or "default"
    running_eta_s: dict[str, float]  # job id → seconds until it ends
    queued_start_s: dict[str, float]  # job id → seconds until it starts
    queued_eta_s: dict[str, float]  # job id → seconds until it ends


def typical_duration(recent_durations_s: list[float]) -> tuple[float, str]:
    """The median of recent run times and "recent", or the default and "default"."""
    median = percentile(recent_durations_s, 0.5)
    return (DEFAULT_JOB_S, "default") if median is None else (median, "recent")


def remaining_s(job: RunningJob, typical_s: float) -> float:
    if job.fraction >= MIN_FRACTION:
        return max(0.0, job.elapsed_s * (1.0 - job.fraction) / job.fraction)
    return max(0.0, typical_s - job.elapsed_s)


def estimate_queue(
    running: list[RunningJob],
    queued: list[QueuedJob],
    *,
    slots: int,
    recent_durations_s: list[float],
) -> QueueEstimate:
    """Start and end estimates for every queued job, end estimates for running ones."""
    typical_s, basis = typical_duration(recent_durations_s)
    running_eta = {job.job_id: round(remaining_s(job, typical_s), 1) for job in running}
    free_at = sorted(running_eta.values())[: max(1, slots)]
    free_at += [0.0] * (max(1, slots) - len(free_at))  # idle slots are free now
    heapq.heapify(free_at)
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for job in queued:
        start = max(heapq.heappop(free_at), job.not_before_s)
        starts[job.job_id] = round(start, 1)
        ends[job.job_id] = round(start + typical_s, 1)
        heapq.heappush(free_at, start + typical_s)
    return QueueEstimate(round(typical_s, 1), basis, running_eta, starts, ends)


def seconds_until(moment: datetime | None, now: datetime) -> float:
    """Seconds from now until `moment` (0 when it has passed or is None)."""
    return 0.0 if moment is None else max(0.0, (moment - now).total_seconds())
