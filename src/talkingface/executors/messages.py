"""Messages between the scheduler and worker processes (frozen, picklable, job-tagged)."""

from __future__ import annotations

from dataclasses import dataclass

from talkingface.errors import ErrorRecord
from talkingface.jobs.records import JobOptions, TemplateOutcome
from talkingface.jobs.states import JobKind
from talkingface.results import JobResult
from talkingface.vocabulary import JobId


@dataclass(frozen=True, slots=True)
class Assignment:
    """Scheduler → worker: run one attempt; write the result to `output_path` (a temp name)."""

    job_id: JobId
    attempt_id: str
    attempt_number: int
    audio_path: str
    video_path: str
    output_path: str
    options: JobOptions
    kind: JobKind = JobKind.RENDER  # prepare_template: output_path is the thumbnail to write


@dataclass(frozen=True, slots=True)
class Ready:
    """Worker → scheduler: the engine is loaded; the worker is idle."""

    worker_id: str
    pid: int
    node: str | None = None  # the Ray node id of a ray executor's actor; None: this machine


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Worker → scheduler, every heartbeat interval while an attempt runs, and on progress."""

    worker_id: str
    job_id: JobId
    attempt_id: str
    stage: str
    frames_done: int
    frames_total: int
    eta_s: float | None


@dataclass(frozen=True, slots=True)
class Succeeded:
    worker_id: str
    job_id: JobId
    attempt_id: str
    result: JobResult
    template: TemplateOutcome | None = None  # what a prepare_template attempt found


@dataclass(frozen=True, slots=True)
class Failed:
    worker_id: str
    job_id: JobId
    attempt_id: str
    error: ErrorRecord


@dataclass(frozen=True, slots=True)
class WorkerExited:
    """Executor → scheduler: a worker process is gone (never sent by the worker itself)."""

    worker_id: str
    pid: int
    exit_code: int | None  # negative: killed by that signal
    job_id: JobId | None  # the attempt it was running, if any
    attempt_id: str | None


WorkerMessage = Ready | Heartbeat | Succeeded | Failed | WorkerExited
