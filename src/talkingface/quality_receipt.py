"""⑤ A render's quality receipt: its figures, measured in the worker right after rendering.

A job with `evaluate` gets the independent sync figures of `talkingface evaluate` (quality.py)
and, when the server has a SyncNet checkpoint (evaluate.syncnet_checkpoint), LSE-D / LSE-C.
The floors (evaluate.low_sync_floor, evaluate.low_lse_c_floor) flag a result `low_sync`.

The receipt never fails a good render: an evaluation that raises, or runs past
evaluate.timeout_s, gives a receipt that says why it has no figures, and the job succeeds.
Only a cancel goes through (the job was asked to stop). Progress is reported per frame in
stage `evaluate`, so the scheduler's stall watch sees the worker alive.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from talkingface.config import EvaluateSettings
from talkingface.errors import (
    JobCanceledError,
    Stage,
    StageTimeoutError,
    TalkingFaceError,
    UnexpectedError,
)
from talkingface.mouth_meter import MouthMeter
from talkingface.per_configuration import OnePerConfiguration
from talkingface.quality import QualityReport, evaluate, with_lse
from talkingface.quality_checks import describe_report
from talkingface.quality_job import SHEET_NAME, write_quality_outcome
from talkingface.results import LseState, QualityReceipt, ReceiptState
from talkingface.syncnet_score import SyncNetScorer
from talkingface.vocabulary import LoopMode

logger = logging.getLogger(__name__)

FrameProgress = Callable[[int, int], None]  # (frames done, frames total) in stage evaluate


def receipt_maker(settings: EvaluateSettings) -> ReceiptMaker:
    """This process's ReceiptMaker (its SyncNet stays loaded between jobs), made once."""
    return _MAKERS.get(settings)


@dataclass(frozen=True, slots=True)
class ReceiptRequest:
    """What to measure: the rendered file, its inputs, and where a contact sheet may go."""

    job_id: str
    video_path: Path
    audio_path: Path
    template_path: Path
    loop: LoopMode
    quality_dir: Path | None  # the job's quality folder; None: keep no sheet (object storage)


class ReceiptMaker:
    """Receipts for one worker: the SyncNet model is loaded once, on first use."""

    def __init__(self, settings: EvaluateSettings) -> None:
        self._settings = settings
        self._scorer: SyncNetScorer | None = None

    def preload(self) -> None:
        """Load the evaluation's models now (a worker's start), so that no job waits for them:
        dlib's predictor holds the GIL for seconds while it loads, which would starve the
        attempt's heartbeat thread. A SyncNet file that cannot be loaded is logged here and
        said in each receipt."""
        MouthMeter()  # loads dlib's models once per process
        checkpoint = self._settings.syncnet_checkpoint
        if checkpoint is None:
            return
        try:
            self._syncnet(checkpoint)
        except TalkingFaceError as exc:
            logger.warning(
                "SyncNet for quality receipts not loaded: %s",
                exc.one_line(),
                extra={"event": "syncnet_load_failed", "code": exc.code.value},
            )

    def make(
        self, request: ReceiptRequest, progress: FrameProgress, cancel: threading.Event
    ) -> QualityReceipt:
        """Measure `request`; a failure becomes a receipt (a cancel raises JobCanceledError)."""
        sheet = _staged_sheet(request.quality_dir)
        try:
            return self._make(request, progress, cancel, sheet)
        finally:
            if sheet is not None:
                sheet.unlink(missing_ok=True)  # kept ones were renamed; this is a leftover

    def _make(
        self,
        request: ReceiptRequest,
        progress: FrameProgress,
        cancel: threading.Event,
        sheet: Path | None,
    ) -> QualityReceipt:
        started = time.monotonic()
        on_frame = self._watch(request.job_id, progress, cancel, started)
        try:
            report = evaluate(
                request.video_path,
                audio_path=request.audio_path,
                template_path=request.template_path,
                loop=request.loop,
                contact_sheet_path=sheet,
                on_frame=on_frame,
            )
        except JobCanceledError:
            raise
        except Exception as exc:  # the receipt's boundary: a failed evaluation is reported
            error = _as_error(exc, request)
            return self._failed(request, error, time.monotonic() - started)
        report, lse, lse_message = self._with_lse(report, request, on_frame)
        receipt = self._measured(report, lse, lse_message, time.monotonic() - started)
        receipt = dataclasses.replace(receipt, has_sheet=_keep(request, sheet, receipt))
        logger.info(
            "quality receipt for job %s: %s",
            request.job_id,
            "low sync" if receipt.low_sync else "measured",
            extra={
                "event": "receipt_measured",
                "low_sync": receipt.low_sync,
                "lse": receipt.lse.value,
                "duration_s": round(receipt.duration_s, 3),
            },
        )
        return receipt

    def _watch(
        self, job_id: str, progress: FrameProgress, cancel: threading.Event, started: float
    ) -> FrameProgress:
        timeout_s = self._settings.timeout_s

        def on_frame(done: int, total: int) -> None:
            if cancel.is_set():
                raise JobCanceledError(f"Job {job_id} was canceled.", stage=Stage.EVALUATE)
            if time.monotonic() - started > timeout_s:
                raise StageTimeoutError(
                    f"The quality evaluation ran past evaluate.timeout_s ({timeout_s:.0f} s) "
                    "and was stopped; the video itself is fine.",
                    stage=Stage.EVALUATE,
                )
            progress(done, total)

        return on_frame

    def _with_lse(
        self, report: QualityReport, request: ReceiptRequest, on_frame: FrameProgress
    ) -> tuple[QualityReport, LseState, str | None]:
        checkpoint = self._settings.syncnet_checkpoint
        if checkpoint is None:
            return report, LseState.NOT_CONFIGURED, None
        try:
            scorer = self._syncnet(checkpoint)
            scored = with_lse(
                report, scorer, request.video_path, audio_path=request.audio_path, on_frame=on_frame
            )
        except JobCanceledError:
            raise
        except Exception as exc:  # the receipt's boundary: the other figures still count
            error = _as_error(exc, request)
            return report, LseState.FAILED, f"{error.code.value}: {error.message}"
        return scored, LseState.MEASURED, None

    def _syncnet(self, checkpoint: Path) -> SyncNetScorer:
        if self._scorer is None or self._scorer.checkpoint != checkpoint:
            self._scorer = SyncNetScorer(
                checkpoint, trust=self._settings.trust_checkpoint, threads=_torch_threads()
            )
        return self._scorer

    def _measured(
        self, report: QualityReport, lse: LseState, lse_message: str | None, duration_s: float
    ) -> QualityReceipt:
        reasons = low_sync_reasons(report, self._settings)
        return QualityReceipt(
            state=ReceiptState.MEASURED,
            figures=report.to_dict(),
            verdicts=tuple(describe_report(report)),
            low_sync=bool(reasons),
            low_sync_reasons=reasons,
            lse=lse,
            lse_message=lse_message,
            duration_s=duration_s,
        )

    def _failed(
        self, request: ReceiptRequest, error: TalkingFaceError, duration_s: float
    ) -> QualityReceipt:
        logger.warning(
            "quality evaluation of job %s failed; the job still succeeds: %s",
            request.job_id,
            error.one_line(),
            extra={"event": "receipt_failed", "code": error.code.value},
        )
        return QualityReceipt(
            state=ReceiptState.FAILED,
            lse=LseState.NOT_CONFIGURED
            if self._settings.syncnet_checkpoint is None
            else LseState.FAILED,
            error_code=error.code.value,
            error_message=error.message,
            duration_s=duration_s,
        )


# per process: its SyncNet stays loaded between jobs
_MAKERS: OnePerConfiguration[EvaluateSettings, ReceiptMaker] = OnePerConfiguration(ReceiptMaker)


def low_sync_reasons(report: QualityReport, settings: EvaluateSettings) -> tuple[str, ...]:
    """Each configured floor that a measured figure falls under (unmeasured ones never do)."""
    reasons: list[str] = []
    floor, correlation = settings.low_sync_floor, report.sync_correlation
    if floor is not None and correlation is not None and correlation < floor:
        reasons.append(f"sync correlation {correlation:.2f} r < floor {floor:.2f}")
    floor, lse_c = settings.low_lse_c_floor, report.lse_c
    if floor is not None and lse_c is not None and lse_c < floor:
        reasons.append(f"SyncNet LSE-C {lse_c:.2f} < floor {floor:.2f}")
    return tuple(reasons)


def _as_error(exc: Exception, request: ReceiptRequest) -> TalkingFaceError:
    if isinstance(exc, TalkingFaceError):
        return exc
    logger.error(
        "quality evaluation of job %s raised %s",
        request.job_id,
        type(exc).__name__,
        exc_info=exc,
        extra={"event": "receipt_error"},
    )
    return UnexpectedError.from_exception(exc, stage=Stage.EVALUATE)


def _torch_threads() -> int:
    """Half the cores, at least one: the worker's other threads share the machine."""
    return max(1, (os.cpu_count() or 2) // 2)


def _staged_sheet(quality_dir: Path | None) -> Path | None:
    """Where the sheet is written before it is kept; None (no sheet) when it cannot be."""
    if quality_dir is None:
        return None
    try:
        quality_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("no contact sheet: %s", exc, extra={"event": "receipt_sheet_failed"})
        return None
    return quality_dir / f".{os.getpid()}.{SHEET_NAME}"


def _keep(request: ReceiptRequest, sheet: Path | None, receipt: QualityReceipt) -> bool:
    """Move the staged sheet into place and write quality.json for the on-request routes."""
    if request.quality_dir is None or sheet is None or not sheet.is_file():
        return False
    try:
        os.replace(sheet, request.quality_dir / SHEET_NAME)
        write_quality_outcome(
            request.quality_dir,
            request.job_id,
            receipt.duration_s,
            figures=receipt.figures,
            verdicts=list(receipt.verdicts),
        )
    except OSError as exc:
        logger.warning(
            "the contact sheet of job %s could not be kept: %s",
            request.job_id,
            exc,
            extra={"event": "receipt_sheet_failed"},
        )
        return False
    return True
