"""① The scheduler as each of several API processes on one PostgreSQL store sees it: its own
while this process leads, the leader's published status while it follows (a SchedulerView).

A follower never pretends to have workers or a dispatch loop of its own: its workers, its
readiness and GET /v1/cluster are the leader's, as the leader last published them, with
who the leader is; when no leader has confirmed itself for a lease, it says so.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from talkingface.api.leader_services import LeaderServices
from talkingface.cluster.leader_lock import LeaderLock
from talkingface.cluster.leader_status import LeaderStatus, read_status
from talkingface.cluster.leadership import Leadership
from talkingface.config import Settings
from talkingface.executors.base import WorkerInfo
from talkingface.jobs.store import JobStore
from talkingface.ops.alerts import AlertManager
from talkingface.ops.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

STATUS_CACHE_S = 0.5  # a follower reads the leader's status at most this often


@dataclass(frozen=True, slots=True)
class LeaderView:
    """Who leads, as this process knows it."""

    role: str  # "leader" | "follower" | "suspended" (a leader that lost its lock, retaking it)
    leader: LeaderStatus | None  # None: no leader has ever published
    fresh: bool  # the leader confirmed itself within a lease
    age_s: float | None  # since the leader's last status

    def to_dict(self, host: str, pid: int) -> dict[str, Any]:  # Any: JSON-safe values
        leader = self.leader
        return {
            "mode": "elected",
            "this_process": {"host": host, "pid": pid, "role": self.role},
            "leader": None
            if leader is None
            else {
                "host": leader.host,
                "pid": leader.pid,
                "elected_at": leader.elected_at.isoformat(),
                "renewed_at": leader.renewed_at.isoformat(),
                "age_s": round(self.age_s or 0.0, 3),
                "confirmed": self.fresh,
            },
        }

    def describe(self) -> str:
        if self.leader is None:
            return "no scheduler leader has been elected yet"
        who = self.leader.describe()
        if not self.fresh:
            return (
                f"the last scheduler leader, {who}, has not confirmed itself for "
                f"{self.age_s:.0f} s; another server takes over when its lease runs out"
            )
        if self.role == "leader":
            return f"this process leads the scheduler: {who}"
        if self.role == "suspended":
            return (
                f"this process lost its leader lock and is taking it back; it acts on nothing "
                f"meanwhile (last leader: {who})"
            )
        return f"the scheduler leader is {who}; this process serves the API only"


def is_shared_store(store: JobStore) -> bool:
    """A store several API processes can share (PostgreSQL): they elect one leader."""
    return store.engine.dialect.name == "postgresql"


def start_elected(settings: Settings, app: FastAPI, metrics: ServiceMetrics) -> ElectedScheduler:
    """Join the election over the app's store; this process leads at once if no other does."""
    store: JobStore = app.state.store
    followed: list[LeaderAlerts] = []

    def show_alerts(alerts: AlertManager | None) -> None:
        app.state.alerts = alerts if alerts is not None else followed[0]

    services = LeaderServices(settings, store, metrics, app.state.templates, show_alerts)
    url = store.engine.url.render_as_string(hide_password=False)
    lock = LeaderLock(url, lease_s=settings.cluster.leader_lease_s)
    leadership = Leadership(lock, services, store, settings.cluster)
    elected = ElectedScheduler(settings, store, leadership, services)
    followed.append(LeaderAlerts(elected))
    show_alerts(None)
    leadership.start()
    return elected


class LeaderAlerts:
    """GET /v1/alerts on a follower: the alerts of the leader, as it last published them."""

    def __init__(self, elected: ElectedScheduler) -> None:
        self.elected = elected

    def active(self) -> list[dict[str, Any]]:  # Any: JSON-safe values
        view = self.elected.leader_view()
        return list(view.leader.alerts_active) if view.leader is not None and view.fresh else []

    def history(self) -> list[dict[str, Any]]:  # Any: JSON-safe values
        view = self.elected.leader_view()
        return list(view.leader.alerts_history) if view.leader is not None else []


class ElectedScheduler:
    """SchedulerView over the leadership: the real scheduler while leading, else the leader's."""

    def __init__(
        self, settings: Settings, store: JobStore, leadership: Leadership, services: LeaderServices
    ) -> None:
        self.settings = settings
        self.store = store
        self.leadership = leadership
        self.services = services
        self._cached: tuple[float, LeaderStatus | None] | None = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Leave the election (a leader stops its scheduler and gives the lock up)."""
        self.leadership.stop()

    def workers(self) -> list[WorkerInfo]:
        scheduler = self.services.scheduler
        if self.leadership.has_duties and scheduler is not None:
            return scheduler.workers()
        view = self.leader_view()
        return list(view.leader.workers) if view.leader is not None and view.fresh else []

    def is_ready(self) -> bool:
        scheduler = self.services.scheduler
        if self.leadership.has_duties and scheduler is not None:
            return scheduler.is_ready()
        view = self.leader_view()
        return view.leader is not None and view.fresh and view.leader.ready

    def wake(self) -> None:
        """The leader polls the queue every few tens of milliseconds; a follower need not
        tell it about a submission."""
        scheduler = self.services.scheduler
        if scheduler is not None:
            scheduler.wake()

    def set_paused(self, paused: bool) -> None:
        scheduler = self.services.scheduler
        if self.leadership.has_duties and scheduler is not None:
            scheduler.set_paused(paused)
            return
        self.store.set_dispatch_paused(paused)  # the leader follows the store within a second
        logger.warning(
            "dispatching %s (the leader applies it within a second)",
            "paused" if paused else "resumed",
            extra={"event": "dispatch_paused" if paused else "dispatch_resumed"},
        )

    def is_paused(self) -> bool:
        scheduler = self.services.scheduler
        if self.leadership.has_duties and scheduler is not None:
            return scheduler.is_paused()
        return self.store.is_dispatch_paused()

    def leader_view(self) -> LeaderView:
        status = self._status()
        role = self.leadership.role
        if status is None:
            return LeaderView(role, None, False, None)
        age_s = status.age_s(datetime.now(UTC))
        fresh = age_s <= self.settings.cluster.leader_lease_s
        return LeaderView(role, status, fresh, age_s)

    def _status(self) -> LeaderStatus | None:
        now_s = time.monotonic()
        with self._lock:
            if self._cached is not None and now_s - self._cached[0] < STATUS_CACHE_S:
                return self._cached[1]
        status = read_status(self.store)
        with self._lock:
            self._cached = (now_s, status)
        return status
