"""① Result downloads and RFC 9110 Range requests: serve the satisfiable ranges, ignore a Range
header that cannot be used (the whole file, 200), refuse one wholly past the end (416).

Starlette's FileResponse answers a range it cannot parse (`items=0-10`, `bytes=500-100`) with
a plain-text 400 and refuses a request when any one range is past the end; RFC 9110 §14.2 says
such a header is ignored, and §15.5.17 that 416 is for a request none of whose ranges overlap
the file. So the header is checked here first and FileResponse only sees a usable one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import Response
from fastapi.responses import FileResponse
from starlette.types import Receive, Scope, Send

_UNIT = re.compile(r"\s*bytes\s*=(?P<ranges>.*)\Z", re.IGNORECASE | re.DOTALL)
_INT_RANGE = re.compile(r"(?P<first>\d+)-(?P<last>\d*)\Z")
_SUFFIX_RANGE = re.compile(r"-(?P<length>\d+)\Z")


@dataclass(frozen=True, slots=True)
class RangePlan:
    """How to answer a request's Range header for a file of a given size."""

    ranges: str | None  # a `bytes=` header of the satisfiable ranges; None: the whole file
    satisfiable: bool = True  # False: 416, none of the ranges overlaps the file


def plan_ranges(header: str | None, size_bytes: int) -> RangePlan:
    """RFC 9110: a header of another unit or with an invalid range is ignored; ranges past the
    end are dropped; if none is left, the request cannot be satisfied."""
    if header is None:
        return RangePlan(None)
    unit = _UNIT.match(header)
    if unit is None:
        return RangePlan(None)
    parts = [part.strip() for part in unit["ranges"].split(",")]
    specs = [part for part in parts if part]  # an HTTP list may hold empty elements
    kept: list[str] = []
    for spec in specs:
        if (int_range := _INT_RANGE.match(spec)) is not None:
            first, last = int(int_range["first"]), int_range["last"]
            if last and int(last) < first:
                return RangePlan(None)  # invalid: ignore the whole header
            if first < size_bytes:
                kept.append(spec)
        elif (suffix := _SUFFIX_RANGE.match(spec)) is not None:
            if int(suffix["length"]) > 0 and size_bytes > 0:
                kept.append(spec)
        else:
            return RangePlan(None)
    if not specs:
        return RangePlan(None)
    if not kept:
        return RangePlan(None, satisfiable=False)
    return RangePlan("bytes=" + ",".join(kept))


class RangedFileResponse(FileResponse):
    """A FileResponse that serves exactly the ranges of a RangePlan (HEAD: headers only)."""

    def __init__(
        self,
        path: Path,
        plan: RangePlan,
        *,
        media_type: str,
        filename: str,
        headers: dict[str, str] | None = None,  # e.g. the checksum's ETag and Repr-Digest
    ) -> None:
        super().__init__(path, media_type=media_type, filename=filename, headers=headers)
        self._ranges = plan.ranges

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(name, value) for name, value in scope["headers"] if name.lower() != b"range"]
        if self._ranges is not None:
            headers.append((b"range", self._ranges.encode("latin-1")))
        await super().__call__({**scope, "headers": headers}, receive, send)


def range_not_satisfiable(size_bytes: int) -> Response:
    """416 with the length, so a client can ask again within it (RFC 9110 §15.5.17)."""
    return Response(status_code=416, headers={"Content-Range": f"bytes */{size_bytes}"})
