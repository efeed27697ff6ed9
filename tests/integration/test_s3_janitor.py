"""The janitor in object storage: partials no running attempt owns go at once; objects of
unknown jobs go only once old (the API uploads a job's inputs before the job exists)."""

from __future__ import annotations

from pathlib import Path

from talkingface.config import Settings
from talkingface.janitor import Janitor
from talkingface.jobs.store import JobStore
from talkingface.storage.s3 import S3Storage
from tests.integration.s3_fixtures import MotoServer


def test_orphan_partials_are_removed_and_young_inputs_of_unknown_jobs_are_spared(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    # Given a bucket holding a dead attempt's partial, a live attempt's partial and the
    # inputs of a job being submitted right now (not in the store yet)
    bucket = moto_server.new_bucket()
    settings = Settings(data_dir=tmp_path / "data", storage=moto_server.settings(bucket))
    storage = S3Storage(settings.data_dir, settings.storage)
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.migrate()
    client = moto_server.client()
    for key in ("partials/ghost.a1.mp4", "partials/live.a2.mp4", "inputs/new/audio_a.wav"):
        client.put_object(Bucket=bucket, Key=f"farm/{key}", Body=b"x")
    try:
        # When the janitor runs for a scheduler that runs attempt a2 of job live
        Janitor(settings, store, storage).remove_orphans([("live", "a2")])
    finally:
        store.close()
    # Then only the dead attempt's partial is gone
    listed = client.list_objects_v2(Bucket=bucket, Prefix="farm/")["Contents"]
    assert sorted(item["Key"] for item in listed) == [
        "farm/inputs/new/audio_a.wav",
        "farm/partials/live.a2.mp4",
    ]
