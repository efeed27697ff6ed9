"""The scheduler's publish rules with the result in a bucket: publish before success, a
success fenced out by a cancel deletes the published object, and applying a success again
is harmless. The executor is the scripted stand-in of test_finishing_jobs.py; its "worker"
uploads the partial where attempt_files.py would."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from talkingface.config import Settings
from talkingface.jobs.states import JobState
from talkingface.jobs.store import JobStore
from talkingface.scheduler import Scheduler
from talkingface.storage.checksums import file_sha256
from talkingface.storage.s3 import S3Storage, partial_key, result_key
from tests.integration.s3_fixtures import MotoServer
from tests.integration.test_finishing_jobs import ScriptedExecutor, _queue

if TYPE_CHECKING:
    from tests.integration.store_fixtures import FakeClock


def _s3_scheduler(
    tmp_path: Path, store: JobStore, clock: FakeClock, moto: MotoServer
) -> tuple[Scheduler, ScriptedExecutor, S3Storage]:
    clock.now = datetime.now(UTC)
    settings = Settings(
        data_dir=tmp_path / "data",
        api={"min_free_disk_bytes": 0},
        storage=moto.settings(moto.new_bucket()),
    )
    executor = ScriptedExecutor()
    storage = S3Storage(settings.data_dir, settings.storage)
    return Scheduler(settings, store, executor=executor, storage=storage), executor, storage


def _finish_in_bucket(executor: ScriptedExecutor, storage: S3Storage, video: Path) -> str:
    """The worker's side: its output uploaded as the attempt's partial, then Succeeded."""
    assignment = executor.finish(video)
    output = Path(assignment.output_path)
    key = partial_key(assignment.job_id, assignment.attempt_id)
    storage.objects.upload_file(output, key, sha256=file_sha256(output))
    return assignment.job_id


def test_a_result_is_published_by_copy_and_the_partial_deleted(
    store: JobStore,
    clock: FakeClock,
    tmp_path: Path,
    moto_server: MotoServer,
    short_template_clip: Path,
) -> None:
    scheduler, executor, storage = _s3_scheduler(tmp_path, store, clock, moto_server)
    job_id = _queue(store)
    scheduler.tick()  # dispatched
    attempt_id = executor.assignments[-1].attempt_id
    _finish_in_bucket(executor, storage, short_template_clip)
    scheduler.tick()  # its success: copy, delete the partial, then record
    job = store.get(job_id)
    assert job.state == JobState.SUCCEEDED and job.result is not None
    assert job.result.path == storage.objects.url_of(result_key(job_id))
    assert storage.objects.head(partial_key(job_id, attempt_id)) is None
    published = storage.objects.head(result_key(job_id))
    assert published is not None and published.sha256 == file_sha256(short_template_clip)
    # applied again (a tick that failed after the copy): the same location, no error
    assert storage.publish(job_id, attempt_id) == job.result.path


def test_a_success_after_a_cancel_deletes_the_published_object(
    store: JobStore,
    clock: FakeClock,
    tmp_path: Path,
    moto_server: MotoServer,
    short_template_clip: Path,
) -> None:
    scheduler, executor, storage = _s3_scheduler(tmp_path, store, clock, moto_server)
    job_id = _queue(store)
    scheduler.tick()
    attempt_id = executor.assignments[-1].attempt_id
    assert store.request_cancel(job_id).cancel_requested
    _finish_in_bucket(executor, storage, short_template_clip)
    scheduler.tick()
    assert store.get(job_id).state == JobState.CANCELED
    assert storage.objects.head(result_key(job_id)) is None
    assert storage.objects.head(partial_key(job_id, attempt_id)) is None
