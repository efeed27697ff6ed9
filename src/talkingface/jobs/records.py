"""Rows leaving the job store: jobs, attempts and events as frozen values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from talkingface.errors import ErrorRecord
from talkingface.jobs.states import AttemptOutcome, JobKind, JobState
from talkingface.results import JobResult
from talkingface.vocabulary import JobId


@dataclass(frozen=True, slots=True)
class JobInputs:
    """Where a job's media is, on the server (already fetched/uploaded and confined)."""

    audio_path: str
    video_path: str
    input_duration_s: float | None = None  # the audio's duration, for the time limit


@dataclass(frozen=True, slots=True)
class JobOptions:
    engine: str = "classic"
    loop: str = "pingpong"
    face_policy: str = "largest"
    fault: str | None = None  # test-only fault injection (refused unless enabled in settings)
    callback_url: str | None = None  # receives the terminal state (webhooks)
    evaluate: bool = False  # the worker measures the result after rendering (its receipt)


@dataclass(frozen=True, slots=True)
class InputNames:
    """A job's inputs by name, for people: file names as sent, and the template used."""

    audio_name: str | None = None
    video_name: str | None = None
    template_id: str | None = None  # a registered template the video came from


@dataclass(frozen=True, slots=True)
class JobTags:
    """What a submitter attaches to a job to find it again; neither changes the render."""

    label: str | None = None  # 1-200 characters, trimmed (api.schemas checks)
    metadata: dict[str, Any] | None = None  # Any: free-form JSON, at most 4 kB


@dataclass(frozen=True, slots=True)
class TemplateOutcome:
    """What preparing a template found (kept on its row in the store once the job succeeds)."""

    face_count: int
    frames_without_face: int
    articulation: dict[str, Any]  # Any: JSON-safe (PreparedTemplate.articulation_summary())


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    id: str
    job_id: JobId
    number: int  # 1-based
    worker: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: AttemptOutcome
    error: ErrorRecord | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int  # monotonically increasing across the store (SSE ids later)
    job_id: JobId
    at: datetime
    kind: str  # lower_snake past tense: job_created, attempt_started, job_succeeded…
    data: dict[str, Any] = field(default_factory=dict)  # Any: JSON-safe values


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: JobId
    idempotency_key: str | None
    state: JobState
    priority: int  # higher runs first
    inputs: JobInputs
    options: JobOptions
    stage: str | None
    frames_done: int
    frames_total: int
    attempt: int  # number of the current/last attempt; 0 before the first
    not_before: datetime | None  # a queued retry waits until then
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None  # first attempt start
    finished_at: datetime | None
    result: JobResult | None
    error: ErrorRecord | None
    progress_at: datetime | None = None  # last time frames_done/stage moved (stall detection)
    kind: JobKind = JobKind.RENDER
    tags: JobTags = field(default_factory=JobTags)
    names: InputNames = field(default_factory=InputNames)

    @property
    def label(self) -> str | None:
        return self.tags.label

    @property
    def metadata(self) -> dict[str, Any] | None:  # Any: free-form JSON
        return self.tags.metadata
