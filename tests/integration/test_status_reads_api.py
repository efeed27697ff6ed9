"""The two status reads of polling clients (GET /v1/jobs/{id}, GET /easy/query) through the
API on both stores: the same answers, and on PostgreSQL a read that waits on the database
never stops the event loop (they are awaited on an asyncio connection there)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from talkingface.api.app import create_app
from talkingface.api.schemas import job_public
from talkingface.errors import ErrorCode, ErrorRecord, Stage, StoreUnavailableError
from talkingface.jobs.records import JobInputs, JobOptions, JobRecord
from talkingface.jobs.states import AttemptOutcome
from talkingface.jobs.status_reads import job_with_attempts_read
from talkingface.jobs.store import JobStore
from tests.integration.api_fixtures import FakeScheduler, make_settings

if TYPE_CHECKING:
    from tests.integration.store_fixtures import FakeClock


def _submit(store: JobStore, code: str) -> JobRecord:
    inputs = JobInputs(audio_path="/in/a.wav", video_path="/in/a.mp4")
    job, _ = store.create(inputs, JobOptions(), idempotency_key=f"heygem:{code}:1")
    return job


def _client(store: JobStore, tmp_path: Path) -> TestClient:
    app = create_app(make_settings(tmp_path), store=store, scheduler=FakeScheduler())
    return TestClient(app, base_url="http://localhost")


def test_status_reads_answer_from_the_store_on_either_backend(
    store: JobStore, tmp_path: Path, clock: FakeClock
) -> None:
    first = _submit(store, "first")
    clock.advance(1)
    retried = _submit(store, "retried")
    claimed = store.claim_next("w1", lease_s=60)
    assert claimed is not None and claimed[0].id == first.id
    lost = ErrorRecord(ErrorCode.WORKER_LOST, Stage.RENDER, True, "the worker died")
    store.fail_attempt(first.id, claimed[1].id, lost, outcome=AttemptOutcome.LOST, retry_at=clock())

    with _client(store, tmp_path) as client:
        body = client.get(f"/v1/jobs/{first.id}").json()
        # every field as the synchronous store read gives it (times, errors, attempts)
        job, attempts = store.get_with_attempts(first.id)
        assert body == json.loads(job_public(job, attempts, "").model_dump_json())
        assert body["id"] == first.id and body["state"] == "queued"
        assert [a["outcome"] for a in body["attempts"]] == [AttemptOutcome.LOST.value]
        assert body["attempts"][0]["error"]["message"] == "the worker died"

        missing = client.get("/v1/jobs/no-such-job")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == ErrorCode.JOB_NOT_FOUND.value

        queued = client.get("/easy/query", params={"code": "retried"}).json()
        assert queued["success"] is True
        # the retried job keeps its place: created first, it runs before the other one
        assert queued["data"]["msg"] == "排队中，前面还有1个任务", queued
        assert client.get("/easy/query", params={"code": "nobody"}).json()["msg"] == "任务不存在"
    assert retried.id != first.id


def test_a_postgresql_read_that_waits_on_a_lock_leaves_the_loop_serving(
    postgres_database: Any, tmp_path: Path
) -> None:
    url = postgres_database()
    store = JobStore(url)
    store.migrate()
    job = _submit(store, "locked")
    assert store.statements_are_awaitable  # the reads take psycopg's asyncio path here
    answers: dict[str, int] = {}
    try:
        with _client(store, tmp_path) as client:
            client.get(f"/v1/jobs/{job.id}").raise_for_status()  # the pool is connected
            # an operator's migration or VACUUM FULL: the table is locked, even for reads
            locker = psycopg.connect(url.replace("+psycopg", ""), autocommit=False)
            locker.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")

            def poll(path: str) -> None:
                answers[path] = client.get(path).status_code

            readers = [
                threading.Thread(target=poll, args=(path,))
                for path in (f"/v1/jobs/{job.id}", "/easy/query?code=locked")
            ]
            for reader in readers:
                reader.start()
            try:
                health = threading.Thread(target=poll, args=("/healthz",))
                health.start()
                health.join(timeout=20)  # a loop blocked by a read would never answer
                assert answers.get("/healthz") == 200, "the event loop waited on the lock"
                # the reads still wait on the lock, and the loop answered beside them
                assert all(reader.is_alive() for reader in readers), answers
            finally:
                locker.rollback()
                locker.close()
            for reader in readers:
                reader.join(timeout=30)
    finally:
        store.close()
    assert answers == {
        "/healthz": 200,
        f"/v1/jobs/{job.id}": 200,
        "/easy/query?code=locked": 200,
    }


def test_a_status_read_of_a_database_that_is_down_says_why() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = JobStore(f"postgresql+psycopg://postgres@127.0.0.1:{port}/talkingface")
    try:
        with pytest.raises(StoreUnavailableError) as raised:
            asyncio.run(store.read_statement_awaited(job_with_attempts_read("any")))
    finally:
        store.close()
    assert f"127.0.0.1:{port}" in raised.value.message
    assert "Connection refused" in raised.value.message  # the reason, not only "timed out"


def test_many_first_reads_at_once_all_answer(postgres_database: Any) -> None:
    url = postgres_database()
    store = JobStore(url)
    store.migrate()
    job = _submit(store, "burst")

    async def burst() -> list[tuple[JobRecord, Any]]:
        reads = [store.read_statement_awaited(job_with_attempts_read(job.id)) for _ in range(24)]
        found = await asyncio.gather(*reads)
        await store.close_awaited_statements()
        return found

    try:
        found = asyncio.run(burst())
    finally:
        store.close()
    assert [record.id for record, _ in found] == [job.id] * 24
