"""① HeyGem / Duix face2face compatibility: POST /easy/submit and GET /easy/query.

Existing face2face clients work unchanged: the same envelope `{code, data, msg, success}`,
always HTTP 200, the same codes and Chinese messages, `data.status` 1/2/3 and results at
`<temp dir>/<code>-r.mp4`. This table maps our outcomes to face2face's codes:

    submitted / found               10000 成功        (submit: msg is the integer 10000)
    queue at api.max_queued         10001 忙碌中      (a busy worker no longer means busy)
    missing/invalid field or input  10002 参数异常 / "<field>参数缺失" / the input error
    unknown code                    10004 任务不存在
    anything unexpected             9999  系统异常: <message>

Mistyped fields are 10002 naming the field (`pn参数异常: 应为0或1`); unknown fields are
ignored, as face2face ignores them, and listed in the job's `heygem_submitted` event.
Unlike the original: submissions queue instead of answering busy, results stay readable
after the first terminal read, and a code resubmitted while queued or running returns that
job, however many submissions race (after it finished, a new job starts only if the inputs
differ). The result file is written when the job succeeds, never by a query (see
talkingface.heygem_results); a query names it only while it holds that job's video.
`pn=1` (the default) is ping-pong looping, `pn=0` restarts the template; `chaofen`,
`watermark_switch` and `digital_auth` are accepted and recorded in the job's history but
change nothing: there is no super-resolution or watermark step here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from talkingface.api.bodies import JSON_BODY_MAX_BYTES, read_body
from talkingface.api.deps import SchedulerDep, SettingsDep, StorageDep, StoreDep, read_store
from talkingface.api.heygem_paths import heygem_settings, resolve_heygem_ref
from talkingface.api.schemas import JobOptionsIn
from talkingface.api.submissions import create_job
from talkingface.api.url_downloads import UrlDownloads
from talkingface.config import Settings
from talkingface.errors import (
    DownloadsBusyError,
    InputTooLargeError,
    QueueFullError,
    TalkingFaceError,
    UnexpectedError,
)
from talkingface.heygem_results import code_key_prefix, exposed_result_of, job_key
from talkingface.jobs.records import JobRecord
from talkingface.jobs.states import JobState
from talkingface.jobs.status_reads import newest_with_key_prefix_read
from talkingface.jobs.store import JobStore
from talkingface.storage.base import is_object_url
from talkingface.storage.local import LocalStorage
from talkingface.vocabulary import LoopMode

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/easy", tags=["heygem"])

SUCCESS, BUSY, PARAM_ERROR, NOT_FOUND, SYSTEM_ERROR = 10000, 10001, 10002, 10004, 9999
STATUS_RUNNING, STATUS_DONE, STATUS_FAILED = 1, 2, 3
REQUIRED_FIELDS = ("audio_url", "video_url", "code")
CODE_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # it names a file: no separators, no ..
FLAG_FIELDS = ("pn", "chaofen", "watermark_switch", "digital_auth")
KNOWN_FIELDS = frozenset((*REQUIRED_FIELDS, *FLAG_FIELDS))
BODY_TOO_LARGE = f"参数异常: 请求体超过{JSON_BODY_MAX_BYTES // 1024} KB"
DOWNLOADS_BUSY = "忙碌中: 正在下载的URL输入已达上限（或服务正在停止），请稍后重试或直接上传文件"
STAGE_NAMES = {
    "setup": "准备中",
    "starting": "准备中",
    "probe": "检查输入",
    "features": "分析音频",
    "track": "人脸跟踪",
    "decode": "合成视频",
    "render": "合成视频",
    "blend": "合成视频",
    "encode": "合成视频",
    "upload": "上传结果",  # to object storage (storage.url = s3://…)
}


def envelope(code: int, data: dict[str, Any], msg: object, success: bool = True) -> JSONResponse:
    """face2face's reply: always HTTP 200, the outcome in `code`."""
    return JSONResponse({"code": code, "data": data, "msg": msg, "success": success})


RESULT_GONE = (
    "任务已完成，但结果文件{code}-r.mp4已不在临时目录中（可能已被删除）；请换一个code重新提交"
)
RESULT_DOWNLOADABLE = "，或从 /v1/jobs/{job_id}/result 下载"
CODE_INVALID = "code参数异常: 只能包含字母、数字、_ . -，最长128个字符"


def _valid_code(code: str) -> bool:
    return CODE_PATTERN.fullmatch(code) is not None and code not in {".", ".."}


def _flag_value(value: object) -> int | None:
    """0 or 1 from 0/1, "0"/"1" or false/true (face2face compared with == 1); else None."""
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text in ("0", "1") else None
    if isinstance(value, int | float) and value in (0, 1):  # bool is an int
        return int(value)
    return None


def _flag(body: dict[str, Any], name: str, default: int) -> int:
    value = _flag_value(body.get(name))
    return default if value is None else value


def _field_problem(body: dict[str, Any]) -> str | None:
    """face2face's message for the first missing or mistyped field; None when all are usable."""
    for name in REQUIRED_FIELDS:
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return f"{name}参数缺失"
        if name == "code" and (isinstance(value, bool) or not isinstance(value, str | int)):
            return "code参数异常: 应为字符串"
        if name != "code" and not isinstance(value, str):
            return f"{name}参数异常: 应为字符串（URL、路径或文件名）"
        if isinstance(value, str) and not _is_utf8(value):
            return f"{name}参数异常: 含有无法编码的字符（未配对的代理项）"
    for name in FLAG_FIELDS:
        if body.get(name) is not None and _flag_value(body[name]) is None:
            return f"{name}参数异常: 应为0或1"
    return None


def _is_utf8(text: str) -> bool:
    """False for JSON strings holding unpaired surrogates (\\ud800), which no file name holds."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _client_wording(message: str) -> str:
    """Our input errors name the fields audio/video; a face2face client sent *_url."""
    for field in ("audio", "video"):
        if message.startswith(f"{field}: "):
            return f"{field}_url{message[len(field) :]}"
    return message


def _job_key(code: str, audio: str, video: str, pn: int) -> str:
    digest = hashlib.sha256(f"{audio}\n{video}\n{pn}".encode()).hexdigest()[:16]
    return job_key(code, digest)


SUBMIT_BODY: dict[str, Any] = {  # Any: an OpenAPI fragment (the body is read by hand)
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": list(REQUIRED_FIELDS),
                    "properties": {
                        "audio_url": {"type": "string", "description": "URL, path or temp name"},
                        "video_url": {"type": "string", "description": "URL, path or temp name"},
                        "code": {"type": "string", "pattern": f"^{CODE_PATTERN.pattern}$"},
                        **{name: {"type": "integer", "enum": [0, 1]} for name in FLAG_FIELDS},
                    },
                }
            }
        },
    }
}


@router.post("/submit", operation_id="heygem_submit", openapi_extra=SUBMIT_BODY)
async def heygem_submit(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    storage: StorageDep,
    scheduler: SchedulerDep,
) -> JSONResponse:
    """face2face submit: JSON body whatever the Content-Type (raw strings too)."""
    try:
        raw = await read_body(request, JSON_BODY_MAX_BYTES, "a face2face submission")
    except InputTooLargeError:
        return envelope(PARAM_ERROR, {}, BODY_TOO_LARGE, success=False)
    try:
        body = json.loads(raw or b"null")
    except (ValueError, RecursionError):  # bad syntax or UTF-8, too deep, a number too long
        return envelope(PARAM_ERROR, {}, "参数异常: 请求体不是JSON", success=False)
    if not isinstance(body, dict):
        return envelope(PARAM_ERROR, {}, "参数异常: 请求体应为JSON对象", success=False)
    problem = _field_problem(body)
    if problem is not None:
        return envelope(PARAM_ERROR, {}, problem, success=False)
    if not _valid_code(str(body["code"]).strip()):
        return envelope(PARAM_ERROR, {}, CODE_INVALID, success=False)
    downloads: UrlDownloads = request.app.state.url_downloads
    refs = (str(body["audio_url"]).strip(), str(body["video_url"]).strip())
    try:
        return await downloads.run_submission(
            refs, _submit, body, settings, store, storage, scheduler
        )
    except DownloadsBusyError:
        return envelope(BUSY, {}, DOWNLOADS_BUSY, success=False)
    except QueueFullError:
        return envelope(BUSY, {}, "忙碌中")
    except TalkingFaceError as exc:
        if 400 <= exc.http_status < 500:
            message = _client_wording(exc.message)
            return envelope(PARAM_ERROR, {}, f"参数异常: {message}", success=False)
        return envelope(SYSTEM_ERROR, {}, f"系统异常: {exc.message}", success=False)
    except Exception as exc:  # the API boundary: never a 500 or an empty message here
        logger.exception("heygem submit failed", extra={"event": "heygem_submit_failed"})
        error = UnexpectedError.from_exception(exc, context="submitting a HeyGem job")
        return envelope(SYSTEM_ERROR, {}, f"系统异常: {error.message}", success=False)


def _submit(
    body: dict[str, Any],
    settings: Settings,
    store: JobStore,
    storage: LocalStorage,
    scheduler: Any,  # Any: SchedulerView
) -> JSONResponse:
    code = str(body["code"]).strip()
    current = store.latest_with_key_prefix(code_key_prefix(code))
    if current is not None and current.state in (JobState.QUEUED, JobState.RUNNING):
        return envelope(SUCCESS, {}, SUCCESS)  # the same task is already on its way
    audio = resolve_heygem_ref(str(body["audio_url"]).strip(), settings)
    video = resolve_heygem_ref(str(body["video_url"]).strip(), settings)
    pn = _flag(body, "pn", 1)
    options = JobOptionsIn(loop=LoopMode.PINGPONG if pn else LoopMode.RESTART)
    submission = create_job(
        audio,
        video,
        options,
        _job_key(code, audio, video, pn),
        heygem_settings(settings),
        store,
        storage,
        live_key_prefix=code_key_prefix(code),  # a race past the check above folds here
    )
    if submission.created:
        flags = {name: _flag(body, name, 1 if name == "pn" else 0) for name in FLAG_FIELDS}
        ignored = sorted(str(k)[:64] for k in body if k not in KNOWN_FIELDS)[:20]
        extra = {"ignored_fields": ignored} if ignored else {}
        try:
            data = {"code": code, **flags, **extra}
            store.add_event(submission.job.id, "heygem_submitted", data)
        except TalkingFaceError as exc:  # the job exists: answering an error would make the
            logger.warning(  # client give up on a job that runs anyway
                "job %s created; its heygem_submitted event was not recorded: %s",
                submission.job.id,
                exc.message,
                extra={"event": "heygem_event_not_recorded", "job_id": submission.job.id},
            )
        scheduler.wake()
    return envelope(SUCCESS, {}, SUCCESS)


@router.get("/query", operation_id="heygem_query")
async def heygem_query(request: Request, code: str | None = None) -> JSONResponse:
    """face2face query: status 1 running (or queued), 2 done, 3 failed; never deleted."""
    task = (code or "").strip()
    if not task:
        return envelope(PARAM_ERROR, {}, "code参数缺失", success=False)
    if not _valid_code(task):
        return envelope(PARAM_ERROR, {}, CODE_INVALID, success=False)
    settings: Settings = request.app.state.settings
    store: JobStore = request.app.state.store
    try:  # a hot read of polling clients: one store read, no dependencies to solve
        read = newest_with_key_prefix_read(code_key_prefix(task), is_sqlite=store.reads_are_local)
        job, ahead = await read_store(request, read)
        if job is None:
            return envelope(NOT_FOUND, {}, "任务不存在")
        return envelope(SUCCESS, _query_data(task, job, ahead, settings), "")
    except TalkingFaceError as exc:
        return envelope(SYSTEM_ERROR, {}, f"系统异常: {exc.message}", success=False)
    except Exception as exc:  # the API boundary: never a 500 or an empty message here
        logger.exception("heygem query failed", extra={"event": "heygem_query_failed"})
        error = UnexpectedError.from_exception(exc, context="reading a HeyGem task")
        return envelope(SYSTEM_ERROR, {}, f"系统异常: {error.message}", success=False)


def _query_data(code: str, job: JobRecord, ahead: int, settings: Settings) -> dict[str, Any]:
    """`ahead`: the queued jobs that run before `job` (when it is queued)."""
    data: dict[str, Any] = {"code": code, "status": STATUS_RUNNING, "progress": 0, "result": ""}
    if job.state == JobState.QUEUED:
        data["msg"] = f"排队中，前面还有{ahead}个任务" if ahead else "排队中，即将开始"
    elif job.state == JobState.RUNNING:
        fraction = job.frames_done / job.frames_total if job.frames_total else 0.0
        data["progress"] = max(1, min(99, int(fraction * 100)))
        stage = STAGE_NAMES.get(job.stage or "", job.stage or "处理中")
        frames = f" {job.frames_done}/{job.frames_total}帧" if job.frames_total else ""
        data["msg"] = f"{stage}{frames}"
    elif job.state == JobState.SUCCEEDED and job.result is not None:
        exposed = exposed_result_of(settings.heygem_temp_dir, code, job)
        if exposed is None:
            stored = is_object_url(job.result.path) or Path(job.result.path).is_file()
            hint = RESULT_DOWNLOADABLE.format(job_id=job.id) if stored else ""
            data.update(status=STATUS_FAILED, msg=RESULT_GONE.format(code=code) + hint)
            return data
        data.update(
            status=STATUS_DONE,
            progress=100,
            result=f"/{exposed.name}",
            msg="任务完成",
            cost=round(job.result.processing_s, 3),
            video_duration=round(job.result.duration_s, 3),
            width=job.result.width,
            height=job.result.height,
        )
    else:
        data["status"] = STATUS_FAILED
        message = job.error.message if job.error is not None else ""
        data["msg"] = message or ("任务已取消" if job.state == JobState.CANCELED else "任务失败")
    return data
