"""① A submission's media made local: confined server paths, fetched URLs or uploads, probed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from talkingface.api.problems import quoted
from talkingface.api.url_fetch import download_url
from talkingface.config import Settings
from talkingface.errors import (
    InputNotFoundError,
    InvalidMediaError,
    InvalidRequestError,
    PermissionDeniedError,
    Stage,
)
from talkingface.jobs.records import JobInputs
from talkingface.media.input_checks import check_inputs
from talkingface.media.probe_process import IsolatedProbe
from talkingface.storage.local import LocalStorage, sanitize_filename

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Upload:
    """A file sent in a multipart field."""

    filename: str | None
    file: BinaryIO


MediaRef = str | Upload | Path  # a path, a URL, an upload, or a server-owned file (templates)


def is_url(value: str) -> bool:
    """True for an http(s) URL, a malformed one too (fetching it then says what is wrong)."""
    try:
        scheme = urlsplit(value).scheme
    except ValueError:  # e.g. an unclosed IPv6 bracket: still meant as a URL
        scheme = value.partition(":")[0].strip()
    return scheme.lower() in {"http", "https"}


def input_name(field: str, ref: MediaRef) -> str:
    """An input's file name for people (job lists, `q=` searches): an upload's name as sent
    (made safe), a URL's last path segment, a path's last component."""
    if isinstance(ref, Upload):
        return sanitize_filename(ref.filename, field)
    if isinstance(ref, Path):
        return ref.name
    if is_url(ref):
        try:
            segment = unquote(urlsplit(ref).path.rstrip("/").rpartition("/")[2])
        except ValueError:  # a malformed URL: fetching it refuses the job anyway
            segment = ""
        return sanitize_filename(segment, field)
    return PurePosixPath(ref.replace("\\", "/")).name or field


def resolve_server_path(field: str, value: str, roots: list[Path]) -> Path:
    """The real path of `value`, which must lie (symlinks followed) inside an input root."""
    if not roots:
        raise PermissionDeniedError(
            f"{field}: server paths are disabled because no input roots are configured; "
            "set api.input_roots (TALKINGFACE_API__INPUT_ROOTS) or upload the file instead.",
            stage=Stage.PROBE,
            details={"field": field},
        )
    _check_path_text(field, value)
    if ".." in PurePosixPath(value.replace("\\", "/")).parts:
        raise PermissionDeniedError(
            f"{field}: the path {quoted(value)} contains '..'; give a path inside the input roots.",
            stage=Stage.PROBE,
            details={"field": field},
        )
    try:
        return _confined_file(field, value, roots)
    except PermissionError as exc:
        raise PermissionDeniedError(
            f"{field}: permission denied looking up {quoted(value)}; make its directory "
            "readable by the service.",
            stage=Stage.PROBE,
            details={"field": field},
            cause=exc,
        ) from exc
    except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop (RuntimeError)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputNotFoundError(
            f"{field}: the path {quoted(value)} cannot be looked up ({reason}); give the "
            "path of a readable file inside api.input_roots.",
            stage=Stage.PROBE,
            details={"field": field},
            cause=exc,
        ) from exc


def _check_path_text(field: str, value: str) -> None:
    """Refuse what no file name can hold: a NUL byte, or text the file system cannot encode."""
    try:
        encoded = os.fsencode(value)
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"{field}: the path {quoted(value)} holds characters that cannot be encoded as "
            "a file name (unpaired surrogates); send the path as plain UTF-8.",
            stage=Stage.PROBE,
            details={"field": field},
            cause=exc,
        ) from exc
    if b"\0" in encoded:
        raise InvalidRequestError(
            f"{field}: the path {quoted(value)} contains a NUL character, which no file name "
            "can hold; check the path.",
            stage=Stage.PROBE,
            details={"field": field},
        )


def _confined_file(field: str, value: str, roots: list[Path]) -> Path:
    candidate = Path(value)
    candidates = [candidate] if candidate.is_absolute() else [root / candidate for root in roots]
    confined = [p.resolve() for p in candidates]
    confined = [p for p in confined if any(p.is_relative_to(root) for root in roots)]
    if not confined:
        raise PermissionDeniedError(
            f"{field}: the path {quoted(value)} is outside the configured input roots "
            "(symlinks are followed); put the file under one of api.input_roots or upload it.",
            stage=Stage.PROBE,
            details={"field": field, "input_roots": [str(r) for r in roots]},
        )
    for path in confined:
        if path.is_file():
            return path
    if any(path.is_dir() for path in confined):
        raise InvalidMediaError(
            f"{field}: {quoted(value)} is a directory; give the path of a media file.",
            stage=Stage.PROBE,
            details={"field": field},
        )
    raise InputNotFoundError(
        f"{field}: file not found: {quoted(value)}; check the path (it is resolved inside "
        "api.input_roots).",
        stage=Stage.PROBE,
        details={"field": field},
    )


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
    """Both inputs made local and probed, each in a child process (invalid media fails here,
    at submit; a file that crashes or hangs the media reader costs that child only)."""
    audio_path = fetch_media("audio", audio, job_id, storage, settings)
    video_path = fetch_media("video", video, job_id, storage, settings)
    prober = IsolatedProbe.from_settings(settings)
    audio_info, _ = check_inputs(audio_path, video_path, settings.limits, prober)
    return JobInputs(
        audio_path=str(audio_path),
        video_path=str(video_path),
        input_duration_s=audio_info.duration_s,
    )
