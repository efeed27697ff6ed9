"""The scheduler's success path with a real store and real files: a worker's success after a
cancel request, and HeyGem results exposed only for the job that made them.

The executor is a scripted stand-in implementing the Executor protocol, so a success can be
delivered at an exact moment (after a cancel request, or for an older job of a code)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from talkingface.config import Settings
from talkingface.executors.base import WorkerInfo
from talkingface.executors.messages import Assignment, Succeeded, WorkerMessage
from talkingface.jobs.records import JobInputs, JobOptions, JobResult
from talkingface.jobs.states import AttemptOutcome, JobState
from talkingface.jobs.store import JobStore
from talkingface.scheduler import Scheduler
from talkingface.storage.local import LocalStorage

if TYPE_CHECKING:
    from tests.integration.store_fixtures import FakeClock


@dataclass
class ScriptedExecutor:
    """One worker that runs nothing: the test writes its output and queues its messages."""

    assignments: list[Assignment] = field(default_factory=list)
    outbox: list[WorkerMessage] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    busy: bool = False

    def start(self) -> None:
        """Nothing to spawn."""

    def idle_worker(self) -> str | None:
        return None if self.busy else "w1"

    def start_attempt(self, worker_id: str, assignment: Assignment) -> None:
        self.busy = True
        self.assignments.append(assignment)

    def cancel_attempt(self, attempt_id: str, reason: str) -> None:
        self.canceled.append(attempt_id)
        self.busy = False

    def poll(self, timeout_s: float) -> list[WorkerMessage]:
        messages, self.outbox = self.outbox, []
        return messages

    def workers(self) -> list[WorkerInfo]:
        return []

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Nothing to stop."""

    def finish(self, output: Path) -> Assignment:
        """The running attempt writes `output` as its result and reports success."""
        assignment = self.assignments[-1]
        shutil.copy(output, assignment.output_path)
        result = JobResult(assignment.output_path, 1.0, 256, 256, 25.0, 25, 0, 0.5)
        self.outbox.append(Succeeded("w1", assignment.job_id, assignment.attempt_id, result))
        self.busy = False
        return assignment


def _scheduler(
    tmp_path: Path, store: JobStore, clock: FakeClock
) -> tuple[Scheduler, ScriptedExecutor]:
    clock.now = datetime.now(UTC)  # the janitor and recovery compare the store's times with now
    settings = Settings(data_dir=tmp_path / "data", api={"min_free_disk_bytes": 0})
    executor = ScriptedExecutor()
    storage = LocalStorage(settings.data_dir)
    return Scheduler(settings, store, executor=executor, storage=storage), executor


def _queue(store: JobStore, key: str | None = None) -> str:
    inputs = JobInputs(audio_path="/in/a.wav", video_path="/in/v.mp4")
    job, created = store.create(inputs, JobOptions(), idempotency_key=key)
    assert created
    return job.id


def test_a_success_after_a_202_cancel_ends_canceled_and_removes_the_result(
    store: JobStore, clock: FakeClock, tmp_path: Path, short_template_clip: Path
) -> None:
    scheduler, executor = _scheduler(tmp_path, store, clock)
    job_id = _queue(store)
    scheduler.tick()  # dispatched
    assert store.get(job_id).state == JobState.RUNNING

    # the cancel is accepted while the worker is writing its last frames; its success
    # reaches the scheduler in the same tick as the cancel check
    assert store.request_cancel(job_id).cancel_requested
    executor.finish(short_template_clip)
    scheduler.tick()

    job = store.get(job_id)
    assert job.state == JobState.CANCELED and job.result is None
    assert store.attempts(job_id)[-1].outcome == AttemptOutcome.CANCELED
    results = scheduler.storage.results_root
    assert not scheduler.storage.result_path(job_id).exists()
    assert [p.name for p in results.iterdir()] == []  # no published or partial file left
