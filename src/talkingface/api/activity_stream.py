"""① The all-jobs event stream (GET /v1/events): every job's changes and progress, and the queue.

One stream replaces a poll per job on the dashboard. Each store event goes out with its id
(`job` messages), so a client reconnecting with `Last-Event-ID` resumes right after the last
one it saw; progress of running jobs and queue snapshots are state, sent without an id.

A stream first reads its own backlog (a resumed client far behind), then joins the
ActivityHub, which StreamPoll ticks with its job streams: one read of new events and running
jobs per tick for every open stream, and one read of the queue every QUEUE_EVERY_S.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi.concurrency import run_in_threadpool

from talkingface.executors.base import WorkerInfo
from talkingface.jobs.activity import (
    Activity,
    JobView,
    QueueRows,
    read_activity,
    read_backlog,
    read_queue,
)
from talkingface.jobs.queue_eta import (
    QueuedJob,
    QueueEstimate,
    RunningJob,
    estimate_queue,
    seconds_until,
)
from talkingface.jobs.states import JobState, WorkerState
from talkingface.jobs.store import JobStore

MAX_STREAMS = 32  # open all-jobs streams; one per dashboard tab
QUEUE_EVERY_S = 5.0
KEEPALIVE_S = 15.0
SHUTDOWN_RETRY_MS = 5000


class QueueView(Protocol):
    """What the queue snapshot needs from the scheduler."""

    def workers(self) -> list[WorkerInfo]: ...

    def is_paused(self) -> bool: ...


def _message(kind: str, data: dict[str, Any], event_id: int | None = None) -> str:  # Any: JSON
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


def job_summary(view: JobView) -> dict[str, Any]:  # Any: JSON-safe values
    """A job as the dashboard's list shows it (docs/dashboard-api.md, JobSummary)."""
    job = view.job
    if job.state is JobState.SUCCEEDED:
        fraction = 1.0
    else:
        fraction = job.frames_done / job.frames_total if job.frames_total else 0.0
    error = job.error
    receipt = None if job.result is None else job.result.receipt
    return {
        "id": job.id,
        "job_kind": job.kind.value,
        "template_id": view.template_id,
        "state": job.state.value,
        "stage": job.stage,
        "fraction": round(min(1.0, fraction), 4),
        "frames_done": job.frames_done,
        "frames_total": job.frames_total or None,
        "attempt": job.attempt,
        "priority": job.priority,
        "label": getattr(job, "label", None),  # jobs carry labels once the store has them
        "low_sync": receipt is not None and receipt.low_sync,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "error": None
        if error is None
        else {
            "code": error.code.value,
            "stage": error.stage.value if error.stage else None,
            "message": error.message,
        },
    }


def _progress_key(view: JobView) -> tuple[str, str | None, int, int]:
    job = view.job
    return job.state.value, job.stage, job.frames_done, job.frames_total


class ActivityFollower:
    """One stream's cursor and the messages that arrived since it last read."""

    def __init__(self, after_id: int) -> None:
        self.after_id = after_id
        self.messages: list[str] = []
        self.sent_progress: dict[str, tuple[str, str | None, int, int]] = {}
        self.error: Exception | None = None
        self.stopped = False
        self.ready = asyncio.Event()

    def take(self, activity: Activity) -> None:
        """Queue the events after this stream's cursor, and the progress that moved."""
        for event in activity.events:
            if event.id <= self.after_id:
                continue
            self.after_id = event.id
            view = activity.jobs.get(event.job_id)
            if view is None:
                continue  # deleted since
            data = {
                "event_id": event.id,
                "kind": event.kind,
                "at": event.at.isoformat(),
                "job": job_summary(view),
            }
            self.messages.append(_message("job", data, event.id))
            self.sent_progress[view.job.id] = _progress_key(view)
        for job_id in activity.running:
            view = activity.jobs[job_id]
            if self.sent_progress.get(job_id) != _progress_key(view):
                self.sent_progress[job_id] = _progress_key(view)
                self.messages.append(_message("progress", {"job": job_summary(view)}))
        live = set(activity.running)
        for job_id in [j for j in self.sent_progress if j not in live]:
            del self.sent_progress[job_id]  # bounded by the running jobs

    def wake(self) -> None:
        self.ready.set()

    def fail(self, error: Exception) -> None:
        self.error = error
        self.ready.set()

    def stop(self) -> None:
        self.stopped = True
        self.ready.set()

    async def next(self) -> list[str] | None:
        """Messages since the last call (waiting for the next tick); None: stop."""
        await self.ready.wait()
        self.ready.clear()
        if self.stopped:
            return None
        if self.error is not None:
            raise self.error
        messages, self.messages = self.messages, []
        return messages


class ActivityHub:
    """Every open all-jobs stream; StreamPoll calls tick() once per poll interval."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self.followers: set[ActivityFollower] = set()
        self.open_streams = 0  # counted from a stream's start (its backlog included)
        self._queue_view: QueueView | None = None
        self._queue_message: str | None = None
        self._queue_read_at = float("-inf")

    def join(self, follower: ActivityFollower, queue_view: QueueView) -> None:
        self._queue_view = queue_view
        self.followers.add(follower)
        fresh = time.monotonic() - self._queue_read_at < QUEUE_EVERY_S
        if self._queue_message is not None and fresh:  # else the next tick reads the queue
            follower.messages.append(self._queue_message)

    async def tick(self) -> None:
        followers = list(self.followers)
        if not followers:
            return
        cursor = min(follower.after_id for follower in followers)
        try:
            activity = await run_in_threadpool(read_activity, self._store, cursor)
            queue_message = None
            if time.monotonic() - self._queue_read_at >= QUEUE_EVERY_S and self._queue_view:
                self._queue_read_at = time.monotonic()
                queue_message = await run_in_threadpool(self._queue_snapshot, self._queue_view)
                self._queue_message = queue_message
        except Exception as exc:  # each stream ends with the store's error, as it would alone
            for follower in followers:
                follower.fail(exc)
            return
        for follower in followers:
            follower.take(activity)
            if queue_message is not None:
                follower.messages.append(queue_message)
            follower.wake()

    def stop_all(self) -> None:
        for follower in list(self.followers):
            follower.stop()

    def _queue_snapshot(self, queue_view: QueueView) -> str:
        return _message("queue", queue_snapshot(self._store, queue_view))


def estimate_rows(
    rows: QueueRows, queue_view: QueueView, now: datetime
) -> tuple[QueueEstimate, list[RunningJob], int, bool]:
    """The queue's estimate (jobs/queue_eta.py), its running jobs, worker slots and pause."""
    slots = max(1, sum(1 for w in queue_view.workers() if w.state is not WorkerState.LOST))
    running = [
        RunningJob(
            view.job.id,
            view.job.frames_done / view.job.frames_total if view.job.frames_total else 0.0,
            max(0.0, (now - started_at).total_seconds()),
        )
        for view, started_at in rows.running
    ]
    queued = [QueuedJob(v.job.id, seconds_until(v.job.not_before, now)) for v in rows.queued]
    estimate = estimate_queue(
        running, queued, slots=slots, recent_durations_s=rows.recent_durations_s
    )
    return estimate, running, slots, queue_view.is_paused()


def queue_snapshot(store: JobStore, queue_view: QueueView) -> dict[str, Any]:  # Any: JSON
    """The queue in dispatch order with start and end estimates (jobs/queue_eta.py)."""
    rows = read_queue(store)
    now = datetime.now(UTC)
    estimate, running, slots, paused = estimate_rows(rows, queue_view, now)
    items = [
        {
            "job_id": view.job.id,
            "job_kind": view.job.kind.value,
            "position": position,
            "priority": view.job.priority,
            "estimated_start_s": None if paused else estimate.queued_start_s[view.job.id],
            "eta_s": None if paused else estimate.queued_eta_s[view.job.id],
        }
        for position, view in enumerate(rows.queued, start=1)
    ]
    running_items = [
        {
            "job_id": job.job_id,
            "job_kind": view.job.kind.value,
            "fraction": round(job.fraction, 4),
            "eta_s": estimate.running_eta_s[job.job_id],
        }
        for job, (view, _) in zip(running, rows.running, strict=True)
    ]
    return {
        "at": now.isoformat(),
        "paused": paused,
        "queued": len(items),
        "running": len(running_items),
        "worker_slots": slots,
        "typical_duration_s": estimate.typical_duration_s,
        "estimate_basis": estimate.basis,
        "items": items,
        "running_items": running_items,
    }


def shutdown_message() -> str:
    data = {
        "reconnect": True,
        "message": "the server is stopping; reconnect (with Last-Event-ID) to resume",
    }
    return f"retry: {SHUTDOWN_RETRY_MS}\n" + _message("shutdown", data)


async def iter_backlog(store: JobStore, follower: ActivityFollower) -> AsyncIterator[str]:
    """A resumed stream's missed events, page by page, until it has caught up."""
    while True:
        page = await run_in_threadpool(read_backlog, store, follower.after_id)
        follower.take(page)
        messages, follower.messages = follower.messages, []
        for message in messages:
            yield message
        if len(page.events) < 500 or not page.events:
            return
        follower.after_id = max(follower.after_id, page.events[-1].id)


def ready_message(last_event_id: int) -> str:
    return _message("ready", {"last_event_id": last_event_id, "at": datetime.now(UTC).isoformat()})
