"""Two servers and one data directory (a rolling deploy): the second refuses to start, and no
janitor deletes the partial result of an attempt that another scheduler runs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from talkingface.config import Settings
from talkingface.errors import ErrorCode, ErrorRecord
from talkingface.executors.local import LocalExecutor
from talkingface.jobs.records import JobInputs, JobOptions
from talkingface.jobs.states import AttemptOutcome
from talkingface.jobs.store import JobStore
from talkingface.samples import synth_speech, write_wav
from talkingface.scheduler import Scheduler
from talkingface.storage.local import LocalStorage
from tests.integration.service_fixtures import FAST_SETTINGS, Service, free_port

ServiceFactory = Callable[..., Service]


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shared-data-dir") / "long.wav"
    return write_wav(path, synth_speech(8.0, seed=5).samples_f32, 16000)


def test_a_second_server_on_the_same_data_dir_refuses_and_the_first_job_succeeds(
    service_factory: ServiceFactory,
    long_speech: Path,
    short_template_clip: Path,
    tmp_path: Path,
) -> None:
    # Given a server rendering a job
    first = service_factory()
    with long_speech.open("rb") as a, short_template_clip.open("rb") as v:
        submitted = first.http.post(
            "/v1/jobs", files={"audio": ("long.wav", a), "video": ("face.mp4", v)}
        )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    first.wait_state(job_id, "running", "succeeded", "failed")

    # When a second server is started on the same data directory
    command = [sys.executable, "-m", "talkingface", "serve", "--port", str(free_port())]
    command += ["--data-dir", str(first.data_dir)]
    second = subprocess.Popen(
        command,
        env={**first.env, **FAST_SETTINGS},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = second.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        second.kill()
        second.communicate(timeout=10)
        pytest.fail("a second server on the same data directory started instead of refusing")

    # Then it refuses at once, naming the server that holds the directory
    assert second.returncode == 2, stderr
    assert "CONFIG_INVALID" in stderr and f"pid {first.process.pid}" in stderr, stderr
    assert str(first.data_dir) in stderr and "--data-dir" in stderr
    # and the first server's job is untouched
    done = first.wait_state(job_id, "succeeded", "failed", timeout_s=120)
    assert done["state"] == "succeeded", done["error"]
    assert len(done["attempts"]) == 1


def test_the_janitor_spares_partials_of_attempts_that_another_scheduler_runs(
    store: JobStore, tmp_path: Path
) -> None:
    # Given an attempt claimed by another server's worker, writing its partial result
    settings = Settings(data_dir=tmp_path / "data")
    storage = LocalStorage(settings.data_dir)
    job, _ = store.create(JobInputs("/in/a.wav", "/in/v.mp4", 1.0), JobOptions())
    claimed = store.claim_next("other-server-w1", lease_s=60)
    assert claimed is not None
    _, attempt = claimed
    partial = storage.partial_result_path(job.id, attempt.id)
    partial.parent.mkdir(parents=True)
    encoder_temp = partial.with_name(f".{partial.name}.partial-4242")
    partial.write_bytes(b"moov")
    encoder_temp.write_bytes(b"frames being written")
    input_pins = partial.with_name(f".{partial.name}.pins-4242")
    (input_pins / "audio").mkdir(parents=True)
    janitor = Scheduler(settings, store, executor=LocalExecutor(settings), storage=storage)

    # When this scheduler's janitor runs
    janitor.run_janitor()

    # Then the running attempt's files are kept
    assert partial.exists() and encoder_temp.exists() and input_pins.exists()

    # and once that attempt has ended they are orphans, and removed
    error = ErrorRecord(ErrorCode.WORKER_LOST, None, True, "the other server stopped")
    store.fail_attempt(job.id, attempt.id, error, outcome=AttemptOutcome.LOST, retry_at=None)
    janitor.run_janitor()
    assert not partial.exists() and not encoder_temp.exists() and not input_pins.exists()
