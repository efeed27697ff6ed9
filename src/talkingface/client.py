"""The HTTP client the CLI's client-side commands use (submit, jobs, stats) against /v1."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from talkingface.errors import (
    IpcError,
    Stage,
    TalkingFaceError,
    UnexpectedError,
    all_error_classes,
)

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
        with ExitStack() as stack:
            files = {
                "audio": (audio.name, stack.enter_context(audio.open("rb"))),
                "video": (video.name, stack.enter_context(video.open("rb"))),
            }
            return self._request(
                "POST",
                "/v1/jobs",
                files=files,
                data={"priority": str(priority)},
                headers=_idempotency(idempotency_key),
            )

    def submit_paths(
        self, audio: str, video: str, *, priority: int = 0, idempotency_key: str | None = None
    ) -> Job:
        body = {"audio": audio, "video": video, "priority": priority}
        return self._request("POST", "/v1/jobs", json=body, headers=_idempotency(idempotency_key))

    def job(self, job_id: str) -> Job:
        return self._request("GET", f"/v1/jobs/{job_id}")

    def jobs(self, *, state: str | None = None, limit: int = 50, offset: int = 0) -> Job:
        params: dict[str, Any] = {"limit": limit, "offset": offset}  # Any: query values
        if state:
            params["state"] = state
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
        partial = destination.with_name(f".{destination.name}.partial")
        with self._translate(), self._http.stream("GET", f"/v1/jobs/{job_id}/result") as response:
            if response.status_code >= 400:
                response.read()
                raise _server_error(response)
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        partial.replace(destination)
        return destination

    def _request(self, method: str, path: str, **kwargs: Any) -> Job:  # Any: httpx kwargs
        with self._translate():
            response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _server_error(response)
        data: Job = response.json()
        return data

    def _translate(self) -> AbstractContextManager[None]:
        return _transport_errors(self.server)


@contextmanager
def _transport_errors(server: str) -> Iterator[None]:
    try:
        yield
    except httpx.ConnectError as exc:
        raise IpcError(
            f"Cannot reach the talkingface server at {server}; is `talkingface serve` running "
            "there? (--server URL)",
            cause=exc,
        ) from exc
    except httpx.TimeoutException as exc:
        raise IpcError(f"The server at {server} did not answer in time.", cause=exc) from exc
    except httpx.HTTPError as exc:
        raise UnexpectedError.from_exception(exc, context=f"talking to {server}") from exc


def _idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def _server_error(response: httpx.Response) -> TalkingFaceError:
    """The server's error as the same class here (its code, message and stage)."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    code = str(error.get("code") or "")
    message = str(error.get("message") or response.text.strip() or response.reason_phrase)
    cls = _leaf_classes().get(code)
    if cls is None:
        return UnexpectedError(f"The server answered HTTP {response.status_code}: {message}")
    stage = error.get("stage")
    return cls(message, stage=Stage(stage) if stage in Stage.__members__.values() else None)


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
