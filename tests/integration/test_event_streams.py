"""Job event streams over the real store: each stream gets its own job's history, live
transitions and progress, and all open streams share one store read per poll."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from talkingface.api.events_stream import StreamPoll, iter_job_stream
from talkingface.jobs.records import JobInputs, JobOptions, JobRecord, JobResult
from talkingface.jobs.store import JobStore

if TYPE_CHECKING:
    from tests.integration.store_fixtures import FakeClock

LEASE_S = 15.0


def _submit(store: JobStore, name: str) -> JobRecord:
    inputs = JobInputs(audio_path=f"/in/{name}.wav", video_path=f"/in/{name}.mp4")
    job, _ = store.create(inputs, JobOptions())
    return job


async def _next_message(stream: AsyncIterator[str]) -> tuple[str, dict[str, Any]]:
    """The next event or progress message (retry and keep-alive lines skipped)."""
    async for text in stream:
        fields = dict(line.split(": ", 1) for line in text.strip().splitlines() if ": " in line)
        if "event" in fields:
            return fields["event"], json.loads(fields["data"])
    raise AssertionError("the stream ended")


async def _read_to_end(stream: AsyncIterator[str]) -> list[str]:
    kinds = []
    async for text in stream:
        kinds += [line[len("event: ") :] for line in text.splitlines() if line.startswith("event:")]
    return kinds


def test_each_stream_gets_its_own_jobs_transitions_and_progress(
    store: JobStore, clock: FakeClock
) -> None:
    first = _submit(store, "first")
    clock.advance(1)  # claimed first
    second = _submit(store, "second")

    async def scenario() -> tuple[list[str], list[str]]:
        poll = StreamPoll(store, interval_s=0.01)
        one, two = iter_job_stream(poll, first.id, 0), iter_job_stream(poll, second.id, 0)
        for stream in (one, two):
            assert (await _next_message(stream))[0] == "job_created"
        job, attempt = store.claim_next("w1", lease_s=LEASE_S) or pytest.fail("nothing claimed")
        assert job.id == first.id
        store.heartbeat(
            job.id, attempt.id, stage="render", frames_done=5, frames_total=10, lease_s=LEASE_S
        )
        kind, data = await _next_message(one)
        while not (kind == "progress" and data["frames_done"] == 5):  # live, before the end
            kind, data = await _next_message(one)
        assert data["stage"] == "render" and data["state"] == "running"
        store.succeed(job.id, attempt.id, JobResult("/out.mp4", 0.4, 8, 8, 25.0, 10, 0, 1.0))
        store.request_cancel(second.id)
        return await _read_to_end(one), await _read_to_end(two)

    rest_of_first, rest_of_second = asyncio.run(scenario())

    assert rest_of_first[-1] == "job_succeeded"
    assert "job_canceled" not in rest_of_first
    assert rest_of_second[-1] == "job_canceled"
    assert not {"attempt_started", "stage_changed", "job_succeeded"} & set(rest_of_second)


def test_open_streams_share_one_store_read_per_poll(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [_submit(store, f"job{i}") for i in range(20)]
    shared_reads: list[int] = []  # how many jobs each shared read covered
    own_reads: list[str] = []
    read_many, read_one = store.jobs_with_events, store.job_with_events

    def counted_many(after_ids: Mapping[str, int]) -> Any:  # Any: the store's own return
        shared_reads.append(len(after_ids))
        return read_many(after_ids)

    def counted_one(job_id: str, **kwargs: Any) -> Any:  # Any: keyword arguments, return
        own_reads.append(job_id)
        return read_one(job_id, **kwargs)

    monkeypatch.setattr(store, "jobs_with_events", counted_many)
    monkeypatch.setattr(store, "job_with_events", counted_one)

    async def scenario() -> list[list[str]]:
        poll = StreamPoll(store, interval_s=0.01)
        streams = [iter_job_stream(poll, job.id, 0) for job in jobs]
        for stream in streams:  # history and first progress
            await _next_message(stream)
            await _next_message(stream)
        # every stream follows the shared poll now; let it tick with all of them open before
        # any ends (cancelling first let some streams end before others joined the poll)
        readers = [asyncio.ensure_future(_read_to_end(stream)) for stream in streams]
        for _ in range(1000):  # at most ~10 s; the assertion below says what was missed
            if shared_reads and shared_reads[-1] == len(jobs):
                break
            await asyncio.sleep(0.01)
        for job in jobs:
            store.request_cancel(job.id)
        return list(await asyncio.gather(*readers))

    endings = asyncio.run(scenario())

    assert all(kinds[-1] == "job_canceled" for kinds in endings)
    assert sorted(own_reads) == sorted(job.id for job in jobs)  # the history read, once each
    assert max(shared_reads) == len(jobs)  # then one read for all of them per poll


def test_closing_the_poll_ends_open_and_new_streams_with_a_shutdown_event(
    store: JobStore,
) -> None:
    jobs = [_submit(store, f"job{i}") for i in range(3)]

    async def scenario() -> tuple[list[list[str]], list[str]]:
        poll = StreamPoll(store, interval_s=0.01)
        streams = [iter_job_stream(poll, job.id, 0) for job in jobs]
        for stream in streams:
            assert (await _next_message(stream))[0] == "job_created"
        readers = [asyncio.ensure_future(_read_to_end(stream)) for stream in streams]
        # a signal handler runs outside the loop's own callbacks: close from another thread
        await asyncio.to_thread(poll.close_threadsafe)
        ended = list(await asyncio.gather(*readers))
        return ended, await _read_to_end(iter_job_stream(poll, jobs[0].id, 0))

    ended, opened_after = asyncio.run(scenario())

    assert all(kinds[-1] == "shutdown" for kinds in ended)
    assert opened_after == ["shutdown"]
    assert all(job.state.value == "queued" for job in (store.get(j.id) for j in jobs))
