"""Stats over time (GET /v1/stats/history) on SQLite and PostgreSQL: jobs counted in the bucket
of their end, rates, throughput and percentiles per bucket, and clear bounds."""

from __future__ import annotations

from typing import Any

import pytest

from talkingface.errors import ErrorCode, ErrorRecord, Stage
from talkingface.jobs.records import JobInputs, JobOptions, JobResult
from talkingface.jobs.states import AttemptOutcome
from talkingface.jobs.stats_history import stats_history
from talkingface.jobs.store import JobStore
from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    api_fixture,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
)
from tests.integration.store_fixtures import FakeClock

LEASE_S = 15.0
RESULT = JobResult("/out.mp4", 0.4, 8, 8, 25.0, 10, 0, 1.0)


def _finish(
    store: JobStore, clock: FakeClock, *, wait_s: float, run_s: float, outcome: str
) -> None:
    job, _ = store.create(JobInputs("/in/a.wav", "/in/a.mp4"), JobOptions())
    if outcome == "canceled":
        store.request_cancel(job.id)
        return
    clock.advance(wait_s)
    claimed = store.claim_next("w1", lease_s=LEASE_S)
    assert claimed is not None and claimed[0].id == job.id
    clock.advance(run_s)
    if outcome == "succeeded":
        assert store.succeed(job.id, claimed[1].id, RESULT)
    else:
        error = ErrorRecord(ErrorCode.NO_FACE, Stage.TRACK, False, "No face in a.mp4.")
        store.fail_attempt(
            job.id, claimed[1].id, error, outcome=AttemptOutcome.FAILED, retry_at=None
        )


def test_jobs_are_counted_in_the_bucket_where_they_ended(store: JobStore, clock: FakeClock) -> None:
    # Given an hour (12:00-13:00) with three successes and a failure, and two successes
    # and a cancel in the next one
    clock.now = clock.now.replace(hour=12, minute=0)
    for run_s in (10, 20, 30):
        _finish(store, clock, wait_s=2, run_s=run_s, outcome="succeeded")
    _finish(store, clock, wait_s=4, run_s=1, outcome="failed")
    clock.now = clock.now.replace(hour=13, minute=5, second=0)
    _finish(store, clock, wait_s=1, run_s=40, outcome="succeeded")
    _finish(store, clock, wait_s=1, run_s=40, outcome="succeeded")
    _finish(store, clock, wait_s=0, run_s=0, outcome="canceled")
    now = clock.now.replace(hour=13, minute=30, second=0, microsecond=0)

    history = stats_history(store, now=now, hours=3, bucket_minutes=60)

    first, second, third = history["buckets"]
    assert [b["start"][11:16] for b in history["buckets"]] == ["11:00", "12:00", "13:00"]
    assert first["succeeded"] == first["failed"] == first["canceled"] == 0
    assert first["success_rate"] is None and first["duration_s"]["p50"] is None
    assert (second["succeeded"], second["failed"], second["canceled"]) == (3, 1, 0)
    assert second["success_rate"] == 0.75
    assert second["throughput_per_hour"] == 3.0
    assert second["duration_s"] == {"p50": 20.0, "p90": 28.0}
    assert second["queue_wait_s"]["p50"] == 2.0
    assert second["errors_by_code"] == {"NO_FACE": 1}
    assert second["partial"] is False
    assert (third["succeeded"], third["canceled"]) == (2, 1)
    assert third["partial"] is True
    assert third["throughput_per_hour"] == 4.0  # two in the half hour elapsed
    assert history["totals"]["succeeded"] == 5 and history["totals"]["failed"] == 1
    assert history["rows_capped"] is False


def test_template_preparations_are_not_counted(store: JobStore, clock: FakeClock) -> None:
    from talkingface.jobs.template_rows import TemplateSpec

    spec = TemplateSpec("t" * 32, "template.mp4", 1.0, 64, 64, 25.0, False)
    store.register_template(spec, JobInputs("", "/t/template.mp4"), JobOptions())
    claimed = store.claim_next("w1", lease_s=LEASE_S)
    assert claimed is not None
    clock.advance(5)
    store.succeed(claimed[0].id, claimed[1].id, RESULT)

    history = stats_history(store, now=clock.now, hours=1, bucket_minutes=60)

    assert history["totals"]["succeeded"] == 0


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("hours=0", "hours must be more than 0"),
        ("hours=169", "at most 168"),
        ("bucket_minutes=0", "bucket_minutes must be at least 1"),
        ("hours=1e-300&bucket_minutes=557661196440", "at most 10080"),  # was a 500 (fuzz)
        ("hours=168&bucket_minutes=1", "use bucket_minutes=21 or more"),
        ("hours=abc", "hours"),
    ],
)
def test_out_of_bounds_windows_are_a_clear_422(api: ApiHarness, query: str, says: str) -> None:
    response = api.client.get(f"/v1/stats/history?{query}")

    assert response.status_code == 422
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "INPUT_INVALID" and says in error["message"]


def test_the_route_answers_with_the_requested_buckets(api: ApiHarness) -> None:
    response = api.client.get("/v1/stats/history?hours=6&bucket_minutes=30")

    assert response.status_code == 200
    body = response.json()
    assert len(body["buckets"]) == 12 and body["bucket_minutes"] == 30
    assert body["buckets"][-1]["partial"] is True
