"""② Reads for the all-jobs event stream: new events with their jobs, running jobs, the queue.

Each function is one read transaction, called once per tick for every open stream together
(api/events_stream.py), never once per stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, or_, select

from talkingface.jobs import tables
from talkingface.jobs.records import EventRecord, JobRecord
from talkingface.jobs.states import AttemptOutcome, JobKind, JobState
from talkingface.jobs.tables import attempts, events, jobs, templates

if TYPE_CHECKING:
    from talkingface.jobs.store import JobStore

EVENT_PAGE = 500  # events read per tick: a client far behind catches up over several ticks
QUEUE_LIMIT = 1000  # queued jobs in a snapshot
TYPICAL_WINDOW_JOBS = 50  # the queue's ETA uses the run time of this many recent successes


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as the dashboard lists it, with the template it prepares or renders."""

    job: JobRecord
    template_id: str | None


@dataclass(frozen=True, slots=True)
class Activity:
    """Events after a cursor (one page) with their jobs, and every running job."""

    events: list[EventRecord]
    jobs: dict[str, JobView]  # the events' jobs that still exist, and the running ones
    running: list[str]  # ids of running jobs


@dataclass(frozen=True, slots=True)
class QueueRows:
    """What the queue's ETA is computed from, read together."""

    queued: list[JobView]  # dispatch order
    running: list[tuple[JobView, datetime]]  # with the current attempt's start
    recent_durations_s: list[float]  # run times of the latest succeeded render jobs


def _view(row: Row[Any]) -> JobView:
    """The job, and the template it is about: the one it prepares, else the one it renders."""
    job = tables.job_from_row(row)
    return JobView(job, row.prepares_template_id or job.names.template_id)


def _job_views(conn: Connection, *conditions: object) -> list[JobView]:
    query = (
        select(jobs, templates.c.id.label("prepares_template_id"))
        .select_from(jobs.outerjoin(templates, templates.c.job_id == jobs.c.id))
        .where(*conditions)  # type: ignore[arg-type]  # SQLAlchemy column expressions
    )
    return [_view(row) for row in conn.execute(query)]


def read_activity(store: JobStore, after_id: int, *, limit: int = EVENT_PAGE) -> Activity:
    """Events after `after_id` (oldest first, at most `limit`), their jobs and running jobs."""
    page = select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
    with store.reading() as conn:
        found = [tables.event_from_row(row) for row in conn.execute(page)]
        ids = sorted({event.job_id for event in found})
        views = _job_views(conn, or_(jobs.c.id.in_(ids), jobs.c.state == JobState.RUNNING.value))
    by_id: dict[str, JobView] = {view.job.id: view for view in views}
    running: list[str] = [view.job.id for view in views if view.job.state is JobState.RUNNING]
    return Activity(found, by_id, running)


def read_backlog(store: JobStore, after_id: int, *, limit: int = EVENT_PAGE) -> Activity:
    """Like read_activity, without the running jobs: a resumed stream's catch-up pages."""
    page = select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
    with store.reading() as conn:
        found = [tables.event_from_row(row) for row in conn.execute(page)]
        ids = sorted({event.job_id for event in found})
        views = _job_views(conn, jobs.c.id.in_(ids)) if ids else []
    return Activity(found, {view.job.id: view for view in views}, [])


def read_queue(store: JobStore) -> QueueRows:
    """Queued jobs in dispatch order, running jobs with their attempt's start, recent runs."""
    order = (jobs.c.priority.desc(), jobs.c.created_at.asc(), jobs.c.id.asc())
    queued_query = (
        select(jobs, templates.c.id.label("prepares_template_id"))
        .select_from(jobs.outerjoin(templates, templates.c.job_id == jobs.c.id))
        .where(jobs.c.state == JobState.QUEUED.value)
        .order_by(*order)
        .limit(QUEUE_LIMIT)
    )
    running_query = (
        select(
            jobs, templates.c.id.label("prepares_template_id"), attempts.c.started_at.label("at")
        )
        .select_from(
            jobs.outerjoin(templates, templates.c.job_id == jobs.c.id).join(
                attempts, attempts.c.job_id == jobs.c.id
            )
        )
        .where(
            jobs.c.state == JobState.RUNNING.value,
            attempts.c.outcome == AttemptOutcome.RUNNING.value,
        )
    )
    recent_query = (
        select(jobs.c.started_at, jobs.c.finished_at)
        .where(
            jobs.c.kind == JobKind.RENDER.value,
            jobs.c.state == JobState.SUCCEEDED.value,
            jobs.c.finished_at.is_not(None),
            jobs.c.started_at.is_not(None),
        )
        .order_by(jobs.c.finished_at.desc())
        .limit(TYPICAL_WINDOW_JOBS)
    )
    with store.reading() as conn:
        queued = [_view(row) for row in conn.execute(queued_query)]
        running = [(_view(row), row.at) for row in conn.execute(running_query)]
        recent = [
            (finished - started).total_seconds() for started, finished in conn.execute(recent_query)
        ]
    return QueueRows(queued, running, recent)
