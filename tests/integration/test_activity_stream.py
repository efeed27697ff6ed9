"""The all-jobs event stream (GET /v1/events) over the real store, SQLite and PostgreSQL: every
job's changes with resumable ids, progress of running jobs, queue snapshots with ETAs, one
shared read per tick, and a `shutdown` event when the poll closes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from talkingface.api import activity_stream
from talkingface.api.events_stream import StreamPoll
from talkingface.errors import ErrorCode, ErrorRecord, Stage
from talkingface.executors.base import WorkerInfo
from talkingface.jobs.records import JobInputs, JobOptions, JobRecord, JobResult
from talkingface.jobs.states import AttemptOutcome, WorkerState
from talkingface.jobs.store import JobStore
from tests.integration.api_fixtures import FakeScheduler

LEASE_S = 15.0
Message = tuple[str, dict[str, Any], str | None]  # event name, data, id


def _run(scenario: Any) -> Any:  # Any: the scenario's own result
    """Run a scenario with a bound, so a missing message fails instead of hanging."""

    async def bounded() -> Any:  # Any: as above
        return await asyncio.wait_for(scenario, timeout=60)

    return asyncio.run(bounded())


def _submit(store: JobStore, name: str, priority: int = 0) -> JobRecord:
    inputs = JobInputs(audio_path=f"/in/{name}.wav", video_path=f"/in/{name}.mp4")
    job, _ = store.create(inputs, JobOptions(), priority=priority)
    return job


def _scheduler(workers: int = 1) -> FakeScheduler:
    infos = [
        WorkerInfo(f"w{i}", 100 + i, WorkerState.READY, None, None, 0, 0.0) for i in range(workers)
    ]
    return FakeScheduler(infos=infos)


async def _next(stream: AsyncIterator[str], *names: str) -> Message:
    """The next message named one of `names` (any, when none given)."""
    async for text in stream:
        fields = dict(line.split(": ", 1) for line in text.strip().splitlines() if ": " in line)
        if "event" in fields and (not names or fields["event"] in names):
            return fields["event"], json.loads(fields["data"]), fields.get("id")
    raise AssertionError(f"the stream ended before a {names or 'message'}")


async def _until(stream: AsyncIterator[str], name: str, predicate: Any) -> Message:
    for _ in range(1000):  # a bound, not a wait: each step is one message
        message = await _next(stream, name)
        if predicate(message[1]):
            return message
    raise AssertionError(f"no {name} message matched")


def test_one_stream_follows_every_job_with_ids_progress_and_errors(store: JobStore) -> None:
    async def scenario() -> list[Message]:
        poll = StreamPoll(store, interval_s=0.01)
        stream = poll.iter_activity(None, _scheduler())
        name, ready, _ = await _next(stream)
        assert name == "ready" and ready["last_event_id"] == 0
        first, second = _submit(store, "first"), _submit(store, "second")
        seen = [await _next(stream, "job"), await _next(stream, "job")]
        job, attempt = store.claim_next("w1", lease_s=LEASE_S) or pytest.fail("none claimed")
        store.heartbeat(  # a stage change is a `job` event ...
            job.id, attempt.id, stage="render", frames_done=2, frames_total=10, lease_s=LEASE_S
        )
        await _until(stream, "job", lambda d: d["kind"] == "stage_changed")
        store.heartbeat(  # ... frames alone are progress
            job.id, attempt.id, stage="render", frames_done=5, frames_total=10, lease_s=LEASE_S
        )
        seen.append(await _until(stream, "progress", lambda d: d["job"]["frames_done"] == 5))
        store.succeed(job.id, attempt.id, JobResult("/out.mp4", 0.4, 8, 8, 25.0, 10, 0, 1.0))
        seen.append(await _until(stream, "job", lambda d: d["kind"] == "job_succeeded"))
        job, attempt = store.claim_next("w1", lease_s=LEASE_S) or pytest.fail("none claimed")
        error = ErrorRecord(ErrorCode.NO_FACE, Stage.TRACK, False, "No face in second.mp4.")
        store.fail_attempt(job.id, attempt.id, error, outcome=AttemptOutcome.FAILED, retry_at=None)
        seen.append(await _until(stream, "job", lambda d: d["kind"] == "job_failed"))
        assert {seen[0][1]["job"]["id"], seen[1][1]["job"]["id"]} == {first.id, second.id}
        return seen

    created_a, created_b, progress, succeeded, failed = _run(scenario())

    assert created_a[1]["kind"] == created_b[1]["kind"] == "job_created"
    assert created_a[2] is not None and int(created_a[2]) == created_a[1]["event_id"]
    assert progress[2] is None  # progress is state, not history: no id
    assert progress[1]["job"] | {"updated_at": None, "created_at": None} == {
        "id": progress[1]["job"]["id"],
        "job_kind": "render",
        "template_id": None,
        "state": "running",
        "stage": "render",
        "fraction": 0.5,
        "frames_done": 5,
        "frames_total": 10,
        "attempt": 1,
        "priority": 0,
        "label": None,
        "low_sync": False,
        "created_at": None,
        "updated_at": None,
        "error": None,
    }
    assert succeeded[1]["job"]["state"] == "succeeded"
    assert succeeded[1]["job"]["fraction"] == 1.0
    assert failed[1]["job"]["state"] == "failed"
    assert failed[1]["job"]["error"] == {
        "code": "NO_FACE",
        "stage": "track",
        "message": "No face in second.mp4.",
    }


def test_a_resumed_stream_gets_exactly_the_events_it_missed(store: JobStore) -> None:
    seen = _submit(store, "seen")
    cursor = store.last_event_id()
    missed = [_submit(store, f"missed{i}") for i in range(3)]
    store.request_cancel(seen.id)

    async def scenario() -> tuple[Message, list[Message]]:
        poll = StreamPoll(store, interval_s=0.01)
        stream = poll.iter_activity(cursor, _scheduler())
        ready = await _next(stream)
        return ready, [await _next(stream, "job") for _ in range(4)]

    ready, resumed = _run(scenario())

    assert ready[0] == "ready" and ready[1]["last_event_id"] == cursor
    assert [m[1]["job"]["id"] for m in resumed] == [job.id for job in missed] + [seen.id]
    assert resumed[-1][1]["kind"] == "job_canceled"
    assert [int(m[2] or 0) for m in resumed] == sorted(int(m[2] or 0) for m in resumed)
    assert all(int(m[2] or 0) > cursor for m in resumed)


def test_a_resumed_stream_far_behind_catches_up_page_by_page(store: JobStore) -> None:
    jobs = [_submit(store, f"j{i}") for i in range(activity_stream_page() + 20)]

    async def scenario() -> list[str]:
        poll = StreamPoll(store, interval_s=0.01)
        stream = poll.iter_activity(0, _scheduler())
        await _next(stream, "ready")
        return [(await _next(stream, "job"))[1]["job"]["id"] for _ in jobs]

    assert _run(scenario()) == [job.id for job in jobs]


def activity_stream_page() -> int:
    from talkingface.jobs.activity import EVENT_PAGE

    return EVENT_PAGE


def test_queue_snapshot_orders_queued_jobs_and_estimates_from_recent_runs(
    store: JobStore, clock: Any
) -> None:
    # Given one finished 40-second render and two workers, one of them busy
    done = _submit(store, "done")
    job, attempt = store.claim_next("w0", lease_s=LEASE_S) or pytest.fail("none claimed")
    clock.advance(40)
    store.succeed(job.id, attempt.id, JobResult("/out.mp4", 0.4, 8, 8, 25.0, 10, 0, 1.0))
    low = _submit(store, "low")
    clock.advance(1)
    high = _submit(store, "high", priority=5)
    clock.advance(1)
    later = _submit(store, "later")
    scheduler = _scheduler(workers=2)

    async def scenario() -> dict[str, Any]:
        poll = StreamPoll(store, interval_s=0.01)
        stream = poll.iter_activity(None, scheduler)
        return (await _next(stream, "queue"))[1]

    snapshot = _run(scenario())

    assert done.id not in [item["job_id"] for item in snapshot["items"]]
    assert [item["job_id"] for item in snapshot["items"]] == [high.id, low.id, later.id]
    assert [item["position"] for item in snapshot["items"]] == [1, 2, 3]
    assert snapshot["typical_duration_s"] == 40.0 and snapshot["estimate_basis"] == "recent"
    assert snapshot["worker_slots"] == 2 and snapshot["paused"] is False
    # two idle slots: the first two start now, the third when one of them ends
    assert [item["estimated_start_s"] for item in snapshot["items"]] == [0.0, 0.0, 40.0]
    assert [item["eta_s"] for item in snapshot["items"]] == [40.0, 40.0, 80.0]

    scheduler.paused = True
    paused = _run(scenario())
    assert paused["paused"] is True
    assert all(item["eta_s"] is None for item in paused["items"])


def test_all_streams_share_one_activity_read_per_tick(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    read_activity = activity_stream.read_activity

    def counted(*args: Any, **kwargs: Any) -> Any:  # Any: the reader's own arguments, return
        reads.append(1)
        return read_activity(*args, **kwargs)

    monkeypatch.setattr(activity_stream, "read_activity", counted)

    async def scenario() -> tuple[int, int, list[str]]:
        poll = StreamPoll(store, interval_s=0.05)
        streams = [poll.iter_activity(None, _scheduler()) for _ in range(10)]
        for stream in streams:
            await _next(stream, "ready")
        job = _submit(store, "one")
        ids = [(await _next(stream, "job"))[1]["job"]["id"] for stream in streams]
        assert set(ids) == {job.id}
        before = len(reads)
        ticks_before = poll.ticks
        for stream in streams:  # another round for everyone
            _submit(store, "more")
            await _next(stream, "job")
        return len(reads) - before, poll.ticks - ticks_before, ids

    extra_reads, ticks, _ = _run(scenario())

    # one read per tick, however many streams are open (±1: a read may be in flight when
    # the counts are taken)
    assert ticks > 0 and abs(extra_reads - ticks) <= 1


def test_closing_the_poll_ends_activity_streams_with_a_shutdown_event(store: JobStore) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        poll = StreamPoll(store, interval_s=0.01)
        stream = poll.iter_activity(None, _scheduler())
        await _next(stream, "ready")
        await asyncio.to_thread(poll.close_threadsafe)
        rest = [text async for text in stream]
        after = [text async for text in poll.iter_activity(None, _scheduler())]
        return rest, after

    rest, after = _run(scenario())

    assert "event: shutdown" in rest[-1] and rest[-1].startswith("retry: 5000")
    assert len(after) == 1 and "event: shutdown" in after[0]
