"""The scheduler's success path with a real store and real files: a worker's success after a
cancel request, HeyGem results exposed only for the job that made them, and removed by the
janitor once no job of their code is left.

The executor is a scripted stand-in implementing the Executor protocol, so a success can be
delivered at an exact moment (after a cancel request, or for an older job of a code)."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talkingface.config import Settings
from talkingface.errors import NoFaceError, StoreUnavailableError
from talkingface.executors.base import WorkerInfo
from talkingface.executors.messages import Assignment, Failed, Succeeded, WorkerMessage
from talkingface.janitor import Janitor
from talkingface.jobs.records import JobInputs, JobOptions, JobResult
from talkingface.jobs.states import AttemptOutcome, JobState
from talkingface.jobs.store import JobStore
from talkingface.scheduler import Scheduler
from talkingface.storage.local import LocalStorage
from talkingface.vocabulary import JobId

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


def _run_to_success(scheduler: Scheduler, executor: ScriptedExecutor, video: Path) -> str:
    scheduler.tick()  # dispatch the next queued job
    assignment = executor.finish(video)
    scheduler.tick()  # its success
    return assignment.job_id


def test_a_reused_code_exposes_each_jobs_own_video_at_success(
    store: JobStore,
    clock: FakeClock,
    tmp_path: Path,
    template_clip: Path,
    short_template_clip: Path,
) -> None:
    scheduler, executor = _scheduler(tmp_path, store, clock)
    exposed = scheduler.settings.heygem_temp_dir / "dup1-r.mp4"
    _queue(store, "heygem:dup1:aaaa")
    first = _run_to_success(scheduler, executor, template_clip)
    first_bytes = exposed.read_bytes()
    clock.advance(1)
    _queue(store, "heygem:dup1:bbbb")
    assert exposed.read_bytes() == first_bytes  # untouched while the new job runs

    second = _run_to_success(scheduler, executor, short_template_clip)

    assert store.get(first).state == store.get(second).state == JobState.SUCCEEDED
    assert first_bytes == template_clip.read_bytes()
    assert exposed.read_bytes() == short_template_clip.read_bytes()
    assert exposed.samefile(scheduler.storage.result_path(second))  # a link, not a copy
    assert sorted(p.name for p in exposed.parent.iterdir()) == ["dup1-r.mp4"]


def test_an_older_job_of_a_code_finishing_later_leaves_the_newer_video(
    store: JobStore,
    clock: FakeClock,
    tmp_path: Path,
    template_clip: Path,
    short_template_clip: Path,
) -> None:
    # Given job A of code c failed, then job B of the same code succeeded
    scheduler, executor = _scheduler(tmp_path, store, clock)
    older = _queue(store, "heygem:c:aaaa")
    scheduler.tick()
    attempt = store.attempts(older)[-1]
    error = NoFaceError("No face found in the template.").to_record()
    executor.outbox.append(Failed("w1", JobId(older), attempt.id, error))
    executor.busy = False
    scheduler.tick()
    assert store.get(older).state == JobState.FAILED
    clock.advance(1)
    _queue(store, "heygem:c:bbbb")
    _run_to_success(scheduler, executor, short_template_clip)
    exposed = scheduler.settings.heygem_temp_dir / "c-r.mp4"

    # When A is retried by hand and succeeds
    store.retry(older)
    assert _run_to_success(scheduler, executor, template_clip) == older

    # Then c-r.mp4 still holds B's video: the query describes B, the newest job of the code
    assert store.get(older).state == JobState.SUCCEEDED and attempt.number == 1
    assert exposed.read_bytes() == short_template_clip.read_bytes()


def test_a_canceled_heygem_job_leaves_no_exposed_video(
    store: JobStore, clock: FakeClock, tmp_path: Path, short_template_clip: Path
) -> None:
    scheduler, executor = _scheduler(tmp_path, store, clock)
    job_id = _queue(store, "heygem:gone:aaaa")
    scheduler.tick()
    store.request_cancel(job_id)
    executor.finish(short_template_clip)
    scheduler.tick()

    assert store.get(job_id).state == JobState.CANCELED
    assert not (scheduler.settings.heygem_temp_dir / "gone-r.mp4").exists()


def test_a_temp_folder_that_cannot_take_the_video_fails_the_job_saying_why(
    store: JobStore, clock: FakeClock, tmp_path: Path, short_template_clip: Path
) -> None:
    scheduler, executor = _scheduler(tmp_path, store, clock)
    temp = scheduler.settings.heygem_temp_dir
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_bytes(b"")  # a file where the folder should be
    job_id = _queue(store, "heygem:nofolder:aaaa")

    _run_to_success(scheduler, executor, short_template_clip)

    job = store.get(job_id)
    assert job.state == JobState.FAILED and job.error is not None
    assert "exposing the result" in job.error.message and job.result is None
    assert not scheduler.storage.result_path(job_id).exists()


def test_a_success_the_store_could_not_take_is_applied_again_with_its_file(
    store: JobStore, clock: FakeClock, tmp_path: Path, short_template_clip: Path, monkeypatch: Any
) -> None:
    # Given a HeyGem job whose worker succeeded while the store went away (a database restart)
    scheduler, executor = _scheduler(tmp_path, store, clock)
    job_id = _queue(store, "heygem:pg:aaaa")
    scheduler.tick()
    executor.finish(short_template_clip)
    reads = store.latest_with_key_prefix
    calls = []

    def down_once(prefix: str) -> Any:
        calls.append(prefix)
        if len(calls) == 1:
            raise StoreUnavailableError("The job store cannot be reached (test).")
        return reads(prefix)

    monkeypatch.setattr(store, "latest_with_key_prefix", down_once)

    # When the scheduler applies the success, fails, and applies it again a tick later
    scheduler.tick()
    scheduler.tick()

    # Then the job succeeded with its video, published and exposed, rather than failing
    # INPUT_NOT_FOUND because the first try had thrown its published file away
    job = store.get(job_id)
    assert job.state == JobState.SUCCEEDED, job.error
    assert len(calls) == 2
    assert scheduler.storage.result_path(job_id).read_bytes() == short_template_clip.read_bytes()
    assert (scheduler.settings.heygem_temp_dir / "pg-r.mp4").exists()


def test_the_janitor_removes_a_codes_video_when_its_last_job_expires(
    store: JobStore, clock: FakeClock, tmp_path: Path, short_template_clip: Path
) -> None:
    # Given code "old" whose only job finished past retention, code "kept" whose older job
    # expired but whose newer job is still queued, code "new" finished today, and a file of
    # the client's own in the shared temp folder
    scheduler, executor = _scheduler(tmp_path, store, clock)
    retention = timedelta(seconds=scheduler.settings.api.result_retention_s)
    temp = scheduler.settings.heygem_temp_dir
    clock.now = datetime.now(UTC) - retention - timedelta(days=1)
    _queue(store, "heygem:old:aaaa")
    _run_to_success(scheduler, executor, short_template_clip)
    _queue(store, "heygem:kept:aaaa")
    _run_to_success(scheduler, executor, short_template_clip)
    clock.now = datetime.now(UTC)
    _queue(store, "heygem:new:aaaa")
    _run_to_success(scheduler, executor, short_template_clip)
    _queue(store, "heygem:kept:bbbb")
    (temp / "clients-own-r.mp4").write_bytes(b"not ours")
    assert {"old-r.mp4", "kept-r.mp4", "new-r.mp4"} <= {p.name for p in temp.iterdir()}

    # When the janitor runs
    Janitor(scheduler.settings, store, scheduler.storage).run()

    # Then only the video of the code with no job left is gone
    assert sorted(p.name for p in temp.iterdir()) == [
        "clients-own-r.mp4",
        "kept-r.mp4",
        "new-r.mp4",
    ]
    assert store.latest_with_key_prefix("heygem:old:") is None


def test_the_janitor_removes_abandoned_staging_copies_only(
    store: JobStore, clock: FakeClock, tmp_path: Path
) -> None:
    # Given a staging copy a server killed mid-exposure left two hours ago, one being written
    # now, and a client's own dot-file and folder that look alike
    scheduler, _ = _scheduler(tmp_path, store, clock)
    temp = scheduler.settings.heygem_temp_dir
    temp.mkdir(parents=True)
    abandoned = temp / ".c-r.mp4.0123abcd.partial"
    fresh = temp / ".d-r.mp4.4567ef01.partial"
    clients = [temp / ".notes.partial", temp / ".e-r.mp4.folder.partial"]
    for path in (abandoned, fresh, clients[0]):
        path.write_bytes(b"partial video")
    clients[1].mkdir()
    two_hours_ago = time.time() - 7200
    for path in (abandoned, *clients):
        os.utime(path, (two_hours_ago, two_hours_ago))

    Janitor(scheduler.settings, store, scheduler.storage).run()

    assert not abandoned.exists()
    assert fresh.exists() and all(path.exists() for path in clients)
