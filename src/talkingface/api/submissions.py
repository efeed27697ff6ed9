"""① Submissions: a request's inputs and options turned into a queued job (or an existing one).

The v1 and HeyGem routes both submit through create_job; the answer is a Submission, which
says whether this request created the job (202, wake the scheduler) or found it (200).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from talkingface.api.idempotency import check_same_request, checked_key, request_fingerprint
from talkingface.api.inputs import MediaRef, input_name, is_url, resolve_inputs
from talkingface.api.problems import invalid_request, quoted
from talkingface.api.schemas import JobOptionsIn
from talkingface.config import Settings
from talkingface.engines.base import ENGINE_NAMES
from talkingface.errors import QueueFullError
from talkingface.jobs.records import InputNames, JobOptions, JobRecord, JobTags
from talkingface.jobs.store import JobStore
from talkingface.storage.local import LocalStorage
from talkingface.url_guard import check_url
from talkingface.vocabulary import JobId


@dataclass(frozen=True, slots=True)
class Submission:
    """The job a submission names, and whether this submission created it."""

    job: JobRecord
    created: bool  # False: an existing job, found by its idempotency or live key


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
        evaluate=settings.evaluate.default if options.evaluate is None else options.evaluate,
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
    template_id: str | None = None,
) -> Submission:
    """Make the inputs local, probe them and create the job; no files are left on failure.

    An existing job is returned (`created` False) for a known idempotency key, or for a live
    job under `live_key_prefix` (JobStore.create); a known key whose job was made from another
    `request_fingerprint` is a 422 naming the key. `template_id`: the registered template
    `video` is the stored file of (a template deleted meanwhile is TEMPLATE_NOT_FOUND)."""
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
            tags=JobTags(label=options_in.label, metadata=options_in.metadata),
            names=InputNames(
                audio_name=input_name("audio", audio),
                video_name=input_name("video", video),
                template_id=template_id,
            ),
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
    return Submission(job, created)


def create_keyed_job(
    audio: MediaRef,
    video: MediaRef,
    options_in: JobOptionsIn,
    idempotency_key: str | None,
    settings: Settings,
    store: JobStore,
    storage: LocalStorage,
    template_id: str | None = None,
) -> Submission:
    """create_job for a v1 submission: its Idempotency-Key checked and, when given, the
    request's fingerprint kept with the job and compared on reuse."""
    key = checked_key(idempotency_key)
    fingerprint = request_fingerprint(audio, video, options_in) if key is not None else None
    return create_job(
        audio,
        video,
        options_in,
        key,
        settings,
        store,
        storage,
        request_fingerprint=fingerprint,
        template_id=template_id,
    )


def queue_full(settings: Settings) -> QueueFullError:
    return QueueFullError(
        f"The queue is full ({settings.api.max_queued} jobs waiting, api.max_queued); "
        f"retry in {settings.api.retry_after_s} s.",
        retry_after_s=settings.api.retry_after_s,
        details={"max_queued": settings.api.max_queued},
    )
