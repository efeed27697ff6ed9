"""A job's callback body: the engine that rendered it and, when it asked, its quality receipt."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from talkingface.jobs.records import JobInputs, JobOptions, JobRecord
from talkingface.jobs.states import JobState
from talkingface.ops.webhooks import webhook_payload
from talkingface.results import JobResult, LseState, QualityReceipt, ReceiptState
from talkingface.vocabulary import JobId

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def _succeeded(engine: str, receipt: QualityReceipt | None) -> JobRecord:
    result = JobResult("/srv/out.mp4", 2.0, 512, 512, 25.0, 50, 0, 1.5, receipt=receipt)
    return JobRecord(
        JobId("f" * 32), None, JobState.SUCCEEDED, 0, JobInputs("a.wav", "v.mp4"),
        JobOptions(engine=engine, evaluate=receipt is not None), None, 50, 50, 1, None, None,
        None, False, NOW, NOW, NOW, NOW, result, None,
    )  # fmt: skip


def test_a_measured_job_sends_its_engine_and_receipt() -> None:
    receipt = QualityReceipt(
        ReceiptState.MEASURED,
        figures={"sync_correlation": 0.21, "lse_c": 1.5},
        verdicts=("sync 0.21 r (needs ≥ 0.60)",),
        low_sync=True,
        low_sync_reasons=("sync correlation 0.21 < floor 0.30",),
        lse=LseState.MEASURED,
        duration_s=3.2,
    )
    payload = webhook_payload(_succeeded("wav2lip", receipt), "job.succeeded")
    body = json.loads(json.dumps(payload, default=str, sort_keys=True))  # as it is sent

    assert body["engine"] == "wav2lip"
    assert body["receipt"]["low_sync"] is True
    assert body["receipt"]["low_sync_reasons"] == ["sync correlation 0.21 < floor 0.30"]
    assert body["receipt"]["figures"]["sync_correlation"] == 0.21
    assert body["receipt"]["state"] == "measured" and body["receipt"]["lse"] == "measured"
    assert "path" not in body["result"] and body["result"]["frame_count"] == 50


def test_a_job_without_evaluate_sends_no_receipt() -> None:
    body = webhook_payload(_succeeded("classic", None), "job.succeeded")
    assert body["engine"] == "classic" and body["receipt"] is None
