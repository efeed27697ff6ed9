"""① /v1/templates: register a template once (stored, face-tracked, cached) and describe it."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from talkingface.api.deps import SettingsDep, StorageDep
from talkingface.api.inputs import Upload, fetch_media
from talkingface.api.problems import invalid_request
from talkingface.api.routes.jobs import check_body_size
from talkingface.api.templates_registry import TemplateRegistry

router = APIRouter(prefix="/v1/templates", tags=["templates"])


def _public(request: Request, meta: dict[str, Any]) -> dict[str, Any]:  # Any: JSON-safe
    public = {k: v for k, v in meta.items() if k != "video"}
    public["thumbnail_url"] = str(
        request.url_for("read_template_thumbnail", template_id=meta["id"])
    )
    return public


@router.post("", status_code=202, operation_id="register_template")
async def register_template(
    request: Request, response: Response, settings: SettingsDep, storage: StorageDep
) -> dict[str, Any]:
    """Store and prepare a template (multipart file `video`, or JSON {"video": path or URL});
    the same content returns the same id (200)."""
    registry: TemplateRegistry = request.app.state.templates
    staging_id = f"template-{uuid.uuid4().hex}"
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        check_body_size(request, settings)
        async with request.form(max_files=1, max_fields=5) as form:
            value = form.get("video")
            if not isinstance(value, UploadFile):
                raise invalid_request([{"loc": ("video",), "msg": "Field required (a file)"}])
            ref: Any = Upload(filename=value.filename, file=value.file)  # Any: MediaRef
            path = await run_in_threadpool(fetch_media, "video", ref, staging_id, storage, settings)
    else:
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("video"), str):
            raise invalid_request([{"loc": ("video",), "msg": "Field required (a path or URL)"}])
        path = await run_in_threadpool(
            fetch_media, "video", body["video"], staging_id, storage, settings
        )
        if path.parent != storage.inputs_dir(staging_id):  # a server path: keep the original
            copy = storage.inputs_dir(staging_id) / path.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(path.read_bytes())
            path = copy
    try:
        meta, created = await run_in_threadpool(registry.register, path)
    finally:
        storage.delete_job_files(staging_id)
    if not created:
        response.status_code = 200
    return _public(request, meta)


@router.get("/{template_id}", operation_id="read_template")
def read_template(request: Request, template_id: str) -> dict[str, Any]:
    """State (preparing, ready, failed), face count, duration, size and a thumbnail URL."""
    registry: TemplateRegistry = request.app.state.templates
    return _public(request, registry.describe(template_id))


@router.get("/{template_id}/thumbnail", operation_id="read_template_thumbnail")
def read_template_thumbnail(request: Request, template_id: str) -> FileResponse:
    registry: TemplateRegistry = request.app.state.templates
    path = registry.thumbnail_path(template_id)
    if not path.is_file():
        raise invalid_request([{"loc": ("template_id",), "msg": "the thumbnail is not ready yet"}])
    return FileResponse(path, media_type="image/jpeg")
