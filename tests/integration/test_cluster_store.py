"""The store under several processes on one PostgreSQL database: claims never overlap,
events become visible in the order of their ids, a template's id is locked across them."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from talkingface.jobs import tables
from talkingface.jobs.records import JobInputs, JobOptions
from talkingface.jobs.store import JobStore

CLAIMER = """
import json, sys, time
from pathlib import Path
from talkingface.jobs.store import JobStore
store = JobStore(sys.argv[1])
store.ping()
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)  # a start line for both racers
claimed = []
while (found := store.claim_next(sys.argv[3], lease_s=60)) is not None:
    claimed.append(found[0].id)
print(json.dumps(claimed))
"""


@pytest.fixture
def store(postgres_url: str) -> Iterator[JobStore]:
    """The session's PostgreSQL store, emptied (SQLite has one server process by design)."""
    job_store = JobStore(postgres_url)
    with job_store.engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE events, attempts, templates, jobs, outbox, service_state RESTART IDENTITY"
            )
        )
    try:
        yield job_store
    finally:
        job_store.close()


def test_two_processes_claiming_one_queue_never_claim_a_job_twice(
    postgres_url: str, store: JobStore, tmp_path: Path
) -> None:
    # Given 150 queued jobs and two processes that claim as fast as they can from one start
    created = {
        store.create(JobInputs(f"/in/{i}.wav", "/in/v.mp4", 1.0), JobOptions())[0].id
        for i in range(150)
    }
    go = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, postgres_url, str(go), f"racer-{n}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    try:
        go.touch()
        results = [json.loads(racer.communicate(timeout=120)[0]) for racer in racers]
    finally:
        for racer in racers:
            racer.kill()
            racer.wait(timeout=30)

    # Then every job was claimed exactly once, by one of them, with one attempt
    first, second = (set(ids) for ids in results)
    assert first.isdisjoint(second)
    assert first | second == created
    assert len(results[0]) + len(results[1]) == len(created)
    assert all(len(store.attempts(job_id)) == 1 for job_id in created)


def test_events_become_visible_in_the_order_of_their_ids(store: JobStore) -> None:
    job, _ = store.create(JobInputs("/in/a.wav", "/in/v.mp4", 1.0), JobOptions())
    cursor = store.last_event_id()
    seen: list[int] = []

    def follow() -> None:
        nonlocal cursor
        fresh = store.events(job.id, after_id=cursor)
        seen.extend(event.id for event in fresh)
        cursor = fresh[-1].id if fresh else cursor

    # Given a transaction that has written an event and not committed yet
    slow = store.engine.connect()
    slow_tx = slow.begin()
    tables.insert_event(slow, job.id, "slow_event", {}, datetime.now(UTC))
    # and a second writer that writes an event meanwhile, on its own thread
    fast = threading.Thread(target=lambda: store.add_event(job.id, "fast_event"))
    fast.start()
    fast.join(timeout=1.0)

    # When a reader follows the events by id while the first is still open
    follow()

    # Then the second waited behind the first: nothing is visible yet, so nothing is skipped
    assert fast.is_alive() and seen == []
    slow_tx.commit()
    slow.close()
    fast.join(timeout=30)
    follow()
    kinds = [event.kind for event in store.events(job.id) if event.id in seen]
    assert kinds == ["slow_event", "fast_event"]


def test_a_template_id_is_locked_across_connections(store: JobStore) -> None:
    entered: list[str] = []
    waiting = threading.Event()

    def second_writer() -> None:
        waiting.set()
        with store.holding_template("abc"):
            entered.append("second")

    with store.holding_template("abc"):
        entered.append("first")
        other = threading.Thread(target=second_writer)
        other.start()
        waiting.wait(5)
        other.join(timeout=0.5)
        assert other.is_alive() and entered == ["first"]  # it waits for the first to finish
        with store.holding_template("another-id"):  # other templates are not held up
            entered.append("unrelated")
    other.join(timeout=30)
    assert entered == ["first", "unrelated", "second"]
