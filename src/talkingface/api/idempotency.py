"""① The v1 `Idempotency-Key` header: which keys are usable, and what makes two submissions
"the same request".

A key names one submission. Sent again with the same inputs and options it returns the
original job (200); with different ones it is a 422 naming the key (as the IETF
Idempotency-Key draft and payment APIs answer), never the old job passed off as the new one.
The fingerprint compares what the client sent: uploads by their content (SHA-256), server
paths and URLs by their text, a registered template by its stored file, and the options as
given (before server defaults are filled in).

The label and metadata count as part of the request (every JobOptionsIn field does): they
are stored on the job and shown with it, so a key reused with another label would hand back
a job that does not carry the label the client just sent. A retry of the same request sends
the same values (trimmed labels and metadata key order do not matter: the fingerprint
compares the validated values, serialised with sorted keys).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fastapi.exceptions import RequestValidationError

from talkingface.api.inputs import MediaRef, Upload
from talkingface.api.problems import invalid_request, quoted
from talkingface.api.schemas import JobOptionsIn
from talkingface.heygem_results import KEY_PREFIX as HEYGEM_KEY_PREFIX

HEADER = "Idempotency-Key"
_CHUNK_BYTES = 1 << 20


def checked_key(key: str | None) -> str | None:
    """The key as given, or None when absent; an empty key or one in the HeyGem namespace
    (`heygem:`, the keys /easy/submit gives its jobs) is a 422."""
    if key is None:
        return None
    if not key.strip():
        raise _key_problem(
            f"the {HEADER} header is empty; send a non-empty key (one per submission) or "
            "leave the header out"
        )
    if key.lower().startswith(HEYGEM_KEY_PREFIX):
        raise _key_problem(
            f"{HEADER} keys starting with {quoted(HEYGEM_KEY_PREFIX)} are reserved for the "
            "HeyGem /easy/submit endpoint; choose another key"
        )
    return key


def request_fingerprint(audio: MediaRef, video: MediaRef, options: JobOptionsIn) -> str:
    """A digest of the submission's inputs and options (reads an upload once, then rewinds)."""
    sent = options.model_dump(mode="json", include=set(JobOptionsIn.model_fields))
    described = {"audio": _media_identity(audio), "video": _media_identity(video), **sent}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def check_same_request(key: str, job_id: str, stored: str | None, given: str) -> None:
    """422 when `key` already created job `job_id` from a request with other inputs (jobs
    created before fingerprints were kept have none, and are taken as the same)."""
    if stored is not None and stored != given:
        raise _key_problem(
            f"the {HEADER} {quoted(key)} was already used for job {job_id} with other inputs "
            "or options; send a new key for a new job, or the same request to get that job"
        )


def _media_identity(ref: MediaRef) -> str:
    if isinstance(ref, Upload):
        digest = hashlib.sha256()
        for chunk in iter(lambda: ref.file.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
        ref.file.seek(0)
        return f"upload:{digest.hexdigest()}"
    if isinstance(ref, Path):
        return f"server-file:{ref}"
    return f"given:{ref}"


def _key_problem(message: str) -> RequestValidationError:
    return invalid_request([{"loc": ("header", HEADER), "msg": message}])
