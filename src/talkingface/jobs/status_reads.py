"""② The two hot reads of status polling (GET /v1/jobs/{id}, GET /easy/query): one prebuilt
statement each, run without a transaction.

Polling clients read far more often than anything else (bench/load.py), so these reads are
built once (SQLAlchemy caches the compiled form, but building the expression per call cost as
much as running it on SQLite) and are single statements: one statement reads one consistent
snapshot, so they need no BEGIN/COMMIT around them (JobStore._read_statement).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
)

from talkingface.errors import JobNotFoundError
from talkingface.jobs import tables
from talkingface.jobs.records import AttemptRecord, JobRecord
from talkingface.jobs.states import JobState
from talkingface.jobs.tables import attempts, jobs

T = TypeVar("T")

_JOB_WITH_ATTEMPTS = (
    select(jobs, *[column.label(f"a_{column.name}") for column in attempts.c])
    .outerjoin(attempts, attempts.c.job_id == jobs.c.id)
    .where(jobs.c.id == bindparam("job_id"))
    .order_by(attempts.c.number)
)

_ahead = jobs.alias("ahead")
# How many queued jobs run before the row's job (higher priority, or same and older); only
# counted when that job is queued itself.
_QUEUED_AHEAD = case(
    (
        jobs.c.state == JobState.QUEUED.value,
        select(func.count())
        .select_from(_ahead)
        .where(
            _ahead.c.state == JobState.QUEUED.value,
            or_(
                _ahead.c.priority > jobs.c.priority,
                and_(
                    _ahead.c.priority == jobs.c.priority,
                    _ahead.c.created_at < jobs.c.created_at,
                ),
            ),
        )
        .scalar_subquery(),
    ),
    else_=literal(0),
).label("queued_ahead")


def _newest_with_key_prefix(*, byte_range: bool) -> Select[Any]:
    matches: ColumnElement[bool]
    if byte_range:
        # SQLite: the prefix as a byte-wise range [prefix, prefix with its last character
        # incremented), which is exactly "starts with" and uses the key's unique index (SQLite
        # never uses one for LIKE, which is case-insensitive there and cost more than the
        # rest of the read). Not on PostgreSQL: a linguistic collation is not byte-wise.
        matches = (jobs.c.idempotency_key >= bindparam("low")) & (
            jobs.c.idempotency_key < bindparam("high")
        )
    else:
        matches = jobs.c.idempotency_key.like(bindparam("pattern"), escape="\\")
    return (
        select(jobs, _QUEUED_AHEAD)
        .where(matches)
        .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        .limit(1)
    )


_NEWEST_BY_PREFIX = {True: _newest_with_key_prefix(byte_range=True)}
_NEWEST_BY_PREFIX[False] = _newest_with_key_prefix(byte_range=False)


def job_not_found(job_id: str) -> JobNotFoundError:
    return JobNotFoundError(
        f"No job with id {job_id}; check the id (finished jobs are deleted when their "
        "retention ends).",
        details={"job_id": job_id},
    )


@dataclass(frozen=True, slots=True)
class StatusRead(Generic[T]):
    """One hot read: a prebuilt statement, its values, and what its rows mean. The same read
    runs on a SQLAlchemy connection (run_status_read) or on an asyncio one (jobs/
    async_statements.py); `interpret` takes rows with attribute and `_mapping` access."""

    statement: Select[Any]
    values: dict[str, Any]
    interpret: Callable[[Sequence[Any]], T]


def run_status_read(conn: Connection, read: StatusRead[T]) -> T:
    return read.interpret(conn.execute(read.statement, read.values).all())


def job_with_attempts_read(job_id: str) -> StatusRead[tuple[JobRecord, list[AttemptRecord]]]:
    """The job and its attempts, oldest first; JobNotFoundError when there is no such job."""

    def interpret(rows: Sequence[Any]) -> tuple[JobRecord, list[AttemptRecord]]:
        if not rows:
            raise job_not_found(job_id)
        found = [tables.attempt_from_row(row, prefix="a_") for row in rows if row.a_id is not None]
        return tables.job_from_row(rows[0]), found

    return StatusRead(_JOB_WITH_ATTEMPTS, {"job_id": job_id}, interpret)


def newest_with_key_prefix_read(
    prefix: str, *, is_sqlite: bool
) -> StatusRead[tuple[JobRecord | None, int]]:
    """The newest job whose idempotency key starts with `prefix` and, when it is queued, how
    many queued jobs run before it (else 0); (None, 0) when there is none."""
    byte_range = is_sqlite and bool(prefix)
    if byte_range:
        values = {"low": prefix, "high": prefix[:-1] + chr(ord(prefix[-1]) + 1)}
    else:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        values = {"pattern": escaped + "%"}

    def interpret(rows: Sequence[Any]) -> tuple[JobRecord | None, int]:
        if not rows:
            return None, 0
        return tables.job_from_row(rows[0]), int(rows[0].queued_ahead)

    return StatusRead(_NEWEST_BY_PREFIX[byte_range], values, interpret)
