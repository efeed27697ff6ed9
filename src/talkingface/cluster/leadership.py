"""③ The scheduler leadership among API processes sharing one PostgreSQL store: campaign for
the leader lock, lead while it holds, stop leading the moment it may not.

Every process campaigns every `cluster.election_interval_s`. The one that takes the lock
(cluster/leader_lock.py) begins its duties (the scheduler with its workers, janitor and
recovery, the webhook sender, the alert rules; api/leader_services.py) and then, every
interval, asks PostgreSQL whether it still holds the lock and publishes its status. The
others serve the API only, and keep trying: when the leader dies its session ends, the lock
is free, and the next try takes it.

Fencing. `is_leader()` is true only while the last confirmation is younger than half the
lease (`cluster.leader_lease_s`); the scheduler asks it before every round, so a leader
whose session is lost, or that cannot confirm it (a hung connection, a stopped process)
dispatches nothing more, applies no result, and recovers no attempt, well before PostgreSQL
ends its silent session (`idle_session_timeout` = the lease) and frees the lock for another.
A failed confirmation then ends the duties: the scheduler stops and its workers are killed.
No job is dispatched twice across the change: a claim is one atomic update in the store,
and a result is recorded only for the attempt that is current there.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from talkingface.cluster.leader_lock import LeaderLock
from talkingface.cluster.leader_status import LeaderStatus, publish_status
from talkingface.config import ClusterSettings
from talkingface.errors import TalkingFaceError
from talkingface.executors.base import WorkerInfo
from talkingface.jobs.store import JobStore

logger = logging.getLogger(__name__)


class LeaderDuties(Protocol):
    """What a process does while it leads."""

    def begin(self, is_leader: Callable[[], bool]) -> None:
        """Start leading; `is_leader` is the fence to check before each act."""

    def end(self, reason: str) -> None:
        """Stop leading now (the workers stop too)."""

    def is_ready(self) -> bool: ...

    def workers(self) -> list[WorkerInfo]: ...


class Leadership:
    """Campaigns on its own thread; start() makes the first try at once."""

    def __init__(
        self,
        lock: LeaderLock,
        duties: LeaderDuties,
        store: JobStore,
        settings: ClusterSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = lock
        self._duties = duties
        self._store = store
        self._settings = settings
        self._clock = clock
        self._leading = False
        self._confirmed_s = float("-inf")
        self._elected_at: datetime | None = None
        self._publish_problem: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.host, self.pid = socket.gethostname(), os.getpid()

    @property
    def leading(self) -> bool:
        """This process holds the leadership (it may be confirming it right now)."""
        return self._leading

    def is_leader(self) -> bool:
        """The fence: leading, and confirmed within half a lease."""
        fence_s = self._settings.leader_lease_s / 2
        return self._leading and self._clock() - self._confirmed_s < fence_s

    def start(self) -> Leadership:
        self.campaign()
        self._thread = threading.Thread(target=self._loop, name="tf-leadership", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop campaigning; a leader ends its duties and gives the lock up for another."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._settings.leader_lease_s)
        if self._leading:
            self._step_down("this server is stopping")
        self._lock.release()

    def _loop(self) -> None:
        while not self._stop.wait(self._settings.election_interval_s):
            try:
                self.campaign()
            except Exception:  # a boundary like the scheduler loop's: log, keep campaigning
                logger.exception("leader election failed", extra={"event": "leadership_error"})

    def campaign(self) -> None:
        """One round: a follower tries to take the lock; the leader confirms it holds it."""
        if self._leading:
            if self._lock.confirm():
                self._confirmed_s = self._clock()
                self._publish()
            else:
                self._step_down("its PostgreSQL session or lock is gone")
            return
        if not self._lock.try_acquire():
            return
        self._confirmed_s = self._clock()
        self._leading, self._elected_at = True, datetime.now(UTC)
        logger.info(
            "this server (pid %d on %s) leads the scheduler",
            self.pid,
            self.host,
            extra={"event": "leader_elected", "host": self.host},
        )
        try:
            self._duties.begin(self.is_leader)
        except Exception:  # starting the scheduler failed: let another server lead
            logger.exception(
                "could not start leading; giving the lock up", extra={"event": "leader_failed"}
            )
            self._step_down("its duties could not start")
            return
        self._publish()

    def _step_down(self, reason: str) -> None:
        self._leading = False
        logger.warning(
            "this server (pid %d) stops leading the scheduler: %s",
            self.pid,
            reason,
            extra={"event": "leader_stepped_down", "reason": reason},
        )
        try:
            self._duties.end(reason)
        finally:
            self._lock.release()

    def _publish(self) -> None:
        assert self._elected_at is not None
        status = LeaderStatus(
            host=self.host,
            pid=self.pid,
            elected_at=self._elected_at,
            renewed_at=datetime.now(UTC),
            ready=self._duties.is_ready(),
            workers=tuple(self._duties.workers()),
        )
        try:
            publish_status(self._store, status)
        except TalkingFaceError as exc:  # the lock holds, only the description is stale
            if exc.message != self._publish_problem:
                logger.warning(
                    "could not publish the leader's status: %s",
                    exc.message,
                    extra={"event": "leader_status_unpublished"},
                )
            self._publish_problem = exc.message
            return
        self._publish_problem = None
