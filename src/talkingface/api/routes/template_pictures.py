"""① A template's pictures for the dashboard: its first frame, and the face the engine will drive.

Both are drawn by the worker that prepares the template (template_preview.py); the API only
serves the files, so it never decodes media or loads face models.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse

from talkingface.api.openapi_doc import ErrorBody
from talkingface.api.templates_registry import TemplateRegistry
from talkingface.errors import NotReadyError
from talkingface.template_files import TEMPLATE_PREVIEW_NAME, TEMPLATE_THUMBNAIL_NAME

router = APIRouter(prefix="/v1/templates", tags=["templates"])

TemplateId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="A registered template.")]
_JPEG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}}},
    404: {"model": ErrorBody, "description": "Not drawn yet (NOT_READY), or no such template."},
}


def _picture(request: Request, template_id: str, name: str, what: str) -> FileResponse:
    registry: TemplateRegistry = request.app.state.templates
    meta = registry.describe(template_id)  # an unknown id answers as GET /v1/templates/{id}
    path = registry.root / template_id / name
    if path.is_file():
        return FileResponse(path, media_type="image/jpeg")
    state = meta["state"]
    if state == "preparing":
        progress = meta["progress"]
        done = f" ({progress['frames_done']}/{progress['frames_total']} frames)"
        reason = f"the template is still being prepared{done if progress['frames_total'] else ''}"
    elif state == "failed":
        error = meta.get("error") or {}
        reason = f"its preparation failed ({error.get('code', 'unknown error')})"
    else:
        reason = "it was prepared before previews were drawn; register the video again"
    raise NotReadyError(
        f"Template {template_id} has no {what} yet: {reason}. "
        f"GET /v1/templates/{template_id} shows its state and progress.",
        details={"state": state},
    )


@router.get(
    "/{template_id}/thumbnail.jpg",
    operation_id="read_template_thumbnail_jpeg",
    response_class=FileResponse,
    responses=_JPEG,
)
def read_template_thumbnail_jpeg(request: Request, template_id: TemplateId) -> FileResponse:
    """The template's first frame (at most 256 px on its long side)."""
    return _picture(request, template_id, TEMPLATE_THUMBNAIL_NAME, "thumbnail")


@router.get(
    "/{template_id}/preview.jpg",
    operation_id="read_template_preview",
    response_class=FileResponse,
    responses=_JPEG,
)
def read_template_preview(request: Request, template_id: TemplateId) -> FileResponse:
    """A frame of the template with the tracked face (green) and the mouth region the engine
    redraws (orange): the face a job will drive."""
    return _picture(request, template_id, TEMPLATE_PREVIEW_NAME, "preview")
