"""② Read-only queries of the job store: jobs, attempts and events for the API and reports."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, bindparam, func, select

from talkingface.errors import ErrorCode
from talkingface.jobs import tables
from talkingface.jobs.records import AttemptRecord, EventRecord, JobRecord
from talkingface.jobs.states import JobKind, JobState
from talkingface.jobs.status_reads import (
    StatusRead,
    job_not_found,
    job_with_attempts_read,
    newest_with_key_prefix_read,
    run_status_read,
)
from talkingface.jobs.tables import attempts, events, jobs

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JobQuery:
    """Which render jobs a list shows; every filter given must match."""

    state: JobState | None = None
    label: str | None = None  # exactly
    error_code: ErrorCode | None = None  # the job's last error
    text: str | None = None  # case-insensitive, in the label or an input file name
    low_sync: bool | None = None  # the quality receipt's flag (jobs without one never match)

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = [jobs.c.kind == JobKind.RENDER.value]
        if self.state is not None:
            found.append(jobs.c.state == self.state.value)
        if self.label is not None:
            found.append(jobs.c.label == self.label)
        if self.error_code is not None:
            found.append(jobs.c.error_code == self.error_code.value)
        if self.low_sync is not None:
            found.append(jobs.c.low_sync == self.low_sync)
        if self.text is not None:
            escaped = self.text.casefold().replace("\\", "\\\\")
            escaped = escaped.replace("%", "\\%").replace("_", "\\_")
            found.append(jobs.c.search_text.like(f"%{escaped}%", escape="\\"))
        return found


class JobReads:
    """The store's reads, mixed into JobStore, which owns the engine and the transactions."""

    _is_sqlite: bool

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # JobStore: a read transaction with errors translated

    def _read_statement(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # JobStore: one read statement, no transaction

    def read_statement(self, read: StatusRead[T]) -> T:
        """One hot read (jobs/status_reads.py): a single statement, no transaction."""
        with self._read_statement() as conn:
            return run_status_read(conn, read)

    def get(self, job_id: str) -> JobRecord:
        with self._read() as conn:
            return self._get(conn, job_id)

    def list_jobs(
        self,
        query: JobQuery | None = None,
        *,
        state: JobState | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[JobRecord], int]:
        """A page of render jobs, newest first, and the total matching the filters (a
        template's preparation job is read through its template). `state` alone is
        JobQuery(state=state)."""
        conditions = (query or JobQuery(state=state)).conditions()
        page_query = (
            select(jobs)
            .where(*conditions)
            .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._read() as conn:
            page = conn.execute(page_query).all()
            count = select(func.count()).select_from(jobs).where(*conditions)
            total = int(conn.execute(count).scalar_one())
        return [tables.job_from_row(row) for row in page], total

    def attempts(self, job_id: str) -> list[AttemptRecord]:
        """Every attempt of the job, oldest first."""
        return self.attempts_of([job_id]).get(job_id, [])

    def attempts_of(self, job_ids: list[str]) -> dict[str, list[AttemptRecord]]:
        """Every attempt of each job, oldest first, in one query (a page of jobs at once)."""
        with self._read() as conn:
            return attempts_of_jobs(conn, job_ids)

    def get_with_attempts(self, job_id: str) -> tuple[JobRecord, list[AttemptRecord]]:
        """The job and its attempts from one statement (GET /v1/jobs/{id}: a hot read)."""
        return self.read_statement(job_with_attempts_read(job_id))

    def events(self, job_id: str, *, after_id: int = 0, limit: int = 1000) -> list[EventRecord]:
        with self._read() as conn:
            return events_of_job(conn, job_id, after_id, limit)

    def job_with_events(
        self, job_id: str, *, after_id: int = 0, limit: int = 1000
    ) -> tuple[JobRecord, list[EventRecord]]:
        """The job, then its events after `after_id`, in one read transaction (a state change
        commits with its event, so a terminal state read here has its event in the list)."""
        with self._read() as conn:
            job = self._get(conn, job_id)
            return job, events_of_job(conn, job_id, after_id, limit)

    def jobs_with_events(
        self, after_ids: Mapping[str, int]
    ) -> dict[str, tuple[JobRecord, list[EventRecord]]]:
        """Several jobs, then each one's events after its own cursor, in one read transaction
        (as job_with_events); jobs that no longer exist are left out."""
        if not after_ids:
            return {}
        ids = sorted(after_ids)
        query = (
            select(events)
            .where(events.c.job_id.in_(ids), events.c.id > min(after_ids.values()))
            .order_by(events.c.id)
        )
        with self._read() as conn:
            found: dict[str, tuple[JobRecord, list[EventRecord]]] = {
                row.id: (tables.job_from_row(row), [])
                for row in conn.execute(select(jobs).where(jobs.c.id.in_(ids)))
            }
            for row in conn.execute(query):
                if row.job_id in found and row.id > after_ids[row.job_id]:
                    found[row.job_id][1].append(tables.event_from_row(row))
        return found

    def events_since(
        self, after_id: int, *, kinds: set[str], limit: int = 500
    ) -> list[EventRecord]:
        """Events of any job after `after_id` whose kind is in `kinds`, oldest first."""
        query = (
            select(events)
            .where(events.c.id > after_id, events.c.kind.in_(sorted(kinds)))
            .order_by(events.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [tables.event_from_row(row) for row in conn.execute(query)]

    def last_event_id(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.max(events.c.id))).scalar_one() or 0)

    def queued_count(self) -> int:
        with self._read() as conn:
            return count_jobs(conn, JobState.QUEUED)

    def latest_with_key_prefix(self, prefix: str) -> JobRecord | None:
        """The newest job whose idempotency key starts with `prefix` (HeyGem codes map to
        keys "heygem:<code>:<inputs hash>")."""
        with self._read() as conn:
            return newest_with_key_prefix(conn, prefix, self._is_sqlite)

    def request_fingerprint_of(self, job_id: str) -> str | None:
        """The fingerprint of the request that created the job (kept in its job_created
        event), or None when it was created without one."""
        query = select(events.c.data).where(
            events.c.job_id == job_id, events.c.kind == "job_created"
        )
        with self._read() as conn:
            data = conn.execute(query.order_by(events.c.id).limit(1)).scalar()
        value = (data or {}).get("request_fingerprint")
        return value if isinstance(value, str) else None

    def queue_position(self, job: JobRecord) -> int:
        """How many queued jobs run before this one (higher priority, or same and older)."""
        values = {"priority": job.priority, "created_at": job.created_at}
        with self._read() as conn:
            return int(conn.execute(_QUEUED_AHEAD, values).scalar_one())

    def latest_with_key_prefix_and_position(self, prefix: str) -> tuple[JobRecord | None, int]:
        """latest_with_key_prefix and, when that job is queued, its queue_position, from one
        statement (a HeyGem poll, /easy/query: a hot read)."""
        return self.read_statement(newest_with_key_prefix_read(prefix, is_sqlite=self._is_sqlite))

    def running(self) -> list[tuple[JobRecord, AttemptRecord]]:
        """Every running job with its current attempt (supervision and recovery)."""
        return self._running_where(jobs.c.state == JobState.RUNNING.value)

    def cancel_requested_running(self) -> list[tuple[JobRecord, AttemptRecord]]:
        return self._running_where(
            jobs.c.state == JobState.RUNNING.value, jobs.c.cancel_requested.is_(True)
        )

    def _get(self, conn: Connection, job_id: str, *, lock: bool = False) -> JobRecord:
        query = select(jobs).where(jobs.c.id == job_id)
        if lock and not self._is_sqlite:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise job_not_found(job_id)
        return tables.job_from_row(row)

    def _running_where(self, *conditions: Any) -> list[tuple[JobRecord, AttemptRecord]]:
        query = (
            select(jobs, *[column.label(f"a_{column.name}") for column in attempts.c])
            .join(
                attempts,
                (attempts.c.job_id == jobs.c.id) & (attempts.c.number == jobs.c.attempt),
            )
            .where(*conditions)
            .order_by(jobs.c.started_at, jobs.c.id)
        )
        with self._read() as conn:
            return [
                (tables.job_from_row(row), tables.attempt_from_row(row, prefix="a_"))
                for row in conn.execute(query)
            ]


_QUEUED_AHEAD = (
    select(func.count())
    .select_from(jobs)
    .where(
        (jobs.c.state == JobState.QUEUED.value)
        & (
            (jobs.c.priority > bindparam("priority"))
            | (
                (jobs.c.priority == bindparam("priority"))
                & (jobs.c.created_at < bindparam("created_at"))
            )
        )
    )
)


def newest_with_key_prefix(
    conn: Connection, prefix: str, is_sqlite: bool, *, states: list[JobState] | None = None
) -> JobRecord | None:
    """The newest job whose idempotency key starts with `prefix`, optionally in `states`."""
    matches: ColumnElement[bool]
    if is_sqlite and prefix:
        # SQLite never uses an index for LIKE (case-insensitive there, and slow); the prefix
        # as a byte-wise range is exactly "starts with" and uses the key's unique index, so
        # a HeyGem lookup stays one index lookup however many jobs the store holds.
        after = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        matches = (jobs.c.idempotency_key >= prefix) & (jobs.c.idempotency_key < after)
    else:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches = jobs.c.idempotency_key.like(escaped + "%", escape="\\")
    if states is not None:
        matches = matches & jobs.c.state.in_([state.value for state in states])
    query = (
        select(jobs).where(matches).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(1)
    )
    row = conn.execute(query).first()
    return None if row is None else tables.job_from_row(row)


def attempts_of_jobs(conn: Connection, job_ids: list[str]) -> dict[str, list[AttemptRecord]]:
    found: dict[str, list[AttemptRecord]] = {}
    if not job_ids:
        return found
    query = (
        select(attempts)
        .where(attempts.c.job_id.in_(job_ids))
        .order_by(attempts.c.job_id, attempts.c.number)
    )
    for row in conn.execute(query):
        attempt = tables.attempt_from_row(row)
        found.setdefault(attempt.job_id, []).append(attempt)
    return found


def events_of_job(conn: Connection, job_id: str, after_id: int, limit: int) -> list[EventRecord]:
    query = (
        select(events)
        .where(events.c.job_id == job_id, events.c.id > after_id)
        .order_by(events.c.id)
        .limit(limit)
    )
    return [tables.event_from_row(row) for row in conn.execute(query)]


def count_jobs(conn: Connection, state: JobState | None) -> int:
    """Render jobs (in `state`): what the queue limit and job lists count."""
    query = select(func.count()).select_from(jobs).where(jobs.c.kind == JobKind.RENDER.value)
    if state is not None:
        query = query.where(jobs.c.state == state.value)
    return int(conn.execute(query).scalar_one())
