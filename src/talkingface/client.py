"""The HTTP client the CLI's client-side commands use (submit, jobs, templates, stats)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from talkingface.errors import (
    AuthRequiredError,
    ChecksumMismatchError,
    ServerUnreachableError,
    Stage,
    TalkingFaceError,
    UnexpectedError,
    all_error_classes,
)
from talkingface.storage.checksums import sha256_from_repr_digest

DEFAULT_SERVER = "http://127.0.0.1:8383"

Job = dict[str, Any]  # Any: the JobPublic JSON object, as the server sent it


class ApiClient:
    """A thin, typed wrapper over the v1 API; every failure becomes a TalkingFaceError."""

    def __init__(
        self, server: str = DEFAULT_SERVER, *, timeout_s: float = 30.0, api_key: str | None = None
    ) -> None:
        self.server = server.rstrip("/")
        key = api_key or os.environ.get("TALKINGFACE_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.server, timeout=timeout_s, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit_files(
        self, audio: Path, video: Path, *, priority: int = 0, idempotency_key: str | None = None
    ) -> Job:
        return self.submit(
            Submission(audio=str(audio), video=str(video), priority=priority),
            idempotency_key=idempotency_key,
        )

    def submit_paths(
        self, audio: str, video: str, *, priority: int = 0, idempotency_key: str | None = None
    ) -> Job:
        return self.submit(
            Submission(audio=audio, video=video, by_path=True, priority=priority),
            idempotency_key=idempotency_key,
        )

    def submit(self, job: Submission, *, idempotency_key: str | None = None) -> Job:
        """POST /v1/jobs: JSON over server paths/URLs (by_path), else a multipart upload of
        the local files with the options as form fields."""
        headers = _idempotency(idempotency_key)
        options = job.options()
        if job.by_path:
            body = {"audio": job.audio, **_template_fields(job), **options}
            return self._request("POST", "/v1/jobs", json=body, headers=headers)
        form = {
            k: json.dumps(v) if k == "metadata" or isinstance(v, bool) else str(v)
            for k, v in options.items()
        }
        if job.template_id is not None:
            form["template_id"] = job.template_id
        with ExitStack() as stack:
            files = {"audio": _upload(stack, Path(job.audio))}
            if job.video is not None:
                files["video"] = _upload(stack, Path(job.video))
            return self._request("POST", "/v1/jobs", files=files, data=form, headers=headers)

    def delete_job(self, job_id: str) -> None:
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def add_template(self, video: str, *, by_path: bool) -> Job:
        """POST /v1/templates: upload a local file, or (by_path) name a server path or URL."""
        if by_path:
            return self._request("POST", "/v1/templates", json={"video": video})
        with ExitStack() as stack:
            files = {"video": _upload(stack, Path(video))}
            return self._request("POST", "/v1/templates", files=files)

    def template(self, template_id: str) -> Job:
        return self._request("GET", f"/v1/templates/{template_id}")

    def templates(self, *, limit: int = 50, offset: int = 0) -> Job:
        params = {"limit": limit, "offset": offset}
        return self._request("GET", "/v1/templates", params=params)

    def delete_template(self, template_id: str) -> None:
        self._request("DELETE", f"/v1/templates/{template_id}")

    def job(self, job_id: str) -> Job:
        return self._request("GET", f"/v1/jobs/{job_id}")

    def jobs(self, *, limit: int = 50, offset: int = 0, **filters: str | None) -> Job:
        """GET /v1/jobs with the filters given (state, label, error_code, q, low_sync)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}  # Any: query values
        params.update({key: value for key, value in filters.items() if value})
        return self._request("GET", "/v1/jobs", params=params)

    def cancel(self, job_id: str) -> Job:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel")

    def retry(self, job_id: str) -> Job:
        return self._request("POST", f"/v1/jobs/{job_id}/retry")

    def prioritize(self, job_id: str, priority: int) -> Job:
        return self._request("PATCH", f"/v1/jobs/{job_id}", json={"priority": priority})

    def queue(self) -> Job:
        return self._request("GET", "/v1/queue")

    def set_paused(self, paused: bool) -> Job:
        return self._request("POST", "/v1/queue/pause" if paused else "/v1/queue/resume")

    def stats(self) -> Job:
        return self._request("GET", "/v1/stats")

    def download_result(self, job_id: str, destination: Path) -> Path:
        """Download a job's result; its SHA-256 is checked against the one the server
        recorded (the `Repr-Digest` header), and a mismatching file is not kept."""
        partial = destination.with_name(f".{destination.name}.partial")
        digest = hashlib.sha256()
        with self._translate(), self._http.stream("GET", f"/v1/jobs/{job_id}/result") as response:
            if response.status_code >= 400:
                response.read()
                raise _server_error(response, self.server)
            expected = sha256_from_repr_digest(response.headers.get("repr-digest"))
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    out.write(chunk)
        if expected is not None and digest.hexdigest() != expected:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"The result of job {job_id} arrived damaged: its SHA-256 is "
                f"{digest.hexdigest()}, the server recorded {expected}. Nothing was written "
                f"to {destination}; download it again.",
                details={"job_id": job_id, "expected": expected, "got": digest.hexdigest()},
            )
        partial.replace(destination)
        return destination

    def _request(self, method: str, path: str, **kwargs: Any) -> Job:  # Any: httpx kwargs
        with self._translate():
            response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _server_error(response, self.server)
        if response.status_code == 204 or not response.content:
            return {}
        data: Job = response.json()
        return data

    def _translate(self) -> AbstractContextManager[None]:
        return _transport_errors(self.server)


@dataclass(frozen=True, slots=True)
class Submission:
    """One job to submit: local files to upload, or (by_path) server paths or URLs."""

    audio: str
    video: str | None = None
    template_id: str | None = None  # a registered template, instead of video
    by_path: bool = False
    priority: int = 0
    engine: str | None = None
    loop: str | None = None
    face_policy: str | None = None
    callback_url: str | None = None
    evaluate: bool | None = None  # None: the server's default (evaluate.default)
    label: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:  # Any: JSON values
        """The render and bookkeeping options that are set (the server's defaults apply
        to the rest)."""
        values: dict[str, Any] = {  # Any: JSON values
            "priority": self.priority,
            "engine": self.engine,
            "loop": self.loop,
            "face_policy": self.face_policy,
            "callback_url": self.callback_url,
            "evaluate": self.evaluate,
            "label": self.label,
            "metadata": self.metadata or None,
        }
        return {key: value for key, value in values.items() if value is not None}


def _template_fields(job: Submission) -> dict[str, str]:
    return {"video": job.video} if job.video is not None else {"template_id": job.template_id or ""}


def _upload(stack: ExitStack, path: Path) -> tuple[str, BinaryIO]:
    return path.name, stack.enter_context(path.open("rb"))


@contextmanager
def _transport_errors(server: str) -> Iterator[None]:
    try:
        yield
    except httpx.ConnectError as exc:  # refused, unknown host, unreachable network
        raise ServerUnreachableError(
            f"Cannot reach the talkingface server at {server} ({_reason(exc)}).", cause=exc
        ) from exc
    except httpx.TimeoutException as exc:
        raise ServerUnreachableError(
            f"The talkingface server at {server} did not answer in time ({type(exc).__name__}).",
            cause=exc,
        ) from exc
    except httpx.HTTPError as exc:
        raise UnexpectedError.from_exception(exc, context=f"talking to {server}") from exc


def _reason(exc: httpx.ConnectError) -> str:
    text = str(exc).lower()
    if "name or service not known" in text or "name resolution" in text or "nodename" in text:
        return "unknown host name"
    if "refused" in text:
        return "connection refused: nothing listens there"
    return str(exc) or type(exc).__name__


def _idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def _server_error(response: httpx.Response, server: str) -> TalkingFaceError:
    """The server's error as the same class here (its code, message and stage); a refused
    key is AUTH_REQUIRED, and a code this client does not know keeps its name."""
    try:
        body = response.json()
        error = body.get("error", {}) if isinstance(body, dict) else {}
    except ValueError:
        error = {}
    code = str(error.get("code") or "")
    message = str(error.get("message") or response.text.strip() or response.reason_phrase)
    if response.status_code in (401, 403):
        return AuthRequiredError(
            f"The server at {server} refused the request (HTTP {response.status_code}: "
            f"{message.rstrip('.')}).",
            details={"http_status": response.status_code},
        )
    stage = str(error.get("stage") or "")
    where = Stage(stage) if stage in Stage.__members__.values() else None
    cls = _leaf_classes().get(code)
    if cls is None:
        details = {"server_code": code} if code else {}
        text = message if code else f"The server answered HTTP {response.status_code}: {message}"
        return UnexpectedError(text, stage=where, details=details)
    return cls(message, stage=where)


def _leaf_classes() -> dict[str, type[TalkingFaceError]]:
    leaves = [cls for cls in all_error_classes() if not cls.__subclasses__()]
    return {cls.code.value: cls for cls in leaves}


def iter_job_updates(client: ApiClient, job_id: str, *, interval_s: float = 0.5) -> Iterator[Job]:
    """Poll a job until it is terminal, yielding each state (the last one is terminal)."""
    while True:
        job = client.job(job_id)
        yield job
        if job["state"] in ("succeeded", "failed", "canceled"):
            return
        time.sleep(interval_s)  # polling interval, not synchronisation
