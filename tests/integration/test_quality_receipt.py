"""Quality receipts made in the worker after a render: figures, floors, and failures that
never fail the job (quality_receipt.ReceiptMaker on real media)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from talkingface.config import EvaluateSettings
from talkingface.errors import JobCanceledError
from talkingface.neural.syncnet import SyncNet
from talkingface.quality import QualityReport
from talkingface.quality_receipt import ReceiptMaker, ReceiptRequest, low_sync_reasons
from talkingface.results import JobResult, LseState, QualityReceipt, ReceiptState
from talkingface.vocabulary import LoopMode


def _request(video: Path, audio: Path, quality_dir: Path | None) -> ReceiptRequest:
    return ReceiptRequest(
        job_id="a" * 32,
        video_path=video,
        audio_path=audio,
        template_path=video,
        loop=LoopMode.PINGPONG,
        quality_dir=quality_dir,
    )


def _progress_into(seen: list[tuple[int, int]]) -> Callable[[int, int], None]:
    return lambda done, total: seen.append((done, total))


@pytest.fixture(scope="module")
def random_syncnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("receipt_syncnet") / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), path)
    return path


def test_a_receipt_holds_the_figures_lse_and_the_sheet(
    short_template_clip: Path, speech_wav: Path, random_syncnet: Path, tmp_path: Path
) -> None:
    settings = EvaluateSettings(syncnet_checkpoint=random_syncnet, low_lse_c_floor=1000.0)
    seen: list[tuple[int, int]] = []

    receipt = ReceiptMaker(settings).make(
        _request(short_template_clip, speech_wav, tmp_path / "q"),
        _progress_into(seen),
        threading.Event(),
    )

    assert receipt.state is ReceiptState.MEASURED, receipt
    assert receipt.figures is not None and receipt.figures["frame_count"] == 25
    assert receipt.figures["lse_c"] is not None and receipt.figures["lse_c"] >= 0.0
    assert receipt.figures["lse_window_count"] == 20  # 25 frames - 5
    assert receipt.lse is LseState.MEASURED
    assert receipt.low_sync  # LSE-C is far below a floor of 1000
    assert any("LSE-C" in reason for reason in receipt.low_sync_reasons)
    assert any("SyncNet LSE-D" in line for line in receipt.verdicts)
    assert receipt.has_sheet and (tmp_path / "q" / "sheet.png").stat().st_size > 0
    assert (tmp_path / "q" / "quality.json").is_file()  # GET /v1/jobs/{id}/quality reads it
    assert [p.name for p in (tmp_path / "q").iterdir() if p.name.startswith(".")] == []
    assert seen and seen[-1][0] == seen[-1][1]  # per-frame progress reached the end


def test_without_a_syncnet_lse_is_not_configured_and_no_floor_flags(
    short_template_clip: Path, speech_wav: Path
) -> None:
    receipt = ReceiptMaker(EvaluateSettings()).make(
        _request(short_template_clip, speech_wav, None), lambda d, t: None, threading.Event()
    )

    assert receipt.state is ReceiptState.MEASURED
    assert receipt.lse is LseState.NOT_CONFIGURED
    assert receipt.figures is not None and receipt.figures["lse_d"] is None
    assert not receipt.low_sync and not receipt.has_sheet
    # the sync floor flags exactly when it is above the measured correlation
    correlation = receipt.figures["sync_correlation"]
    assert correlation is not None
    report = _report_with(correlation)
    assert low_sync_reasons(report, EvaluateSettings(low_sync_floor=correlation + 0.01))
    assert not low_sync_reasons(report, EvaluateSettings(low_sync_floor=correlation - 0.01))


def _report_with(correlation: float) -> QualityReport:
    values = {field.name: None for field in dataclasses.fields(QualityReport)}
    values |= {"frame_count": 1, "fps": 25.0, "duration_s": 0.04, "faces_found": 1}
    values |= {"tracker_faces_found": 1, "sync_correlation": correlation}
    return QualityReport(**values)


def test_a_missing_syncnet_file_is_said_in_the_receipt_and_the_rest_is_measured(
    short_template_clip: Path, speech_wav: Path, tmp_path: Path
) -> None:
    settings = EvaluateSettings(syncnet_checkpoint=tmp_path / "syncnet_v2.model")

    receipt = ReceiptMaker(settings).make(
        _request(short_template_clip, speech_wav, None), lambda d, t: None, threading.Event()
    )

    assert receipt.state is ReceiptState.MEASURED
    assert receipt.lse is LseState.FAILED
    assert receipt.lse_message is not None and "syncnet_v2.model" in receipt.lse_message


def test_an_evaluation_that_fails_gives_a_receipt_saying_why(
    garbage_wav: Path, speech_wav: Path, tmp_path: Path
) -> None:
    receipt = ReceiptMaker(EvaluateSettings()).make(
        _request(garbage_wav, speech_wav, tmp_path / "q"), lambda d, t: None, threading.Event()
    )

    assert receipt.state is ReceiptState.FAILED
    assert receipt.error_code == "INPUT_INVALID_MEDIA"
    assert receipt.error_message
    assert receipt.figures is None and not receipt.low_sync
    assert not (tmp_path / "q" / "sheet.png").exists()


def test_an_evaluation_past_its_timeout_stops_with_a_receipt(
    short_template_clip: Path, speech_wav: Path
) -> None:
    receipt = ReceiptMaker(EvaluateSettings(timeout_s=1e-6)).make(
        _request(short_template_clip, speech_wav, None), lambda d, t: None, threading.Event()
    )

    assert receipt.state is ReceiptState.FAILED
    assert receipt.error_code == "STAGE_TIMEOUT"
    assert "evaluate.timeout_s" in (receipt.error_message or "")


def test_a_cancel_during_the_evaluation_cancels_and_leaves_no_files(
    short_template_clip: Path, speech_wav: Path, tmp_path: Path
) -> None:
    cancel = threading.Event()
    cancel.set()

    with pytest.raises(JobCanceledError):
        ReceiptMaker(EvaluateSettings()).make(
            _request(short_template_clip, speech_wav, tmp_path / "q"), lambda d, t: None, cancel
        )
    assert list((tmp_path / "q").iterdir()) == []


def test_a_stored_receipt_reads_back_equal() -> None:
    receipt = QualityReceipt(
        state=ReceiptState.MEASURED,
        figures={"sync_correlation": 0.7, "lse_d": None},
        verdicts=("a", "b"),
        low_sync=True,
        low_sync_reasons=("sync correlation 0.70 r < floor 0.80",),
        lse=LseState.FAILED,
        lse_message="CONFIG_INVALID: …",
        has_sheet=True,
        duration_s=1.5,
    )
    result = JobResult("/r.mp4", 1.0, 2, 2, 25.0, 25, 0, 1.0, receipt=receipt)

    stored = dataclasses.asdict(result)  # what store.succeed writes (JSON)

    assert JobResult.from_stored(stored) == result
    assert "receipt" not in result.figures()
