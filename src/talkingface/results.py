"""A job's result, declared once: run_attempt returns it (as GenerateResult, with in-process
diagnostics), workers send it, the store keeps it, and the API, HeyGem and webhooks show it.
A render job that asked for its figures (`evaluate`) also carries its QualityReceipt."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class ReceiptState(StrEnum):
    """Whether the quality evaluation after the render produced figures."""

    MEASURED = "measured"
    FAILED = "failed"  # the evaluation failed; the render itself succeeded


class LseState(StrEnum):
    """Whether SyncNet's LSE figures are in a receipt, and if not, why not."""

    MEASURED = "measured"
    NOT_CONFIGURED = "not_configured"  # no evaluate.syncnet_checkpoint on the server
    FAILED = "failed"  # configured, but it could not score (lse_message says why)


@dataclass(frozen=True, slots=True)
class QualityReceipt:
    """The figures measured on a job's result after rendering, or why there are none."""

    state: ReceiptState
    figures: dict[str, Any] | None = None  # Any: QualityReport.to_dict() (numbers or None)
    verdicts: tuple[str, ...] = ()  # quality_checks.describe_report's lines
    low_sync: bool = False  # a figure under the server's floor: succeeded, but flagged
    low_sync_reasons: tuple[str, ...] = ()  # e.g. "sync correlation 0.21 < floor 0.30"
    lse: LseState = LseState.NOT_CONFIGURED
    lse_message: str | None = None  # why LSE is missing when it failed
    error_code: str | None = None  # why there are no figures (state failed)
    error_message: str | None = None
    has_sheet: bool = False  # the mouth contact sheet was kept (GET …/quality/sheet.png)
    duration_s: float = 0.0  # how long the evaluation took

    @classmethod
    def from_stored(cls, values: dict[str, Any]) -> QualityReceipt:  # Any: stored JSON
        known = {f.name for f in fields(cls)}
        kept = {key: value for key, value in values.items() if key in known}
        kept["state"] = ReceiptState(kept["state"])
        kept["lse"] = LseState(kept.get("lse", LseState.NOT_CONFIGURED))
        for name in ("verdicts", "low_sync_reasons"):
            kept[name] = tuple(kept.get(name) or ())
        return cls(**kept)


@dataclass(frozen=True, slots=True)
class JobResult:
    path: str  # the MP4 on the server (never shown to clients: the API gives a URL)
    duration_s: float
    width: int
    height: int
    fps: float
    frame_count: int
    frames_without_face: int  # passed through unchanged (no face found)
    processing_s: float
    # Set by the worker once the file is final (keyword-only: GenerateResult adds fields);
    # None on results recorded before checksums existed.
    sha256: str | None = field(default=None, kw_only=True)  # hex digest of the MP4
    size_bytes: int | None = field(default=None, kw_only=True)
    receipt: QualityReceipt | None = field(default=None, kw_only=True)  # jobs with evaluate

    @classmethod
    def from_stored(cls, values: dict[str, Any]) -> JobResult:  # Any: the stored JSON
        receipt = values.get("receipt")
        stored = QualityReceipt.from_stored(receipt) if receipt is not None else None
        return cls(**{**values, "receipt": stored})

    def job_result(self) -> JobResult:
        """Only the fields declared here: what crosses processes and enters the store (a
        GenerateResult's diagnostics stay in the process that rendered)."""
        return JobResult(**{f.name: getattr(self, f.name) for f in fields(JobResult)})

    def figures(self) -> dict[str, Any]:  # Any: JSON-safe numbers
        """Every field but the server path and the receipt: what clients are shown as the
        result (the API shows the receipt on its own)."""
        hidden = {"path", "receipt"}
        return {f.name: getattr(self, f.name) for f in fields(JobResult) if f.name not in hidden}
