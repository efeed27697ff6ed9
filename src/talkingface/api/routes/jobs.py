"""① /v1/jobs: submit, read, list, cancel, retry, events and the result download."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from talkingface.api.bodies import (
    JSON_BODY_MAX_BYTES,
    limited_request,
    read_body,
)
from talkingface.api.deps import SchedulerDep, SettingsDep, StorageDep, StoreDep
from talkingface.api.events_stream import iter_job_stream
from talkingface.api.file_ranges import RangedFileResponse, plan_ranges, range_not_satisfiable
from talkingface.api.idempotency import check_same_request, checked_key, request_fingerprint
from talkingface.api.inputs import MediaRef, Upload, is_url, resolve_inputs
from talkingface.api.problems import invalid_request, quoted
from talkingface.api.schemas import EventPublic, JobCreate, JobList, JobOptionsIn, JobPublic
from talkingface.api.schemas import job_public as build_job_public
from talkingface.api.templates_registry import TemplateRegistry
from talkingface.api.url_downloads import UrlDownloads
from talkingface.config import Settings
from talkingface.engines.base import ENGINE_NAMES
from talkingface.errors import JobStateError, QueueFullError
from talkingface.jobs.records import AttemptRecord, JobOptions, JobRecord
from talkingface.jobs.states import JobState
from talkingface.jobs.store import JobStore
from talkingface.storage.local import LocalStorage
from talkingface.url_guard import check_url
from talkingface.vocabulary import JobId

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MULTIPART_SLACK_BYTES = 1 << 20  # form fields and part headers beside the two files
MAX_ROW_NUMBER = 2**63 - 1  # a 64-bit SQL integer: larger offsets and event ids cannot exist
FORM_HINT = "send audio and video as files (two at most) and the options as text fields"
JSON_BODY_USE = "a JSON submission (paths, URLs and options); upload media as multipart/form-data"
JSON_UNREADABLE = (
    "the body cannot be read as JSON (nested too deeply, or a number thousands of digits long); "
    "send one flat object"
)

SUBMIT_BODY: dict[str, Any] = {  # Any: an OpenAPI fragment; JobCreate is added by create_app
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobCreate"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["audio", "video"],
                    "properties": {
                        "audio": {"type": "string", "format": "binary"},
                        "video": {"type": "string", "format": "binary"},
                        "priority": {"type": "integer", "minimum": -100, "maximum": 100},
                        "engine": {"type": "string"},
                        "loop": {"type": "string"},
                        "face_policy": {"type": "string"},
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


def job_options(options: JobOptionsIn, settings: Settings) -> JobOptions:
    """The stored options: server defaults filled in, unknown engines and faults refused."""
    engine = options.engine or settings.engines.default
    if engine not in ENGINE_NAMES:
        raise invalid_request(
            [
                {
                    "loc": ("engine",),
                    "msg": f"unknown engine {quoted(engine)}; use one of {ENGINE_NAMES}",
                }
            ]
        )
    if options.fault is not None and not settings.workers.allow_faults:
        raise invalid_request(
            [{"loc": ("fault",), "msg": "fault injection is disabled (workers.allow_faults)"}]
        )
    if options.callback_url is not None:
        if not is_url(options.callback_url):
            raise invalid_request([{"loc": ("callback_url",), "msg": "must be an http(s) URL"}])
        check_url("callback_url", options.callback_url, settings.api)
    return JobOptions(
        engine=engine,
        loop=(options.loop or settings.engines.loop).value,
        face_policy=(options.face_policy or settings.engines.face_policy).value,
        fault=options.fault,
        callback_url=options.callback_url,
    )


def create_job(
    audio: MediaRef,
    video: MediaRef,
    options_in: JobOptionsIn,
    idempotency_key: str | None,
    settings: Settings,
    store: JobStore,
    storage: LocalStorage,
    *,
    live_key_prefix: str | None = None,
    request_fingerprint: str | None = None,
) -> tuple[JobRecord, bool]:
    """Make the inputs local, probe them and create the job; no files are left on failure.

    An existing job is returned (created False) for a known idempotency key, or for a live
    job under `live_key_prefix` (JobStore.create); a known key whose job was made from another
    `request_fingerprint` is a 422 naming the key."""
    options = job_options(options_in, settings)
    if store.queued_count() >= settings.api.max_queued:
        raise queue_full(settings)
    job_id = JobId(uuid.uuid4().hex)
    try:
        inputs = resolve_inputs(audio, video, job_id, storage, settings)
        job, created = store.create(
            inputs,
            options,
            priority=options_in.priority,
            idempotency_key=idempotency_key,
            max_queued=settings.api.max_queued,
            job_id=job_id,
            live_key_prefix=live_key_prefix,
            request_fingerprint=request_fingerprint,
        )
    except QueueFullError as exc:
        storage.delete_job_files(job_id)
        raise queue_full(settings) from exc
    except BaseException:
        storage.delete_job_files(job_id)
        raise
    if not created:  # the idempotency key named an existing job: our copies are not needed
        storage.delete_job_files(job_id)
        if idempotency_key is not None and request_fingerprint is not None:
            stored = store.request_fingerprint_of(job.id)
            check_same_request(idempotency_key, job.id, stored, request_fingerprint)
    return job, created


def create_keyed_job(
    audio: MediaRef,
    video: MediaRef,
    options_in: JobOptionsIn,
    idempotency_key: str | None,
    settings: Settings,
    store: JobStore,
    storage: LocalStorage,
) -> tuple[JobRecord, bool]:
    """create_job for a v1 submission: its Idempotency-Key checked and, when given, the
    request's fingerprint kept with the job and compared on reuse."""
    key = checked_key(idempotency_key)
    fingerprint = request_fingerprint(audio, video, options_in) if key is not None else None
    return create_job(
        audio, video, options_in, key, settings, store, storage, request_fingerprint=fingerprint
    )


def queue_full(settings: Settings) -> QueueFullError:
    return QueueFullError(
        f"The queue is full ({settings.api.max_queued} jobs waiting, api.max_queued); "
        f"retry in {settings.api.retry_after_s} s.",
        retry_after_s=settings.api.retry_after_s,
        details={"max_queued": settings.api.max_queued},
    )


def template_video(request: Request, template_id: str) -> Path:
    """The stored video of a registered template (a failed one is refused)."""
    registry: TemplateRegistry = request.app.state.templates
    meta = registry.describe(template_id)
    if meta["state"] == "failed":
        message = (meta.get("error") or {}).get("message") or "its preparation failed"
        raise invalid_request([{"loc": ("template_id",), "msg": f"template unusable: {message}"}])
    return registry.video_path(template_id)


async def read_json_body(request: Request, use: str = JSON_BODY_USE) -> object:
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


async def read_json_submission(request: Request) -> JobCreate:
    body = await read_json_body(request)
    try:
        return JobCreate.model_validate(body)
    except ValidationError as exc:
        raise invalid_request(exc.errors(include_url=False, include_context=False)) from exc


def form_submission(form: FormData) -> tuple[MediaRef, MediaRef, JobOptionsIn]:
    """Files (or path/URL strings) `audio` and `video`, and the options as form fields."""
    refs: list[MediaRef] = []
    missing = []
    for field in ("audio", "video"):
        value = form.get(field)
        if isinstance(value, UploadFile):
            refs.append(Upload(filename=value.filename, file=value.file))
        elif isinstance(value, str) and value:
            refs.append(value)
        else:
            missing.append({"loc": (field,), "msg": "Field required (a file, path or URL)"})
    counts = Counter(key for key, _ in form.multi_items())
    repeated = [
        {"loc": (key,), "msg": f"given {count} times; send each field once"}
        for key, count in counts.items()
        if count > 1
    ]
    fields = {k: v for k, v in form.multi_items() if k not in ("audio", "video")}
    try:
        options = JobOptionsIn.model_validate({k: v for k, v in fields.items() if v != ""})
    except ValidationError as exc:
        raise invalid_request(
            repeated + missing + exc.errors(include_url=False, include_context=False)
        ) from exc
    if missing or repeated:
        raise invalid_request(repeated + missing)
    return refs[0], refs[1], options


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
    hint: str = FORM_HINT,
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


@router.post(
    "",
    status_code=202,
    operation_id="submit_job",
    responses={200: {"description": "An existing job with the same Idempotency-Key."}},
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
        form = await read_form(request, settings)
        try:
            audio, video, options = form_submission(form)
            job, created = await downloads.run_submission(
                (audio, video),
                create_keyed_job,
                audio,
                video,
                options,
                idempotency_key,
                settings,
                store,
                storage,
            )
        finally:
            await form.close()
    elif content_type.startswith("application/json") or not content_type:
        body = await read_json_submission(request)
        template: MediaRef = body.video or template_video(request, body.template_id or "")
        job, created = await downloads.run_submission(
            (body.audio, template),
            create_keyed_job,
            body.audio,
            template,
            body,
            idempotency_key,
            settings,
            store,
            storage,
        )
    else:
        raise invalid_request(
            [{"loc": ("body",), "msg": "send application/json or multipart/form-data"}]
        )
    if created:
        scheduler.wake()
    else:
        response.status_code = 200
    return await run_in_threadpool(job_public, request, store, job)


@router.head("", include_in_schema=False)
@router.get("", operation_id="list_jobs")
def list_jobs(
    request: Request,
    store: StoreDep,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_NUMBER)] = 0,
) -> JobList:
    """Jobs newest first, optionally of one state."""
    jobs, total = store.list_jobs(state=state, limit=limit, offset=offset)
    attempts = store.attempts_of([job.id for job in jobs])
    items = [job_public(request, store, job, attempts.get(job.id, [])) for job in jobs]
    return JobList(items=items, total=total, limit=limit, offset=offset)


@router.get("/{job_id}", operation_id="read_job")
def read_job(request: Request, store: StoreDep, job_id: str) -> JobPublic:
    """The job: state, stage, progress, attempts, error and result."""
    job, attempts = store.get_with_attempts(job_id)
    return job_public(request, store, job, attempts)


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
    store: StoreDep,
    job_id: str,
    range_header: Annotated[str | None, Header(alias="Range", include_in_schema=False)] = None,
) -> Response:
    """The result MP4 (supports Range requests; a Range header it cannot use is ignored)."""
    job = store.get(job_id)
    if job.state is not JobState.SUCCEEDED or job.result is None:
        raise JobStateError(
            f"Job {job_id} is {job.state.value}; its result can be downloaded once it has "
            "succeeded.",
            details={"state": job.state.value},
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
    return RangedFileResponse(path, plan, media_type="video/mp4", filename=f"{job_id}.mp4")
