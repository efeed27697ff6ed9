"""④ One attempt's files and storage, in the worker: inputs in, the checksummed result out.

Shared by every executor (the local pool and Ray actors run the same `_run_assignment`).
With the default storage nothing moves: inputs are read where they are and the partial is
published by the scheduler's rename; the worker only adds the result's SHA-256 and size.
With object storage (`storage.url = "s3://…"`), an input uploaded to the API (a path under
`<data>/inputs/`, or `…/inputs/<job_id>/` in another API process's data dir) is downloaded
from `inputs/<job_id>/…` into node-local scratch beside the partial
(`.<partial>.inputs-<pid>/`, removed after the attempt and by whoever removes an ended
attempt's files); after the render the partial is uploaded to `partials/<job>.<attempt>.mp4`
(multipart when large, retried through short outages) and the scheduler publishes it with a
server-side copy. Other input paths (api.input_roots, templates) are read in place: on a
cluster they need a shared file system.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from types import TracebackType

from talkingface.config import Settings, StorageSettings
from talkingface.errors import InputNotFoundError, Stage, translate_errors
from talkingface.executors.messages import Assignment
from talkingface.per_configuration import OnePerConfiguration
from talkingface.pipeline.attempt import ProgressCallback
from talkingface.results import JobResult
from talkingface.storage.checksums import file_sha256
from talkingface.storage.objects import ObjectStore
from talkingface.storage.s3 import input_key, partial_key
from talkingface.vocabulary import JobTag, Progress

UPLOAD_STAGE = "upload"  # the progress stage while the result goes up to object storage

_STORES: OnePerConfiguration[StorageSettings, ObjectStore] = OnePerConfiguration(ObjectStore)


def object_store(settings: StorageSettings) -> ObjectStore:
    """This process's client for the configured bucket, made once (clients are thread-safe)."""
    return _STORES.get(settings)


class AttemptFiles:
    """Inputs made local and the result checksummed (and uploaded) for one attempt."""

    def __init__(self, settings: Settings, assignment: Assignment) -> None:
        self.assignment = assignment
        self.inputs_root = settings.data_dir / "inputs"
        self.objects = object_store(settings.storage) if settings.storage.url else None
        output = Path(assignment.output_path)
        self.scratch = output.with_name(f".{output.name}.inputs-{os.getpid()}")

    def __enter__(self) -> AttemptFiles:
        """Make sure the partial's folder exists: on another node nothing has made it."""
        with translate_errors(Stage.SETUP, context="making the results folder for the partial"):
            self.scratch.parent.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)  # a leftover is the janitor's

    def local_input(self, field: str, stored: str) -> str:
        """The path the attempt reads `field` from: downloaded from the bucket when it was
        uploaded to the API and storage is remote, else the stored path itself."""
        key = (
            input_key(self.inputs_root, Path(stored), self.assignment.job_id)
            if self.objects is not None
            else None
        )
        if self.objects is None or key is None:
            return stored
        target = self.scratch / field / Path(stored).name
        with translate_errors(Stage.SETUP, context="making the attempt's scratch folder"):
            target.parent.mkdir(parents=True, exist_ok=True)
        if not self.objects.download_file(key, target):
            raise InputNotFoundError(
                f"{field}: {Path(stored).name} is missing from object storage "
                f"({self.objects.url_of(key)}): it was removed after the job was submitted; "
                "submit it again.",
                stage=Stage.SETUP,
                details={"field": field, "key": key},
            )
        return str(target)

    def finish(self, result: JobResult, progress: ProgressCallback) -> JobResult:
        """The result with its SHA-256 and size; with object storage, uploaded as the
        attempt's partial (the scheduler publishes it) in stage `upload`, which the
        heartbeats report (a new stage resets the stall timer once; see the docs)."""
        output = Path(self.assignment.output_path)
        with translate_errors(Stage.ENCODE, context="checksumming the result"):
            sha256, size_bytes = file_sha256(output), output.stat().st_size
        if self.objects is not None:
            tag = JobTag(self.assignment.job_id, self.assignment.attempt_number)
            frames = result.frame_count
            progress(Progress(tag, UPLOAD_STAGE, frames, frames, result.processing_s))
            key = partial_key(self.assignment.job_id, self.assignment.attempt_id)
            self.objects.upload_file(output, key, sha256=sha256)
            output.unlink(missing_ok=True)  # the bucket holds it now
        return dataclasses.replace(result, sha256=sha256, size_bytes=size_bytes)
