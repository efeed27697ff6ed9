"""The store's deletes, labels and list filters on SQLite and PostgreSQL, and migration 0004
naming the jobs that existed before it."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from talkingface.errors import (
    ErrorCode,
    ErrorRecord,
    JobNotFoundError,
    JobStateError,
    TemplateInUseError,
    TemplateNotFoundError,
)
from talkingface.jobs import tables
from talkingface.jobs.reads import JobQuery
from talkingface.jobs.records import InputNames, JobInputs, JobOptions, JobRecord, JobTags
from talkingface.jobs.states import AttemptOutcome, JobState
from talkingface.jobs.store import MIGRATIONS_DIR, JobStore
from talkingface.jobs.template_rows import TemplateSpec
from tests.integration.service_fixtures import wait_until

if TYPE_CHECKING:
    from tests.integration.store_fixtures import FakeClock

TEMPLATE_ID = "ab" * 16
TEMPLATE_VIDEO = f"/data/templates/{TEMPLATE_ID}/template.mp4"


def submit(
    store: JobStore,
    video: str = "/in/face.mp4",
    *,
    label: str | None = None,
    names: InputNames | None = None,
) -> JobRecord:
    inputs = JobInputs(audio_path="/in/voice.wav", video_path=video, input_duration_s=1.0)
    job, created = store.create(
        inputs, JobOptions(), tags=JobTags(label=label, metadata={"n": 1}), names=names
    )
    assert created
    return job


def end(store: JobStore, job: JobRecord, code: ErrorCode = ErrorCode.NO_FACE) -> None:
    claimed = store.claim_next("w1", lease_s=30)
    assert claimed is not None and claimed[0].id == job.id
    error = ErrorRecord(code, None, False, f"{code.value} in the test.")
    store.fail_attempt(job.id, claimed[1].id, error, outcome=AttemptOutcome.FAILED, retry_at=None)


def register(store: JobStore) -> JobRecord:
    spec = TemplateSpec(TEMPLATE_ID, "template.mp4", 1.0, 128, 128, 25.0, False)
    inputs = JobInputs(audio_path="", video_path=TEMPLATE_VIDEO)
    record, created = store.register_template(spec, inputs, JobOptions())
    assert created
    return record.job


def test_a_finished_job_is_deleted_with_its_rows_and_an_unfinished_one_refused(
    store: JobStore,
) -> None:
    job = submit(store, label="x")
    with pytest.raises(JobStateError, match="queued"):
        store.delete_finished_job(job.id)
    end(store, job)

    deleted = store.delete_finished_job(job.id)

    assert deleted.id == job.id and deleted.label == "x"
    with pytest.raises(JobNotFoundError):
        store.get(job.id)
    with store.reading() as conn:
        for table in ("attempts", "events"):
            count = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE job_id = :id"), {"id": job.id}
            ).scalar_one()
            assert count == 0, table
    with pytest.raises(JobNotFoundError):
        store.delete_finished_job(job.id)


def test_a_template_in_use_is_refused_until_its_jobs_end_and_then_deleted(
    store: JobStore, clock: FakeClock
) -> None:
    preparation = register(store)
    with pytest.raises(TemplateInUseError) as preparing:
        store.delete_template(TEMPLATE_ID)
    assert preparing.value.details["preparing"] is True
    end(store, preparation)
    named = submit(store, TEMPLATE_VIDEO, names=InputNames(template_id=TEMPLATE_ID))
    clock.advance(1)  # claimed in this order
    by_path = submit(store, TEMPLATE_VIDEO)  # a job from before migration 0004 named no id
    clock.advance(1)
    unrelated = submit(store)

    with pytest.raises(TemplateInUseError) as refused:
        store.delete_template(TEMPLATE_ID)
    assert refused.value.details["job_count"] == 2
    assert set(refused.value.details["job_ids"]) == {named.id, by_path.id}

    end(store, named)
    end(store, by_path)
    record = store.delete_template(TEMPLATE_ID)

    assert record.spec.id == TEMPLATE_ID and store.template(TEMPLATE_ID) is None
    with pytest.raises(JobNotFoundError):
        store.get(preparation.id)
    assert store.get(named.id).names.template_id == TEMPLATE_ID  # finished jobs are kept
    assert store.get(unrelated.id).state is JobState.QUEUED
    with pytest.raises(TemplateNotFoundError):
        store.delete_template(TEMPLATE_ID)
    with pytest.raises(TemplateNotFoundError):  # a submit that raced the delete
        submit(store, TEMPLATE_VIDEO, names=InputNames(template_id=TEMPLATE_ID))
    assert store.list_jobs()[1] == 3


def test_templates_list_newest_first(store: JobStore, clock: FakeClock) -> None:
    ids = []
    for index in range(3):
        template_id = f"{index:02d}" * 16
        spec = TemplateSpec(template_id, "t.mp4", 1.0, 128, 128, 25.0, False)
        store.register_template(spec, JobInputs("", f"/t/{index}"), JobOptions())
        clock.advance(1)
        ids.append(template_id)

    page, total = store.list_templates(limit=2, offset=0)
    rest, _ = store.list_templates(limit=2, offset=2)

    assert total == 3 and [r.spec.id for r in page + rest] == ids[::-1]
    assert page[0].job.inputs.video_path == "/t/2"


def test_list_filters_combine_on_both_backends(store: JobStore, clock: FakeClock) -> None:
    spring = submit(store, label="Spring", names=InputNames("Grüße.wav", "face.mp4"))
    clock.advance(1)
    other = submit(store, label="Autumn", names=InputNames("voice.wav", "FACE_2.mp4"))
    end(store, spring)

    def ids(query: JobQuery) -> list[str]:
        page, total = store.list_jobs(query)
        assert total == len(page)
        return [job.id for job in page]

    assert ids(JobQuery(label="Spring")) == [spring.id]
    assert ids(JobQuery(error_code=ErrorCode.NO_FACE)) == [spring.id]
    assert ids(JobQuery(text="GRÜSSE")) == [spring.id]
    assert ids(JobQuery(text="face_")) == [other.id]  # `_` is literal
    assert ids(JobQuery(text="face", state=JobState.QUEUED)) == [other.id]
    assert ids(JobQuery(text="autumn", error_code=ErrorCode.NO_FACE)) == []
    assert store.get(spring.id).metadata == {"n": 1}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0004_names_the_jobs_that_existed_before_it(
    backend: str, tmp_path: Path, postgres_database: Callable[[], str]
) -> None:
    # Given a store at 0003 holding an upload job, a server-path job and a template's job
    url = f"sqlite:///{tmp_path}/old.db" if backend == "sqlite" else postgres_database()
    store = JobStore(url)
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with store.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0003")
            jobs = {
                "u" * 32: (f"/d/inputs/{'u' * 32}/audio_Take One.wav", "/srv/in/face.MP4"),
                "t" * 32: ("/srv/in/voice.wav", f"/d/templates/{TEMPLATE_ID}/template.mp4"),
            }
            for job_id, (audio, video) in jobs.items():
                conn.execute(
                    text(
                        "INSERT INTO jobs (id, state, priority, audio_path, video_path, options,"
                        " frames_done, frames_total, attempt, cancel_requested, created_at,"
                        " updated_at) VALUES (:id, 'queued', 0, :audio, :video, :options, 0, 0,"
                        " 0, false, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                    ),
                    {"id": job_id, "audio": audio, "video": video, "options": json.dumps({})},
                )
            conn.execute(
                text(
                    "INSERT INTO templates (id, job_id, video_name, duration_s, width, height,"
                    " fps, is_still_image, created_at) VALUES (:id, :job, 'template.mp4', 1, 1,"
                    " 1, 25, false, '2026-01-01 00:00:00')"
                ),
                {"id": TEMPLATE_ID, "job": "t" * 32},
            )

        # When it migrates to 0004
        store.migrate()

        # Then the jobs have their names, the template job its template, and q finds them
        upload, template_job = store.get("u" * 32), store.get("t" * 32)
        assert upload.names == InputNames("Take One.wav", "face.MP4", None)
        assert template_job.names == InputNames("voice.wav", "template.mp4", TEMPLATE_ID)
        found, _ = store.list_jobs(JobQuery(text="take one"))
        assert [job.id for job in found] == ["u" * 32]
        assert upload.label is None and upload.metadata is None
    finally:
        store.close()


def test_on_postgresql_a_delete_waits_for_a_create_naming_the_template_and_sees_its_job(
    postgres_url: str,
) -> None:
    """A create holds the template's row (FOR SHARE) to its commit: a delete meanwhile waits,
    then counts the new job and refuses, instead of deleting a template a job now needs."""
    store = JobStore(postgres_url)
    with store.engine.begin() as conn:
        conn.execute(text("TRUNCATE events, attempts, templates, jobs, outbox RESTART IDENTITY"))
    try:
        end(store, register(store))
        outcome: list[BaseException | None] = []
        with store.engine.connect() as creating:
            transaction = creating.begin()
            # Given a create in progress: what JobStore.create does before its commit
            store._hold_template(creating, TEMPLATE_ID)
            job = submit_values(TEMPLATE_VIDEO, InputNames(template_id=TEMPLATE_ID))
            creating.execute(tables.jobs.insert().values(**job))

            # When a delete starts meanwhile, it waits on the row
            def delete() -> None:
                try:
                    store.delete_template(TEMPLATE_ID)
                    outcome.append(None)
                except BaseException as exc:  # handed to the test thread
                    outcome.append(exc)

            worker = threading.Thread(target=delete)
            worker.start()
            wait_until(lambda: lock_waiters(store) > 0, timeout_s=20, what="the delete to wait")
            transaction.commit()
        worker.join(timeout=30)

        # Then it sees the job that committed first, and refuses
        assert len(outcome) == 1 and isinstance(outcome[0], TemplateInUseError), outcome
        assert store.template(TEMPLATE_ID) is not None
    finally:
        store.close()


def submit_values(video: str, names: InputNames) -> dict[str, object]:
    inputs = JobInputs(audio_path="/in/voice.wav", video_path=video, input_duration_s=1.0)
    values = tables.new_job_values(uuid.uuid4().hex, inputs, JobOptions(), 0, None, None, names)
    now = datetime.now(UTC)
    return {**values, "created_at": now, "updated_at": now}


def lock_waiters(store: JobStore) -> int:
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
