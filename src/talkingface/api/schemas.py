"""① The API's wire shapes: JobCreate in, JobPublic / JobList out, built from store records."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from talkingface.errors import ErrorRecord
from talkingface.jobs.records import AttemptRecord, JobRecord
from talkingface.jobs.states import JobState
from talkingface.vocabulary import FacePolicy, LoopMode

# marks a field the OpenAPI document shows only where workers.allow_faults is set (openapi_doc)
TEST_ONLY = "x-test-only"


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


class JobPublic(BaseModel):
    id: str
    state: JobState
    priority: int
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
        result = ResultPublic.model_validate({**job.result.figures(), "url": result_url})
    return JobPublic(
        id=job.id,
        state=job.state,
        priority=job.priority,
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
