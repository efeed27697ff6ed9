"""② Render-job figures per time bucket for the dashboard's charts (GET /v1/stats/history).

One query reads the finished render jobs of the window (newest first, at most MAX_ROWS);
they are counted into epoch-aligned buckets by `finished_at` here, which works the same on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from talkingface.jobs.states import JobKind, JobState
from talkingface.jobs.stats import percentile
from talkingface.jobs.tables import jobs

if TYPE_CHECKING:
    from talkingface.jobs.store import JobStore

MAX_HOURS = 24 * 7
MAX_BUCKETS = 500
MAX_ROWS = 200_000
_FINISHED = (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELED.value)


def bucket_count(hours: float, bucket_minutes: int) -> int:
    return math.ceil(hours * 60 / bucket_minutes)


@dataclass(slots=True)
class _Bucket:
    start: datetime
    end: datetime
    states: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    durations_s: list[float] = field(default_factory=list)
    waits_s: list[float] = field(default_factory=list)

    def add(self, state: str, code: str | None, created: datetime, started: datetime | None,
            finished: datetime) -> None:  # fmt: skip
        self.states[state] += 1
        if state == JobState.FAILED.value:
            self.errors[code or "UNKNOWN"] += 1
        if started is not None:
            self.waits_s.append((started - created).total_seconds())
            if state == JobState.SUCCEEDED.value:
                self.durations_s.append((finished - started).total_seconds())

    def merge(self, other: _Bucket) -> None:
        self.states += other.states
        self.errors += other.errors
        self.durations_s += other.durations_s
        self.waits_s += other.waits_s

    def to_dict(self, now: datetime) -> dict[str, Any]:  # Any: JSON-safe values
        succeeded = self.states[JobState.SUCCEEDED.value]
        failed = self.states[JobState.FAILED.value]
        span_h = (min(self.end, now) - self.start).total_seconds() / 3600
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "partial": self.end > now,
            "succeeded": succeeded,
            "failed": failed,
            "canceled": self.states[JobState.CANCELED.value],
            "success_rate": None if not succeeded + failed else succeeded / (succeeded + failed),
            "throughput_per_hour": succeeded / span_h if span_h > 0 else 0.0,
            "duration_s": _p50_p90(self.durations_s),
            "queue_wait_s": _p50_p90(self.waits_s),
            "errors_by_code": dict(sorted(self.errors.items())),
        }


def _p50_p90(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 0.5), "p90": percentile(values, 0.9)}


def stats_history(
    store: JobStore, *, now: datetime, hours: float, bucket_minutes: int
) -> dict[str, Any]:  # Any: JSON-safe values
    """Buckets of `bucket_minutes` covering the last `hours` (the caller checks the bounds)."""
    size = timedelta(minutes=bucket_minutes)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    last_start = epoch + ((now - epoch) // size) * size
    count = bucket_count(hours, bucket_minutes)
    first_start = last_start - (count - 1) * size
    buckets = [_Bucket(first_start + i * size, first_start + (i + 1) * size) for i in range(count)]
    query = (
        select(
            jobs.c.state,
            jobs.c.error_code,
            jobs.c.created_at,
            jobs.c.started_at,
            jobs.c.finished_at,
        )
        .where(
            jobs.c.kind == JobKind.RENDER.value,
            jobs.c.state.in_(_FINISHED),
            jobs.c.finished_at >= first_start,
        )
        .order_by(jobs.c.finished_at.desc())
        .limit(MAX_ROWS + 1)
    )
    with store.reading() as conn:
        rows = conn.execute(query).all()
    for state, code, created, started, finished in rows[:MAX_ROWS]:
        index = (finished - first_start) // size
        if 0 <= index < count:
            buckets[index].add(state, code, created, started, finished)
    totals = _Bucket(first_start, buckets[-1].end)
    for bucket in buckets:
        totals.merge(bucket)
    return {
        "since": first_start.isoformat(),
        "until": now.isoformat(),
        "bucket_minutes": bucket_minutes,
        "buckets": [bucket.to_dict(now) for bucket in buckets],
        "totals": totals.to_dict(now),
        "rows_capped": len(rows) > MAX_ROWS,
    }
