"""② Deleting on request: a finished job with its history, and a registered template with its
preparation job, refused while a job still needs them (mixed into JobStore; the API removes
the files once the rows are gone)."""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy import Connection, select

from talkingface.errors import JobStateError, TemplateInUseError, TemplateNotFoundError
from talkingface.jobs.outbox import DeliveryState
from talkingface.jobs.records import JobRecord
from talkingface.jobs.states import TERMINAL_STATES, JobKind, JobState
from talkingface.jobs.tables import attempts, events, jobs, outbox, templates
from talkingface.jobs.template_rows import TemplateRecord, read_template

_LIVE_STATES = [JobState.QUEUED.value, JobState.RUNNING.value]


def template_not_found(template_id: str) -> TemplateNotFoundError:
    return TemplateNotFoundError(
        f"No template with id {template_id}; register it (POST /v1/templates) or list the "
        "registered ones (GET /v1/templates).",
        details={"template_id": template_id},
    )


class JobDeletion:
    """Deletes over JobStore's engine and transactions."""

    _is_sqlite: bool

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # JobStore: a write transaction (BEGIN IMMEDIATE on SQLite)

    def _get(self, conn: Connection, job_id: str, *, lock: bool = False) -> JobRecord:
        raise NotImplementedError  # JobReads: the job, or JobNotFoundError

    def delete_finished_job(self, job_id: str) -> JobRecord:
        """Delete a succeeded, failed or canceled render job with its attempts, events and
        ended webhook deliveries; the deleted record is returned (its files are the caller's).

        A delivery still pending is kept: it carries its own body, and its receiver was
        promised the job's end at least once. A queued or running job, or a template's
        preparation job, is a 409 saying what to do instead."""
        with self._write() as conn:
            job = self._get(conn, job_id, lock=True)
            if job.kind is JobKind.PREPARE_TEMPLATE:
                raise JobStateError(
                    f"Job {job_id} prepares a registered template; delete the template "
                    "instead (DELETE /v1/templates/{id}), which deletes this job too.",
                    details={"job_id": job_id, "kind": job.kind.value},
                )
            if job.state not in TERMINAL_STATES:
                raise JobStateError(
                    f"Job {job_id} is {job.state.value}; only a finished job (succeeded, failed "
                    f"or canceled) can be deleted. Cancel it first (POST /v1/jobs/{job_id}/"
                    "cancel) or wait for it to end.",
                    details={"job_id": job_id, "state": job.state.value},
                )
            conn.execute(
                outbox.delete().where(
                    outbox.c.job_id == job_id, outbox.c.state != DeliveryState.PENDING.value
                )
            )
            _delete_job_rows(conn, job_id)
            return job

    def delete_template(self, template_id: str) -> TemplateRecord:
        """Delete a template's row and its preparation job (with its history), refused with
        TemplateInUseError while a queued or running job uses it: its preparation, or a render
        naming it or its stored video. Finished jobs that used it are kept, results and all.
        The deleted record is returned (its files are the caller's)."""
        with self._write() as conn:
            row_query = select(templates.c.id).where(templates.c.id == template_id)
            if not self._is_sqlite:  # a create holding the row (FOR SHARE) finishes first
                row_query = row_query.with_for_update()
            conn.execute(row_query)
            record = read_template(conn, template_id)
            if record is None:
                raise template_not_found(template_id)
            users = _live_users(conn, record)
            if users:
                raise _in_use(template_id, users)
            conn.execute(templates.delete().where(templates.c.id == template_id))
            _delete_job_rows(conn, record.job.id)
            return record

    def _hold_template(self, conn: Connection, template_id: str) -> None:
        """Inside a create: the template must exist, its row share-locked on PostgreSQL to
        the commit, so a concurrent delete either sees the new job or happened before (and
        this create raises TemplateNotFoundError). SQLite serialises writers already."""
        query = select(templates.c.id).where(templates.c.id == template_id)
        if not self._is_sqlite:
            query = query.with_for_update(read=True)
        if conn.execute(query).first() is None:
            raise template_not_found(template_id)


def _live_users(conn: Connection, record: TemplateRecord) -> list[tuple[str, str]]:
    """(job id, kind) of the queued and running jobs that use the template."""
    uses = (
        (jobs.c.template_id == record.spec.id)
        | (jobs.c.video_path == record.job.inputs.video_path)  # jobs from before 0004
        | (jobs.c.id == record.job.id)
    )
    query = select(jobs.c.id, jobs.c.kind).where(jobs.c.state.in_(_LIVE_STATES), uses)
    return [(row.id, row.kind) for row in conn.execute(query.order_by(jobs.c.created_at))]


def _in_use(template_id: str, users: list[tuple[str, str]]) -> TemplateInUseError:
    preparation = [job_id for job_id, kind in users if kind == JobKind.PREPARE_TEMPLATE.value]
    renders = [job_id for job_id, kind in users if kind != JobKind.PREPARE_TEMPLATE.value]
    parts = []
    if renders:
        parts.append(f"{len(renders)} queued or running job{'s' if len(renders) != 1 else ''}")
    if preparation:
        parts.append(f"its own preparation (job {preparation[0]})")
    them = "them" if len(users) > 1 else "it"
    return TemplateInUseError(
        f"Template {template_id} is in use by {' and '.join(parts)}; wait for {them} to "
        f"finish or cancel {them} (POST /v1/jobs/{{id}}/cancel), then delete the template "
        "again.",
        details={
            "template_id": template_id,
            "job_count": len(renders),
            "job_ids": renders[:20],
            "preparing": bool(preparation),
            "preparation_job_id": preparation[0] if preparation else None,
        },
    )


def _delete_job_rows(conn: Connection, job_id: str) -> None:
    conn.execute(events.delete().where(events.c.job_id == job_id))
    conn.execute(attempts.delete().where(attempts.c.job_id == job_id))
    conn.execute(jobs.delete().where(jobs.c.id == job_id))
