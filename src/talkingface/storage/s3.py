"""⑥ Inputs and results in an S3-compatible bucket, so that workers on other nodes share them.

The bucket is the record; the data directory stays this node's staging area (uploads land
there first, workers write their partial there). Layout under `storage.url`'s prefix:

    inputs/<job_id>/<field>_<name>     an uploaded input (the API writes it at submit)
    partials/<job_id>.<attempt_id>.mp4 a worker's finished, unpublished output
    results/<job_id>.mp4               the published result (a server-side copy of the partial)

A job's inputs keep their local path in the store (`<data>/inputs/<job_id>/<name>`); a worker
maps that path to its key and downloads it into node-local scratch (attempt_files.py). Paths
outside the inputs folder (server paths under api.input_roots, registered templates) are read
where they are: a cluster needs them on a shared file system. A result's location is its
s3:// URL; the API streams it from the bucket (api/object_download.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from talkingface.config import StorageSettings
from talkingface.errors import StorageUnavailableError
from talkingface.storage.local import LocalStorage
from talkingface.storage.objects import ObjectStore

logger = logging.getLogger(__name__)

INPUTS = "inputs/"
PARTIALS = "partials/"
RESULTS = "results/"
CLEANUP_DEADLINE_S = 2.0  # the scheduler's thread waits at most this; the janitor retries


def partial_key(job_id: str, attempt_id: str) -> str:
    return f"{PARTIALS}{job_id}.{attempt_id}.mp4"


def result_key(job_id: str) -> str:
    return f"{RESULTS}{job_id}.mp4"


def input_key(inputs_root: Path, path: Path, job_id: str | None = None) -> str | None:
    """The key of a file under the data directory's inputs folder; None for any other path.
    Given the job's id, also the key of that job's upload received by another API process,
    whose data directory this node does not share (`<its data>/inputs/<job_id>/<name>`): on a
    cluster the API processes each have their own, and only the bucket holds the upload."""
    path = Path(path)
    if job_id and path.parent.name == job_id and path.parent.parent.name == INPUTS.rstrip("/"):
        return f"{INPUTS}{job_id}/{path.name}"
    try:
        relative = path.relative_to(inputs_root)
    except ValueError:
        return None
    return f"{INPUTS}{relative.as_posix()}" if relative.parts else None


class ObjectResult:
    """A published result in the bucket, as HeyGem's exposure copies it (a local mirror)."""

    def __init__(self, objects: ObjectStore, key: str) -> None:
        self.objects = objects
        self.key = key

    def copy_to(self, target: Path) -> None:
        if not self.objects.download_file(self.key, target):
            raise StorageUnavailableError(
                f"The published result {self.objects.url_of(self.key)} is missing from the "
                "bucket; the job is retried."
            )


class S3Storage(LocalStorage):
    """LocalStorage's node-local layout plus the bucket, which holds what other nodes need."""

    def __init__(self, data_dir: Path, settings: StorageSettings) -> None:
        super().__init__(data_dir)
        self.objects = ObjectStore(settings)

    def save_upload(
        self,
        job_id: str,
        field_name: str,
        filename: str | None,
        chunks: Iterable[bytes],
        max_bytes: int,
    ) -> Path:
        """Save locally (the API probes the file), then upload it to inputs/<job_id>/."""
        path = super().save_upload(job_id, field_name, filename, chunks, max_bytes)
        key = f"{INPUTS}{path.relative_to(self.inputs_root).as_posix()}"
        try:
            self.objects.upload_file(path, key)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def publish(self, job_id: str, attempt_id: str) -> str:
        """Server-side copy partials/<job>.<attempt>.mp4 → results/<job>.mp4, then delete
        the partial; applied again (the partial gone, the result there) it is a no-op."""
        partial, final = partial_key(job_id, attempt_id), result_key(job_id)
        if self.objects.head(partial) is None and self.objects.head(final) is not None:
            return self.objects.url_of(final)
        self.objects.copy(partial, final)
        self._delete_quietly([partial])
        return self.objects.url_of(final)

    def result_source(self, job_id: str) -> ObjectResult:
        return ObjectResult(self.objects, result_key(job_id))

    def discard_result(self, job_id: str) -> None:
        super().discard_result(job_id)
        self._delete_quietly([result_key(job_id)])

    def discard_attempt_files(self, job_id: str, attempt_id: str) -> None:
        super().discard_attempt_files(job_id, attempt_id)
        self._delete_quietly([partial_key(job_id, attempt_id)])

    def delete_job_files(self, job_id: str) -> None:
        """The local files, then the job's inputs, result and partials in the bucket."""
        super().delete_job_files(job_id)
        keys = [o.key for o in self.objects.list(f"{INPUTS}{job_id}/")]
        keys += [o.key for o in self.objects.list(f"{PARTIALS}{job_id}.")]
        self.objects.delete([*keys, result_key(job_id)])

    def orphan_objects(
        self,
        known_job_ids: set[str],
        live_attempts: Callable[[], set[tuple[str, str]]],
        min_age_s: float,
    ) -> list[str]:
        """Keys no job owns (older than `min_age_s`: inputs are uploaded before the job
        exists) and partials of attempts that are not running. The running attempts are read
        after the partials are listed (an attempt is claimed before its partial exists)."""
        cutoff = time.time() - min_age_s
        partials = self.objects.list(PARTIALS)
        live = {partial_key(j, a) for j, a in live_attempts()}
        orphans = [o.key for o in partials if o.key not in live]
        for prefix in (INPUTS, RESULTS):
            for o in self.objects.list(prefix):
                name = o.key[len(prefix) :]
                job_id = name.split("/", 1)[0] if prefix == INPUTS else name.removesuffix(".mp4")
                if job_id not in known_job_ids and o.last_modified.timestamp() < cutoff:
                    orphans.append(o.key)
        return sorted(orphans)

    def remove_orphan_objects(
        self,
        known_job_ids: set[str],
        live_attempts: Callable[[], set[tuple[str, str]]],
        min_age_s: float,
    ) -> list[str]:
        orphans = self.orphan_objects(known_job_ids, live_attempts, min_age_s)
        self.objects.delete(orphans)
        return orphans

    def _delete_quietly(self, keys: list[str]) -> None:
        """Cleanup never blocks recording a job's end: a failure is left for the janitor."""
        try:
            self.objects.delete(keys, deadline_s=CLEANUP_DEADLINE_S)
        except StorageUnavailableError as exc:
            logger.warning(
                "could not delete %s (%s); the janitor removes them later",
                ", ".join(keys),
                exc.message,
                extra={"event": "object_not_removed", "keys": keys},
            )
