"""① The one place errors become responses: {"error": {code, message, stage, retryable, …}}."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from talkingface.errors import (
    DownloadsBusyError,
    ErrorCode,
    QueueFullError,
    ServerBusyError,
    TalkingFaceError,
    UnexpectedError,
)

logger = logging.getLogger(__name__)

INPUT_INVALID = ErrorCode.INPUT_INVALID.value  # bad JSON, wrong types, unknown fields
MAX_FIELD_CHARS = 64  # longer (unknown) field names are cut in messages


def error_body(
    code: str,
    message: str,
    *,
    stage: str | None = None,
    retryable: bool = False,
    details: dict[str, Any] | None = None,  # Any: JSON-safe values
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "stage": stage,
            "retryable": retryable,
            "details": details or {},
        }
    }


def error_response(exc: TalkingFaceError) -> JSONResponse:
    body = error_body(
        exc.code.value,
        exc.message,
        stage=exc.stage.value if exc.stage else None,
        retryable=exc.retryable,
        details=exc.details,
    )
    headers = None
    # come back later: say when
    if isinstance(exc, QueueFullError | DownloadsBusyError | ServerBusyError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


def quoted(value: str, limit: int = 120) -> str:
    """A client's value for a message: quoted, control characters escaped, long ones cut."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}…{text[-4:]}"


def invalid_request(errors: Sequence[Any]) -> RequestValidationError:
    """A 422 for a request that does not parse; `errors` as pydantic reports them."""
    return RequestValidationError(list(errors))


def describe_validation_errors(errors: Sequence[Any]) -> tuple[str, list[dict[str, str]]]:
    """A readable sentence naming each field, and the same per field for `details`."""
    items: list[dict[str, str]] = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        if len(field) > MAX_FIELD_CHARS or not field.isprintable():  # an unknown key, echoed
            field = quoted(field, MAX_FIELD_CHARS)
        items.append({"field": field, "message": str(error.get("msg") or "is invalid")})
    listed = "; ".join(f"{item['field']}: {item['message']}" for item in items)
    return f"Invalid request: {listed or 'the request could not be read'}.", items


async def _talkingface_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, TalkingFaceError):  # registered for this class only
        raise exc
    if exc.http_status >= 500:
        logger.error(
            "request failed: %s", exc.one_line(), extra={"event": "request_failed"}, exc_info=exc
        )
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    message, items = describe_validation_errors(errors)
    return JSONResponse(
        error_body(INPUT_INVALID, message, details={"errors": items}), status_code=422
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else ""
    message = str(detail or "").strip() or f"HTTP {status}."
    if status == 400:  # FastAPI/Starlette could not read the body (not UTF-8, form limits)
        return await _validation_error(request, invalid_request([{"msg": message.rstrip(".")}]))
    if status == 404:
        message = f"No such endpoint: {request.method} {request.url.path}; see /docs."
    return JSONResponse(
        error_body(f"HTTP_{status}", message),
        status_code=status,
        headers=getattr(exc, "headers", None),
    )


class UnexpectedErrorMiddleware:
    """Turn any other exception into a logged 500 INTERNAL with a non-empty message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # the API's boundary: log once and answer 500
            error = UnexpectedError.from_exception(exc, context=f"handling {scope.get('path')}")
            logger.error(
                "unexpected error: %s",
                error.message,
                extra={"event": "request_failed"},
                exc_info=exc,
            )
            if started:
                raise
            await error_response(error)(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers; call once from create_app."""
    app.add_exception_handler(TalkingFaceError, _talkingface_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(UnexpectedErrorMiddleware)
