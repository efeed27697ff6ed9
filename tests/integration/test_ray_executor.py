"""The ray executor on a real (one-node, two-CPU) Ray, driven by the real scheduler and store."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import ray  # the dev extra installs it (pyproject): never skipped

from talkingface.config import Settings
from talkingface.errors import ErrorCode
from talkingface.executors.ray_executor import RayExecutor
from talkingface.jobs.records import JobInputs, JobOptions, JobRecord
from talkingface.jobs.states import TERMINAL_STATES, AttemptOutcome, JobState, WorkerState
from talkingface.jobs.store import JobStore
from talkingface.scheduler import Scheduler
from tests.integration.service_fixtures import wait_until
from tests.media import read_stream_facts

DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A private one-node Ray for this module: 2 CPUs, no dashboard, its own temp dir (short:
    Ray's socket paths must fit in 107 bytes)."""
    temp_dir = tempfile.mkdtemp(prefix="tfray-", dir="/tmp")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace="talkingface-tests",
        logging_level="warning",
        log_to_driver=False,
        _temp_dir=temp_dir,
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def settings(tmp_path: Path, speech_wav: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        cache={"dir": tmp_path / "cache"},
        logging={"level": "error"},
        api={"input_roots": [speech_wav.parent], "min_free_disk_bytes": 0},
        workers={
            "executor": "ray",
            "count": 2,
            "heartbeat_s": 0.5,
            # 10 s: an actor's beat reaches the scheduler through a Ray call, and under a full
            # make test on 2 cores it lagged past 3 s (6 beats), so a healthy actor was replaced
            # (the chaos campaign saw the same; docs/chaos.md). Kills are seen by Ray at once.
            "lost_after_beats": 20,
            "stall_s": 2.0,
            "ready_timeout_s": 60.0,
            "allow_faults": True,
        },
        retry={"backoff_base_s": 0.1, "backoff_max_s": 0.2, "jitter": 0.0},
    )


@pytest.fixture
def service(settings: Settings, local_ray: None) -> Iterator[tuple[Scheduler, JobStore]]:
    """The scheduler on a SQLite store with the ray executor, its actors ready."""
    store = JobStore(settings.database_url)
    store.migrate()
    scheduler = Scheduler(settings, store, executor=RayExecutor(settings)).start()
    try:
        wait_until(
            lambda: [w.state for w in scheduler.workers()] == [WorkerState.READY] * 2,
            timeout_s=DEADLINE_S,
            what="two ready actors",
        )
        yield scheduler, store
    finally:
        scheduler.stop()
        store.close()


def _submit(store: JobStore, audio: Path, video: Path, fault: str | None = None) -> str:
    job, _ = store.create(JobInputs(str(audio), str(video), 2.0), JobOptions(fault=fault))
    return job.id


def _ended(store: JobStore, job_id: str) -> JobRecord:
    def ended() -> JobRecord | None:
        job = store.get(job_id)
        return job if job.state in TERMINAL_STATES else None

    job: JobRecord = wait_until(ended, timeout_s=DEADLINE_S, what=f"job {job_id} to end")
    return job


def _running_with_progress(store: JobStore, job_id: str) -> JobRecord:
    def moving() -> JobRecord | None:
        job = store.get(job_id)
        return job if job.state is JobState.RUNNING and job.frames_done > 0 else None

    job: JobRecord = wait_until(moving, timeout_s=DEADLINE_S, what=f"job {job_id} to progress")
    return job


def _pid_of(scheduler: Scheduler, job_id: str) -> int:
    (pid,) = [w.pid for w in scheduler.workers() if w.job_id == job_id]
    assert pid is not None
    return pid


def test_jobs_run_to_playable_results_on_warm_actors_of_the_ray_node(
    service: tuple[Scheduler, JobStore], speech_wav: Path, short_template_clip: Path
) -> None:
    scheduler, store = service
    node = ray.get_runtime_context().get_node_id()
    # Given two ready actors on this Ray node, each with its engine loaded once
    workers = scheduler.workers()
    assert {w.node for w in workers} == {node}
    pids = {w.pid for w in workers}
    # When three jobs are submitted (one more than there are actors)
    job_ids = [_submit(store, speech_wav, short_template_clip) for _ in range(3)]
    # Then all three succeed with playable results, in one attempt each
    for job_id in job_ids:
        job = _ended(store, job_id)
        assert job.state is JobState.SUCCEEDED, job.error
        assert job.result is not None
        assert read_stream_facts(Path(job.result.path)).frame_count == job.result.frame_count
        (attempt,) = store.attempts(job_id)
        assert attempt.worker in {w.id for w in workers}
    # and they ran in the same warm actors: none was replaced, three jobs done between them
    assert {w.pid for w in scheduler.workers()} == pids
    assert sum(w.jobs_done for w in scheduler.workers()) == 3


def test_a_cancel_kills_the_actor_and_its_replacement_serves_the_next_job(
    service: tuple[Scheduler, JobStore], speech_wav: Path, short_template_clip: Path
) -> None:
    scheduler, store = service
    # Given a job hanging in an actor (its renderer blocks; heartbeats go on)
    job_id = _submit(store, speech_wav, short_template_clip, fault="hang")
    _running_with_progress(store, job_id)
    pid = _pid_of(scheduler, job_id)
    worker_id = next(w.id for w in scheduler.workers() if w.job_id == job_id)
    # When it is canceled
    store.request_cancel(job_id)
    # Then the job ends canceled, the actor's process is killed and a new actor replaces it
    assert _ended(store, job_id).state is JobState.CANCELED
    wait_until(lambda: not psutil.pid_exists(pid), timeout_s=DEADLINE_S, what="the actor killed")
    wait_until(
        lambda: [w.state for w in scheduler.workers()] == [WorkerState.READY] * 2,
        timeout_s=DEADLINE_S,
        what="a replacement actor",
    )
    assert worker_id not in {w.id for w in scheduler.workers()}
    # and the next jobs succeed
    for job_id in [_submit(store, speech_wav, short_template_clip) for _ in range(2)]:
        assert _ended(store, job_id).state is JobState.SUCCEEDED


def test_an_actor_killed_mid_job_is_worker_lost_and_the_retry_succeeds_without_ray_retries(
    service: tuple[Scheduler, JobStore], speech_wav: Path, short_template_clip: Path
) -> None:
    scheduler, store = service
    # Given a job rendering in an actor
    job_id = _submit(store, speech_wav, short_template_clip)
    _running_with_progress(store, job_id)
    pid = _pid_of(scheduler, job_id)
    lost_worker = next(w.id for w in scheduler.workers() if w.job_id == job_id)
    # When the actor's process is SIGKILLed
    os.kill(pid, signal.SIGKILL)
    # Then the attempt is WORKER_LOST, and the job layer's retry succeeds on another actor
    job = _ended(store, job_id)
    assert job.state is JobState.SUCCEEDED, job.error
    first, second = store.attempts(job_id)  # exactly two: Ray re-ran nothing by itself
    assert first.outcome is AttemptOutcome.LOST
    assert first.error is not None and first.error.code is ErrorCode.WORKER_LOST
    assert first.worker == lost_worker
    assert second.outcome is AttemptOutcome.SUCCEEDED and second.worker != lost_worker
    # and Ray did not restart the dead actor: its id is gone, its slot has a new actor
    wait_until(
        lambda: [w.state for w in scheduler.workers()] == [WorkerState.READY] * 2,
        timeout_s=DEADLINE_S,
        what="a replacement actor",
    )
    assert lost_worker not in {w.id for w in scheduler.workers()}
    assert pid not in {w.pid for w in scheduler.workers()}


def test_the_ray_executor_without_ray_installed_says_how_to_install_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkingface.errors import ConfigError
    from talkingface.executors.base import get_executor

    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # import ray → ImportError
    with pytest.raises(ConfigError) as raised:
        get_executor("ray", settings)
    assert raised.value.code is ErrorCode.CONFIG_INVALID
    assert "pip install 'talkingface[ray]'" in raised.value.message


def test_a_job_goes_to_the_idle_actor_that_already_ran_its_template(
    service: tuple[Scheduler, JobStore],
    speech_wav: Path,
    short_template_clip: Path,
    template_clip: Path,
) -> None:
    scheduler, store = service
    # Given two actors that each ran one template (submitted together: one each)
    first = _submit(store, speech_wav, short_template_clip)
    second = _submit(store, speech_wav, template_clip)
    for job_id in (first, second):
        assert _ended(store, job_id).state is JobState.SUCCEEDED
    (ran_first,) = store.attempts(first)
    (ran_second,) = store.attempts(second)
    assert ran_first.worker != ran_second.worker
    # When both are idle (the store records a job's end before the executor has collected the
    # actor's reply: until then only the other actor is idle) and a job with the second
    # template arrives
    wait_until(
        lambda: [w.state for w in scheduler.workers()] == [WorkerState.READY] * 2,
        timeout_s=DEADLINE_S,
        what="both actors idle again",
    )
    again = _submit(store, speech_wav, template_clip)
    assert _ended(store, again).state is JobState.SUCCEEDED
    # Then it ran in the actor that had that template, not simply the first idle one
    (ran_again,) = store.attempts(again)
    assert ran_again.worker == ran_second.worker


def test_interrupt_ends_a_poll_that_is_waiting_on_actors(
    settings: Settings, local_ray: None
) -> None:
    # Given actors that can never be placed (they ask for a resource no node has), so
    # nothing an actor sends could end the poll
    unplaceable = settings.model_copy(
        update={
            "workers": settings.workers.model_copy(
                update={"ray_actor_resources": {"no-such-node": 1.0}}
            )
        }
    )
    executor = RayExecutor(unplaceable)
    executor.start()
    try:
        # When another thread interrupts a 10 s poll after 0.3 s
        timer = threading.Timer(0.3, executor.interrupt)
        began_s = time.monotonic()
        timer.start()
        messages = executor.poll(10.0)
        waited_s = time.monotonic() - began_s
        timer.join()
        # Then the poll ends at once, with nothing to say
        assert messages == []
        assert waited_s < 2.0, f"the poll went on {waited_s:.1f} s after interrupt()"
        # and an interrupt that comes between polls ends the next one at once
        executor.interrupt()
        began_s = time.monotonic()
        executor.poll(10.0)
        assert time.monotonic() - began_s < 2.0
    finally:
        executor.shutdown()
