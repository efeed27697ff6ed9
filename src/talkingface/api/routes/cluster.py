"""① Who runs the scheduler: GET /v1/cluster, and what /v1/workers and /readyz say about it.

With one server (SQLite) this process runs the scheduler. With several API processes on one
PostgreSQL store one of them leads (cluster/leadership.py) and the others answer from the
status it publishes (api/elected_scheduler.py), naming it rather than claiming its workers.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from fastapi import APIRouter

from talkingface.api.deps import SchedulerDep, SchedulerView
from talkingface.api.elected_scheduler import ElectedScheduler

router = APIRouter(tags=["ops"])


@router.get("/v1/cluster", operation_id="read_cluster")
def read_cluster(scheduler: SchedulerDep) -> dict[str, Any]:  # Any: JSON-safe values
    """This process and the scheduler leader: `mode` is `single` (one server runs the
    scheduler) or `elected` (API processes on one PostgreSQL store; `leader` is the one that
    runs the scheduler, `confirmed` false when it has not renewed its lease in time)."""
    host, pid = socket.gethostname(), os.getpid()
    if isinstance(scheduler, ElectedScheduler):
        return scheduler.leader_view().to_dict(host, pid)
    this = {"host": host, "pid": pid, "role": "leader"}
    return {"mode": "single", "this_process": this, "leader": {"host": host, "pid": pid}}


def scheduler_process(scheduler: SchedulerView) -> tuple[str | None, int | None]:
    """(host, pid) of the process whose scheduler runs the workers; (None, None) unknown."""
    if not isinstance(scheduler, ElectedScheduler):
        return socket.gethostname(), os.getpid()
    view = scheduler.leader_view()
    if view.leader is None or not view.fresh:
        return None, None
    return view.leader.host, view.leader.pid


def leadership_check(scheduler: SchedulerView) -> dict[str, Any] | None:  # Any: JSON-safe
    """The readiness check `scheduler` with several API processes: a leader holds its lease."""
    if not isinstance(scheduler, ElectedScheduler):
        return None
    view = scheduler.leader_view()
    check: dict[str, Any] = {"ok": view.fresh, "message": view.describe(), "role": view.role}
    if view.leader is not None:
        check["leader"] = {"host": view.leader.host, "pid": view.leader.pid}
    return check
