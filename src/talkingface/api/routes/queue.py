"""① /v1/queue: the queued jobs in dispatch order, and pausing dispatch for maintenance."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from talkingface.api.activity_stream import estimate_rows
from talkingface.api.deps import SchedulerDep, StoreDep
from talkingface.jobs.activity import read_queue as read_queue_rows
from talkingface.jobs.states import JobState

router = APIRouter(prefix="/v1/queue", tags=["queue"])


@router.get("", operation_id="read_queue")
def read_queue(store: StoreDep, scheduler: SchedulerDep) -> dict[str, Any]:
    """Queued jobs in the order they will start, with estimated start and end times (the
    same estimate as the dashboard's event stream: docs/dashboard-api.md)."""
    rows = read_queue_rows(store)
    estimate, _, slots, paused = estimate_rows(rows, scheduler, datetime.now(UTC))
    items = [
        {
            "position": position,
            "id": view.job.id,
            "job_kind": view.job.kind.value,
            "priority": view.job.priority,
            "created_at": view.job.created_at.isoformat(),
            "not_before": view.job.not_before.isoformat() if view.job.not_before else None,
            "attempt": view.job.attempt,
            "estimated_start_s": None if paused else estimate.queued_start_s[view.job.id],
            "eta_s": None if paused else estimate.queued_eta_s[view.job.id],
        }
        for position, view in enumerate(rows.queued, start=1)
    ]
    running = store.list_jobs(state=JobState.RUNNING, limit=1)[1]
    return {
        "paused": paused,
        "queued": len(items),
        "running": running,
        "worker_slots": slots,
        "typical_duration_s": estimate.typical_duration_s,
        "estimate_basis": estimate.basis,
        "items": items,
    }


@router.post("/pause", operation_id="pause_queue")
def pause_queue(scheduler: SchedulerDep) -> dict[str, Any]:
    """Nothing new starts; running jobs finish; submissions are still accepted."""
    scheduler.set_paused(True)
    return {"paused": True}


@router.post("/resume", operation_id="resume_queue")
def resume_queue(scheduler: SchedulerDep) -> dict[str, Any]:
    scheduler.set_paused(False)
    return {"paused": False}
