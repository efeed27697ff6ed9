"""Server-sent events for one job: its history, then live transitions and progress.

Each stored event goes out with its id, so a client reconnecting with `Last-Event-ID`
resumes right after the last transition it saw and misses none. Progress (stage, frames,
ETA) is sent as `progress` messages without an id: it is a state, not history, and the next
one replaces it. The stream ends after the job's terminal event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.concurrency import run_in_threadpool

from talkingface.jobs.records import JobRecord
from talkingface.jobs.states import TERMINAL_STATES
from talkingface.jobs.store import JobStore

POLL_S = 0.25
KEEPALIVE_S = 15.0
TERMINAL_EVENTS = frozenset({"job_succeeded", "job_failed", "job_canceled"})


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


async def iter_job_stream(store: JobStore, job_id: str, after_id: int) -> AsyncIterator[str]:
    """History after `after_id`, then live events and progress until the job has ended."""
    last_id, last_progress, idle_s = after_id, None, 0.0
    yield "retry: 2000\n\n"
    while True:
        # The job is read before its events: a state change commits with its event, so a
        # terminal state seen here guarantees the terminal event is in the read that follows.
        job = await run_in_threadpool(store.get, job_id)
        events = await run_in_threadpool(store.events, job_id, after_id=last_id)
        for event in events:
            last_id = event.id
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
        await asyncio.sleep(POLL_S)
        idle_s += POLL_S
        if idle_s >= KEEPALIVE_S:
            idle_s = 0.0
            yield ": keep-alive\n\n"
