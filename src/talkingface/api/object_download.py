"""① A result in object storage, streamed to the client: whole, or one byte range (206).

The object is read in 256 KiB chunks straight from the bucket (never into memory), with the
same Range rules as a local file (file_ranges.plan_ranges: an unusable header is ignored, one
wholly past the end is 416). A request for several ranges gets the whole file (200), which
RFC 9110 allows; HEAD answers with the headers only.
"""

from __future__ import annotations

from fastapi import Response
from fastapi.responses import StreamingResponse

from talkingface.api.file_ranges import plan_ranges, range_not_satisfiable
from talkingface.errors import JobStateError
from talkingface.storage.local import LocalStorage
from talkingface.storage.s3 import S3Storage


def object_result_response(
    storage: LocalStorage,
    job_id: str,
    location: str,
    range_header: str | None,
    *,
    head_only: bool,
    headers: dict[str, str],
) -> Response:
    """Stream the result at `location` (an s3:// URL) with Range support."""
    key = storage.objects.key_of_url(location) if isinstance(storage, S3Storage) else None
    info = storage.objects.head(key) if isinstance(storage, S3Storage) and key else None
    if not isinstance(storage, S3Storage) or key is None or info is None:
        raise JobStateError(
            f"The result of job {job_id} is no longer in object storage (removed after "
            "api.result_retention_s, or storage.url changed); run the job again.",
            details={"location": location},
        )
    size = info.size_bytes
    plan = plan_ranges(range_header, size)
    if not plan.satisfiable:
        return range_not_satisfiable(size)
    span = _single_span(plan.ranges, size)
    first, last = span if span is not None else (0, size - 1)
    answer = {
        **headers,
        "accept-ranges": "bytes",
        "content-length": str(last - first + 1),
        "content-disposition": f'attachment; filename="{job_id}.mp4"',
    }
    status = 200
    if span is not None:
        status = 206
        answer["content-range"] = f"bytes {first}-{last}/{size}"
    if head_only or size == 0:
        return Response(status_code=status, headers=answer, media_type="video/mp4")
    body = storage.objects.iter_bytes(key, first, last)
    return StreamingResponse(body, status_code=status, headers=answer, media_type="video/mp4")


def _single_span(ranges: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a plan's one range; None for the whole file (no range, or several)."""
    if ranges is None or "," in ranges:
        return None
    spec = ranges.removeprefix("bytes=")
    first_text, _, last_text = spec.partition("-")
    if not first_text:  # a suffix: the last N bytes
        return max(0, size - int(last_text)), size - 1
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    return first, last
