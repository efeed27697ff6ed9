"""A job's result, declared once: run_attempt returns it (as GenerateResult, with in-process
diagnostics), workers send it, the store keeps it, and the API, HeyGem and webhooks show it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


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

    def job_result(self) -> JobResult:
        """Only the fields declared here: what crosses processes and enters the store (a
        GenerateResult's diagnostics stay in the process that rendered)."""
        return JobResult(**{f.name: getattr(self, f.name) for f in fields(JobResult)})

    def figures(self) -> dict[str, Any]:  # Any: JSON-safe numbers
        """Every field but the server path: what clients are shown."""
        return {f.name: getattr(self, f.name) for f in fields(JobResult) if f.name != "path"}
