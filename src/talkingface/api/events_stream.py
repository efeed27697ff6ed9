"""Server-sent events for one job: its history, then live transitions and progress.

Each stored event goes out with its id, so a client reconnecting with `Last-Event-ID`
resumes right after the last transition it saw and misses none. Progress (stage, frames,
ETA) is sent as `progress` messages without an id: it is a state, not history, and the next
one replaces it. The stream ends after the job's terminal event.

A stream reads its history itself, then follows the job through one StreamPoll shared by
every open stream: one store read per tick for all of them, not one each (a hundred held
streams polled separately cost the server more than two hundred polling clients). The same
poll ticks the all-jobs streams (api/activity_stream.py, GET /v1/events): one more read per
tick for all of them together.

When the server stops, `StreamPoll.close_threadsafe()` (called from its signal handler) ends
every open stream with a `shutdown` event and a `retry:` delay: an EventSource reconnects on
its own after that delay, with `Last-Event-ID`, and the server need not wait for clients to
leave before it can exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi.concurrency import run_in_threadpool

from talkingface.api.activity_stream import (
    MAX_STREAMS,
    ActivityFollower,
    ActivityHub,
    QueueView,
    iter_backlog,
    ready_message,
    shutdown_message,
)
from talkingface.errors import ServerBusyError
from talkingface.jobs.records import EventRecord, JobRecord
from talkingface.jobs.states import TERMINAL_STATES
from talkingface.jobs.store import JobStore

POLL_S = 0.25
KEEPALIVE_S = 15.0
SHUTDOWN_RETRY_MS = 5000  # how long a client waits before reconnecting to a stopping server
TERMINAL_EVENTS = frozenset({"job_succeeded", "job_failed", "job_canceled"})

Snapshot = tuple[JobRecord, list[EventRecord]]  # the job and its events since the last one


class _Follower:
    """One stream's place in the shared poll: its cursor and what arrived since it last read."""

    def __init__(self, job_id: str, after_id: int) -> None:
        self.job_id = job_id
        self.after_id = after_id
        self.job: JobRecord | None = None  # None after a delivery: the job no longer exists
        self.events: list[EventRecord] = []
        self.error: Exception | None = None
        self.stopped = False  # the server is stopping: no more snapshots
        self.ready = asyncio.Event()

    def deliver(self, found: Snapshot | None) -> None:
        if found is None:
            self.job = None
        else:
            self.job = found[0]
            fresh = [event for event in found[1] if event.id > self.after_id]
            if fresh:
                self.events += fresh
                self.after_id = fresh[-1].id
        self.ready.set()

    def fail(self, error: Exception) -> None:
        self.error = error
        self.ready.set()

    def stop(self) -> None:
        self.stopped = True
        self.ready.set()

    async def next(self) -> Snapshot | None:
        """What arrived since the last call (waiting for the next poll); None: the job is
        gone, or the server is stopping."""
        await self.ready.wait()
        self.ready.clear()
        if self.stopped:
            return None
        if self.error is not None:
            raise self.error
        events, self.events = self.events, []
        return None if self.job is None else (self.job, events)


class StreamPoll:
    """Reads the jobs of every open stream and their new events once per tick, in one go."""

    def __init__(self, store: JobStore, interval_s: float = POLL_S) -> None:
        self._store = store
        self._interval_s = interval_s
        self._followers: set[_Follower] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.is_closing = False
        self.activity = ActivityHub(store)
        self.ticks = 0  # polls made (tests compare it with the store reads)

    def close_threadsafe(self) -> None:
        """End every open stream, and any opened from now on; safe from a signal handler
        or another thread."""
        self.is_closing = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop_followers)

    def _stop_followers(self) -> None:
        for follower in list(self._followers):
            follower.stop()
        self.activity.stop_all()

    def check_activity_room(self) -> None:
        """Refuse a new all-jobs stream past MAX_STREAMS (ServerBusyError, 503)."""
        if self.activity.open_streams >= MAX_STREAMS:
            raise ServerBusyError(
                f"{MAX_STREAMS} event streams are already open (the limit); close another "
                "dashboard tab, or retry after Retry-After.",
                details={"limit": MAX_STREAMS},
            )

    async def iter_activity(
        self, after_id: int | None, queue_view: QueueView
    ) -> AsyncGenerator[str]:
        """The all-jobs stream: `ready`, the backlog after `after_id`, then what every tick
        brings (job events, progress, queue snapshots) until the server stops."""
        self._loop = asyncio.get_running_loop()
        self.activity.open_streams += 1
        try:
            if self.is_closing:
                yield shutdown_message()
                return
            if after_id is None:
                after_id = await run_in_threadpool(self._store.last_event_id)
            yield "retry: 2000\n\n" + ready_message(after_id)
            follower = ActivityFollower(after_id)
            async for message in iter_backlog(self._store, follower):
                yield message
            self.activity.join(follower, queue_view)
            if self.is_closing:
                follower.stop()
            self._ensure_running()
            try:
                idle_s = 0.0
                while (messages := await follower.next()) is not None:
                    for message in messages:
                        yield message
                    idle_s = 0.0 if messages else idle_s + self._interval_s
                    if idle_s >= KEEPALIVE_S:
                        idle_s = 0.0
                        yield ": keep-alive\n\n"
            finally:
                self.activity.followers.discard(follower)
            if self.is_closing:
                yield shutdown_message()
        finally:
            self.activity.open_streams -= 1

    async def iter_snapshots(self, job_id: str, after_id: int) -> AsyncGenerator[Snapshot]:
        """The job and its events after `after_id` now, then what changed at each tick, until
        the job no longer exists, the server stops or the caller stops."""
        self._loop = asyncio.get_running_loop()
        if self.is_closing:
            return
        job, events = await run_in_threadpool(
            self._store.job_with_events, job_id, after_id=after_id
        )
        follower = _Follower(job_id, events[-1].id if events else after_id)
        self._followers.add(follower)
        if self.is_closing:  # closed while the history was read, after the followers stopped
            follower.stop()
        self._ensure_running()
        try:
            yield job, events
            while (snapshot := await follower.next()) is not None:
                yield snapshot
        finally:
            self._followers.discard(follower)

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        while (self._followers or self.activity.followers) and not self.is_closing:
            await asyncio.sleep(self._interval_s)
            self.ticks += 1
            await self.activity.tick()
            if not self._followers:
                continue
            followers = list(self._followers)
            cursors: dict[str, int] = {}
            for follower in followers:
                cursor = cursors.get(follower.job_id, follower.after_id)
                cursors[follower.job_id] = min(cursor, follower.after_id)
            try:
                found = await run_in_threadpool(self._store.jobs_with_events, cursors)
            except Exception as exc:  # each stream ends with the store's error, as it would alone
                for follower in followers:
                    follower.fail(exc)
                continue
            for follower in followers:
                follower.deliver(found.get(follower.job_id))


def _message(kind: str, data: dict[str, Any], event_id: int | None = None) -> str:  # Any: JSON
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


def _progress(job: JobRecord) -> dict[str, Any]:  # Any: JSON-safe values
    fraction = (
        1.0
        if job.state.value == "succeeded"
        else (job.frames_done / job.frames_total if job.frames_total else 0.0)
    )
    return {
        "state": job.state.value,
        "stage": job.stage,
        "frames_done": job.frames_done,
        "frames_total": job.frames_total,
        "fraction": round(fraction, 4),
        "attempt": job.attempt,
    }


def _shutdown_message(job_id: str) -> str:
    data = {
        "job_id": job_id,
        "reconnect": True,
        "message": "the server is stopping; reconnect (with Last-Event-ID) to resume",
    }
    return f"retry: {SHUTDOWN_RETRY_MS}\n" + _message("shutdown", data)


async def iter_job_stream(poll: StreamPoll, job_id: str, after_id: int) -> AsyncIterator[str]:
    """History after `after_id`, then live events and progress until the job has ended
    (or until the server stops: then a `shutdown` event asks the client to reconnect)."""
    last_progress, idle_s = None, 0.0
    yield "retry: 2000\n\n"
    # Each snapshot reads the job before its events: a state change commits with its event,
    # so a terminal state seen here guarantees the terminal event is in the same snapshot.
    async with contextlib.aclosing(poll.iter_snapshots(job_id, after_id)) as snapshots:
        async for job, events in snapshots:
            for event in events:
                data = {"job_id": job_id, "at": event.at.isoformat(), **event.data}
                yield _message(event.kind, data, event.id)
                if event.kind in TERMINAL_EVENTS:
                    return
            progress = _progress(job)
            if progress != last_progress:
                last_progress, idle_s = progress, 0.0
                yield _message("progress", progress)
            if job.state in TERMINAL_STATES:
                return  # ended before this stream's window (e.g. resumed after the end)
            idle_s += POLL_S
            if idle_s >= KEEPALIVE_S:
                idle_s = 0.0
                yield ": keep-alive\n\n"
    if poll.is_closing:
        yield _shutdown_message(job_id)
