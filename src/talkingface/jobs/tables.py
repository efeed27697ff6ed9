"""The job store's schema (SQLAlchemy Core: jobs, attempts, events) and its row ↔ record mapping."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Row, RowMapping

from talkingface.errors import MAX_TRACEBACK_BYTES, ErrorCode, ErrorRecord, Stage
from talkingface.jobs.records import (
    AttemptRecord,
    EventRecord,
    InputNames,
    JobInputs,
    JobOptions,
    JobRecord,
    JobTags,
)
from talkingface.jobs.states import AttemptOutcome, JobKind, JobState, check_transition
from talkingface.results import JobResult
from talkingface.vocabulary import JobId

# the same check on every table that stores an error: a stored error always says something
ERROR_MESSAGE_CHECK = "error_code IS NULL OR length(error_message) > 0"


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the job store; use aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _error_columns(*, with_traceback: bool) -> list[Column[object]]:
    columns: list[Column[object]] = [
        Column("error_code", String(32)),
        Column("error_stage", String(32)),
        Column("error_message", Text),
        Column("error_retryable", Boolean),
        Column("error_details", JSON(none_as_null=True)),
        Column("error_cause", Text),
    ]
    if with_traceback:
        columns.append(Column("error_traceback", Text))  # at most 8 kB
    return columns


metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),  # uuid4 hex
    Column("idempotency_key", Text, unique=True),
    Column("state", String(16), nullable=False, index=True),
    Column("priority", Integer, nullable=False),
    Column("audio_path", Text, nullable=False),
    Column("video_path", Text, nullable=False),
    Column("input_duration_s", Float),
    Column("options", JSON, nullable=False),
    Column("stage", String(32)),
    Column("frames_done", Integer, nullable=False),
    Column("frames_total", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("not_before", UtcDateTime),
    Column("lease_owner", Text),
    Column("lease_expires_at", UtcDateTime),
    Column("cancel_requested", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("progress_at", UtcDateTime),
    Column("result", JSON(none_as_null=True)),
    *_error_columns(with_traceback=False),
    # migration 0003: what the job does (JobKind); public job lists show render jobs only
    Column("kind", String(32), nullable=False, server_default=JobKind.RENDER.value),
    # migration 0004: what the submitter attached, and the inputs by name (JobTags, InputNames)
    Column("label", String(200)),
    Column("metadata", JSON(none_as_null=True)),
    Column("audio_name", Text),
    Column("video_name", Text),
    Column("template_id", String(32)),
    Column("search_text", Text),  # label and input names, casefolded: what `q=` searches
    # migration 0005: the result's quality receipt fell under a floor (NULL: no receipt)
    Column("low_sync", Boolean),
    CheckConstraint(ERROR_MESSAGE_CHECK, name="ck_jobs_error_message"),
)
Index("ix_jobs_claim", jobs.c.state, jobs.c.priority.desc(), jobs.c.created_at)
Index("ix_jobs_finished_at", jobs.c.finished_at)
Index("ix_jobs_label", jobs.c.label)
Index("ix_jobs_template_id", jobs.c.template_id)
Index("ix_jobs_low_sync", jobs.c.low_sync)
Index(  # prefix searches (HeyGem codes) on PostgreSQL under any collation: migration 0002
    "ix_jobs_idempotency_key_prefix",
    jobs.c.idempotency_key,
    postgresql_ops={"idempotency_key": "text_pattern_ops"},
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", String(32), primary_key=True),  # uuid4 hex
    Column(
        "job_id",
        String(32),
        ForeignKey("jobs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("number", Integer, nullable=False),
    Column("worker", Text),
    Column("started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),
    Column("outcome", String(16), nullable=False),
    *_error_columns(with_traceback=True),
    CheckConstraint(ERROR_MESSAGE_CHECK, name="ck_attempts_error_message"),
    UniqueConstraint("job_id", "number", name="uq_attempts_job_number"),
)

events = Table(
    "events",
    metadata,
    # BIGINT on PostgreSQL; INTEGER on SQLite so that it is the autoincrementing rowid
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column(
        "job_id",
        String(32),
        ForeignKey("jobs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("data", JSON, nullable=False),
)

# -- migration 0003: registered templates and the service's durable operator state ------------

templates = Table(
    "templates",
    metadata,
    Column("id", String(32), primary_key=True),  # the content's SHA-256, first 32 hex digits
    Column(  # the prepare_template job: the template's state and progress are the job's
        "job_id",
        String(32),
        ForeignKey("jobs.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("video_name", Text, nullable=False),  # under <data>/templates/<id>/
    Column("duration_s", Float, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("fps", Float, nullable=False),
    Column("is_still_image", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("outcome", JSON(none_as_null=True)),  # TemplateOutcome, once prepared
)

service_state = Table(  # operator switches that outlive a restart (the dispatch pause)
    "service_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

outbox = Table(  # webhook and alert deliveries: sent at least once, across restarts
    "outbox",
    metadata,
    Column("id", String(32), primary_key=True),  # the delivery id: its Idempotency-Key header
    Column("kind", String(16), nullable=False),  # webhook | alert
    Column("job_id", String(32)),  # a webhook's job (no foreign key: it outlives a purge)
    Column("url", Text, nullable=False),
    Column("event", String(64), nullable=False),
    Column("body", Text, nullable=False),  # the exact JSON sent: the same signature every try
    Column("state", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),  # tries made so far
    Column("due_at", UtcDateTime, nullable=False),  # next try; a sender's claim pushes it on
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("last_error", Text),
)
Index("ix_outbox_due", outbox.c.state, outbox.c.due_at)


# -- row ↔ record ---------------------------------------------------------------------------

NO_LEASE: dict[str, None] = {"lease_owner": None, "lease_expires_at": None}
CANCELED_MESSAGE = "Canceled by request."
_OPTION_FIELDS = frozenset(field.name for field in fields(JobOptions))


def canceled() -> ErrorRecord:
    """The error a canceled job and its canceled attempt carry."""
    return ErrorRecord(
        code=ErrorCode.CANCELED, stage=None, retryable=False, message=CANCELED_MESSAGE
    )


def new_job_values(
    job_id: str,
    inputs: JobInputs,
    options: JobOptions,
    priority: int,
    idempotency_key: str | None,
    tags: JobTags | None = None,
    names: InputNames | None = None,
) -> dict[str, Any]:  # Any: column values of several types
    """Column values of a new queued job (timestamps added by the caller)."""
    tags = tags or JobTags()
    names = names or InputNames()
    return {
        "label": tags.label,
        "metadata": tags.metadata,
        "audio_name": names.audio_name,
        "video_name": names.video_name,
        "template_id": names.template_id,
        "search_text": search_text(tags.label, names.audio_name, names.video_name),
        "id": job_id,
        "idempotency_key": idempotency_key,
        "state": JobState.QUEUED.value,
        "priority": priority,
        "audio_path": inputs.audio_path,
        "video_path": inputs.video_path,
        "input_duration_s": inputs.input_duration_s,
        "options": asdict(options),
        "frames_done": 0,
        "frames_total": 0,
        "attempt": 0,
        "cancel_requested": False,
    }


def search_text(*parts: str | None) -> str:
    """What `GET /v1/jobs?q=` matches: the label and input names, casefolded, one a line."""
    return "\n".join(part.casefold() for part in parts if part)


def error_values(error: ErrorRecord | None) -> dict[str, Any]:  # Any: column values
    """The error_* columns (without the attempt-only traceback) for `error`, or all NULL."""
    if error is None:
        return {
            "error_code": None,
            "error_stage": None,
            "error_message": None,
            "error_retryable": None,
            "error_details": None,
            "error_cause": None,
        }
    return {
        "error_code": error.code.value,
        "error_stage": error.stage.value if error.stage else None,
        "error_message": error.message,
        "error_retryable": error.retryable,
        "error_details": error.details,
        "error_cause": error.cause,
    }


def _error_from(values: RowMapping, prefix: str = "") -> ErrorRecord | None:
    code = values[f"{prefix}error_code"]
    if code is None:
        return None
    stage = values[f"{prefix}error_stage"]
    return ErrorRecord(
        code=ErrorCode(code),
        stage=Stage(stage) if stage else None,
        retryable=bool(values[f"{prefix}error_retryable"]),
        message=values[f"{prefix}error_message"],
        details=dict(values[f"{prefix}error_details"] or {}),
        cause=values[f"{prefix}error_cause"],
        traceback=values.get(f"{prefix}error_traceback"),
    )


def job_from_row(row: Row[Any]) -> JobRecord:
    values = row._mapping
    options = {key: value for key, value in values["options"].items() if key in _OPTION_FIELDS}
    result = values["result"]
    return JobRecord(
        id=JobId(values["id"]),
        idempotency_key=values["idempotency_key"],
        state=JobState(values["state"]),
        priority=values["priority"],
        inputs=JobInputs(
            audio_path=values["audio_path"],
            video_path=values["video_path"],
            input_duration_s=values["input_duration_s"],
        ),
        options=JobOptions(**options),
        stage=values["stage"],
        frames_done=values["frames_done"],
        frames_total=values["frames_total"],
        attempt=values["attempt"],
        not_before=values["not_before"],
        lease_owner=values["lease_owner"],
        lease_expires_at=values["lease_expires_at"],
        cancel_requested=bool(values["cancel_requested"]),
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        started_at=values["started_at"],
        finished_at=values["finished_at"],
        result=JobResult.from_stored(result) if result is not None else None,
        error=_error_from(values),
        progress_at=values["progress_at"],
        kind=JobKind(values["kind"]),
        tags=JobTags(label=values["label"], metadata=values["metadata"]),
        names=InputNames(
            audio_name=values["audio_name"],
            video_name=values["video_name"],
            template_id=values["template_id"],
        ),
    )


def attempt_from_row(row: Row[Any], *, prefix: str = "") -> AttemptRecord:
    """An attempt from its columns, optionally labelled `<prefix><column>` in a join."""
    values = row._mapping
    return AttemptRecord(
        id=values[f"{prefix}id"],
        job_id=JobId(values[f"{prefix}job_id"]),
        number=values[f"{prefix}number"],
        worker=values[f"{prefix}worker"],
        started_at=values[f"{prefix}started_at"],
        ended_at=values[f"{prefix}ended_at"],
        outcome=AttemptOutcome(values[f"{prefix}outcome"]),
        error=_error_from(values, prefix),
    )


def event_from_row(row: Row[Any]) -> EventRecord:
    values = row._mapping
    return EventRecord(
        id=int(values["id"]),
        job_id=JobId(values["job_id"]),
        at=values["at"],
        kind=values["kind"],
        data=dict(values["data"] or {}),
    )


# -- state changes inside a store transaction ------------------------------------------------


def end_attempt(
    conn: Connection,
    attempt_id: str,
    outcome: AttemptOutcome,
    error: ErrorRecord | None,
    now: datetime,
) -> None:
    """Close an attempt with its outcome (and error, traceback cut to 8 kB)."""
    values = error_values(error)
    if error is not None and error.traceback:
        values["error_traceback"] = _tail_bytes(error.traceback, MAX_TRACEBACK_BYTES)
    conn.execute(
        attempts.update()
        .where(attempts.c.id == attempt_id)
        .values(outcome=outcome.value, ended_at=now, **values)
    )


def cancel_job(conn: Connection, job: JobRecord, now: datetime) -> None:
    """The job ends canceled, with the CANCELED error; event job_canceled."""
    check_transition(job.id, job.state, JobState.CANCELED)
    conn.execute(
        jobs.update()
        .where(jobs.c.id == job.id)
        .values(
            state=JobState.CANCELED.value,
            finished_at=now,
            updated_at=now,
            **NO_LEASE,
            **error_values(canceled()),
        )
    )
    insert_event(conn, job.id, "job_canceled", {"previous_state": job.state.value}, now)


def requeue_job(
    conn: Connection,
    job: JobRecord,
    error: ErrorRecord,
    outcome: AttemptOutcome,
    retry_at: datetime,
    now: datetime,
) -> None:
    """Back to the queue until retry_at, the error kept as the last one; event retry_scheduled."""
    check_transition(job.id, job.state, JobState.QUEUED)
    conn.execute(
        jobs.update()
        .where(jobs.c.id == job.id)
        .values(
            state=JobState.QUEUED.value,
            not_before=retry_at,
            updated_at=now,
            **NO_LEASE,
            **error_values(error),
        )
    )
    data = {
        **_error_summary(job, error),
        "outcome": outcome.value,
        "retry_at": retry_at.isoformat(),
    }
    insert_event(conn, job.id, "retry_scheduled", data, now)


def _error_summary(job: JobRecord, error: ErrorRecord) -> dict[str, Any]:  # Any: JSON-safe
    """What a job's history says about an attempt's error."""
    return {
        "attempt": job.attempt,
        "code": error.code.value,
        "stage": error.stage.value if error.stage else None,
        "message": error.message,
    }


def fail_job(conn: Connection, job: JobRecord, error: ErrorRecord, now: datetime) -> None:
    """The job ends failed with `error`; event job_failed."""
    check_transition(job.id, job.state, JobState.FAILED)
    conn.execute(
        jobs.update()
        .where(jobs.c.id == job.id)
        .values(
            state=JobState.FAILED.value,
            finished_at=now,
            updated_at=now,
            **NO_LEASE,
            **error_values(error),
        )
    )
    data = _error_summary(job, error)
    insert_event(conn, job.id, "job_failed", data, now)


EVENTS_LOCK_KEY = 0x7466_0004  # beside the store's other advisory lock keys (store.py)


def insert_event(
    conn: Connection, job_id: str, kind: str, data: dict[str, Any], now: datetime
) -> None:
    """One history event; `data` must be JSON-safe.

    Event streams and the webhook sender follow events by id (`id > last seen`), so events
    must become visible in the order of their ids. SQLite has one writer at a time; on
    PostgreSQL concurrent transactions (API processes, the scheduler) draw ids first and may
    commit in another order, and a reader would step over an id that commits late. So a
    transaction takes the events lock before it draws an id, held to its commit. Insert
    events last in a transaction (after its row locks): the lock is then held briefly and
    never waits behind a row lock held by a transaction that waits for it."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENTS_LOCK_KEY})
    conn.execute(events.insert().values(job_id=job_id, at=now, kind=kind, data=data))


def _tail_bytes(value: str, limit: int) -> str:
    encoded = value.encode("utf-8")
    if len(encoded) <= limit:
        return value
    return encoded[-limit:].decode("utf-8", errors="ignore")
