"""① Request bodies read on a byte budget: refused by Content-Length, or as they stream past it."""

from __future__ import annotations

from fastapi import Request
from starlette.types import Message

from talkingface.errors import InputTooLargeError, Stage

JSON_BODY_MAX_BYTES = 1 << 20  # a JSON submission holds paths, URLs and options: a few kB


def body_too_large(
    limit_bytes: int, what: str, received_bytes: int | None = None
) -> InputTooLargeError:
    """413 for a body over `limit_bytes`; `what` says what the limit is for and how to fix it."""
    size = f"{received_bytes} bytes" if received_bytes is not None else "too large"
    return InputTooLargeError(
        f"The request body is {size}, over the {limit_bytes}-byte limit for {what}.",
        stage=Stage.SETUP,
        details={"limit_bytes": limit_bytes},
    )


def check_declared_length(request: Request, limit_bytes: int, what: str) -> None:
    """Refuse at once a body whose Content-Length is over the limit (nothing is read)."""
    length = request.headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > limit_bytes:
        raise body_too_large(limit_bytes, what, int(length))


async def read_body(request: Request, limit_bytes: int, what: str) -> bytes:
    """The whole body, refused with 413 as soon as it grows past `limit_bytes`."""
    check_declared_length(request, limit_bytes, what)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit_bytes:
            raise body_too_large(limit_bytes, what)
        chunks.append(chunk)
    return b"".join(chunks)


def limited_request(request: Request, limit_bytes: int, what: str) -> Request:
    """The same request, but reading its body (e.g. a multipart form, spooled to temporary
    files) raises 413 once more than `limit_bytes` have arrived, chunked uploads included."""
    check_declared_length(request, limit_bytes, what)
    receive = request.receive
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit_bytes:
                raise body_too_large(limit_bytes, what)
        return message

    return Request(request.scope, limited_receive)
