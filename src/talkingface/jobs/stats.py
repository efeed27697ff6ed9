"""Figures over the job store for /v1/stats, metrics and alerts: counts, rates, percentiles.

Job figures are of render jobs, the jobs /v1/jobs lists and the queue limit counts: a
template's preparation is a job too, but its durations would skew the queue's wait estimate
and a batch of faceless template uploads would read as renders failing. Preparation jobs
are counted on their own (`template_jobs_by_state`). The queue's oldest job and attempt
outcomes (lost workers, timeouts) cover every kind: a worker is lost whatever it ran.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, case, func, select

from talkingface.jobs.states import AttemptOutcome, JobKind, JobState
from talkingface.jobs.tables import attempts, jobs

if TYPE_CHECKING:
    from talkingface.jobs.store import JobStore

PERCENTILE_WINDOW_JOBS = 10_000  # percentiles look at the newest jobs only
_WINDOWS = {"last_hour": timedelta(hours=1), "last_day": timedelta(days=1), "all": None}
_RENDER = jobs.c.kind == JobKind.RENDER.value


def compute_stats(store: JobStore, *, now: datetime) -> dict[str, Any]:  # Any: JSON-safe values
    """Counts by state and error code, success rates, duration/queue-wait percentiles, retries."""
    with store.reading() as conn:
        by_state = _count_by_state(conn, JobKind.RENDER)
        template_jobs_by_state = _count_by_state(conn, JobKind.PREPARE_TEMPLATE)
        failures = conn.execute(
            select(jobs.c.error_code, func.count())
            .where(_RENDER, jobs.c.state == JobState.FAILED.value)
            .group_by(jobs.c.error_code)
        ).all()  # read here: once the connection is back in the pool its cursor may be closed
        retries = conn.execute(
            select(
                func.coalesce(func.sum(case((jobs.c.attempt > 1, jobs.c.attempt - 1))), 0)
            ).where(_RENDER)
        ).scalar_one()
        durations_s, waits_s = _recent_durations(conn)
        success_rate = {
            name: _success_rate(conn, None if span is None else now - span)
            for name, span in _WINDOWS.items()
        }
    return {
        "jobs_total": sum(by_state.values()),
        "by_state": by_state,
        "failures_by_code": {str(code): int(count) for code, count in failures},
        "success_rate": success_rate,
        "duration_s": _percentiles(durations_s),
        "queue_wait_s": _percentiles(waits_s),
        "retries_total": int(retries),
        "template_jobs_by_state": template_jobs_by_state,
    }


def _count_by_state(conn: Connection, kind: JobKind) -> dict[str, int]:
    by_state = {state.value: 0 for state in JobState}
    query = select(jobs.c.state, func.count()).where(jobs.c.kind == kind.value)
    for state, count in conn.execute(query.group_by(jobs.c.state)):
        by_state[state] = int(count)
    return by_state


@dataclass(frozen=True, slots=True)
class RecentActivity:
    """What the alert rules look at, read in one transaction."""

    finished_by_state: dict[JobState, int]  # render jobs finished since `finished_since`
    ended_by_outcome: dict[AttemptOutcome, int]  # attempts ended since `ended_since`
    oldest_queued_at: datetime | None  # creation time of the longest-waiting queued job


def recent_activity(
    store: JobStore, *, finished_since: datetime, ended_since: datetime
) -> RecentActivity:
    """Jobs finished and attempts ended in their windows, and the queue's oldest job."""
    with store.reading() as conn:
        finished = conn.execute(
            select(jobs.c.state, func.count())
            .where(_RENDER, jobs.c.finished_at >= finished_since)
            .group_by(jobs.c.state)
        ).all()
        ended = conn.execute(
            select(attempts.c.outcome, func.count())
            .where(attempts.c.ended_at >= ended_since)
            .group_by(attempts.c.outcome)
        ).all()
        oldest = conn.execute(
            select(func.min(jobs.c.created_at)).where(jobs.c.state == JobState.QUEUED.value)
        ).scalar_one()
    return RecentActivity(
        finished_by_state={JobState(state): int(count) for state, count in finished},
        ended_by_outcome={AttemptOutcome(outcome): int(count) for outcome, count in ended},
        oldest_queued_at=oldest,
    )


def _success_rate(conn: Connection, since: datetime | None) -> float | None:
    """succeeded / (succeeded + failed) among jobs finished since `since`; None if none."""
    succeeded = func.sum(case((jobs.c.state == JobState.SUCCEEDED.value, 1), else_=0))
    query = select(succeeded, func.count()).where(
        _RENDER, jobs.c.state.in_([JobState.SUCCEEDED.value, JobState.FAILED.value])
    )
    if since is not None:
        query = query.where(jobs.c.finished_at >= since)
    done, finished = conn.execute(query).one()
    return None if not finished else int(done) / int(finished)


def _recent_durations(conn: Connection) -> tuple[list[float], list[float]]:
    """Run time of succeeded jobs and queue wait of started jobs, among the newest jobs."""
    recent = (
        select(jobs.c.state, jobs.c.created_at, jobs.c.started_at, jobs.c.finished_at)
        .where(_RENDER)
        .order_by(jobs.c.created_at.desc())
        .limit(PERCENTILE_WINDOW_JOBS)
    )
    durations_s: list[float] = []
    waits_s: list[float] = []
    for state, created_at, started_at, finished_at in conn.execute(recent):
        if started_at is None:
            continue
        waits_s.append((started_at - created_at).total_seconds())
        if state == JobState.SUCCEEDED.value and finished_at is not None:
            durations_s.append((finished_at - started_at).total_seconds())
    return durations_s, waits_s


def _percentiles(values_s: Sequence[float]) -> dict[str, float | None]:
    return {f"p{q}": percentile(values_s, q / 100) for q in (50, 90, 99)}


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
