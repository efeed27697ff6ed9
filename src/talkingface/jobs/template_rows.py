"""② Registered templates in the store: one row each, naming the prepare_template job whose
state, progress and events are the template's (mixed into JobStore)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, select, text
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from talkingface.jobs import tables
from talkingface.jobs.records import JobInputs, JobOptions, JobRecord, TemplateOutcome
from talkingface.jobs.states import JobKind
from talkingface.jobs.tables import jobs, templates

_TEMPLATE_LOCK_SPACE = 0x7466_0005  # (space, hashtext(template id)); keys beside store.py's


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    """What registration measured of a template video (probe at submit)."""

    id: str  # the content's SHA-256, first 32 hex digits
    video_name: str  # the stored file, under <data>/templates/<id>/
    duration_s: float
    width: int
    height: int
    fps: float
    is_still_image: bool


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    spec: TemplateSpec
    created_at: datetime
    job: JobRecord  # the prepare_template job: the template's state and progress
    outcome: TemplateOutcome | None  # set when the job succeeded


class TemplateRows:
    """Template registration and reads, over JobStore's engine and transactions."""

    _clock: Callable[[], datetime]
    _is_sqlite: bool

    @contextmanager
    def holding_template(self, template_id: str) -> Iterator[None]:
        """While a template's files and rows change together (registration stores the video,
        then its row; a delete removes the row, then the files), no other API process may
        change that template: on PostgreSQL a lock on its id, held in a transaction of its
        own until the block ends (released by the server if this process dies). SQLite has
        one server process, which locks in process (api/templates_registry.py)."""
        if self._is_sqlite:
            yield
            return
        with self._read() as conn:
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:space, hashtext(:id))"),
                {"space": _TEMPLATE_LOCK_SPACE, "id": template_id},
            )
            yield

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # JobStore: a read transaction with errors translated

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # JobStore: a write transaction (BEGIN IMMEDIATE on SQLite)

    def register_template(
        self, spec: TemplateSpec, inputs: JobInputs, options: JobOptions
    ) -> tuple[TemplateRecord, bool]:
        """(template, created): the row and its queued prepare_template job, created together;
        content registered before returns its existing template and False."""
        try:
            with self._write() as conn:
                existing = read_template(conn, spec.id)
                if existing is not None:
                    return existing, False
                now = self._clock()
                job_id = uuid.uuid4().hex
                values = tables.new_job_values(job_id, inputs, options, 0, None)
                values["kind"] = JobKind.PREPARE_TEMPLATE.value
                conn.execute(jobs.insert().values(**values, created_at=now, updated_at=now))
                data = {"priority": 0, "template_id": spec.id}
                tables.insert_event(conn, job_id, "job_created", data, now)
                conn.execute(
                    templates.insert().values(**asdict(spec), job_id=job_id, created_at=now)
                )
                job = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
                return TemplateRecord(spec, now, tables.job_from_row(job), None), True
        except IntegrityError:
            # a concurrent registration of the same content won the insert: return its template
            found = self.template(spec.id)
            if found is None:
                raise
            return found, False

    def template(self, template_id: str) -> TemplateRecord | None:
        """The registered template with this id and its job, or None."""
        with self._read() as conn:
            return read_template(conn, template_id)

    def list_templates(self, *, limit: int, offset: int) -> tuple[list[TemplateRecord], int]:
        """A page of registered templates, newest first, and how many there are."""
        query = (
            _joined()
            .order_by(templates.c.created_at.desc(), templates.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._read() as conn:
            page = [_record(row) for row in conn.execute(query)]
            total = int(conn.execute(select(func.count()).select_from(templates)).scalar_one())
        return page, total

    def record_template_outcome(self, job_id: str, outcome: TemplateOutcome) -> None:
        """Keep what preparation found on the template's row (before its job succeeds)."""
        with self._write() as conn:
            conn.execute(
                templates.update()
                .where(templates.c.job_id == job_id)
                .values(outcome=asdict(outcome))
            )


def _joined() -> Select[Any]:
    """Templates with their preparation job: the job's columns, then the template's as t_*."""
    labelled = [column.label(f"t_{column.name}") for column in templates.c]
    return select(jobs, *labelled).join(templates, templates.c.job_id == jobs.c.id)


def read_template(conn: Connection, template_id: str) -> TemplateRecord | None:
    row = conn.execute(_joined().where(templates.c.id == template_id)).first()
    return None if row is None else _record(row)


def _record(row: Row[Any]) -> TemplateRecord:
    values = row._mapping
    outcome: dict[str, Any] | None = values["t_outcome"]  # Any: JSON-safe values
    return TemplateRecord(
        spec=TemplateSpec(
            id=values["t_id"],
            video_name=values["t_video_name"],
            duration_s=float(values["t_duration_s"]),
            width=int(values["t_width"]),
            height=int(values["t_height"]),
            fps=float(values["t_fps"]),
            is_still_image=bool(values["t_is_still_image"]),
        ),
        created_at=values["t_created_at"],
        job=tables.job_from_row(row),
        outcome=None if outcome is None else TemplateOutcome(**outcome),
    )
