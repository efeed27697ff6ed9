"""A job's quality figures: a child process measures them (failures and timeouts are stored
as such), and their folder lives beside the result: deleted with the job's files, and never
taken for an orphan while its job exists."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from talkingface.api.quality_runs import QualityRuns
from talkingface.config import EvaluateSettings
from talkingface.jobs.records import JobRecord
from talkingface.storage.local import LocalStorage
from tests.integration.service_fixtures import wait_until


def _quality_folder(storage: LocalStorage, job_id: str) -> Path:
    folder = storage.quality_dir(job_id)
    folder.mkdir(parents=True)
    (folder / "quality.json").write_text("{}", encoding="utf-8")
    os.utime(folder, (0, 0))  # old enough for the orphan sweep
    return folder


def test_deleting_a_jobs_files_removes_its_quality_folder(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    folder = _quality_folder(storage, "a" * 32)

    storage.delete_job_files("a" * 32)

    assert not folder.exists()


def test_the_orphan_sweep_spares_the_quality_of_known_jobs_only(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    known = _quality_folder(storage, "a" * 32)
    orphan = _quality_folder(storage, "b" * 32)

    assert storage.orphan_paths({"a" * 32}) == [orphan]
    assert known.exists()


def _job(tmp_path: Path, result: Path, audio: Path) -> JobRecord:
    from talkingface.jobs.records import JobInputs, JobOptions
    from talkingface.jobs.states import JobState
    from talkingface.vocabulary import JobId

    now = datetime.now(UTC)
    return JobRecord(
        id=JobId("c" * 32),
        idempotency_key=None,
        state=JobState.SUCCEEDED,
        priority=0,
        inputs=JobInputs(audio_path=str(audio), video_path=str(result)),
        options=JobOptions(),
        stage=None,
        frames_done=0,
        frames_total=0,
        attempt=1,
        not_before=None,
        lease_owner=None,
        lease_expires_at=None,
        cancel_requested=False,
        created_at=now,
        updated_at=now,
        started_at=now,
        finished_at=now,
        result=None,
        error=None,
    )


def _evaluate(runs: QualityRuns, job: JobRecord, template: Path) -> dict[str, Any]:
    """Request the job's evaluation, wait for its stored outcome, stop the runs."""
    try:
        state, _ = runs.request(job, str(template))
        assert state in ("queued", "running")
        stored: dict[str, Any] = wait_until(
            lambda: runs.pending(job.id) is None and runs.stored(job.id),
            timeout_s=120,
            what="the evaluation's outcome",
        )
    finally:
        runs.stop()
    return stored


def test_an_evaluation_that_cannot_read_its_inputs_is_stored_as_failed_with_the_reason(
    tmp_path: Path, template_clip: Path
) -> None:
    runs = QualityRuns(LocalStorage(tmp_path))
    job = _job(tmp_path, template_clip, tmp_path / "gone.wav")
    outcome = _evaluate(runs, job, template_clip)

    assert outcome["state"] == "failed"
    assert outcome["error"]["code"] == "INPUT_NOT_FOUND"
    assert "gone.wav" in outcome["error"]["message"]
    assert not (runs.sheet_path(job.id)).exists()


def test_an_evaluation_past_its_timeout_is_killed_and_stored_as_failed(
    tmp_path: Path, template_clip: Path, speech_wav: Path
) -> None:
    runs = QualityRuns(LocalStorage(tmp_path), timeout_s=0.001)  # no child starts that fast
    job = _job(tmp_path, template_clip, speech_wav)
    outcome = _evaluate(runs, job, template_clip)

    assert outcome["state"] == "failed" and outcome["error"]["code"] == "STAGE_TIMEOUT"
    assert not (LocalStorage(tmp_path).quality_dir(job.id) / ".staging").exists()


def test_a_server_with_a_syncnet_runs_on_request_evaluations_with_it(
    tmp_path: Path, template_clip: Path, speech_wav: Path
) -> None:
    # the missing file shows that the child was given the server's SyncNet (and said so)
    missing = tmp_path / "syncnet_v2.model"
    runs = QualityRuns(LocalStorage(tmp_path), syncnet=EvaluateSettings(syncnet_checkpoint=missing))
    job = _job(tmp_path, template_clip, speech_wav)
    outcome = _evaluate(runs, job, template_clip)

    assert outcome["state"] == "failed" and outcome["error"]["code"] == "CONFIG_INVALID"
    assert str(missing) in outcome["error"]["message"]
    assert "joonson/syncnet_python" in outcome["error"]["message"]
