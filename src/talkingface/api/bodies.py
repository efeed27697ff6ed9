"""① Request bodies read on a byte budget: refused by Content-Length, or as they stream past it."""

from __future__ import annotations

import json

from fastapi import Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

from talkingface.api.problems import invalid_request
from talkingface.config import Settings
from talkingface.errors import InputTooLargeError, Stage

JSON_BODY_MAX_BYTES = 1 << 20  # a JSON submission holds paths, URLs and options: a few kB
MULTIPART_SLACK_BYTES = 1 << 20  # form fields and part headers beside the two files
JSON_UNREADABLE = (
    "the body cannot be read as JSON (nested too deeply, or a number thousands of digits long); "
    "send one flat object"
)


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


async def read_json_body(request: Request, use: str) -> object:
    """The parsed JSON body, read on the JSON byte budget (413 naming `use` past it); a body
    that is not JSON, or JSON nested too deeply to read, is a 422 about the body."""
    raw = await read_body(request, JSON_BODY_MAX_BYTES, use)
    try:
        body: object = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid_request(
            [{"loc": ("body",), "msg": f"the body is not valid JSON ({exc}); send one object"}]
        ) from exc
    except (RecursionError, ValueError) as exc:  # nested too deeply, a number too long
        raise invalid_request([{"loc": ("body",), "msg": JSON_UNREADABLE}]) from exc
    return body


def upload_budget(settings: Settings) -> tuple[int, str]:
    """The byte limit of a multipart body (two uploads and the form fields) and its wording."""
    what = f"two files of {settings.api.max_upload_bytes} bytes (api.max_upload_bytes)"
    return 2 * settings.api.max_upload_bytes + MULTIPART_SLACK_BYTES, what


async def read_form(
    request: Request,
    settings: Settings,
    *,
    max_files: int = 2,
    max_fields: int = 20,
    hint: str,
) -> FormData:
    """The multipart form, read on the byte budget of two uploads (413 once past it, chunked
    bodies too); a malformed body is 422 saying how to send one (`hint`). The caller closes
    the form."""
    try:
        limited = limited_request(request, *upload_budget(settings))
        return await limited.form(max_files=max_files, max_fields=max_fields)
    except StarletteHTTPException as exc:  # starlette's 400 for a malformed multipart body
        message = f"the multipart body cannot be read ({exc.detail}); {hint}"
        raise invalid_request([{"loc": ("body",), "msg": message}]) from exc
