"""The job store on SQLite and PostgreSQL: creation, the queue, fencing, cancel, retry, history."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import IntegrityError

from talkingface.errors import (
    ErrorCode,
    ErrorRecord,
    JobNotFoundError,
    JobStateError,
    QueueFullError,
    Stage,
    StoreUnavailableError,
    UnexpectedError,
)
from talkingface.jobs import tables
from talkingface.jobs.records import AttemptRecord, JobInputs, JobOptions, JobRecord, JobResult
from talkingface.jobs.states import AttemptOutcome, JobState
from talkingface.jobs.stats import compute_stats, recent_activity
from talkingface.jobs.store import JobStore
from talkingface.jobs.tables import metadata
from talkingface.jobs.template_rows import TemplateSpec

if TYPE_CHECKING:
    from tests.integration.store_fixtures import FakeClock


LEASE_S = 15.0


def _submit(store: JobStore, name: str = "a", **kwargs: object) -> JobRecord:
    inputs = JobInputs(audio_path=f"/in/{name}.wav", video_path=f"/in/{name}.mp4")
    job, created = store.create(inputs, JobOptions(), **kwargs)  # type: ignore[arg-type]
    assert created
    return job


def _error(code: ErrorCode = ErrorCode.WORKER_LOST, message: str = "worker died") -> ErrorRecord:
    return ErrorRecord(code=code, stage=Stage.RENDER, retryable=True, message=message)


def _result() -> JobResult:
    return JobResult("/out/r.mp4", 1.0, 128, 128, 25.0, 25, 0, 2.5)


def test_created_job_reads_back_queued_with_its_inputs(store: JobStore) -> None:
    job = _submit(store, "talk", priority=3)

    read = store.get(job.id)

    assert read == job
    assert (read.state, read.priority, read.attempt) == (JobState.QUEUED, 3, 0)
    assert read.inputs.audio_path == "/in/talk.wav"
    assert read.created_at.tzinfo is not None
    assert [event.kind for event in store.events(job.id)] == ["job_created"]


def test_a_caller_chosen_job_id_is_kept(store: JobStore) -> None:
    job = _submit(store, job_id="0123456789abcdef0123456789abcdef")

    assert store.get("0123456789abcdef0123456789abcdef") == job


def test_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(JobNotFoundError, match="nope"):
        store.get("nope")


def test_list_jobs_pages_newest_first_and_filters_by_state(
    store: JobStore, clock: FakeClock
) -> None:
    created = []
    for index in range(5):
        created.append(_submit(store, f"j{index}"))
        clock.advance(1)
    store.claim_next("w1", lease_s=LEASE_S)  # the oldest starts running

    page, total = store.list_jobs(limit=2, offset=1)
    queued, queued_total = store.list_jobs(state=JobState.QUEUED)

    assert total == 5
    assert [job.id for job in page] == [created[3].id, created[2].id]
    assert queued_total == 4 == store.queued_count()
    assert created[0].id not in {job.id for job in queued}


def test_same_idempotency_key_returns_the_same_job(store: JobStore) -> None:
    first = _submit(store, idempotency_key="upload-42")

    again, created = store.create(
        JobInputs("/in/other.wav", "/in/other.mp4"), JobOptions(), idempotency_key="upload-42"
    )

    assert not created
    assert again.id == first.id
    assert store.list_jobs()[1] == 1


def test_racing_creates_under_one_live_prefix_make_one_live_job(store: JobStore) -> None:
    """20 submissions of one HeyGem code with different inputs (distinct keys): one job."""
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def create(number: int) -> None:
        try:
            start.wait(timeout=10)
            inputs = JobInputs(f"/in/a{number}.wav", "/in/v.mp4")
            job, created = store.create(
                inputs, JobOptions(), idempotency_key=f"hg:c1:{number}", live_key_prefix="hg:c1:"
            )
            results.append((job.id, created))
        except BaseException as exc:  # reported by the main thread below
            errors.append(exc)
            raise

    threads = [threading.Thread(target=create, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(results) == 20 and sum(created for _, created in results) == 1
    assert len({job_id for job_id, _ in results}) == 1
    assert store.list_jobs()[1] == 1


def test_a_live_prefix_frees_once_its_job_ends(store: JobStore) -> None:
    first = _submit(store, "a", idempotency_key="hg:c2:1", live_key_prefix="hg:c2:")
    job, attempt = _claim(store, first)
    _submit(store, "b", idempotency_key="hg:other:1", live_key_prefix="hg:other:")
    store.fail_attempt(job.id, attempt.id, _error(), outcome=AttemptOutcome.FAILED, retry_at=None)

    second = _submit(store, "c", idempotency_key="hg:c2:2", live_key_prefix="hg:c2:")

    assert second.id != first.id and store.list_jobs()[1] == 3


def test_the_creating_requests_fingerprint_is_kept(store: JobStore) -> None:
    marked = _submit(store, "a", idempotency_key="k", request_fingerprint="f" * 64)
    plain = _submit(store, "b")

    assert store.request_fingerprint_of(marked.id) == "f" * 64
    assert store.request_fingerprint_of(plain.id) is None


def test_create_refuses_when_the_queue_is_full(store: JobStore) -> None:
    _submit(store, "a", max_queued=2)
    _submit(store, "b", max_queued=2)

    with pytest.raises(QueueFullError, match="queue is full"):
        _submit(store, "c", max_queued=2)
    assert store.queued_count() == 2


def test_concurrent_creates_never_queue_more_than_the_limit(store: JobStore) -> None:
    """A burst of submissions from many clients stops exactly at max_queued (PostgreSQL's
    READ COMMITTED let two creates both count 49 and both insert)."""
    created: list[str] = []
    refused: list[str] = []
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def submit_five(client: int) -> None:
        try:
            start.wait(timeout=10)
            for n in range(5):
                try:
                    created.append(_submit(store, f"c{client}-{n}", max_queued=10).id)
                except QueueFullError:
                    refused.append(f"c{client}-{n}")
        except BaseException as exc:  # reported by the main thread below
            errors.append(exc)
            raise

    threads = [threading.Thread(target=submit_five, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert (len(created), len(refused)) == (10, 30)
    assert store.queued_count() == 10


def test_claim_takes_highest_priority_then_oldest(store: JobStore, clock: FakeClock) -> None:
    low_old = _submit(store, "low_old", priority=0)
    clock.advance(1)
    high_new = _submit(store, "high_new", priority=5)
    clock.advance(1)
    low_new = _submit(store, "low_new", priority=0)

    order = []
    while (claimed := store.claim_next("w1", lease_s=LEASE_S)) is not None:
        order.append(claimed[0].id)

    assert order == [high_new.id, low_old.id, low_new.id]


def test_claim_starts_an_attempt_with_a_lease(store: JobStore, clock: FakeClock) -> None:
    job = _submit(store)

    claimed = store.claim_next("w7", lease_s=LEASE_S)

    assert claimed is not None
    running, attempt = claimed
    assert (running.state, running.attempt, running.stage) == (JobState.RUNNING, 1, "starting")
    assert running.lease_owner == "w7"
    assert running.lease_expires_at == clock.now + timedelta(seconds=LEASE_S)
    assert running.started_at == clock.now
    assert (attempt.job_id, attempt.number, attempt.worker) == (job.id, 1, "w7")
    assert attempt.outcome == AttemptOutcome.RUNNING
    assert store.events(job.id)[-1].data == {"attempt": 1, "worker": "w7"}


def test_a_retry_waits_until_not_before(store: JobStore, clock: FakeClock) -> None:
    job = _submit(store)
    _, attempt = _claim(store)
    store.fail_attempt(
        job.id,
        attempt.id,
        _error(),
        outcome=AttemptOutcome.LOST,
        retry_at=clock.now + timedelta(seconds=10),
    )

    clock.advance(9)
    assert store.claim_next("w1", lease_s=LEASE_S) is None
    clock.advance(1)
    claimed = store.claim_next("w1", lease_s=LEASE_S)

    assert claimed is not None
    assert (claimed[0].id, claimed[0].attempt, claimed[1].number) == (job.id, 2, 2)


def test_concurrent_claims_hand_out_each_job_exactly_once(store: JobStore) -> None:
    jobs = {_submit(store, f"j{index}").id for index in range(50)}
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def claim_all(worker_id: str) -> None:
        try:
            start.wait(timeout=10)
            while (got := store.claim_next(worker_id, lease_s=LEASE_S)) is not None:
                with lock:
                    claimed.append(got[0].id)
        except BaseException as exc:  # reported by the main thread below
            errors.append(exc)
            raise

    threads = [threading.Thread(target=claim_all, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(claimed) == sorted(jobs)
    assert len(store.running()) == 50


def test_heartbeat_records_progress_and_extends_the_lease(
    store: JobStore, clock: FakeClock
) -> None:
    job, attempt = _claim(store, _submit(store))
    clock.advance(5)
    assert store.heartbeat(
        job.id, attempt.id, stage="render", frames_done=10, frames_total=100, lease_s=LEASE_S
    )
    moved_at = clock.now
    clock.advance(5)
    assert store.heartbeat(
        job.id, attempt.id, stage="render", frames_done=10, frames_total=100, lease_s=LEASE_S
    )

    read = store.get(job.id)
    assert (read.stage, read.frames_done, read.frames_total) == ("render", 10, 100)
    assert read.progress_at == moved_at  # unchanged progress does not count as progress
    assert read.lease_expires_at == clock.now + timedelta(seconds=LEASE_S)
    changes = [event for event in store.events(job.id) if event.kind == "stage_changed"]
    assert [event.data["stage"] for event in changes] == ["render"]


def test_heartbeat_of_an_old_attempt_is_fenced_out(store: JobStore, clock: FakeClock) -> None:
    job = _submit(store)
    _, old = _claim(store)
    store.fail_attempt(job.id, old.id, _error(), outcome=AttemptOutcome.LOST, retry_at=clock.now)
    _, current = _claim(store)
    before = store.get(job.id)

    accepted = store.heartbeat(
        job.id, old.id, stage="encode", frames_done=99, frames_total=100, lease_s=LEASE_S
    )

    assert not accepted
    assert store.get(job.id) == before
    assert store.heartbeat(
        job.id, current.id, stage="track", frames_done=1, frames_total=100, lease_s=LEASE_S
    )


def test_succeed_is_fenced_on_the_current_attempt(store: JobStore, clock: FakeClock) -> None:
    job = _submit(store)
    _, old = _claim(store)
    store.fail_attempt(job.id, old.id, _error(), outcome=AttemptOutcome.LOST, retry_at=clock.now)
    _, current = _claim(store)

    assert not store.succeed(job.id, old.id, _result())
    assert store.get(job.id).state == JobState.RUNNING
    assert store.succeed(job.id, current.id, _result())

    done = store.get(job.id)
    assert (done.state, done.result, done.finished_at) == (
        JobState.SUCCEEDED,
        _result(),
        clock.now,
    )
    assert done.lease_owner is None
    assert store.attempts(job.id)[-1].outcome == AttemptOutcome.SUCCEEDED
    assert not store.succeed(job.id, current.id, _result())  # a second report changes nothing


def test_fail_attempt_with_retry_at_requeues_and_without_fails(
    store: JobStore, clock: FakeClock
) -> None:
    job = _submit(store)
    _, first = _claim(store)
    retry_at = clock.now + timedelta(seconds=4)

    requeued = store.fail_attempt(
        job.id, first.id, _error(), outcome=AttemptOutcome.LOST, retry_at=retry_at
    )
    clock.advance(4)
    _, second = _claim(store)
    missing = _error(ErrorCode.INPUT_NOT_FOUND, "File not found: /in/a.wav.")
    failed = store.fail_attempt(
        job.id, second.id, missing, outcome=AttemptOutcome.FAILED, retry_at=None
    )

    assert (requeued.state, requeued.not_before, requeued.lease_owner) == (
        JobState.QUEUED,
        retry_at,
        None,
    )
    assert requeued.error is not None and requeued.error.code == ErrorCode.WORKER_LOST
    assert (failed.state, failed.finished_at) == (JobState.FAILED, clock.now)
    assert failed.error is not None and failed.error.message == "File not found: /in/a.wav."


def test_attempts_of_a_page_of_jobs_come_in_one_read_in_order(
    store: JobStore, clock: FakeClock
) -> None:
    retried = _submit(store, "retried")
    _, first = _claim(store, worker="w1")
    lost = _error(ErrorCode.WORKER_LOST, "worker exited with signal 9")
    store.fail_attempt(retried.id, first.id, lost, outcome=AttemptOutcome.LOST, retry_at=clock.now)
    _claim(store, worker="w2")
    waiting = _submit(store, "waiting")

    found = store.attempts_of([retried.id, waiting.id])
    job, attempts = store.get_with_attempts(retried.id)

    assert [(a.number, a.worker) for a in found[retried.id]] == [(1, "w1"), (2, "w2")]
    assert waiting.id not in found and store.attempts_of([]) == {}
    assert job.id == retried.id and attempts == found[retried.id]


def test_history_tells_each_attempt_and_why(store: JobStore, clock: FakeClock) -> None:
    job = _submit(store)
    _, first = _claim(store, worker="w1")
    lost = _error(ErrorCode.WORKER_LOST, "worker exited with signal 9 during stage render")
    store.fail_attempt(job.id, first.id, lost, outcome=AttemptOutcome.LOST, retry_at=clock.now)
    _, second = _claim(store, worker="w2")
    store.succeed(job.id, second.id, _result())

    history = store.attempts(job.id)
    kinds = [event.kind for event in store.events(job.id)]

    assert [(a.number, a.worker, a.outcome) for a in history] == [
        (1, "w1", AttemptOutcome.LOST),
        (2, "w2", AttemptOutcome.SUCCEEDED),
    ]
    assert history[0].error == lost
    assert history[1].error is None
    assert kinds == [
        "job_created",
        "attempt_started",
        "retry_scheduled",
        "attempt_started",
        "job_succeeded",
    ]
    retry_event = store.events(job.id)[2]
    assert retry_event.data["code"] == "WORKER_LOST"
    assert retry_event.data["message"] == lost.message
    assert store.events(job.id, after_id=retry_event.id)[0].kind == "attempt_started"


def test_attempt_traceback_is_kept_up_to_8_kb(store: JobStore) -> None:
    job, attempt = _claim(store, _submit(store))
    crash = ErrorRecord(
        code=ErrorCode.INTERNAL,
        stage=Stage.BLEND,
        retryable=False,
        message="Unexpected ValueError during stage blend.",
        traceback="x" * 20_000 + "last line",
    )

    store.fail_attempt(job.id, attempt.id, crash, outcome=AttemptOutcome.FAILED, retry_at=None)

    kept = store.attempts(job.id)[0].error
    assert kept is not None and kept.traceback is not None
    assert kept.traceback.endswith("last line") and len(kept.traceback) <= 8 * 1024


def test_an_empty_error_message_is_refused(store: JobStore) -> None:
    job, attempt = _claim(store, _submit(store))

    with pytest.raises(ValueError, match="non-empty message"):
        ErrorRecord(code=ErrorCode.INTERNAL, stage=None, retryable=False, message="  ")
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(
            text("UPDATE jobs SET error_code = 'INTERNAL', error_message = '' WHERE id = :id"),
            {"id": job.id},
        )
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(
            text("UPDATE attempts SET error_code = 'IPC_ERROR', error_message = '' WHERE id = :id"),
            {"id": attempt.id},
        )
    assert store.get(job.id).error is None


def test_cancel_of_a_queued_job_is_immediate(store: JobStore, clock: FakeClock) -> None:
    job = _submit(store)

    canceled = store.request_cancel(job.id)

    assert (canceled.state, canceled.finished_at) == (JobState.CANCELED, clock.now)
    assert canceled.error is not None and canceled.error.code == ErrorCode.CANCELED
    assert canceled.error.message == "Canceled by request."
    assert store.claim_next("w1", lease_s=LEASE_S) is None
    assert store.events(job.id)[-1].kind == "job_canceled"


def test_cancel_of_a_running_job_flags_it_for_the_scheduler(store: JobStore) -> None:
    job, attempt = _claim(store, _submit(store))

    flagged = store.request_cancel(job.id)
    pending = store.cancel_requested_running()
    canceled = store.mark_canceled(job.id, attempt.id)

    assert (flagged.state, flagged.cancel_requested) == (JobState.RUNNING, True)
    assert [(j.id, a.id) for j, a in pending] == [(job.id, attempt.id)]
    assert canceled.state == JobState.CANCELED
    assert store.attempts(job.id)[0].outcome == AttemptOutcome.CANCELED
    assert store.cancel_requested_running() == []
    kinds = [event.kind for event in store.events(job.id)]
    assert kinds[-2:] == ["cancel_requested", "job_canceled"]


def test_a_failing_attempt_of_a_cancel_requested_job_ends_canceled(
    store: JobStore, clock: FakeClock
) -> None:
    job, attempt = _claim(store, _submit(store))
    store.request_cancel(job.id)

    ended = store.fail_attempt(
        job.id, attempt.id, _error(), outcome=AttemptOutcome.LOST, retry_at=clock.now
    )

    assert ended.state == JobState.CANCELED
    assert store.attempts(job.id)[0].outcome == AttemptOutcome.LOST


def test_a_success_reported_after_a_cancel_request_ends_canceled(store: JobStore) -> None:
    # Given a running job whose cancel was accepted (202) before its worker reported success
    job, attempt = _claim(store, _submit(store))
    store.request_cancel(job.id)

    # When the success arrives
    recorded = store.succeed(job.id, attempt.id, _result())

    # Then the job ends canceled, without a result, and the caller is told not to publish
    ended = store.get(job.id)
    assert recorded is False
    assert (ended.state, ended.result) == (JobState.CANCELED, None)
    assert ended.error is not None and ended.error.code == ErrorCode.CANCELED
    assert store.attempts(job.id)[0].outcome == AttemptOutcome.CANCELED
    assert [e.kind for e in store.events(job.id)][-1] == "job_canceled"
    assert store.cancel_requested_running() == []


def test_cancel_of_a_finished_job_is_a_conflict_naming_its_state(store: JobStore) -> None:
    job, attempt = _claim(store, _submit(store))
    store.succeed(job.id, attempt.id, _result())

    with pytest.raises(JobStateError, match="already succeeded") as caught:
        store.request_cancel(job.id)
    assert caught.value.http_status == 409


def test_a_failed_job_can_be_retried_by_hand(store: JobStore) -> None:
    job, attempt = _claim(store, _submit(store))
    store.fail_attempt(job.id, attempt.id, _error(), outcome=AttemptOutcome.STALLED, retry_at=None)

    requeued = store.retry(job.id)
    _, second = _claim(store)

    assert (requeued.state, requeued.error, requeued.finished_at) == (JobState.QUEUED, None, None)
    assert second.number == 2  # the history continues
    assert store.events(job.id)[-2].kind == "job_requeued"
    with pytest.raises(JobStateError, match="running"):
        store.retry(job.id)


@pytest.mark.parametrize("change", ["requeue", "fail", "cancel"])
def test_a_state_change_outside_the_transition_table_is_refused_and_changes_nothing(
    store: JobStore, clock: FakeClock, change: str
) -> None:
    # Given a succeeded job (no transition leaves succeeded)
    job, attempt = _claim(store, _submit(store))
    store.succeed(job.id, attempt.id, _result())
    done = store.get(job.id)
    updates: dict[str, Callable[[Any], None]] = {
        "requeue": lambda conn: tables.requeue_job(
            conn, done, _error(), AttemptOutcome.LOST, clock.now, clock.now
        ),
        "fail": lambda conn: tables.fail_job(conn, done, _error(), clock.now),
        "cancel": lambda conn: tables.cancel_job(conn, done, clock.now),
    }

    # When a store helper is asked to move it anyway
    with (
        pytest.raises(UnexpectedError, match="from succeeded to") as caught,
        store.engine.begin() as conn,
    ):
        updates[change](conn)

    # Then it is an internal error naming the job, and the record is untouched
    assert caught.value.code is ErrorCode.INTERNAL and job.id in caught.value.message
    assert store.get(job.id) == done


def test_purge_deletes_finished_jobs_before_the_cutoff_with_their_history(
    store: JobStore, clock: FakeClock
) -> None:
    old, attempt = _claim(store, _submit(store, "old"))
    store.succeed(old.id, attempt.id, _result())
    old_canceled = store.request_cancel(_submit(store, "old_canceled").id)
    cutoff = clock.advance(60)
    recent, attempt = _claim(store, _submit(store, "recent"))
    store.succeed(recent.id, attempt.id, _result())
    still_queued = _submit(store, "queued")

    purged = store.purge_finished_before(cutoff)

    assert {job.id for job in purged} == {old.id, old_canceled.id}
    assert purged[0].result is not None or purged[1].result is not None
    remaining = {job.id for job in store.list_jobs()[0]}
    assert remaining == {still_queued.id, recent.id}
    assert store.attempts(old.id) == [] and store.events(old.id) == []


def test_running_lists_every_running_job_with_its_current_attempt(
    store: JobStore, clock: FakeClock
) -> None:
    first = _submit(store, "first")
    clock.advance(1)
    _submit(store, "second")
    _, lost = _claim(store, first)
    store.fail_attempt(first.id, lost.id, _error(), outcome=AttemptOutcome.LOST, retry_at=clock.now)
    pairs = [_claim(store), _claim(store)]

    running = store.running()

    assert sorted((job.id, attempt.id) for job, attempt in running) == sorted(
        (job.id, attempt.id) for job, attempt in pairs
    )
    assert all(job.attempt == attempt.number for job, attempt in running)


def test_stats_count_states_failures_rates_and_retries(store: JobStore, clock: FakeClock) -> None:
    job, attempt = _claim(store, _submit(store, "ok"))
    store.fail_attempt(
        job.id, attempt.id, _error(), outcome=AttemptOutcome.LOST, retry_at=clock.now
    )
    clock.advance(2)
    _, attempt = _claim(store)
    clock.advance(10)
    store.succeed(job.id, attempt.id, _result())
    bad, attempt = _claim(store, _submit(store, "bad"))
    missing = _error(ErrorCode.INPUT_NOT_FOUND, "File not found: /in/bad.wav.")
    store.fail_attempt(bad.id, attempt.id, missing, outcome=AttemptOutcome.FAILED, retry_at=None)
    _submit(store, "waiting")
    # and a template whose preparation is queued: a job, but not a render job
    spec = TemplateSpec("ab" * 16, "template.mp4", 2.0, 512, 512, 25.0, False)
    store.register_template(spec, JobInputs("", "/in/template.mp4"), JobOptions())

    stats = compute_stats(store, now=clock.now + timedelta(hours=2))

    assert stats["jobs_total"] == 3
    assert stats["by_state"] == {
        "queued": 1,
        "running": 0,
        "succeeded": 1,
        "failed": 1,
        "canceled": 0,
    }
    assert stats["failures_by_code"] == {"INPUT_NOT_FOUND": 1}
    assert stats["success_rate"] == {"last_hour": None, "last_day": 0.5, "all": 0.5}
    assert stats["duration_s"]["p50"] == pytest.approx(12.0)
    assert stats["retries_total"] == 1
    assert stats["template_jobs_by_state"]["queued"] == 1


def test_recent_activity_counts_only_inside_its_windows(store: JobStore, clock: FakeClock) -> None:
    # Given, before the windows open: a failure and a lost attempt that must not count
    start = clock.now
    early, attempt = _claim(store, _submit(store, "early"))
    store.fail_attempt(early.id, attempt.id, _error(), outcome=AttemptOutcome.LOST, retry_at=None)
    clock.advance(60)
    since = clock.now
    # and inside them: a job lost, then stalled, then succeeded; a failure; two waiting
    job, attempt = _claim(store, _submit(store, "ok"))
    store.fail_attempt(job.id, attempt.id, _error(), outcome=AttemptOutcome.LOST, retry_at=since)
    _, attempt = _claim(store, job)
    store.fail_attempt(job.id, attempt.id, _error(), outcome=AttemptOutcome.STALLED, retry_at=since)
    _, attempt = _claim(store, job)
    store.succeed(job.id, attempt.id, _result())
    bad, attempt = _claim(store, _submit(store, "bad"))
    missing = _error(ErrorCode.INPUT_NOT_FOUND, "File not found: /in/bad.wav.")
    store.fail_attempt(bad.id, attempt.id, missing, outcome=AttemptOutcome.FAILED, retry_at=None)
    clock.advance(5)
    _submit(store, "queued")
    clock.advance(5)
    _submit(store, "newer")

    activity = recent_activity(store, finished_since=since, ended_since=since)

    assert activity.finished_by_state == {JobState.SUCCEEDED: 1, JobState.FAILED: 1}
    assert activity.ended_by_outcome == {
        AttemptOutcome.LOST: 1,
        AttemptOutcome.STALLED: 1,
        AttemptOutcome.SUCCEEDED: 1,
        AttemptOutcome.FAILED: 1,
    }
    assert activity.oldest_queued_at == since + timedelta(seconds=5)
    assert activity.oldest_queued_at.tzinfo is not None
    wider = recent_activity(store, finished_since=start, ended_since=start)
    assert wider.finished_by_state[JobState.FAILED] == 2
    assert wider.ended_by_outcome[AttemptOutcome.LOST] == 2


def test_stats_are_read_before_the_connection_goes_back_to_the_pool(
    store: JobStore, clock: FakeClock
) -> None:
    """Under load the pool closes overflow connections as they come back (/metrics or
    /v1/queue beside many status polls): no result may be read after that."""
    job, attempt = _claim(store, _submit(store, "bad"))
    missing = _error(ErrorCode.INPUT_NOT_FOUND, "File not found: /in/bad.wav.")
    store.fail_attempt(job.id, attempt.id, missing, outcome=AttemptOutcome.FAILED, retry_at=None)

    def close_on_checkin(dbapi_connection: Any, _record: Any) -> None:  # Any: DBAPI objects
        dbapi_connection.close()

    event.listen(store.engine.pool, "checkin", close_on_checkin)
    try:
        stats = compute_stats(store, now=clock.now)
    finally:
        event.remove(store.engine.pool, "checkin", close_on_checkin)
        store.engine.dispose()  # drop the closed connections

    assert stats["failures_by_code"] == {"INPUT_NOT_FOUND": 1}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrate_builds_a_fresh_database_and_is_idempotent(
    backend: str, tmp_path: Path, postgres_database: Callable[[], str]
) -> None:
    url = f"sqlite:///{tmp_path}/new/jobs.db" if backend == "sqlite" else postgres_database()
    fresh = JobStore(url)
    try:
        fresh.migrate()
        fresh.migrate()
        with fresh.engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        _submit(fresh)
    finally:
        fresh.close()

    assert version == "0005"
    assert diff == []  # the migration builds exactly what tables.py declares


def test_sqlite_store_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    job_store = JobStore(f"sqlite:///{path}")
    job_store.migrate()
    job_store.close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_unreachable_store_raises_store_unavailable_with_a_clear_message() -> None:
    unreachable = JobStore("postgresql+psycopg://postgres@127.0.0.1:1/x")
    try:
        with pytest.raises(StoreUnavailableError, match="cannot be reached") as caught:
            unreachable.ping()
    finally:
        unreachable.close()

    assert "127.0.0.1:1" in caught.value.message
    assert caught.value.retryable


def _claim(
    store: JobStore, expected: JobRecord | None = None, *, worker: str = "w1"
) -> tuple[JobRecord, AttemptRecord]:
    claimed = store.claim_next(worker, lease_s=LEASE_S)
    assert claimed is not None, "no job to claim"
    if expected is not None:
        assert claimed[0].id == expected.id
    return claimed


def test_a_heygem_code_finds_its_newest_job_and_no_other_codes(
    store: JobStore, clock: FakeClock
) -> None:
    older = _submit(store, "1", idempotency_key="heygem:ab:1111")
    clock.advance(1)
    newer = _submit(store, "2", idempotency_key="heygem:ab:2222")
    _submit(store, "3", idempotency_key="heygem:abc:3333")  # a longer code sharing the start
    odd = _submit(store, "4", idempotency_key="heygem:a_b%:4444")  # LIKE's wildcards, literal
    _submit(store, "5", idempotency_key="heygem:aXb%:5555")

    assert older.created_at < newer.created_at
    found = store.latest_with_key_prefix("heygem:ab:")
    assert found is not None and found.id == newer.id
    found = store.latest_with_key_prefix("heygem:a_b%:")
    assert found is not None and found.id == odd.id
    assert store.latest_with_key_prefix("heygem:a:") is None
    assert store.latest_with_key_prefix("heygem:AB:") is None  # codes are case-sensitive
    # and /easy/query's one-statement read finds the same jobs, with their queue positions
    hot = store.latest_with_key_prefix_and_position
    for prefix, job in (("heygem:ab:", newer), ("heygem:a_b%:", odd)):
        assert hot(prefix) == (store.get(job.id), store.queue_position(job))
    assert hot("heygem:ab:")[1] == 1  # the older job of the same priority runs first
    assert hot("heygem:a:") == (None, 0)
    assert hot("heygem:AB:") == (None, 0)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_heygem_lookup_is_an_index_search_not_a_table_scan(
    backend: str, tmp_path: Path, postgres_database: Callable[[], str]
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}" if backend == "sqlite" else postgres_database()
    fresh = JobStore(url)
    fresh.migrate()
    seen: list[tuple[str, Any]] = []  # Any: DBAPI parameters

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "WHERE jobs.idempotency_key" in statement:
            seen.append((statement, parameters))

    # every engine: the status reads on SQLite go through a second pool (JobStore)
    event.listen(Engine, "before_cursor_execute", capture)
    try:
        fresh.latest_with_key_prefix("heygem:code-1:")
        fresh.latest_with_key_prefix_and_position("heygem:code-1:")  # /easy/query's read
        event.remove(Engine, "before_cursor_execute", capture)
        assert len(seen) == 2, seen
        plans = []
        with fresh.engine.connect() as conn:
            if backend == "postgresql":  # an empty table: make the planner show the index
                conn.exec_driver_sql("SET enable_seqscan = off")
            explain = "EXPLAIN QUERY PLAN " if backend == "sqlite" else "EXPLAIN "
            for statement, parameters in seen:
                plans.append(conn.exec_driver_sql(explain + statement, parameters).all())
    finally:
        if event.contains(Engine, "before_cursor_execute", capture):
            event.remove(Engine, "before_cursor_execute", capture)
        fresh.close()
    for plan in plans:
        details = " ".join(str(row[-1]) for row in plan)
        if backend == "sqlite":
            assert "USING INDEX ix_jobs_idempotency_key" in details, details
            assert "SCAN jobs" not in details, details
        else:
            assert "ix_jobs_idempotency_key_prefix" in details, details
            assert "Seq Scan on jobs" not in details, details
