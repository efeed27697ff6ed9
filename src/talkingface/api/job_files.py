"""① A deleted job's files: its inputs folder, result and partials, and a HeyGem job's
`<code>-r.mp4` when that file is this job's video (never a newer job's of the same code)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from talkingface.errors import TalkingFaceError
from talkingface.heygem_results import code_key_prefix, code_of, exposed_path, exposed_result_of
from talkingface.jobs.records import JobRecord
from talkingface.jobs.store import JobStore
from talkingface.storage.base import is_object_url
from talkingface.storage.local import LocalStorage

logger = logging.getLogger(__name__)


def remove_job_files(
    job: JobRecord, store: JobStore, storage: LocalStorage, heygem_temp_dir: Path
) -> None:
    """Remove the files of `job`, whose rows are deleted already (call it after the store's
    delete: files left by a failure here are orphans the janitor removes)."""
    exposed = _exposed_result(job, store, heygem_temp_dir)
    if exposed is not None:
        storage.discard_file(exposed)
    try:
        storage.delete_job_files(job.id)
    except TalkingFaceError as exc:  # the job is gone: its files are orphans now
        logger.warning(
            "could not remove the files of deleted job %s (%s); the janitor removes them later",
            job.id,
            exc,
            extra={"event": "job_files_not_removed", "job_id": job.id},
        )
    logger.info("job %s deleted", job.id, extra={"event": "job_deleted", "job_id": job.id})


def _exposed_result(job: JobRecord, store: JobStore, temp_dir: Path) -> Path | None:
    """`<temp dir>/<code>-r.mp4` when it holds this HeyGem job's video. With the stored result
    gone (retention), the file is taken as this job's only if no other job has the code."""
    code = code_of(job.idempotency_key)
    if code is None or job.result is None:
        return None
    if is_object_url(job.result.path) or os.path.exists(job.result.path):
        return exposed_result_of(temp_dir, code, job)
    if store.latest_with_key_prefix(code_key_prefix(code)) is not None:
        return None
    target = exposed_path(temp_dir, code)
    return target if target.is_file() else None
