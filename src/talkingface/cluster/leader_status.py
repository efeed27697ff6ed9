"""③ What the scheduler leader publishes in the store every election interval, so that every
API process can say who leads and what its workers do (GET /v1/workers, /readyz, /metrics).

One row of the store's service_state (`scheduler_leader`), written by the leader under its
lock (cluster/leader_lock.py: only the session holding the lock can write it). The lock
decides who leads; this row describes the leader, and `renewed_at` says how fresh that is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from talkingface.cluster.leader_lock import LEADER_STATE
from talkingface.executors.base import WorkerInfo
from talkingface.jobs.states import WorkerState
from talkingface.jobs.store import JobStore

ALERT_HISTORY = 50  # alert changes a leader publishes for followers' GET /v1/alerts


@dataclass(frozen=True, slots=True)
class LeaderStatus:
    """The leader as it described itself at `renewed_at`."""

    host: str
    pid: int
    elected_at: datetime
    renewed_at: datetime
    ready: bool  # its dispatch loop runs and a worker is ready or busy
    workers: tuple[WorkerInfo, ...]
    alerts_active: tuple[dict[str, Any], ...] = ()  # Any: JSON-safe (ops/alerts.AlertChange)
    alerts_history: tuple[dict[str, Any], ...] = ()  # the latest ALERT_HISTORY changes

    @property
    def identity(self) -> str:
        return f"{self.host}:{self.pid}"

    def age_s(self, now: datetime) -> float:
        return max(0.0, (now - self.renewed_at).total_seconds())

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (leading since {self.elected_at.isoformat()})"


def status_to_json(status: LeaderStatus) -> dict[str, Any]:  # Any: JSON-safe values
    now_s = time.monotonic()
    return {
        "host": status.host,
        "pid": status.pid,
        "elected_at": status.elected_at.isoformat(),
        "renewed_at": status.renewed_at.isoformat(),
        "ready": status.ready,
        "workers": [_worker_to_json(worker, now_s) for worker in status.workers],
        "alerts_active": list(status.alerts_active),
        "alerts_history": list(status.alerts_history[-ALERT_HISTORY:]),
    }


def read_status(store: JobStore) -> LeaderStatus | None:
    """The last leader's description, or None if no leader ever published one."""
    value = store.read_state(LEADER_STATE)
    if not isinstance(value, dict):
        return None
    renewed_at = datetime.fromisoformat(value["renewed_at"])
    return LeaderStatus(
        host=str(value["host"]),
        pid=int(value["pid"]),
        elected_at=datetime.fromisoformat(value["elected_at"]),
        renewed_at=renewed_at,
        ready=bool(value["ready"]),
        workers=tuple(_worker_from_json(worker) for worker in value["workers"]),
        alerts_active=tuple(value.get("alerts_active", ())),
        alerts_history=tuple(value.get("alerts_history", ())),
    )


def _worker_to_json(worker: WorkerInfo, now_s: float) -> dict[str, Any]:  # Any: JSON-safe
    return {
        "id": worker.id,
        "pid": worker.pid,
        "state": worker.state.value,
        "job_id": worker.job_id,
        "attempt_id": worker.attempt_id,
        "jobs_done": worker.jobs_done,
        "uptime_s": max(0.0, now_s - worker.started_at_s) if worker.started_at_s else 0.0,
    }


def _worker_from_json(value: dict[str, Any]) -> WorkerInfo:  # Any: JSON-safe
    """A worker of the leader; its spawn time is placed on this process's monotonic clock
    (the uptime is as of the status's renewal: it may be an interval behind)."""
    uptime_s = float(value["uptime_s"])
    return WorkerInfo(
        id=str(value["id"]),
        pid=value["pid"],
        state=WorkerState(value["state"]),
        job_id=value["job_id"],
        attempt_id=value["attempt_id"],
        jobs_done=int(value["jobs_done"]),
        started_at_s=time.monotonic() - uptime_s if uptime_s else 0.0,
    )
