"""① /v1/jobs: submit, read, list, cancel, retry, events and the result download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from talkingface.api.bodies import read_form, read_json_body
from talkingface.api.deps import SchedulerDep, SettingsDep, StorageDep, StoreDep, read_store
from talkingface.api.events_stream import iter_job_stream
from talkingface.api.file_ranges import RangedFileResponse, plan_ranges, range_not_satisfiable
from talkingface.api.inputs import MediaRef
from talkingface.api.job_files import remove_job_files
from talkingface.api.job_forms import form_submission
from talkingface.api.object_download import object_result_response
from talkingface.api.problems import invalid_request
from talkingface.api.schemas import (
    LABEL_MAX_CHARS,
    EventPublic,
    JobCreate,
    JobList,
    JobPublic,
    error_answers,
)
from talkingface.api.schemas import job_public as build_job_public
from talkingface.api.submissions import create_keyed_job
from talkingface.api.templates_registry import TemplateRegistry
from talkingface.api.url_downloads import UrlDownloads
from talkingface.errors import ErrorCode, JobStateError
from talkingface.jobs.reads import JobQuery
from talkingface.jobs.records import AttemptRecord, JobRecord
from talkingface.jobs.states import JobState
from talkingface.jobs.status_reads import job_with_attempts_read
from talkingface.jobs.store import JobStore
from talkingface.storage.base import is_object_url
from talkingface.storage.checksums import digest_headers, etag_matches

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_ROW_NUMBER = 2**63 - 1  # a 64-bit SQL integer: larger offsets and event ids cannot exist
FORM_HINT = "send audio and video as files (two at most) and the options as text fields"

JSON_BODY_USE = "a JSON submission (paths, URLs and options); upload media as multipart/form-data"

SUBMIT_BODY: dict[str, Any] = {  # Any: an OpenAPI fragment; JobCreate is added by create_app
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobCreate"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["audio"],
                    "properties": {
                        "audio": {"type": "string", "format": "binary"},
                        "video": {
                            "type": "string",
                            "format": "binary",
                            "description": "The template video; or send template_id.",
                        },
                        "template_id": {
                            "type": "string",
                            "pattern": "^[0-9a-f]{32}$",
                            "description": "A registered template, instead of video.",
                        },
                        "priority": {"type": "integer", "minimum": -100, "maximum": 100},
                        "engine": {"type": "string"},
                        "loop": {"type": "string"},
                        "face_policy": {"type": "string"},
                        "evaluate": {"type": "boolean"},
                        "label": {"type": "string", "maxLength": LABEL_MAX_CHARS},
                        "metadata": {
                            "type": "string",
                            "description": "A JSON object, as text (4096 bytes, 32 keys).",
                        },
                    },
                }
            },
        },
    }
}


def job_public(
    request: Request, store: JobStore, job: JobRecord, attempts: list[AttemptRecord] | None = None
) -> JobPublic:
    url = str(request.url_for("download_result", job_id=job.id))
    return build_job_public(job, store.attempts(job.id) if attempts is None else attempts, url)


def template_video(request: Request, template_id: str) -> Path:
    """The stored video of a registered template (a failed one is refused)."""
    registry: TemplateRegistry = request.app.state.templates
    meta = registry.describe(template_id)
    if meta["state"] == "failed":
        message = (meta.get("error") or {}).get("message") or "its preparation failed"
        raise invalid_request([{"loc": ("template_id",), "msg": f"template unusable: {message}"}])
    return registry.video_path(template_id)


async def read_json_submission(request: Request) -> JobCreate:
    body = await read_json_body(request, JSON_BODY_USE)
    try:
        return JobCreate.model_validate(body)
    except ValidationError as exc:
        raise invalid_request(exc.errors(include_url=False, include_context=False)) from exc


@router.post(
    "",
    status_code=202,
    operation_id="submit_job",
    responses={
        200: {"description": "An existing job with the same Idempotency-Key."},
        **error_answers({404: "No registered template with that id (TEMPLATE_NOT_FOUND)."}),
    },
    openapi_extra=SUBMIT_BODY,
)
async def submit_job(
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: StoreDep,
    storage: StorageDep,
    scheduler: SchedulerDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobPublic:
    """Queue a job over server paths or URLs (JSON) or uploaded files (multipart)."""
    downloads: UrlDownloads = request.app.state.url_downloads
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        form = await read_form(request, settings, hint=FORM_HINT)
        try:
            sent = form_submission(form)
            video = sent.video or template_video(request, sent.template_id or "")
            submission = await downloads.run_submission(
                (sent.audio, video),
                create_keyed_job,
                sent.audio,
                video,
                sent.options,
                idempotency_key,
                settings,
                store,
                storage,
                sent.template_id,
            )
        finally:
            await form.close()
    elif content_type.startswith("application/json") or not content_type:
        body = await read_json_submission(request)
        template: MediaRef = body.video or template_video(request, body.template_id or "")
        submission = await downloads.run_submission(
            (body.audio, template),
            create_keyed_job,
            body.audio,
            template,
            body,
            idempotency_key,
            settings,
            store,
            storage,
            body.template_id,
        )
    else:
        raise invalid_request(
            [{"loc": ("body",), "msg": "send application/json or multipart/form-data"}]
        )
    if submission.created:
        scheduler.wake()  # and no store read after the commit: a new job has no attempts, and
        return job_public(request, store, submission.job, attempts=[])  # a failed read would
    response.status_code = 200  # answer 503 for a job that exists
    return await run_in_threadpool(job_public, request, store, submission.job)


@router.head("", include_in_schema=False)
@router.get("", operation_id="list_jobs")
def list_jobs(
    request: Request,
    store: StoreDep,
    state: JobState | None = None,
    label: Annotated[
        str | None, Query(max_length=LABEL_MAX_CHARS, description="Jobs with exactly this label.")
    ] = None,
    error_code: Annotated[
        ErrorCode | None, Query(description="Jobs whose last error has this code.")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=LABEL_MAX_CHARS,
            description="Case-insensitive text in the label or an input file name.",
        ),
    ] = None,
    low_sync: Annotated[
        bool | None,
        Query(
            description="true: jobs whose quality receipt fell under the sync floor; false: "
            "receipts above it (jobs without a receipt match neither)."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_NUMBER)] = 0,
) -> JobList:
    """Jobs newest first; the filters combine (all must match)."""
    query = JobQuery(
        state=state,
        label=label.strip() if label is not None else None,
        error_code=error_code,
        text=q,
        low_sync=low_sync,
    )
    jobs, total = store.list_jobs(query, limit=limit, offset=offset)
    attempts = store.attempts_of([job.id for job in jobs])
    items = [job_public(request, store, job, attempts.get(job.id, [])) for job in jobs]
    return JobList(items=items, total=total, limit=limit, offset=offset)


@router.get("/{job_id}", operation_id="read_job", response_model=JobPublic)
async def read_job(request: Request, job_id: str) -> Response:
    """The job: state, stage, progress, attempts, error and result."""
    # The hot read of status polling: no dependencies, serialised once by its model (FastAPI
    # would validate the returned model again), the URL looked up only when there is a result.
    job, attempts = await read_store(request, job_with_attempts_read(job_id))
    url = str(request.url_for("download_result", job_id=job.id)) if job.result else ""
    body = build_job_public(job, attempts, url).model_dump_json()
    return Response(body, media_type="application/json")


@router.delete(
    "/{job_id}",
    status_code=204,
    operation_id="delete_job",
    responses=error_answers(
        {
            404: "No job with that id (JOB_NOT_FOUND).",
            409: "The job is queued or running, or prepares a template (JOB_STATE).",
            503: "The job store cannot be reached; retryable.",
        }
    ),
)
def delete_job(
    settings: SettingsDep, store: StoreDep, storage: StorageDep, job_id: str
) -> Response:
    """Delete a finished job (succeeded, failed or canceled): its record, history and files
    (the result, uploaded and downloaded inputs; a HeyGem job's `<code>-r.mp4` when it holds
    this job's video). Server-path inputs and registered templates are left alone."""
    job = store.delete_finished_job(job_id)
    remove_job_files(job, store, storage, settings.heygem_temp_dir)
    return Response(status_code=204)


class JobUpdate(BaseModel):
    """PATCH body: what may change on a queued job."""

    model_config = ConfigDict(extra="forbid")
    priority: int = Field(ge=-100, le=100, strict=True)  # a JSON integer: true is not 1


@router.patch("/{job_id}", operation_id="update_job")
def update_job(request: Request, store: StoreDep, job_id: str, body: JobUpdate) -> JobPublic:
    """Change a queued job's priority (its place in the queue); 409 once it has started."""
    return job_public(request, store, store.set_priority(job_id, body.priority))


@router.post("/{job_id}/cancel", status_code=202, operation_id="cancel_job")
def cancel_job(
    request: Request, store: StoreDep, scheduler: SchedulerDep, job_id: str
) -> JobPublic:
    """Cancel: a queued job at once, a running one as soon as its worker is stopped."""
    job = store.request_cancel(job_id)
    scheduler.wake()
    return job_public(request, store, job)


@router.post("/{job_id}/retry", status_code=202, operation_id="retry_job")
def retry_job(request: Request, store: StoreDep, scheduler: SchedulerDep, job_id: str) -> JobPublic:
    """Queue a failed or canceled job again; its attempt history continues."""
    job = store.retry(job_id)
    scheduler.wake()
    return job_public(request, store, job)


@router.get(
    "/{job_id}/events",
    operation_id="stream_job_events",
    response_model=list[EventPublic],
    responses={200: {"content": {"text/event-stream": {}}}},
)
def stream_job_events(
    request: Request,
    store: StoreDep,
    job_id: str,
    after_id: Annotated[int, Query(ge=0, le=MAX_ROW_NUMBER)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response | list[EventPublic]:
    """The job's history, oldest first. With `Accept: text/event-stream`: server-sent events,
    the history then live transitions and progress until the job ends; reconnecting with
    `Last-Event-ID` resumes right after the last event received."""
    store.get(job_id)  # 404 for an unknown job, not an empty list
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            iter_job_stream(
                request.app.state.stream_poll, job_id, resume_after(last_event_id, after_id)
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    events = store.events(job_id, after_id=after_id, limit=limit)
    return [EventPublic(id=e.id, at=e.at, kind=e.kind, data=e.data) for e in events]


def resume_after(last_event_id: str | None, after_id: int) -> int:
    """Where an event stream resumes: after Last-Event-ID when it can be an event id (ASCII
    digits in range: "²" would fail in int(), 10**30 in the database), else after after_id."""
    resume = (last_event_id or "").strip()
    fits = resume.isascii() and resume.isdigit() and len(resume) <= 19  # int() is then safe
    return int(resume) if fits and int(resume) <= MAX_ROW_NUMBER else after_id


@router.head("/{job_id}/result", include_in_schema=False)
@router.get(
    "/{job_id}/result",
    operation_id="download_result",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {}}},
        206: {"description": "A byte range."},
        416: {"description": "No requested range overlaps the file."},
    },
)
def download_result(
    request: Request,
    store: StoreDep,
    storage: StorageDep,
    job_id: str,
    range_header: Annotated[str | None, Header(alias="Range", include_in_schema=False)] = None,
    if_none_match: Annotated[
        str | None, Header(alias="If-None-Match", include_in_schema=False)
    ] = None,
) -> Response:
    """The result MP4 (supports Range requests; a Range header it cannot use is ignored).
    `ETag` and `Repr-Digest` carry its SHA-256; If-None-Match with that ETag answers 304."""
    job = store.get(job_id)
    if job.state is not JobState.SUCCEEDED or job.result is None:
        raise JobStateError(
            f"Job {job_id} is {job.state.value}; its result can be downloaded once it has "
            "succeeded.",
            details={"state": job.state.value},
        )
    headers = digest_headers(job.result.sha256)
    if "etag" in headers and etag_matches(if_none_match, headers["etag"]):
        return Response(status_code=304, headers=headers)
    if is_object_url(job.result.path):
        head_only = request.method == "HEAD"
        return object_result_response(
            storage, job_id, job.result.path, range_header, head_only=head_only, headers=headers
        )
    path = Path(job.result.path)
    if not path.is_file():
        raise JobStateError(
            f"The result of job {job_id} is no longer on the server (removed after "
            "api.result_retention_s); run the job again.",
            details={"state": job.state.value},
        )
    plan = plan_ranges(range_header, path.stat().st_size)
    if not plan.satisfiable:
        return range_not_satisfiable(path.stat().st_size)
    return RangedFileResponse(
        path, plan, media_type="video/mp4", filename=f"{job_id}.mp4", headers=headers
    )
