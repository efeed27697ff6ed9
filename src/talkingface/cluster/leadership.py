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

A failed confirmation suspends the leader: it acts on nothing, but its workers go on
rendering while it tries to take the lock back (a database restart, a dropped connection).
If it takes it back within a lease and the store still names it as the last leader, it
resumes with its attempts intact. Otherwise (another server led meanwhile, or a lease
passed) its duties end: the scheduler stops, its workers are killed, their attempts are
retried. Every leader records itself in the store before it starts to act, so a returning
leader always knows whether another led in between.

No job is dispatched twice across any change: a claim is one atomic update in the store,
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
from enum import StrEnum
from typing import Any, Protocol

from talkingface.cluster.leader_lock import LeaderLock
from talkingface.cluster.leader_status import LeaderStatus, read_status, status_to_json
from talkingface.config import ClusterSettings
from talkingface.errors import TalkingFaceError
from talkingface.executors.base import WorkerInfo
from talkingface.jobs.store import JobStore

logger = logging.getLogger(__name__)


class _State(StrEnum):
    FOLLOWING = "follower"
    LEADING = "leader"
    SUSPENDED = "suspended"  # lost its lock, trying to take it back; acts on nothing


class LeaderDuties(Protocol):
    """What a process does while it leads."""

    def begin(self, is_leader: Callable[[], bool]) -> None:
        """Start leading; `is_leader` is the fence to check before each act."""

    def end(self, reason: str) -> None:
        """Stop leading now (the workers stop too)."""

    def is_ready(self) -> bool: ...

    def workers(self) -> list[WorkerInfo]: ...

    def alerts(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # Any: JSON-safe
        """(active, history) of the alert rules it runs."""
        ...


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
        self._state = _State.FOLLOWING
        self._confirmed_s = float("-inf")
        self._suspended_s = float("-inf")
        self._elected_at: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.host, self.pid = socket.gethostname(), os.getpid()

    @property
    def leading(self) -> bool:
        """This process holds the leadership, confirmed (it may be confirming it now)."""
        return self._state is _State.LEADING

    @property
    def has_duties(self) -> bool:
        """Its scheduler and workers run here: leading, or suspended while it reconnects."""
        return self._state is not _State.FOLLOWING

    @property
    def role(self) -> str:
        return self._state.value

    def is_leader(self) -> bool:
        """The fence: leading, and confirmed within half a lease."""
        fence_s = self._settings.leader_lease_s / 2
        return self.leading and self._clock() - self._confirmed_s < fence_s

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
        if self.has_duties:
            self._end_duties("this server is stopping")
        self._lock.release()

    def _loop(self) -> None:
        while not self._stop.wait(self._settings.election_interval_s):
            try:
                self.campaign()
            except Exception:  # a boundary like the scheduler loop's: log, keep campaigning
                logger.exception("leader election failed", extra={"event": "leadership_error"})

    def campaign(self) -> None:
        """One round: the leader confirms its lock; a suspended leader tries to take it back;
        a follower tries to take it."""
        if self._state is _State.LEADING:
            if self._confirm():
                self._confirmed_s = self._clock()
            else:
                self._suspend()
        elif self._state is _State.SUSPENDED:
            self._try_resume()
        elif self._lock.try_acquire():
            self._begin()

    def _begin(self) -> None:
        """Lead from now on: record itself as the leader first (a leader that later takes
        the lock back can then tell whether another led meanwhile), then start the duties."""
        self._confirmed_s = self._clock()
        self._elected_at = datetime.now(UTC)
        if not self._confirm():
            self._lock.release()  # a leader that cannot record itself must not lead
            return
        self._state = _State.LEADING
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
            self._end_duties("its duties could not start")
            return
        self._confirm()

    def _suspend(self) -> None:
        """The lock is gone or cannot be confirmed (a dropped connection, a database
        restart): act no more at once (the fence is closed), keep the workers rendering,
        and take the lock back if no one else leads meanwhile."""
        self._state = _State.SUSPENDED
        self._suspended_s = self._clock()
        self._lock.release()
        logger.warning(
            "this server (pid %d) suspends leading the scheduler: its PostgreSQL session or "
            "lock is gone; it stops for good unless it takes the lock back within %.0f s",
            self.pid,
            self._settings.leader_lease_s,
            extra={"event": "leader_suspended"},
        )

    def _try_resume(self) -> None:
        if self._lock.try_acquire():
            current = self._recorded_leader()
            if current == (self.host, self.pid, self._elected_at):
                if not self._confirm():
                    return  # lost again at once: still suspended
                self._state, self._confirmed_s = _State.LEADING, self._clock()
                logger.info(
                    "this server (pid %d) leads the scheduler again",
                    self.pid,
                    extra={"event": "leader_resumed"},
                )
                return
            self._end_duties("another server led meanwhile", release=False)
            self._begin()  # we hold the lock: lead afresh, with new workers
            return
        if self._clock() - self._suspended_s >= self._settings.leader_lease_s:
            self._end_duties("it could not take the lock back within a lease")

    def _recorded_leader(self) -> tuple[str, int, datetime] | None:
        """(host, pid, elected_at) of the last leader the store records; None if unknown."""
        try:
            status = read_status(self._store)
        except TalkingFaceError:
            return None
        return None if status is None else (status.host, status.pid, status.elected_at)

    def _end_duties(self, reason: str, *, release: bool = True) -> None:
        self._state = _State.FOLLOWING
        logger.warning(
            "this server (pid %d) stops leading the scheduler: %s",
            self.pid,
            reason,
            extra={"event": "leader_stepped_down", "reason": reason},
        )
        try:
            self._duties.end(reason)
        finally:
            if release:
                self._lock.release()

    def _confirm(self) -> bool:
        """Confirm the lock and record this leader's status under it, in one statement."""
        assert self._elected_at is not None
        active, history = self._duties.alerts()
        status = LeaderStatus(
            host=self.host,
            pid=self.pid,
            elected_at=self._elected_at,
            renewed_at=datetime.now(UTC),
            ready=self._duties.is_ready(),
            workers=tuple(self._duties.workers()),
            alerts_active=tuple(active),
            alerts_history=tuple(history),
        )
        return self._lock.confirm(status_to_json(status))
