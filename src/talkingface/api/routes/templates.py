"""① /v1/templates: register a template once (stored, then face-tracked and cached by a
prepare_template job that workers run), describe and list templates (a template's state is
that job's), and delete one with its cached face data."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from talkingface.api.bodies import read_form, read_json_body
from talkingface.api.deps import SettingsDep, StorageDep
from talkingface.api.inputs import Upload, fetch_media
from talkingface.api.problems import invalid_request
from talkingface.api.schemas import TemplateList, TemplatePublic, error_answers
from talkingface.api.templates_registry import TemplateRegistry
from talkingface.api.url_downloads import UrlDownloads
from talkingface.errors import Stage, translate_errors

router = APIRouter(prefix="/v1/templates", tags=["templates"])
FORM_HINT = "send the template as one file in the field `video`"
JSON_USE = 'a template registration ({"video": path or URL}); upload a file as multipart'


TEMPLATE_NOT_FOUND = "No registered template with that id (TEMPLATE_NOT_FOUND)."
MAX_ROW_NUMBER = 2**63 - 1  # a 64-bit SQL integer: a larger offset cannot exist
TemplateId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="A registered template.")]

REGISTER_BODY: dict[str, Any] = {  # Any: an OpenAPI fragment (the body is read by hand)
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["video"],
                    "properties": {
                        "video": {"type": "string", "description": "A server path or URL."}
                    },
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["video"],
                    "properties": {"video": {"type": "string", "format": "binary"}},
                }
            },
        },
    }
}


def _public(request: Request, meta: dict[str, Any]) -> TemplatePublic:  # Any: JSON-safe
    public = {k: v for k, v in meta.items() if k != "video"}
    public["thumbnail_url"] = str(
        request.url_for("read_template_thumbnail", template_id=meta["id"])
    )
    return TemplatePublic.model_validate(public)


@router.post(
    "",
    status_code=202,
    operation_id="register_template",
    responses={200: {"description": "The template of the same content, registered before."}},
    openapi_extra=REGISTER_BODY,
)
async def register_template(
    request: Request, response: Response, settings: SettingsDep, storage: StorageDep
) -> TemplatePublic:
    """Store and prepare a template (multipart file `video`, or JSON {"video": path or URL});
    the same content returns the same id (200)."""
    registry: TemplateRegistry = request.app.state.templates
    staging_id = f"template-{uuid.uuid4().hex}"
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        form = await read_form(request, settings, max_files=1, max_fields=5, hint=FORM_HINT)
        try:
            value = form.get("video")
            if not isinstance(value, UploadFile):
                raise invalid_request([{"loc": ("video",), "msg": "Field required (a file)"}])
            ref: Any = Upload(filename=value.filename, file=value.file)  # Any: MediaRef
            path = await run_in_threadpool(fetch_media, "video", ref, staging_id, storage, settings)
        finally:
            await form.close()
    else:
        video = await _json_video(request)
        downloads: UrlDownloads = request.app.state.url_downloads
        path = await downloads.run_submission(
            (video,), fetch_media, "video", video, staging_id, storage, settings
        )
    try:
        if path.parent != storage.inputs_dir(staging_id):  # a server path: keep the original
            copy = storage.inputs_dir(staging_id) / path.name
            await run_in_threadpool(_copy_file, path, copy)  # off the event loop
            path = copy
        meta, created = await run_in_threadpool(registry.register, path)
    finally:
        storage.delete_job_files(staging_id)
    if created:
        request.app.state.scheduler.wake()  # a worker prepares it: dispatch now
    else:
        response.status_code = 200
    return _public(request, meta)


def _copy_file(source: FilePath, target: FilePath) -> None:
    """Copy a server-path template into the staging dir; a full or read-only disk becomes
    its error (DISK_FULL, STORAGE_UNAVAILABLE), not an INTERNAL one."""
    with translate_errors(Stage.SETUP, context="copying the template into the data directory"):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


async def _json_video(request: Request) -> str:
    """The `video` of a JSON body; a 422 naming the problem when the body is not that."""
    body = await read_json_body(request, JSON_USE)
    if not isinstance(body, dict) or not isinstance(body.get("video"), str):
        raise invalid_request([{"loc": ("video",), "msg": "Field required (a path or URL)"}])
    video: str = body["video"]
    return video


@router.head("", include_in_schema=False)
@router.get(
    "",
    operation_id="list_templates",
    responses=error_answers({503: "The job store cannot be reached; retryable."}),
)
def list_templates(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_NUMBER)] = 0,
) -> TemplateList:
    """Registered templates, newest first, each as GET /v1/templates/{id} describes it."""
    registry: TemplateRegistry = request.app.state.templates
    metas, total = registry.list(limit=limit, offset=offset)
    items = [_public(request, meta) for meta in metas]
    return TemplateList(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/{template_id}",
    operation_id="read_template",
    responses=error_answers({404: TEMPLATE_NOT_FOUND}),
)
def read_template(request: Request, template_id: TemplateId) -> TemplatePublic:
    """State (preparing, ready, failed), face count, duration, size and a thumbnail URL."""
    registry: TemplateRegistry = request.app.state.templates
    return _public(request, registry.describe(template_id))


@router.delete(
    "/{template_id}",
    status_code=204,
    operation_id="delete_template",
    responses=error_answers(
        {
            404: TEMPLATE_NOT_FOUND,
            409: "Queued or running jobs use it (TEMPLATE_IN_USE).",
            503: "The job store cannot be reached; retryable.",
        }
    ),
)
def delete_template(request: Request, template_id: TemplateId) -> Response:
    """Delete the template, its stored video and its prepared face data (refused while a
    queued or running job uses it; finished jobs that used it keep their results)."""
    registry: TemplateRegistry = request.app.state.templates
    registry.delete(template_id)
    return Response(status_code=204)


@router.get(
    "/{template_id}/thumbnail",
    operation_id="read_template_thumbnail",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, **error_answers({404: TEMPLATE_NOT_FOUND})},
)
def read_template_thumbnail(request: Request, template_id: TemplateId) -> FileResponse:
    registry: TemplateRegistry = request.app.state.templates
    path = registry.thumbnail_path(template_id)
    if not path.is_file():
        raise invalid_request([{"loc": ("template_id",), "msg": "the thumbnail is not ready yet"}])
    return FileResponse(path, media_type="image/jpeg")
