"""① The API's wire shapes: JobCreate in, JobPublic / JobList and TemplatePublic /
TemplateList out, built from store records."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from talkingface.errors import ErrorRecord
from talkingface.jobs.records import AttemptRecord, JobRecord
from talkingface.jobs.states import JobState
from talkingface.results import QualityReceipt
from talkingface.vocabulary import FacePolicy, LoopMode

# marks a field the OpenAPI document shows only where workers.allow_faults is set (openapi_doc)
TEST_ONLY = "x-test-only"
ERROR_BODY_REF = "#/components/schemas/ErrorBody"  # openapi_doc adds the model
LABEL_MAX_CHARS = 200
METADATA_MAX_BYTES = 4096  # compact UTF-8 JSON: what the store keeps
METADATA_MAX_KEYS = 32


class JobOptionsIn(BaseModel):
    """How to render a job; the multipart form carries these beside the files."""

    model_config = ConfigDict(extra="forbid")

    priority: int = Field(0, ge=-100, le=100, description="Higher runs first.")
    engine: str | None = Field(None, description="Render engine; the server default if absent.")
    loop: LoopMode | None = None
    face_policy: FacePolicy | None = None
    fault: str | None = Field(
        None,
        description="Test-only fault injection (workers.allow_faults).",
        json_schema_extra={TEST_ONLY: True},
    )
    callback_url: str | None = Field(
        None, max_length=2048, description="http(s) URL that receives the job's terminal state."
    )
    evaluate: bool | None = Field(
        None,
        description="Measure the result's quality figures after rendering (the job's "
        "`result.receipt`); the server default (evaluate.default) if absent.",
    )
    label: str | None = Field(
        None,
        description=f"A name for the job (1 to {LABEL_MAX_CHARS} characters, trimmed); "
        "`GET /v1/jobs?label=` finds it.",
    )
    metadata: dict[str, Any] | None = Field(  # Any: free-form JSON values
        None,
        description=f"Free-form JSON object kept with the job (at most {METADATA_MAX_KEYS} "
        f"keys and {METADATA_MAX_BYTES} bytes serialized); multipart: a JSON string.",
    )

    @field_validator("label")
    @classmethod
    def _label_text(cls, value: str | None) -> str | None:
        return None if value is None else checked_label(value)

    @field_validator("metadata")
    @classmethod
    def _metadata_bounds(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else checked_metadata(value)

    @field_validator("priority", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        """JSON true/false would pass as 1/0; a priority is a number."""
        if isinstance(value, bool):
            raise ValueError("Input should be an integer from -100 to 100, not true or false")
        return value


class JobCreate(JobOptionsIn):
    """A job over server-side paths (inside api.input_roots) or http(s) URLs."""

    model_config = ConfigDict(  # the document states _one_template: exactly one of the two
        json_schema_extra={
            "oneOf": [
                {"required": ["video"], "properties": {"video": {"type": "string"}}},
                {"required": ["template_id"], "properties": {"template_id": {"type": "string"}}},
            ]
        }
    )

    audio: str = Field(min_length=1, max_length=4096, description="Speech: a path or URL.")
    video: str | None = Field(
        None, min_length=1, max_length=4096, description="Template: a path or URL."
    )
    template_id: str | None = Field(
        None, pattern=r"^[0-9a-f]{32}$", description="A registered template, instead of video."
    )

    @model_validator(mode="after")
    def _one_template(self) -> JobCreate:
        if (self.video is None) == (self.template_id is None):
            raise ValueError("give either video or template_id")
        return self


def checked_label(value: str) -> str:
    """The label trimmed; empty, too long or holding control characters is refused."""
    label = value.strip()
    if not label:
        raise ValueError(
            f"the label is empty; give 1 to {LABEL_MAX_CHARS} characters or leave it out"
        )
    if len(label) > LABEL_MAX_CHARS:
        raise ValueError(
            f"the label has {len(label)} characters, over the limit of {LABEL_MAX_CHARS}; "
            "shorten it (put longer text in metadata)"
        )
    if any(unicodedata.category(char) == "Cc" for char in label):
        raise ValueError("the label holds control characters (newline, tab…); use one line")
    return label


def metadata_size_bytes(value: dict[str, Any]) -> int:  # Any: JSON values
    """The size the metadata bound counts: compact JSON, UTF-8."""
    compact = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(compact.encode("utf-8", "surrogatepass"))


def checked_metadata(value: dict[str, Any]) -> dict[str, Any]:  # Any: JSON values
    """The metadata when within METADATA_MAX_KEYS keys and METADATA_MAX_BYTES bytes."""
    if len(value) > METADATA_MAX_KEYS:
        raise ValueError(
            f"metadata has {len(value)} keys, over the limit of {METADATA_MAX_KEYS}; "
            "group values under fewer keys"
        )
    size = metadata_size_bytes(value)
    if size > METADATA_MAX_BYTES:
        raise ValueError(
            f"metadata is {size} bytes as compact JSON, over the limit of "
            f"{METADATA_MAX_BYTES}; keep large data elsewhere and store a reference"
        )
    return value


class ErrorPublic(BaseModel):
    code: str
    message: str
    stage: str | None
    retryable: bool


class ProgressPublic(BaseModel):
    fraction: float = Field(ge=0, le=1)
    frames_done: int
    frames_total: int
    eta_s: float | None


class AttemptPublic(BaseModel):
    number: int
    worker: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    error: ErrorPublic | None


class ReceiptErrorPublic(BaseModel):
    code: str
    message: str


class ReceiptPublic(BaseModel):
    """The quality figures measured right after rendering (jobs submitted with `evaluate`)."""

    state: str = Field(
        description="measured, or failed: the evaluation failed (`error` says why) and the "
        "video itself is fine."
    )
    low_sync: bool = Field(
        description="A figure fell under the server's floor (evaluate.low_sync_floor / "
        "low_lse_c_floor): the job succeeded, flagged; GET /v1/jobs?low_sync=true lists them."
    )
    low_sync_reasons: list[str]
    figures: dict[str, float | int | None] | None = Field(
        description="The figures of `talkingface evaluate --json` (sync_correlation, "
        "sync_margin…; lse_d, lse_c, lse_av_offset_frames with a SyncNet)."
    )
    verdicts: list[str] = Field(description="The figures for people, one line each.")
    lse: str = Field(description="SyncNet's figures: measured, not_configured or failed.")
    lse_message: str | None = Field(description="Why LSE failed, when it did.")
    error: ReceiptErrorPublic | None
    sheet_url: str | None = Field(description="The mouth contact sheet (PNG), when kept.")
    duration_s: float = Field(description="How long the evaluation took.")


def receipt_public(receipt: QualityReceipt | None, sheet_url: str) -> ReceiptPublic | None:
    if receipt is None:
        return None
    error = None
    if receipt.error_code is not None:
        error = ReceiptErrorPublic(code=receipt.error_code, message=receipt.error_message or "")
    return ReceiptPublic(
        state=receipt.state.value,
        low_sync=receipt.low_sync,
        low_sync_reasons=list(receipt.low_sync_reasons),
        figures=receipt.figures,
        verdicts=list(receipt.verdicts),
        lse=receipt.lse.value,
        lse_message=receipt.lse_message,
        error=error,
        sheet_url=sheet_url if receipt.has_sheet else None,
        duration_s=round(receipt.duration_s, 3),
    )


class ResultPublic(BaseModel):
    """A succeeded job's result on the wire: JobResult's figures (its `path` stays on the
    server; `url` downloads it). Declared here, not derived, so that a field added to
    JobResult reaches clients only when added here too (a test keeps the two in step)."""

    url: str
    duration_s: float
    width: int
    height: int
    fps: float
    processing_s: float
    frame_count: int
    frames_without_face: int = Field(
        description="Frames where no face was found, passed through unchanged."
    )
    sha256: str | None = Field(
        None,
        description="SHA-256 of the MP4 (hex); the download sends it as ETag and Repr-Digest.",
    )
    receipt: ReceiptPublic | None = Field(
        None, description="Quality figures measured after rendering; null without `evaluate`."
    )
    size_bytes: int | None = Field(None, description="The MP4's size in bytes.")


class InputsPublic(BaseModel):
    """What a job was made from, by name (the server paths stay on the server)."""

    audio_name: str | None = Field(description="The audio's file name (uploads: as sent).")
    video_name: str | None = Field(description="The template video's file name.")
    template_id: str | None = Field(description="The registered template, when one was used.")


class JobPublic(BaseModel):
    id: str
    state: JobState
    priority: int
    engine: str = Field(description="The render engine: classic, or wav2lip.")
    label: str | None
    metadata: dict[str, Any] | None  # Any: free-form JSON values
    inputs: InputsPublic
    stage: str | None
    progress: ProgressPublic
    attempt: int
    attempts: list[AttemptPublic]
    error: ErrorPublic | None
    result: ResultPublic | None
    created_at: datetime
    updated_at: datetime


class JobList(BaseModel):
    items: list[JobPublic]
    total: int
    limit: int
    offset: int


class TemplateProgressPublic(BaseModel):
    stage: str | None
    frames_done: int
    frames_total: int
    attempt: int


class TemplatePublic(BaseModel):
    """A registered template: its preparation state is its prepare_template job's."""

    id: str
    state: str = Field(description="preparing, ready or failed.")
    created_at: datetime
    duration_s: float
    width: int
    height: int
    fps: float
    is_still_image: bool
    face_count: int | None
    frames_without_face: int | None
    error: dict[str, Any] | None  # Any: an ErrorRecord as JSON
    job_id: str = Field(description="The preparation job: GET /v1/jobs/{job_id}/events.")
    progress: TemplateProgressPublic
    articulation: dict[str, Any] | None = None  # Any: JSON-safe; set once ready
    thumbnail_url: str


class TemplateList(BaseModel):
    items: list[TemplatePublic]
    total: int
    limit: int
    offset: int


class EventPublic(BaseModel):
    id: int
    at: datetime
    kind: str
    data: dict[str, object]


class WorkerPublic(BaseModel):
    id: str
    pid: int | None
    state: str
    job_id: str | None


def error_public(error: ErrorRecord | None) -> ErrorPublic | None:
    if error is None:
        return None
    stage = error.stage.value if error.stage else None
    return ErrorPublic(
        code=error.code.value, message=error.message, stage=stage, retryable=error.retryable
    )


def progress_public(job: JobRecord, attempts: list[AttemptRecord], now: datetime) -> ProgressPublic:
    """Fraction of frames done (1 once succeeded) and an ETA from the current attempt's pace."""
    total, done = job.frames_total, job.frames_done
    fraction = 1.0 if job.state is JobState.SUCCEEDED else (done / total if total > 0 else 0.0)
    eta_s: float | None = None
    if job.state is JobState.RUNNING and 0 < done < total and attempts:
        elapsed_s = (now - attempts[-1].started_at).total_seconds()
        eta_s = max(0.0, elapsed_s * (total - done) / done)
    elif job.state is JobState.SUCCEEDED:
        eta_s = 0.0
    return ProgressPublic(
        fraction=min(1.0, max(0.0, fraction)), frames_done=done, frames_total=total, eta_s=eta_s
    )


def job_public(
    job: JobRecord,
    attempts: list[AttemptRecord],
    result_url: str,
    *,
    now: datetime | None = None,
) -> JobPublic:
    """The job object of the v1 contract (GET /v1/jobs/{id})."""
    result = None
    if job.result is not None and job.state is JobState.SUCCEEDED:
        # the sheet route sits beside the result's: /v1/jobs/{id}/quality/sheet.png
        sheet_url = result_url.removesuffix("/result") + "/quality/sheet.png"
        receipt = receipt_public(job.result.receipt, sheet_url)
        result = ResultPublic.model_validate(
            {**job.result.figures(), "url": result_url, "receipt": receipt}
        )
    return JobPublic(
        id=job.id,
        state=job.state,
        priority=job.priority,
        engine=job.options.engine,
        label=job.label,
        metadata=job.metadata,
        inputs=InputsPublic(
            audio_name=job.names.audio_name,
            video_name=job.names.video_name,
            template_id=job.names.template_id,
        ),
        stage=job.stage,
        progress=progress_public(job, attempts, now or datetime.now(UTC)),
        attempt=job.attempt,
        attempts=[
            AttemptPublic(
                number=a.number,
                worker=a.worker,
                started_at=a.started_at,
                ended_at=a.ended_at,
                outcome=a.outcome.value,
                error=error_public(a.error),
            )
            for a in attempts
        ],
        error=error_public(job.error),
        result=result,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


def error_answers(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=` for error statuses it answers beyond openapi_doc's table, each
    with the one error body (Any: OpenAPI fragments)."""
    return {
        status: {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": ERROR_BODY_REF}}},
        }
        for status, text in descriptions.items()
    }
