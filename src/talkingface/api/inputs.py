"""① A submission's media made local: confined server paths, fetched URLs or uploads, probed."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx

from talkingface.config import ApiSettings, Settings
from talkingface.errors import (
    InputNotFoundError,
    InputTooLargeError,
    PermissionDeniedError,
    Stage,
)
from talkingface.jobs.records import JobInputs
from talkingface.pipeline.inputs import check_inputs
from talkingface.storage.local import LocalStorage

MAX_REDIRECTS = 5
CHUNK_BYTES = 1 << 20
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}


@dataclass(frozen=True, slots=True)
class Upload:
    """A file sent in a multipart field."""

    filename: str | None
    file: BinaryIO


MediaRef = str | Upload | Path  # a path, a URL, an upload, or a server-owned file (templates)


def is_url(value: str) -> bool:
    return urlsplit(value).scheme.lower() in {"http", "https"}


def resolve_server_path(field: str, value: str, roots: list[Path]) -> Path:
    """The real path of `value`, which must lie (symlinks followed) inside an input root."""
    if not roots:
        raise PermissionDeniedError(
            f"{field}: server paths are disabled because no input roots are configured; "
            "set api.input_roots (TALKINGFACE_API__INPUT_ROOTS) or upload the file instead.",
            stage=Stage.PROBE,
            details={"field": field},
        )
    if ".." in PurePosixPath(value.replace("\\", "/")).parts:
        raise PermissionDeniedError(
            f"{field}: the path {value!r} contains '..'; give a path inside the input roots.",
            stage=Stage.PROBE,
            details={"field": field},
        )
    candidate = Path(value)
    candidates = [candidate] if candidate.is_absolute() else [root / candidate for root in roots]
    confined = [p.resolve() for p in candidates]
    confined = [p for p in confined if any(p.is_relative_to(root) for root in roots)]
    if not confined:
        raise PermissionDeniedError(
            f"{field}: the path {value} is outside the configured input roots (symlinks are "
            "followed); put the file under one of api.input_roots or upload it.",
            stage=Stage.PROBE,
            details={"field": field, "input_roots": [str(r) for r in roots]},
        )
    for path in confined:
        if path.is_file():
            return path
    raise InputNotFoundError(
        f"{field}: file not found: {value}; check the path (it is resolved inside "
        "api.input_roots).",
        stage=Stage.PROBE,
        details={"field": field},
    )


def check_url_host(field: str, url: str, *, allow_private: bool) -> None:
    """Refuse URLs that are not http(s), and hosts resolving to loopback/private/link-local."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise PermissionDeniedError(
            f"{field}: only http and https URLs can be fetched, not {url!r}.",
            stage=Stage.PROBE,
            details={"field": field},
        )
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputNotFoundError(
            f"{field}: cannot resolve the host {parts.hostname!r} of {url}; check the URL.",
            stage=Stage.PROBE,
            details={"field": field},
            cause=exc,
        ) from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global:
            raise PermissionDeniedError(
                f"{field}: the URL host {parts.hostname} resolves to a loopback, private or "
                f"link-local address ({address}), which the server refuses to fetch; serve the "
                "file from a public host, upload it, or set api.allow_private_url_hosts.",
                stage=Stage.PROBE,
                details={"field": field, "address": str(address)},
            )


def _deadline_chunks(response: httpx.Response, deadline: float, field: str) -> Iterator[bytes]:
    for chunk in response.iter_bytes(CHUNK_BYTES):
        if time.monotonic() > deadline:
            raise InputNotFoundError(
                f"{field}: downloading {response.url} took longer than api.url_timeout_s; "
                "use a faster host or upload the file.",
                stage=Stage.PROBE,
                details={"field": field},
            )
        yield chunk


def download_url(
    field: str, url: str, job_id: str, storage: LocalStorage, api: ApiSettings
) -> Path:
    """Fetch `url` into the job's inputs dir, checking every redirect hop's host."""
    deadline = time.monotonic() + api.url_timeout_s
    try:
        with httpx.Client(follow_redirects=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                check_url_host(field, url, allow_private=api.allow_private_url_hosts)
                timeout = httpx.Timeout(max(0.1, deadline - time.monotonic()))
                with client.stream("GET", url, timeout=timeout) as response:
                    if (
                        response.status_code in _REDIRECT_STATUSES
                        and "location" in response.headers
                    ):
                        url = urljoin(url, response.headers["location"])
                        continue
                    return _save_response(field, url, job_id, response, deadline, storage, api)
    except httpx.HTTPError as exc:
        raise InputNotFoundError(
            f"{field}: could not download {url} ({type(exc).__name__}: {exc}); check the URL.",
            stage=Stage.PROBE,
            details={"field": field, "url": url},
            cause=exc,
        ) from exc
    raise InputNotFoundError(
        f"{field}: {url} redirected more than {MAX_REDIRECTS} times; give the final URL.",
        stage=Stage.PROBE,
        details={"field": field},
    )


def _save_response(
    field: str,
    url: str,
    job_id: str,
    response: httpx.Response,
    deadline: float,
    storage: LocalStorage,
    api: ApiSettings,
) -> Path:
    if response.status_code != 200:
        raise InputNotFoundError(
            f"{field}: {url} answered HTTP {response.status_code}; check the URL.",
            stage=Stage.PROBE,
            details={"field": field, "status": response.status_code},
        )
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > api.max_upload_bytes:
        raise InputTooLargeError(
            f"{field}: {url} is {length} bytes, over the {api.max_upload_bytes}-byte limit "
            "(api.max_upload_bytes).",
            stage=Stage.PROBE,
            details={"field": field, "limit_bytes": api.max_upload_bytes},
        )
    name = PurePosixPath(urlsplit(url).path).name
    chunks = _deadline_chunks(response, deadline, field)
    return storage.save_upload(job_id, field, name, chunks, api.max_upload_bytes)


def fetch_media(
    field: str, ref: MediaRef, job_id: str, storage: LocalStorage, settings: Settings
) -> Path:
    """A local file for one input: an upload saved, a URL downloaded or a server path confined."""
    if isinstance(ref, Path):  # a file the server owns already (a registered template)
        return ref
    if isinstance(ref, Upload):
        chunks = iter(lambda: ref.file.read(CHUNK_BYTES), b"")
        return storage.save_upload(
            job_id, field, ref.filename, chunks, settings.api.max_upload_bytes
        )
    if is_url(ref):
        return download_url(field, ref, job_id, storage, settings.api)
    return resolve_server_path(field, ref, settings.api.input_roots)


def resolve_inputs(
    audio: MediaRef, video: MediaRef, job_id: str, storage: LocalStorage, settings: Settings
) -> JobInputs:
    """Both inputs made local and probed (invalid media fails here, at submit)."""
    audio_path = fetch_media("audio", audio, job_id, storage, settings)
    video_path = fetch_media("video", video, job_id, storage, settings)
    audio_info, _ = check_inputs(audio_path, video_path, settings.limits)
    return JobInputs(
        audio_path=str(audio_path),
        video_path=str(video_path),
        input_duration_s=audio_info.duration_s,
    )
