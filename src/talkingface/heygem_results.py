"""③→⑥ HeyGem's shared temp folder: a succeeded HeyGem job's video exposed as `<code>-r.mp4`.

face2face clients read a finished task's video at `<temp dir>/<code>-r.mp4`, and a code may be
reused for a new job. So the file is written when a job succeeds (by the scheduler, before the
store records the success), only for the newest job of its code, and atomically (a hard link
or a copy under a temporary name, then one rename). The scheduler's thread is the only writer,
so two successes never interleave; /easy/query only reads, and names the file only when it
holds the video of the job the reply describes.

HeyGem jobs carry the idempotency key `heygem:<code>:<inputs digest>`; the prefix is reserved
for /easy/submit (v1 keys may not start with it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from talkingface.errors import Stage, translate_errors
from talkingface.jobs.records import JobRecord
from talkingface.jobs.store import JobStore
from talkingface.storage.base import is_object_url
from talkingface.storage.local import ResultSource

KEY_PREFIX = "heygem:"
RESULT_SUFFIX = "-r.mp4"
STAGING_GLOB = f".*{RESULT_SUFFIX}.*.partial"  # expose_result's temporary names


def code_key_prefix(code: str) -> str:
    """The idempotency-key prefix every job of this HeyGem code carries."""
    return f"{KEY_PREFIX}{code}:"


def job_key(code: str, inputs_digest: str) -> str:
    return f"{code_key_prefix(code)}{inputs_digest}"


def code_of(idempotency_key: str | None) -> str | None:
    """The HeyGem code of a job's key, or None for a job not submitted through /easy."""
    if idempotency_key is None or not idempotency_key.startswith(KEY_PREFIX):
        return None
    code, colon, _ = idempotency_key[len(KEY_PREFIX) :].partition(":")
    return code if colon and code else None


def exposed_path(temp_dir: Path, code: str) -> Path:
    return temp_dir / f"{code}{RESULT_SUFFIX}"


def expose_result(
    store: JobStore, temp_dir: Path, job_id: str, result: Path | ResultSource
) -> Path | None:
    """Put a HeyGem job's published `result` at `<temp dir>/<code>-r.mp4` when the job is the
    newest of its code; the exposed path, or None (not a HeyGem job, or a newer submission of
    the code owns the name). A result in object storage is downloaded: a local mirror."""
    job = store.get(job_id)
    code = code_of(job.idempotency_key)
    if code is None:
        return None
    newest = store.latest_with_key_prefix(code_key_prefix(code))
    if newest is None or newest.id != job.id:
        return None
    target = exposed_path(temp_dir, code)
    staging = temp_dir / f".{target.name}.{job_id}.partial"
    with translate_errors(Stage.ENCODE, context=f"exposing the result as {target}"):
        temp_dir.mkdir(parents=True, exist_ok=True)
        staging.unlink(missing_ok=True)
        try:
            if not isinstance(result, Path):
                result.copy_to(staging)
            else:
                try:
                    os.link(result, staging)
                except OSError:  # another file system, or one without hard links
                    shutil.copyfile(result, staging)
            os.replace(staging, target)
        except BaseException:
            staging.unlink(missing_ok=True)
            raise
    return target


def exposed_result_of(temp_dir: Path, code: str, job: JobRecord) -> Path | None:
    """`<temp dir>/<code>-r.mp4` when it holds this succeeded job's video, else None (removed,
    or still an earlier job's file). A hard link is the job's own file; a copy (another file
    system, or the mirror of a result in object storage) is recognised by its size."""
    if job.result is None:
        return None
    target = exposed_path(temp_dir, code)
    try:
        exposed = target.stat()
    except OSError:
        return None
    if is_object_url(job.result.path):  # a mirror of the object: its size tells
        return target if exposed.st_size == job.result.size_bytes else None
    try:
        stored = os.stat(job.result.path)
    except OSError:  # the stored result was removed; the exposed link still holds the video
        return target
    same_file = (exposed.st_dev, exposed.st_ino) == (stored.st_dev, stored.st_ino)
    return target if same_file or exposed.st_size == stored.st_size else None
