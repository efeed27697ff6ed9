"""⑥ One S3-compatible bucket (and key prefix) through boto3, with transient faults retried.

Every call goes through `_call`: connection errors, timeouts and 5xx answers are retried with
exponential backoff until `storage.retry_deadline_s`, so an outage of a few seconds loses
nothing; past the deadline (or on a permanent refusal such as AccessDenied) the call raises
StorageUnavailableError (STORAGE_UNAVAILABLE, retryable by the job layer). boto3 is imported
here only: the default install has no S3 (`pip install talkingface[s3]`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from talkingface.config import StorageSettings
from talkingface.errors import ConfigError, Stage, StorageUnavailableError

logger = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 4.0
STREAM_CHUNK_BYTES = 256 * 1024
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"}
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size_bytes: int
    last_modified: datetime
    sha256: str | None = None  # the checksum the uploader stored in the object's metadata


class ObjectStore:
    """The bucket named by `storage.url`; keys are given relative to its prefix."""

    def __init__(
        self,
        settings: StorageSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if settings.url is None:
            raise ConfigError("storage.url is not set; object storage needs s3://bucket/prefix.")
        self.settings = settings
        self.bucket, _, prefix = settings.url.removeprefix("s3://").partition("/")
        self.prefix = prefix.strip("/")
        self._clock = clock
        self._sleep = sleep
        self._client: Any = _make_client(settings)  # Any: boto3 ships no type stubs
        self._transfer: Any = _transfer_config(settings)

    # --- names -----------------------------------------------------------------------------

    def full_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def url_of(self, key: str) -> str:
        """The object's s3:// URL (what a job's result records as its location)."""
        return f"s3://{self.bucket}/{self.full_key(key)}"

    def key_of_url(self, url: str) -> str | None:
        """The relative key of an s3:// URL in this bucket and prefix, else None."""
        head = f"s3://{self.bucket}/{self.full_key('')}"
        return url[len(head) :] if url.startswith(head) else None

    # --- objects ---------------------------------------------------------------------------

    def upload_file(self, path: Path, key: str, *, sha256: str | None = None) -> None:
        """Upload a local file (multipart above storage.multipart_threshold_bytes)."""
        extra = {"Metadata": {"sha256": sha256}} if sha256 else {}
        self._call(
            f"uploading {path.name} to {self.url_of(key)}",
            lambda: self._client.upload_file(
                str(path), self.bucket, self.full_key(key), ExtraArgs=extra, Config=self._transfer
            ),
        )

    def upload_stream(self, source: Any, key: str) -> None:  # Any: a binary file object
        """Upload from an open binary file (seekable, so a retry starts again at 0)."""

        def put() -> None:
            source.seek(0)
            self._client.upload_fileobj(
                source, self.bucket, self.full_key(key), Config=self._transfer
            )

        self._call(f"uploading to {self.url_of(key)}", put)

    def download_file(self, key: str, path: Path) -> bool:
        """Download to `path` (written whole or not at all); False when the object is missing."""
        partial = path.with_name(f".{path.name}.download")

        def get() -> bool:
            try:
                self._client.download_file(
                    self.bucket, self.full_key(key), str(partial), Config=self._transfer
                )
            except _boto_errors() as exc:
                if _is_missing(exc):  # missing is an answer, not a fault
                    return False
                raise
            partial.replace(path)
            return True

        try:
            return self._call(f"downloading {self.url_of(key)}", get)
        finally:
            partial.unlink(missing_ok=True)

    def copy(self, source_key: str, key: str) -> None:
        """Server-side copy (multipart copy for large objects); metadata is kept."""
        source = {"Bucket": self.bucket, "Key": self.full_key(source_key)}
        self._call(
            f"copying {self.url_of(source_key)} to {self.url_of(key)}",
            lambda: self._client.copy(
                source, self.bucket, self.full_key(key), Config=self._transfer
            ),
        )

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, time and recorded checksum; None when it does not exist."""

        def call() -> ObjectInfo | None:
            try:
                answer = self._client.head_object(Bucket=self.bucket, Key=self.full_key(key))
            except _boto_errors() as exc:
                if _is_missing(exc):  # missing is an answer, not a fault
                    return None
                raise
            return ObjectInfo(
                key,
                int(answer["ContentLength"]),
                answer["LastModified"],
                answer.get("Metadata", {}).get("sha256"),
            )

        return self._call(f"reading {self.url_of(key)}", call)

    def iter_bytes(self, key: str, first: int, last: int) -> Iterator[bytes]:
        """Bytes first..last (inclusive) of an object, streamed in 256 KiB chunks. The request
        is retried; a connection lost mid-body ends the response early (the client sees a
        short body and retries with Range)."""
        answer = self._call(
            f"reading {self.url_of(key)}",
            lambda: self._client.get_object(
                Bucket=self.bucket, Key=self.full_key(key), Range=f"bytes={first}-{last}"
            ),
        )
        body = answer["Body"]
        try:
            yield from body.iter_chunks(STREAM_CHUNK_BYTES)
        finally:
            body.close()

    def delete(self, keys: list[str], *, deadline_s: float | None = None) -> None:
        """Delete objects (missing ones are fine), 1,000 per request; `deadline_s` shortens
        the retries (cleanup that the janitor repeats anyway)."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self.full_key(k)} for k in keys[start : start + 1000]]
            self._call(
                f"deleting {len(batch)} objects in {self.url_of('')}",
                lambda batch=batch: self._client.delete_objects(  # type: ignore[misc]
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                ),
                deadline_s=deadline_s,
            )

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose relative key starts with `prefix`."""

        def call() -> list[ObjectInfo]:
            found: list[ObjectInfo] = []
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.full_key(prefix)
            )
            cut = len(self.full_key(""))
            for page in pages:
                for item in page.get("Contents", []):
                    found.append(ObjectInfo(item["Key"][cut:], item["Size"], item["LastModified"]))
            return found

        return self._call(f"listing {self.url_of(prefix)}", call)

    # --- retries ---------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T], *, deadline_s: float | None = None) -> T:
        """Run one storage call; retry transient faults until the deadline, then raise."""
        deadline_s = self._clock() + (deadline_s or self.settings.retry_deadline_s)
        backoff_s, tries = FIRST_BACKOFF_S, 0
        while True:
            tries += 1
            try:
                return fn()
            except _boto_errors() as exc:  # transient → retry; else (or too late) raise ours
                left_s = deadline_s - self._clock()
                if not _is_transient(exc) or left_s <= 0:
                    raise _unavailable(what, exc, tries, transient=_is_transient(exc)) from exc
                logger.warning(
                    "object storage failed while %s (%s); retrying in %.2f s",
                    what,
                    _describe(exc),
                    min(backoff_s, left_s),
                    extra={"event": "storage_retried", "try": tries, "error_cause": _describe(exc)},
                )
                self._sleep(min(backoff_s, left_s))
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)


def _make_client(settings: StorageSettings) -> Any:  # Any: a boto3 S3 client
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ConfigError(
            "storage.url is an S3 URL but boto3 is not installed; install talkingface[s3].",
            cause=exc,
        ) from exc
    config = Config(
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        retries={"max_attempts": 2, "mode": "standard"},  # the deadline loop does the rest
        s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
        request_checksum_calculation="when_required",  # S3-compatible servers vary
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()  # sessions are not thread-safe; clients are
    return session.client(
        "s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=config
    )


def _transfer_config(settings: StorageSettings) -> Any:  # Any: boto3's TransferConfig
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=settings.multipart_threshold_bytes,
        multipart_chunksize=settings.multipart_chunk_bytes,
        use_threads=True,
        max_concurrency=4,
    )


def _boto_errors() -> tuple[type[Exception], ...]:
    """What boto3 raises (imported here: boto3 is optional, this module is not)."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, Boto3Error)


def _is_missing(exc: BaseException) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in _MISSING_CODES


def _is_transient(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, HTTPClientError | ConnectionError):
        return True
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return status >= 500 or exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    inner = getattr(exc, "last_exception", None) or exc.__context__  # boto3's wrappers
    return inner is not None and inner is not exc and _is_transient(inner)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _unavailable(what: str, exc: BaseException, tries: int, *, transient: bool) -> Exception:
    why = "still failing at storage.retry_deadline_s" if transient else "refused"
    return StorageUnavailableError(
        f"Object storage failed while {what} ({why} after {tries} tries: {_describe(exc)}); "
        "check the S3 endpoint, bucket and credentials. The job is retried.",
        stage=Stage.ENCODE,
        details={"tries": tries, "transient": transient},
        cause=exc,
    )
