"""① The served OpenAPI document: FastAPI's, plus JobCreate and the error answers each
operation really gives (the problems.py body, or the HeyGem envelope on /easy).

The key schemes come from FastAPI's own security dependencies (auth.py, wired in create_app
when keys are set); here the probes, which need no key, lose them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from talkingface.api.schemas import TEST_ONLY, ErrorPublic, JobCreate

# Any: OpenAPI fragments below are plain JSON objects.
Document = dict[str, Any]

ERROR_REF = "#/components/schemas/ErrorBody"
HEYGEM_REF = "#/components/schemas/HeyGemReply"
HEYGEM_TAG = "heygem"

# Error statuses besides 500 (any route) and 401 (any keyed route), by operation id.
ERROR_STATUSES: dict[str, tuple[int, ...]] = {
    "submit_job": (413, 422, 429, 503),
    "list_jobs": (422, 503),
    "read_job": (404, 503),
    "update_job": (404, 409, 422, 503),
    "cancel_job": (404, 409, 503),
    "retry_job": (404, 409, 503),
    "stream_job_events": (404, 422, 503),
    "download_result": (404, 409, 503),
    "read_stats": (503,),
    "read_metrics": (503,),
    "list_alerts": (503,),
    "read_queue": (503,),
    "register_template": (413, 422),
    "read_template": (422,),
    "read_template_thumbnail": (422,),
}
STATUS_TEXT = {
    401: "Missing or wrong API key.",
    403: "A keyless loopback server refuses a foreign Host or web Origin (FORBIDDEN_ORIGIN).",
    404: "No such job.",
    409: "The job is not in a state that allows this.",
    413: "An input is over api.max_upload_bytes.",
    422: "The request or one of its inputs is invalid; `details` names the field.",
    429: "The queue is full; retry after the Retry-After seconds.",
    500: "An unexpected server error (logged with the request id).",
    503: "The job store cannot be reached; retryable.",
}
OPEN_OPERATIONS = frozenset({"check_health", "check_ready"})  # probes carry no key


class ErrorDetail(ErrorPublic):
    details: dict[str, object]


class ErrorBody(BaseModel):
    """Every error answer outside /easy: {"error": {code, message, stage, retryable, details}}."""

    error: ErrorDetail


class HeyGemReply(BaseModel):
    """face2face's envelope, always HTTP 200 on /easy: the outcome is `code` (10000 success)."""

    code: int
    data: dict[str, object]
    msg: str | int
    success: bool


def openapi_builder(
    app: FastAPI, *, keyed: bool, guarded: bool = False, test_only: bool = False
) -> Callable[[], Document]:
    """app.openapi for create_app; `keyed`: API keys are configured, so 401 is an answer;
    `guarded`: the browser guard is on (keyless loopback), so 403 is one; `test_only`: fault
    injection is allowed, so the fields marked TEST_ONLY are shown."""

    def openapi() -> Document:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            models = add_models(document, test_only=test_only)
            app.openapi_schema = describe_errors(models, keyed=keyed, guarded=guarded)
        return app.openapi_schema

    return openapi


def add_models(document: Document, *, test_only: bool = False) -> Document:
    """JobCreate (submit_job reads it by hand, JSON or form) and the error shapes; fields
    marked TEST_ONLY only when `test_only`."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (JobCreate, ErrorBody, HeyGemReply):
        fragment = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(fragment.pop("$defs", {}))
        schemas[model.__name__] = fragment
    if not test_only:
        for schema in schemas.values():
            _drop_test_only(schema)
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422, never sent
        schemas.pop(unused, None)
    return document


def _drop_test_only(schema: Document) -> None:
    properties = schema.get("properties", {})
    for name in [name for name, spec in properties.items() if spec.get(TEST_ONLY)]:
        del properties[name]
        if name in schema.get("required", ()):
            schema["required"].remove(name)


def describe_errors(document: Document, *, keyed: bool, guarded: bool = False) -> Document:
    """Each operation's error answers, with the body problems.py (or /easy) really sends."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if HEYGEM_TAG in operation.get("tags", ()):
                _describe_heygem(responses, keyed=keyed, guarded=guarded)
                continue
            statuses = set(ERROR_STATUSES.get(operation.get("operationId", ""), ()))
            statuses.add(500)
            if operation.get("operationId") in OPEN_OPERATIONS:
                operation.pop("security", None)
            elif keyed:
                statuses.add(401)
            if guarded:
                statuses.add(403)
            if "422" in responses:  # FastAPI adds it wherever there are parameters
                statuses.add(422)
            for status in sorted(statuses):
                responses[str(status)] = _json_response(STATUS_TEXT[status], ERROR_REF)
    return document


def _describe_heygem(responses: Document, *, keyed: bool, guarded: bool) -> None:
    """/easy answers 200 with the envelope whatever happened (401 too when keyed); a crash
    outside its own handling is still the problems.py 500."""
    responses.clear()
    responses["200"] = _json_response("The outcome, in `code`.", HEYGEM_REF)
    if keyed:
        responses["401"] = _json_response(STATUS_TEXT[401], HEYGEM_REF)
    if guarded:
        responses["403"] = _json_response(STATUS_TEXT[403], HEYGEM_REF)
    responses["500"] = _json_response(STATUS_TEXT[500], ERROR_REF)


def _json_response(description: str, ref: str) -> Document:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}
