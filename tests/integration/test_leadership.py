"""The scheduler leadership on a real PostgreSQL: one leader at a time, fenced the moment it
cannot confirm its lock, replaced when its session ends or falls silent for a lease."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from talkingface.cluster.leader_lock import LEADER_LOCK_KEY, LeaderLock
from talkingface.cluster.leader_status import read_status
from talkingface.cluster.leadership import Leadership
from talkingface.config import ClusterSettings
from talkingface.executors.base import WorkerInfo
from talkingface.jobs.states import WorkerState
from talkingface.jobs.store import JobStore
from tests.integration.service_fixtures import wait_until

LEASE_S = 2.0
SETTINGS = ClusterSettings(leader_lease_s=LEASE_S, election_interval_s=0.5)


class RecordedDuties:
    """LeaderDuties that note what they were asked to do."""

    def __init__(self) -> None:
        self.begun = 0
        self.ended: list[str] = []
        self.fence: Callable[[], bool] | None = None

    def begin(self, is_leader: Callable[[], bool]) -> None:
        self.begun += 1
        self.fence = is_leader

    def end(self, reason: str) -> None:
        self.ended.append(reason)

    def is_ready(self) -> bool:
        return True

    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo("w1", 4242, WorkerState.READY, None, None, 3, 0.0)]

    def alerts(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return [], []


class ManualClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def database(postgres_database: Callable[[], str]) -> Iterator[str]:
    url = postgres_database()
    store = JobStore(url)
    store.migrate()
    store.close()
    yield url


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _terminate_holder(url: str) -> None:
    """What a dropped connection looks like to PostgreSQL: the leader's session is ended."""
    with psycopg.connect(_libpq(url), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid = 0 AND objid = %s AND granted",
            (LEADER_LOCK_KEY,),
        )


def test_one_candidate_leads_and_the_other_takes_over_when_its_session_ends(
    database: str,
) -> None:
    store = JobStore(database)
    clock = ManualClock()
    first_duties, second_duties = RecordedDuties(), RecordedDuties()
    first = Leadership(
        LeaderLock(database, lease_s=LEASE_S), first_duties, store, SETTINGS, clock=clock
    )
    second = Leadership(LeaderLock(database, lease_s=LEASE_S), second_duties, store, SETTINGS)
    try:
        # Given two candidates campaigning in turn
        first.campaign()
        second.campaign()

        # Then only the first leads, and it publishes who it is and its workers
        assert (first.is_leader(), second.is_leader()) == (True, False)
        assert (first_duties.begun, second_duties.begun) == (1, 0)
        status = read_status(store)
        assert status is not None and status.pid == first.pid and status.workers[0].id == "w1"

        # When the leader's session ends (a dropped connection, a killed process)
        _terminate_holder(database)
        first.campaign()  # its next confirmation fails

        # Then it acts on nothing at once, its workers kept while it may take the lock back
        assert not first.is_leader() and first.role == "suspended" and not first_duties.ended
        # and the second takes the lock and leads
        second.campaign()
        assert second.is_leader() and second_duties.begun == 1
        # and once a lease has passed without the lock, the first's duties end
        clock.now_s += LEASE_S
        first.campaign()
        assert first.role == "follower"
        assert first_duties.ended == ["it could not take the lock back within a lease"]
    finally:
        first.stop()
        second.stop()
        store.close()


def test_a_leader_whose_session_drops_takes_the_lock_back_and_keeps_its_duties(
    database: str,
) -> None:
    # Given a leader whose session is ended (a database restart), with no one else around
    store = JobStore(database)
    duties = RecordedDuties()
    leader = Leadership(LeaderLock(database, lease_s=LEASE_S), duties, store, SETTINGS)
    try:
        leader.campaign()
        _terminate_holder(database)
        leader.campaign()
        assert leader.role == "suspended"

        # When it campaigns again
        leader.campaign()

        # Then it leads again with the same duties: nothing was stopped or started again
        assert leader.is_leader()
        assert (duties.begun, duties.ended) == (1, [])
    finally:
        leader.stop()
        store.close()


def test_a_leader_that_retakes_the_lock_after_another_led_starts_afresh(database: str) -> None:
    store = JobStore(database)
    first_duties, second_duties = RecordedDuties(), RecordedDuties()
    first = Leadership(LeaderLock(database, lease_s=LEASE_S), first_duties, store, SETTINGS)
    second = Leadership(LeaderLock(database, lease_s=LEASE_S), second_duties, store, SETTINGS)
    try:
        # Given a suspended leader, and another that led meanwhile and stopped
        first.campaign()
        _terminate_holder(database)
        first.campaign()
        second.campaign()
        assert second.is_leader()
        second.stop()

        # When the first takes the lock back
        first.campaign()

        # Then its old duties (attempts another leader may have retried) end, and new begin
        assert first.is_leader()
        assert first_duties.ended == ["another server led meanwhile"]
        assert first_duties.begun == 2
    finally:
        first.stop()
        second.stop()
        store.close()


def test_a_leader_that_cannot_confirm_is_fenced_before_its_lease_runs_out(
    database: str,
) -> None:
    store = JobStore(database)
    clock = ManualClock()
    duties = RecordedDuties()
    leader = Leadership(LeaderLock(database, lease_s=LEASE_S), duties, store, SETTINGS, clock=clock)
    try:
        leader.campaign()
        assert duties.fence is not None and duties.fence()

        # When half a lease passes without a confirmation (its election thread is stuck)
        clock.now_s += LEASE_S / 2

        # Then the fence the scheduler checks is closed, though nothing has failed yet
        assert not duties.fence()
        leader.campaign()  # a confirmation that goes through opens it again
        assert duties.fence()
    finally:
        leader.stop()
        store.close()


def test_a_silent_leader_loses_the_lock_after_one_lease(database: str) -> None:
    # Given a leader whose process stops talking to the database (hung, stopped, partitioned)
    silent = LeaderLock(database, lease_s=LEASE_S)
    candidate = LeaderLock(database, lease_s=LEASE_S)
    try:
        assert silent.try_acquire()
        assert not candidate.try_acquire()

        # Then PostgreSQL ends its silent session after the lease and another takes the lock
        wait_until(
            candidate.try_acquire, timeout_s=LEASE_S + 10, what="the silent leader's lock to free"
        )
        assert not silent.confirm({"host": "silent"})
    finally:
        silent.release()
        candidate.release()


def test_only_the_session_holding_the_lock_can_write_the_leaders_record(database: str) -> None:
    store = JobStore(database)
    old, new = LeaderLock(database, lease_s=LEASE_S), LeaderLock(database, lease_s=LEASE_S)
    try:
        assert old.try_acquire() and old.confirm({"who": "old"})
        _terminate_holder(database)  # the old leader's session is gone; it does not know yet
        assert new.try_acquire() and new.confirm({"who": "new"})

        # When the old leader tries to confirm (and record itself) again
        written = old.confirm({"who": "old, late"})

        # Then it learns it lost the lock, and the new leader's record stands
        assert not written
        assert store.read_state("scheduler_leader") == {"who": "new"}
    finally:
        old.release()
        new.release()
        store.close()


def test_stopping_the_leader_frees_the_lock_for_another_at_once(database: str) -> None:
    store = JobStore(database)
    duties = RecordedDuties()
    leader = Leadership(LeaderLock(database, lease_s=LEASE_S), duties, store, SETTINGS)
    other = LeaderLock(database, lease_s=LEASE_S)
    try:
        leader.start()
        assert leader.is_leader()

        leader.stop()

        assert duties.ended == ["this server is stopping"]
        assert other.try_acquire()
    finally:
        other.release()
        store.close()
