"""Job, attempt and worker states (stored and wire values) and the allowed job transitions."""

from __future__ import annotations

from enum import StrEnum

from talkingface.errors import UnexpectedError


class JobState(StrEnum):
    QUEUED = "queued"  # waiting; with attempt > 0 and not_before set it waits for a retry
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class JobKind(StrEnum):
    """What a job does; workers run every kind through the same dispatch, retry and recovery."""

    RENDER = "render"  # speech + template → MP4 (the public /v1/jobs)
    PREPARE_TEMPLATE = "prepare_template"  # a registered template's face track into the cache


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED})

ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELED}),
    # RUNNING → QUEUED is an automatic retry after a retryable error
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED, JobState.QUEUED}
    ),
    JobState.FAILED: frozenset({JobState.QUEUED}),  # manual retry
    JobState.CANCELED: frozenset({JobState.QUEUED}),  # manual retry
    JobState.SUCCEEDED: frozenset(),
}


class AttemptOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the worker reported an error
    LOST = "lost"  # the worker died or stopped heartbeating
    STALLED = "stalled"  # heartbeats came but progress did not move
    TIMED_OUT = "timed_out"  # ran past the limit scaled by the input's duration
    CANCELED = "canceled"


class WorkerState(StrEnum):
    STARTING = "starting"  # spawned, loading the engine
    READY = "ready"  # idle
    BUSY = "busy"  # running an attempt
    LOST = "lost"  # exited or killed; being replaced


def check_transition(job_id: str, current: JobState, new: JobState) -> None:
    """Refuse a job state change that ALLOWED_TRANSITIONS does not list (the store calls this
    on every change). What a user may not do is refused earlier, as a 409; reaching this is a
    bug in the store, which must not rewrite a finished job."""
    allowed = ALLOWED_TRANSITIONS[current]
    if new not in allowed:
        listed = ", ".join(sorted(state.value for state in allowed)) or "nothing"
        raise UnexpectedError(
            f"Job {job_id} cannot go from {current.value} to {new.value} (a {current.value} "
            f"job may become {listed}); the change was not made. This is a bug in the job store.",
            details={"job_id": job_id, "from": current.value, "to": new.value},
        )
