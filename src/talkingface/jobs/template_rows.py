"""② Registered templates in the store: one row each, naming the prepare_template job whose
state, progress and events are the template's (mixed into JobStore)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from talkingface.jobs import tables
from talkingface.jobs.records import JobInputs, JobOptions, JobRecord, TemplateOutcome
from talkingface.jobs.states import JobKind
from talkingface.jobs.tables import jobs, templates


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
                existing = _template(conn, spec.id)
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
            return _template(conn, template_id)

    def record_template_outcome(self, job_id: str, outcome: TemplateOutcome) -> None:
        """Keep what preparation found on the template's row (before its job succeeds)."""
        with self._write() as conn:
            conn.execute(
                templates.update()
                .where(templates.c.job_id == job_id)
                .values(outcome=asdict(outcome))
            )


def _template(conn: Connection, template_id: str) -> TemplateRecord | None:
    row = conn.execute(select(templates).where(templates.c.id == template_id)).first()
    if row is None:
        return None
    values = row._mapping
    job_row = conn.execute(select(jobs).where(jobs.c.id == values["job_id"])).one()
    outcome: dict[str, Any] | None = values["outcome"]  # Any: JSON-safe values
    return TemplateRecord(
        spec=TemplateSpec(
            id=values["id"],
            video_name=values["video_name"],
            duration_s=float(values["duration_s"]),
            width=int(values["width"]),
            height=int(values["height"]),
            fps=float(values["fps"]),
            is_still_image=bool(values["is_still_image"]),
        ),
        created_at=values["created_at"],
        job=tables.job_from_row(job_row),
        outcome=None if outcome is None else TemplateOutcome(**outcome),
    )
