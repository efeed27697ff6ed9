"""① /v1/queue: the queued jobs in dispatch order, and pausing dispatch for maintenance."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from talkingface.api.deps import SchedulerDep, StoreDep
from talkingface.jobs.states import JobState, WorkerState
from talkingface.jobs.stats import compute_stats

router = APIRouter(prefix="/v1/queue", tags=["queue"])

DEFAULT_JOB_S = 60.0  # a job's expected duration before any job has finished here


@router.get("", operation_id="read_queue")
def read_queue(store: StoreDep, scheduler: SchedulerDep) -> dict[str, Any]:
    """Queued jobs in the order they will start, with an estimated start time each."""
    queued = store.queued_in_order()
    typical_s = compute_stats(store, now=datetime.now(UTC))["duration_s"]["p50"] or DEFAULT_JOB_S
    workers = [w for w in scheduler.workers() if w.state != WorkerState.LOST]
    slots = max(1, len(workers))
    busy = sum(1 for w in workers if w.state == WorkerState.BUSY)
    paused = scheduler.is_paused()
    items = []
    for position, job in enumerate(queued):
        waves = position // slots + (1 if busy >= slots else 0)
        items.append(
            {
                "position": position + 1,
                "id": job.id,
                "priority": job.priority,
                "created_at": job.created_at.isoformat(),
                "not_before": job.not_before.isoformat() if job.not_before else None,
                "attempt": job.attempt,
                "estimated_start_s": None if paused else round(waves * typical_s, 1),
            }
        )
    running = store.list_jobs(state=JobState.RUNNING, limit=1)[1]
    return {"paused": paused, "queued": len(items), "running": running, "items": items}


@router.post("/pause", operation_id="pause_queue")
def pause_queue(scheduler: SchedulerDep) -> dict[str, Any]:
    """Nothing new starts; running jobs finish; submissions are still accepted."""
    scheduler.set_paused(True)
    return {"paused": True}


@router.post("/resume", operation_id="resume_queue")
def resume_queue(scheduler: SchedulerDep) -> dict[str, Any]:
    scheduler.set_paused(False)
    return {"paused": False}
