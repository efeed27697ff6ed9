"""Alert rules over a real store (SQLite and PostgreSQL): each fires on its condition and
resolves when it ends; the figures come from jobs.stats."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from talkingface.config import Settings
from talkingface.errors import ErrorCode, ErrorRecord, Stage
from talkingface.jobs.records import JobInputs, JobOptions
from talkingface.jobs.states import AttemptOutcome
from talkingface.jobs.store import JobStore
from talkingface.ops.alerts import AlertManager

if TYPE_CHECKING:
    from tests.integration.store_fixtures import FakeClock


def _error(code: ErrorCode) -> ErrorRecord:
    return ErrorRecord(code=code, stage=Stage.RENDER, retryable=False, message=f"{code} happened")


def _run_and_end(store: JobStore, name: str, outcome: AttemptOutcome) -> None:
    inputs = JobInputs(audio_path=f"/in/{name}.wav", video_path=f"/in/{name}.mp4")
    store.create(inputs, JobOptions())
    claimed = store.claim_next("w1", lease_s=15.0)
    assert claimed is not None
    job, attempt = claimed
    store.fail_attempt(
        job.id, attempt.id, _error(ErrorCode.WORKER_LOST), outcome=outcome, retry_at=None
    )


def test_each_rule_fires_on_store_figures_and_resolves_when_they_age_out(
    store: JobStore, clock: FakeClock, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        api={"min_free_disk_bytes": 1},
        alerts={
            "failure_window_s": 600,
            "failure_min_jobs": 2,
            "lost_window_s": 600,
            "lost_attempts_max": 1,
            "queue_wait_max_s": 60,
        },
    )
    manager = AlertManager(settings, store)
    start = clock.now
    # Given two failed jobs (one lost its worker, one stalled) and one still queued
    _run_and_end(store, "lost", AttemptOutcome.LOST)
    _run_and_end(store, "stalled", AttemptOutcome.STALLED)
    store.create(JobInputs(audio_path="/in/q.wav", video_path="/in/q.mp4"), JobOptions())

    # When evaluated at once, then after the queued job waited past its limit
    at_once = {c.rule for c in manager.evaluate(start)}
    later = {c.rule: c for c in manager.evaluate(clock.advance(120))}

    # Then the failure, lost and stalled rules fire at once, the queue wait only later
    assert at_once == {"failure_rate", "workers_lost", "job_stalled"}
    assert set(later) == {"queue_wait"} and later["queue_wait"].state == "firing"
    assert "waited 120 s" in later["queue_wait"].message
    assert {a["rule"] for a in manager.active()} == at_once | {"queue_wait"}

    # When the windows pass and the queue drains, every alert resolves once
    claimed = store.claim_next("w1", lease_s=15.0)
    assert claimed is not None
    resolved = manager.evaluate(clock.advance(3600))
    assert {(c.rule, c.state) for c in resolved} == {
        (rule, "resolved") for rule in at_once | {"queue_wait"}
    }
    assert manager.active() == [] and manager.evaluate(clock.now) == []
