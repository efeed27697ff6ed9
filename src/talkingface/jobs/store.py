"""The job store: the durable record of every job and, through claim_next, the queue itself."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg_pool import PoolTimeout
from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from talkingface.errors import (
    ErrorRecord,
    JobStateError,
    QueueFullError,
    StoreUnavailableError,
)
from talkingface.jobs import tables
from talkingface.jobs.async_statements import (
    POOL_WAIT_S,
    AsyncStatements,
    async_statement_conninfo,
)
from talkingface.jobs.database import (
    damaged_sqlite_error,
    is_damaged_sqlite,
    server_engine,
    sqlite_engine,
)
from talkingface.jobs.deletion import JobDeletion
from talkingface.jobs.outbox import DeliveryOutbox
from talkingface.jobs.reads import JobReads, count_jobs, newest_with_key_prefix
from talkingface.jobs.records import (
    AttemptRecord,
    InputNames,
    JobInputs,
    JobOptions,
    JobRecord,
    JobTags,
)
from talkingface.jobs.service_state import ServiceState
from talkingface.jobs.states import (
    TERMINAL_STATES,
    AttemptOutcome,
    JobKind,
    JobState,
    check_transition,
)
from talkingface.jobs.status_reads import StatusRead
from talkingface.jobs.tables import attempts, events, jobs
from talkingface.jobs.template_rows import TemplateRows
from talkingface.results import JobResult


def utcnow() -> datetime:
    """The store's default clock: aware UTC now (tests inject their own)."""
    return datetime.now(UTC)


T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_MIGRATE_LOCK_KEY = 0x7466_0001  # pg_advisory_xact_lock key: one migrator at a time
_QUEUE_LIMIT_LOCK_KEY = 0x7466_0002  # one limited create at a time counts the queue
_LIVE_PREFIX_LOCK_SPACE = 0x7466_0003  # (space, hashtext(prefix)): one create per key prefix
_LIVE_STATES = [JobState.QUEUED, JobState.RUNNING]
_PURGE_BATCH = 500


class JobStore(JobReads, TemplateRows, JobDeletion, ServiceState, DeliveryOutbox):
    """The single source of truth and the queue. Thread-safe (one Engine, short transactions)."""

    def __init__(self, url: str, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._url = make_url(url)
        self._where = self._url.render_as_string(hide_password=True)
        self._is_sqlite = self._url.get_backend_name() == "sqlite"
        self._engine = sqlite_engine(url) if self._is_sqlite else server_engine(url)
        # Single read statements (the status reads): a second pool of connections to the
        # same database, in autocommit (see _read_statement); not for an in-memory SQLite.
        self._statement_engine: Engine | None = None
        if not self._is_sqlite:
            self._statement_engine = server_engine(url, transactions=False)
        elif self._url.database not in (None, "", ":memory:"):
            self._statement_engine = sqlite_engine(url, transactions=False)
        # The same single statements awaited on asyncio connections (PostgreSQL), for the API.
        conninfo = async_statement_conninfo(self._url)
        self._async_statements = AsyncStatements(conninfo) if conninfo is not None else None

    @property
    def reads_are_local(self) -> bool:
        """Reads are of a local SQLite file (short, never waiting on a network)."""
        return self._is_sqlite

    @property
    def statements_are_awaitable(self) -> bool:
        """read_statement_awaited is available (PostgreSQL through psycopg's asyncio driver)."""
        return self._async_statements is not None

    async def read_statement_awaited(self, read: StatusRead[T]) -> T:
        """read_statement on an asyncio connection, for the event loop (statements_are_
        awaitable); a stalled database makes the read wait, never the loop."""
        if self._async_statements is None:
            raise RuntimeError("this store has no asyncio statements (not PostgreSQL)")
        try:
            return await self._async_statements.run(read)
        except PoolTimeout as exc:
            reason = await self._async_statements.why_unavailable()
            if reason is not None:
                raise self._unavailable(reason) from exc
            raise StoreUnavailableError(
                f"The job store at {self._where} is overloaded: every connection for status "
                f"reads stayed busy for {POOL_WAIT_S:.0f} s; check the database's load.",
                details={"url": self._where},
                cause=exc,
            ) from exc
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc

    async def close_awaited_statements(self) -> None:
        """Close the asyncio connections (the API's shutdown, in its event loop)."""
        if self._async_statements is not None:
            await self._async_statements.close()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (tests and tools; the service goes through the methods)."""
        return self._engine

    def reading(self) -> AbstractContextManager[Connection]:
        """A read transaction with database errors translated (reports such as jobs.stats)."""
        return self._read()

    # -- lifecycle ---------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic, configured here; no alembic.ini)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._write() as conn:
            if not self._is_sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_LOCK_KEY})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def ping(self) -> None:
        """SELECT 1; raises StoreUnavailableError when the database cannot be reached."""
        with self._read() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        self._engine.dispose()
        if self._statement_engine is not None:
            self._statement_engine.dispose()

    # -- creation and reads ------------------------------------------------------------------

    def create(
        self,
        inputs: JobInputs,
        options: JobOptions,
        *,
        priority: int = 0,
        idempotency_key: str | None = None,
        max_queued: int | None = None,
        job_id: str | None = None,
        live_key_prefix: str | None = None,
        request_fingerprint: str | None = None,
        tags: JobTags | None = None,
        names: InputNames | None = None,
    ) -> tuple[JobRecord, bool]:
        """(job, created): an idempotency key seen before returns that job and False.

        job_id: a caller-chosen uuid4 hex (the API names upload folders after it); else new.
        live_key_prefix: a queued or running job whose key starts with it is returned instead
        (False): one live job per prefix (a HeyGem code), however many creates race.
        request_fingerprint: kept in the job_created event (request_fingerprint_of).
        names.template_id: the template must still be registered when the job is written
        (TemplateNotFoundError otherwise); a template delete sees the job (TemplateDeletion).
        """
        try:
            with self._write() as conn:
                if live_key_prefix is not None:
                    live = self._live_with_key_prefix(conn, live_key_prefix)
                    if live is not None:
                        return live, False
                if idempotency_key is not None:
                    existing = conn.execute(
                        select(jobs).where(jobs.c.idempotency_key == idempotency_key)
                    ).first()
                    if existing is not None:
                        return tables.job_from_row(existing), False
                if max_queued is not None:
                    if not self._is_sqlite:  # SQLite: BEGIN IMMEDIATE already serialises writers
                        # READ COMMITTED: two creates could both count max_queued - 1
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": _QUEUE_LIMIT_LOCK_KEY},
                        )
                    queued = count_jobs(conn, JobState.QUEUED)
                    if queued >= max_queued:
                        raise QueueFullError(
                            f"The queue is full ({queued} jobs waiting, limit {max_queued}); "
                            "submit again later."
                        )
                if names is not None and names.template_id is not None:
                    self._hold_template(conn, names.template_id)
                now = self._clock()
                new_id = job_id or uuid.uuid4().hex
                values = tables.new_job_values(
                    new_id, inputs, options, priority, idempotency_key, tags, names
                )
                conn.execute(jobs.insert().values(**values, created_at=now, updated_at=now))
                created: dict[str, Any] = {"priority": priority}  # Any: JSON-safe values
                if request_fingerprint is not None:
                    created["request_fingerprint"] = request_fingerprint
                tables.insert_event(conn, new_id, "job_created", created, now)
                return self._get(conn, new_id), True
        except IntegrityError:
            if idempotency_key is None:
                raise
            # a concurrent create with the same key won the insert: return its job
            with self._read() as conn:
                row = conn.execute(
                    select(jobs).where(jobs.c.idempotency_key == idempotency_key)
                ).first()
            if row is None:
                raise
            return tables.job_from_row(row), False

    def _live_with_key_prefix(self, conn: Connection, prefix: str) -> JobRecord | None:
        """The newest queued or running job whose key starts with `prefix`, read under a lock
        on the prefix held to the end of the transaction (SQLite: BEGIN IMMEDIATE already
        serialises writers), so a concurrent create with the same prefix sees our insert."""
        if not self._is_sqlite:
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:space, hashtext(:prefix))"),
                {"space": _LIVE_PREFIX_LOCK_SPACE, "prefix": prefix},
            )
        return newest_with_key_prefix(conn, prefix, self._is_sqlite, states=_LIVE_STATES)

    # -- the queue ---------------------------------------------------------------------------

    def claim_next(
        self, worker_id: str, *, lease_s: float
    ) -> tuple[JobRecord, AttemptRecord] | None:
        """Atomically start the highest-priority, oldest runnable queued job, or None."""
        with self._write() as conn:
            now = self._clock()
            candidate = (
                select(jobs.c.id)
                .where(
                    jobs.c.state == JobState.QUEUED.value,
                    jobs.c.cancel_requested.is_(False),
                    (jobs.c.not_before.is_(None)) | (jobs.c.not_before <= now),
                )
                .order_by(jobs.c.priority.desc(), jobs.c.created_at, jobs.c.id)
                .limit(1)
            )
            if not self._is_sqlite:  # SQLite: BEGIN IMMEDIATE already serialises writers
                candidate = candidate.with_for_update(skip_locked=True)
            job_id = conn.execute(candidate).scalar()
            if job_id is None:
                return None
            claimed = conn.execute(  # queued → running: the WHERE is this transition's check
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.state == JobState.QUEUED.value)
                .values(
                    state=JobState.RUNNING.value,
                    attempt=jobs.c.attempt + 1,
                    lease_owner=worker_id,
                    lease_expires_at=now + timedelta(seconds=lease_s),
                    started_at=func.coalesce(jobs.c.started_at, now),
                    stage="starting",
                    frames_done=0,
                    frames_total=0,
                    progress_at=now,
                    updated_at=now,
                )
                .returning(jobs)
            ).first()
            if claimed is None:
                return None
            job = tables.job_from_row(claimed)
            attempt_id = uuid.uuid4().hex
            conn.execute(
                attempts.insert().values(
                    id=attempt_id,
                    job_id=job_id,
                    number=job.attempt,
                    worker=worker_id,
                    started_at=now,
                    outcome=AttemptOutcome.RUNNING.value,
                )
            )
            data = {"attempt": job.attempt, "worker": worker_id}
            tables.insert_event(conn, job_id, "attempt_started", data, now)
            return job, self._attempt(conn, attempt_id)

    def heartbeat(
        self,
        job_id: str,
        attempt_id: str,
        *,
        stage: str,
        frames_done: int,
        frames_total: int,
        lease_s: float,
    ) -> bool:
        """Record progress and extend the lease; False when this attempt is no longer current."""
        with self._write() as conn:
            job = self._current(conn, job_id, attempt_id)
            if job is None:
                return False
            now = self._clock()
            values: dict[str, Any] = {  # Any: column values of several types
                "stage": stage,
                "frames_done": frames_done,
                "frames_total": frames_total,
                "lease_expires_at": now + timedelta(seconds=lease_s),
                "updated_at": now,
            }
            if stage != job.stage or frames_done != job.frames_done:
                values["progress_at"] = now
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))
            if stage != job.stage:
                data = {"attempt": job.attempt, "stage": stage, "previous": job.stage}
                tables.insert_event(conn, job_id, "stage_changed", data, now)
            return True

    def succeed(self, job_id: str, attempt_id: str, result: JobResult) -> bool:
        """Mark the job succeeded. False when the caller must withdraw the published result:
        the attempt is not current (nothing changed), or the job's cancel was requested (a
        202 cancel is kept: the job and the attempt end canceled, as in fail_attempt)."""
        with self._write() as conn:
            job = self._current(conn, job_id, attempt_id)
            if job is None:
                return False
            check_transition(job_id, job.state, JobState.SUCCEEDED)
            now = self._clock()
            if job.cancel_requested:
                canceled = tables.canceled()
                tables.end_attempt(conn, attempt_id, AttemptOutcome.CANCELED, canceled, now)
                tables.cancel_job(conn, job, now)
                return False
            tables.end_attempt(conn, attempt_id, AttemptOutcome.SUCCEEDED, None, now)
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(
                    state=JobState.SUCCEEDED.value,
                    result=asdict(result),
                    low_sync=None if result.receipt is None else result.receipt.low_sync,
                    frames_done=result.frame_count,  # the last heartbeat may predate the end
                    frames_total=result.frame_count,
                    finished_at=now,
                    updated_at=now,
                    **tables.NO_LEASE,
                )
            )
            tables.insert_event(conn, job_id, "job_succeeded", {"attempt": job.attempt}, now)
            return True

    def fail_attempt(
        self,
        job_id: str,
        attempt_id: str,
        error: ErrorRecord,
        *,
        outcome: AttemptOutcome,
        retry_at: datetime | None,
    ) -> JobRecord:
        """End the attempt with `error`: requeue at retry_at, else fail the job.

        A job whose cancel was requested ends canceled instead of being requeued.
        Fenced: when the attempt is no longer current, the record is returned unchanged.
        """
        if not error.message.strip():
            raise ValueError("the job store refuses an error with an empty message")
        if outcome in (AttemptOutcome.RUNNING, AttemptOutcome.SUCCEEDED):
            raise ValueError(f"fail_attempt needs a failure outcome, not {outcome.value}")
        with self._write() as conn:
            job = self._current(conn, job_id, attempt_id)
            if job is None:
                return self._get(conn, job_id)
            now = self._clock()
            tables.end_attempt(conn, attempt_id, outcome, error, now)
            if job.cancel_requested:
                tables.cancel_job(conn, job, now)
            elif retry_at is not None:
                tables.requeue_job(conn, job, error, outcome, retry_at, now)
            else:
                tables.fail_job(conn, job, error, now)
            return self._get(conn, job_id)

    def set_priority(self, job_id: str, priority: int) -> JobRecord:
        """Change a queued job's priority (its place in the queue); other states are a 409."""
        with self._write() as conn:
            job = self._get(conn, job_id, lock=True)
            if job.state != JobState.QUEUED:
                raise JobStateError(
                    f"Job {job_id} is {job.state.value}; only a queued job's priority can change.",
                    details={"job_id": job_id, "state": job.state.value},
                )
            now = self._clock()
            conn.execute(
                jobs.update().where(jobs.c.id == job_id).values(priority=priority, updated_at=now)
            )
            data = {"previous": job.priority, "priority": priority}
            tables.insert_event(conn, job_id, "priority_changed", data, now)
            return self._get(conn, job_id)

    def queued_in_order(self, *, limit: int = 1000) -> list[JobRecord]:
        """Queued jobs in the order claim_next takes them (retries waiting on not_before
        are listed in their place; they are skipped until due)."""
        query = (
            select(jobs)
            .where(jobs.c.state == JobState.QUEUED.value)
            .order_by(jobs.c.priority.desc(), jobs.c.created_at.asc(), jobs.c.id.asc())
            .limit(limit)
        )
        with self._read() as conn:
            return [tables.job_from_row(row) for row in conn.execute(query)]

    def request_cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job at once, flag a running one; a finished job is a 409."""
        with self._write() as conn:
            job = self._get(conn, job_id, lock=True)
            now = self._clock()
            if job.state == JobState.QUEUED:
                tables.cancel_job(conn, job, now)
            elif job.state == JobState.RUNNING:
                if not job.cancel_requested:
                    conn.execute(
                        jobs.update()
                        .where(jobs.c.id == job_id)
                        .values(cancel_requested=True, updated_at=now)
                    )
                    tables.insert_event(
                        conn, job_id, "cancel_requested", {"attempt": job.attempt}, now
                    )
            else:
                raise JobStateError(
                    f"Job {job_id} is already {job.state.value}; only queued or running jobs "
                    "can be canceled.",
                    details={"job_id": job_id, "state": job.state.value},
                )
            return self._get(conn, job_id)

    def mark_canceled(self, job_id: str, attempt_id: str) -> JobRecord:
        """After its worker was killed: the running job and its attempt end canceled (fenced)."""
        with self._write() as conn:
            job = self._current(conn, job_id, attempt_id)
            if job is None:
                return self._get(conn, job_id)
            now = self._clock()
            tables.end_attempt(conn, attempt_id, AttemptOutcome.CANCELED, tables.canceled(), now)
            tables.cancel_job(conn, job, now)
            return self._get(conn, job_id)

    def retry(self, job_id: str) -> JobRecord:
        """Manual retry: a failed or canceled job goes back to the queue, its history kept."""
        with self._write() as conn:
            job = self._get(conn, job_id, lock=True)
            if job.state not in (JobState.FAILED, JobState.CANCELED):
                raise JobStateError(
                    f"Job {job_id} is {job.state.value}; only failed or canceled jobs can be "
                    "retried.",
                    details={"job_id": job_id, "state": job.state.value},
                )
            check_transition(job_id, job.state, JobState.QUEUED)
            now = self._clock()
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(
                    state=JobState.QUEUED.value,
                    cancel_requested=False,
                    not_before=None,
                    result=None,
                    finished_at=None,
                    stage=None,
                    frames_done=0,
                    frames_total=0,
                    updated_at=now,
                    **tables.NO_LEASE,
                    **tables.error_values(None),
                )
            )
            data = {"attempt": job.attempt, "previous_state": job.state.value}
            tables.insert_event(conn, job_id, "job_requeued", data, now)
            return self._get(conn, job_id)

    def add_event(self, job_id: str, kind: str, data: dict[str, Any] | None = None) -> None:
        with self._write() as conn:
            self._get(conn, job_id)
            tables.insert_event(conn, job_id, kind, data or {}, self._clock())

    def purge_finished_before(self, cutoff: datetime) -> list[JobRecord]:
        """Delete terminal jobs finished before cutoff, with their history; return them.
        A template's preparation job lives as long as its template: it is never purged."""
        query = select(jobs).where(
            jobs.c.state.in_([state.value for state in TERMINAL_STATES]),
            jobs.c.finished_at < cutoff,
            jobs.c.kind == JobKind.RENDER.value,
        )
        with self._write() as conn:
            purged = [tables.job_from_row(row) for row in conn.execute(query)]
            ids = [job.id for job in purged]
            for start in range(0, len(ids), _PURGE_BATCH):
                batch = ids[start : start + _PURGE_BATCH]
                conn.execute(events.delete().where(events.c.job_id.in_(batch)))
                conn.execute(attempts.delete().where(attempts.c.job_id.in_(batch)))
                conn.execute(jobs.delete().where(jobs.c.id.in_(batch)))
        return purged

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._translated(), self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _read_statement(self) -> Iterator[Connection]:
        """For one read statement, which reads one consistent snapshot by itself: no BEGIN
        and COMMIT around it (an in-memory SQLite: a read transaction, as _read)."""
        if self._statement_engine is None:
            with self._read() as conn:
                yield conn
            return
        with self._translated(), self._statement_engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock at BEGIN (BEGIN IMMEDIATE)."""
        with self._translated(), self._engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            if self._is_sqlite and is_damaged_sqlite(exc):
                raise damaged_sqlite_error(str(self._url.database), exc) from exc
            if isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated:
                raise self._unavailable(exc) from exc
            raise

    def _unavailable(self, exc: DBAPIError | psycopg.OperationalError) -> StoreUnavailableError:
        driver_error = exc.orig if isinstance(exc, DBAPIError) else exc
        reason = str(driver_error).strip()
        reason = reason.splitlines()[0] if reason else type(exc).__name__
        return StoreUnavailableError(
            f"The job store at {self._where} cannot be reached ({reason}); check that the "
            "database is running and the database URL is right.",
            details={"url": self._where},
            cause=exc,
        )

    # -- helpers inside a transaction --------------------------------------------------------

    def _attempt(self, conn: Connection, attempt_id: str) -> AttemptRecord:
        row = conn.execute(select(attempts).where(attempts.c.id == attempt_id)).one()
        return tables.attempt_from_row(row)

    def _current(self, conn: Connection, job_id: str, attempt_id: str) -> JobRecord | None:
        """The locked job if attempt_id is its current running attempt, else None (fenced out)."""
        job = self._get(conn, job_id, lock=True)
        if job.state != JobState.RUNNING:
            return None
        number = conn.execute(
            select(attempts.c.number).where(
                attempts.c.id == attempt_id,
                attempts.c.job_id == job_id,
                attempts.c.outcome == AttemptOutcome.RUNNING.value,
            )
        ).scalar()
        return job if number == job.attempt else None
