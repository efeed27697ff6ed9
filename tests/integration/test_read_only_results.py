"""A read-only results directory (a real read-only mount): the job ends or is retried with a
true error, the scheduler keeps ticking, dispatch waits, and /readyz says why."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from bench.chaos.processes import ChaosSetupError, ReadOnlyBind, Tmpfs

from talkingface.config import Settings
from talkingface.errors import ErrorCode, ErrorRecord, Stage, TalkingFaceError
from talkingface.executors.base import WorkerInfo
from talkingface.executors.messages import Assignment, Failed, Succeeded, WorkerMessage
from talkingface.jobs.records import JobInputs, JobOptions, JobResult
from talkingface.jobs.states import JobState
from talkingface.jobs.store import JobStore
from talkingface.media.encode import VideoWriter
from talkingface.scheduler import Scheduler
from talkingface.storage.local import LocalStorage
from tests.integration.service_fixtures import Service, wait_until

ServiceFactory = Callable[..., Service]


@pytest.fixture
def results_mount(tmp_path: Path) -> Iterator[Tmpfs]:
    """<tmp>/data/results on its own tmpfs, which the test can remount read-only."""
    if os.geteuid() != 0:
        pytest.skip("a read-only mount needs root (CI runs as root)")
    disk = Tmpfs(tmp_path / "data" / "results", size_mb=32)
    try:
        disk.mount()
    except ChaosSetupError as exc:
        pytest.skip(f"mounting a tmpfs is not permitted here: {exc}")
    yield disk
    disk.set_read_only(False)
    disk.unmount()


@dataclass
class ScriptedExecutor:
    """The Executor protocol without processes: one worker, messages fed by the test."""

    inbox: list[WorkerMessage] = field(default_factory=list)
    assignments: list[Assignment] = field(default_factory=list)
    busy: bool = False

    def start(self) -> None:
        return None

    def idle_worker(self) -> str | None:
        return None if self.busy else "w1"

    def start_attempt(self, worker_id: str, assignment: Assignment) -> None:
        self.busy = True
        self.assignments.append(assignment)

    def cancel_attempt(self, attempt_id: str, reason: str) -> None:
        self.busy = False

    def poll(self, timeout_s: float) -> list[WorkerMessage]:
        messages, self.inbox = self.inbox, []
        if any(isinstance(m, Succeeded | Failed) for m in messages):
            self.busy = False
        return messages

    def workers(self) -> list[WorkerInfo]:
        return []

    def shutdown(self, timeout_s: float = 5.0) -> None:
        return None


def _scheduler(tmp_path: Path) -> tuple[Scheduler, ScriptedExecutor, JobStore]:
    settings = Settings(
        data_dir=tmp_path / "data",
        retry={"backoff_base_s": 0.0, "jitter": 0.0},
        cache={"enabled": False},
    )
    store = JobStore(settings.database_url)
    store.migrate()
    executor = ScriptedExecutor()
    storage = LocalStorage(settings.data_dir)
    return Scheduler(settings, store, executor=executor, storage=storage), executor, store


def _job(store: JobStore) -> str:
    job, _ = store.create(JobInputs("/in/a.wav", "/in/v.mp4", 1.0), JobOptions())
    return job.id


def _result(path: str) -> JobResult:
    return JobResult(path, 1.0, 128, 128, 25.0, 25, 0, 0.5)


def test_a_failure_reported_while_results_are_read_only_is_recorded_and_ticks_go_on(
    tmp_path: Path, results_mount: Tmpfs
) -> None:
    # Given a running attempt whose partial result is on the results mount
    scheduler, executor, store = _scheduler(tmp_path)
    job_id = _job(store)
    scheduler.tick()
    (assignment,) = executor.assignments
    partial = Path(assignment.output_path)
    partial.write_bytes(b"half a video")

    # When the mount turns read-only and the worker reports that it cannot write its output
    results_mount.set_read_only(True)
    error = ErrorRecord(
        ErrorCode.OUTPUT_INVALID, Stage.PROBE, False, f"Cannot write {partial}: read-only."
    )
    executor.inbox.append(Failed("w1", assignment.job_id, assignment.attempt_id, error))
    scheduler.tick()  # raised OSError(EROFS) before: the failure was never recorded

    # Then the job ends with the worker's error, not `running` with idle workers
    job = store.get(job_id)
    assert job.state is JobState.FAILED
    assert store.attempts(job_id)[0].error is not None
    assert store.attempts(job_id)[0].error.code is ErrorCode.OUTPUT_INVALID
    # and the scheduler holds new work and says why while results cannot be written
    second = _job(store)
    reason = scheduler.storage.results_unwritable_reason()
    assert reason is not None and "read-only" in reason
    for _ in range(3):
        scheduler.tick()
    assert store.get(second).state is JobState.QUEUED and len(executor.assignments) == 1

    # When the mount is writable again, the leftover partial goes and the next job starts
    results_mount.set_read_only(False)
    scheduler.run_janitor()
    assert not partial.exists()
    scheduler.tick()
    assert store.get(second).state is JobState.RUNNING
    store.close()


def test_a_result_that_cannot_be_published_is_retried_with_a_storage_error(
    tmp_path: Path, results_mount: Tmpfs
) -> None:
    # Given a worker that finished writing its result
    scheduler, executor, store = _scheduler(tmp_path)
    job_id = _job(store)
    scheduler.tick()
    (first,) = executor.assignments
    Path(first.output_path).write_bytes(b"a whole video")

    # When it reports success while the results mount is read-only
    results_mount.set_read_only(True)
    executor.inbox.append(Succeeded("w1", first.job_id, first.attempt_id, _result("")))
    scheduler.tick()  # raised OSError(EROFS) from the publishing rename before

    # Then the attempt ends with a retryable storage error naming the cause
    attempt = store.attempts(job_id)[0]
    assert attempt.error is not None and attempt.error.code is ErrorCode.STORAGE_UNAVAILABLE
    assert attempt.error.retryable and "Read-only file system" in attempt.error.message
    assert store.get(job_id).state is JobState.QUEUED

    # and once writable the retry runs and its result is published
    results_mount.set_read_only(False)
    wait_until(lambda: _dispatched_twice(scheduler, executor), timeout_s=10, what="the retry")
    second = executor.assignments[1]
    Path(second.output_path).write_bytes(b"a whole video")
    executor.inbox.append(Succeeded("w1", second.job_id, second.attempt_id, _result("")))
    scheduler.tick()
    job = store.get(job_id)
    assert job.state is JobState.SUCCEEDED and job.result is not None
    assert Path(job.result.path).read_bytes() == b"a whole video"
    store.close()


def _dispatched_twice(scheduler: Scheduler, executor: ScriptedExecutor) -> bool:
    scheduler.tick()
    return len(executor.assignments) == 2


def test_readyz_reports_read_only_results_and_the_job_waits_for_them(
    service_factory: ServiceFactory,
    results_mount: Tmpfs,
    speech_wav: Path,
    short_template_clip: Path,
    tmp_path: Path,
) -> None:
    service = service_factory(data_dir=tmp_path / "data")
    results_mount.set_read_only(True)

    # /readyz names the read-only results directory
    ready = service.http.get("/readyz")
    assert ready.status_code == 503
    check = ready.json()["checks"]["results"]
    assert check["ok"] is False and "read-only" in check["message"]

    # a job submitted meanwhile waits instead of failing
    with speech_wav.open("rb") as a, short_template_clip.open("rb") as v:
        submitted = service.http.post(
            "/v1/jobs", files={"audio": ("a.wav", a), "video": ("v.mp4", v)}
        )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    wait_until(lambda: "dispatch_held_storage" in service.log(), timeout_s=30, what="dispatch held")
    held = service.job(job_id)
    assert held["state"] == "queued" and held["attempts"] == []

    # and runs once the directory is writable again
    results_mount.set_read_only(False)
    done = service.wait_state(job_id, "succeeded", "failed")
    assert done["state"] == "succeeded", done["error"]
    assert service.http.get("/readyz").status_code == 200


def test_an_output_finished_on_a_read_only_results_dir_is_a_storage_error(
    tmp_path: Path,
) -> None:
    """The encoder cannot publish nor remove its partial file: the publish error (retryable
    STORAGE_UNAVAILABLE) must survive the clean-up, not turn into an INTERNAL OSError."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (CI runs as root)")
    # Given an output being written in the results directory
    results = tmp_path / "results"
    results.mkdir()
    writer = VideoWriter(results / "out.mp4", width=64, height=64, fps=25.0)
    for _ in range(5):
        writer.write(np.full((64, 64, 3), 128, np.uint8))
    # When the directory turns read-only before the output is finished
    read_only = ReadOnlyBind(results)
    read_only.hold()
    try:
        with pytest.raises(TalkingFaceError) as caught:
            writer.close()
    finally:
        read_only.release()

    # Then the error says the storage is unavailable, and the job would be retried
    assert caught.value.code is ErrorCode.STORAGE_UNAVAILABLE, caught.value.message
    assert caught.value.retryable
    assert "Read-only file system" in caught.value.message
    assert not (results / "out.mp4").exists()
