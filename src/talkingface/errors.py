"""The one error hierarchy: every failure carries a code, a stage, a retry flag and a message.

    TalkingFaceError (abstract)
    ├── ConfigError              CONFIG_INVALID
    ├── InputError               permanent · 422
    │   ├── InputNotFoundError   INPUT_NOT_FOUND
    │   ├── InvalidMediaError    INPUT_INVALID_MEDIA
    │   ├── NoFaceError          NO_FACE
    │   ├── MultipleFacesError   MULTIPLE_FACES
    │   ├── InputTooLargeError   INPUT_TOO_LARGE · 413
    │   ├── InvalidRequestError  INPUT_INVALID
    │   ├── PermissionDeniedError PERMISSION_DENIED
    │   └── OutputPathError      OUTPUT_INVALID
    ├── EngineError              permanent · 500
    │   ├── UnknownEngineError   UNKNOWN_ENGINE
    │   ├── InvalidCheckpointError INVALID_CHECKPOINT
    │   └── DeviceUnavailableError DEVICE_UNAVAILABLE
    ├── TransientError           retried codes · 503
    │   ├── WorkerLostError      WORKER_LOST
    │   ├── StageTimeoutError    STAGE_TIMEOUT
    │   ├── StalledError         STALLED
    │   ├── IpcError             IPC_ERROR
    │   ├── StoreUnavailableError STORE_UNAVAILABLE
    │   └── StorageUnavailableError STORAGE_UNAVAILABLE
    ├── ResourceError
    │   ├── GpuOutOfMemoryError  GPU_OUT_OF_MEMORY (retried once, on a fresh worker)
    │   └── DiskFullError        DISK_FULL
    ├── QueueFullError           QUEUE_FULL · 429 + Retry-After
    ├── DownloadsBusyError       DOWNLOADS_BUSY · 503 + Retry-After
    ├── ServerBusyError          SERVER_BUSY · 503 + Retry-After
    ├── NotReadyError            NOT_READY · 404
    ├── JobNotFoundError         JOB_NOT_FOUND · 404
    ├── JobStateError            JOB_STATE · 409
    ├── TemplateNotFoundError    TEMPLATE_NOT_FOUND · 404
    ├── TemplateInUseError       TEMPLATE_IN_USE · 409
    ├── JobCanceledError         CANCELED
    ├── ClientError              raised by the CLI's client only, never stored
    │   ├── AuthRequiredError    AUTH_REQUIRED (the server answered 401/403)
    │   ├── ServerUnreachableError SERVER_UNREACHABLE
    │   └── ChecksumMismatchError RESULT_CHECKSUM_MISMATCH
    └── UnexpectedError          INTERNAL (not retried; traceback kept)

Whether a code is retried is written once, in `RETRYABLE`: each class's `retryable` follows
its code, and jobs/retry.py decides from the same table.

Errors cross process boundaries and enter the store as `ErrorRecord`s, never as pickled
exceptions. `translate_errors(stage)` is the one place foreign exceptions become ours.
"""

from __future__ import annotations

import errno
import queue
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar

MAX_TRACEBACK_BYTES = 8 * 1024


class ErrorCode(StrEnum):
    CONFIG_INVALID = "CONFIG_INVALID"
    INPUT_NOT_FOUND = "INPUT_NOT_FOUND"
    INPUT_INVALID_MEDIA = "INPUT_INVALID_MEDIA"
    INPUT_INVALID = "INPUT_INVALID"  # a request field is malformed (API validation)
    NO_FACE = "NO_FACE"
    MULTIPLE_FACES = "MULTIPLE_FACES"
    INPUT_TOO_LARGE = "INPUT_TOO_LARGE"
    OUTPUT_INVALID = "OUTPUT_INVALID"
    UNKNOWN_ENGINE = "UNKNOWN_ENGINE"
    INVALID_CHECKPOINT = "INVALID_CHECKPOINT"
    DEVICE_UNAVAILABLE = "DEVICE_UNAVAILABLE"
    WORKER_LOST = "WORKER_LOST"
    STAGE_TIMEOUT = "STAGE_TIMEOUT"
    STALLED = "STALLED"
    IPC_ERROR = "IPC_ERROR"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
    GPU_OUT_OF_MEMORY = "GPU_OUT_OF_MEMORY"
    DISK_FULL = "DISK_FULL"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    CANCELED = "CANCELED"
    QUEUE_FULL = "QUEUE_FULL"
    DOWNLOADS_BUSY = "DOWNLOADS_BUSY"
    SERVER_BUSY = "SERVER_BUSY"  # too many event streams or quality evaluations at once
    NOT_READY = "NOT_READY"  # a derived file (quality figures, template preview) not made yet
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    JOB_STATE = "JOB_STATE"
    TEMPLATE_NOT_FOUND = "TEMPLATE_NOT_FOUND"
    TEMPLATE_IN_USE = "TEMPLATE_IN_USE"
    INTERNAL = "INTERNAL"
    AUTH_REQUIRED = "AUTH_REQUIRED"  # client-side: the server refused the API key
    SERVER_UNREACHABLE = "SERVER_UNREACHABLE"  # client-side: no server answered
    RESULT_CHECKSUM_MISMATCH = "RESULT_CHECKSUM_MISMATCH"  # client-side: download corrupt


# The one retry table (DESIGN.md: the `retryable` flag and the retry policy come from one table).
# Every code is listed, so a new code must be classified here. An error class's `retryable`
# follows its code, and jobs/retry.py retries exactly these codes: connection, timeout,
# IPC/queue and worker-lost errors, GPU OOM (once, on a fresh worker; retry.py) and DISK_FULL.
# DISK_FULL deviates from DESIGN.md's first list: a full disk is the machine's state, not the
# job's, and the scheduler starts nothing while free space is under api.min_free_disk_bytes,
# so a retry waits for space instead of burning attempts (the chaos campaign showed a
# 6-second full disk failing every job dispatched meanwhile).
RETRYABLE: MappingProxyType[ErrorCode, bool] = MappingProxyType(
    {
        ErrorCode.CONFIG_INVALID: False,
        ErrorCode.INPUT_NOT_FOUND: False,
        ErrorCode.INPUT_INVALID_MEDIA: False,
        ErrorCode.INPUT_INVALID: False,
        ErrorCode.NO_FACE: False,
        ErrorCode.MULTIPLE_FACES: False,
        ErrorCode.INPUT_TOO_LARGE: False,
        ErrorCode.OUTPUT_INVALID: False,
        ErrorCode.UNKNOWN_ENGINE: False,
        ErrorCode.INVALID_CHECKPOINT: False,
        ErrorCode.DEVICE_UNAVAILABLE: False,
        ErrorCode.WORKER_LOST: True,
        ErrorCode.STAGE_TIMEOUT: True,
        ErrorCode.STALLED: True,
        ErrorCode.IPC_ERROR: True,
        ErrorCode.STORE_UNAVAILABLE: True,
        ErrorCode.STORAGE_UNAVAILABLE: True,  # a read-only results mount: dispatch waits
        ErrorCode.GPU_OUT_OF_MEMORY: True,
        ErrorCode.DISK_FULL: True,
        ErrorCode.PERMISSION_DENIED: False,
        ErrorCode.CANCELED: False,
        ErrorCode.QUEUE_FULL: False,
        ErrorCode.DOWNLOADS_BUSY: False,  # the client retries later; the job never existed
        ErrorCode.SERVER_BUSY: False,  # the client retries later; nothing was started
        ErrorCode.NOT_READY: False,
        ErrorCode.JOB_NOT_FOUND: False,
        ErrorCode.JOB_STATE: False,
        ErrorCode.TEMPLATE_NOT_FOUND: False,
        ErrorCode.TEMPLATE_IN_USE: False,  # the client deletes once the jobs using it end
        ErrorCode.INTERNAL: False,  # unknown errors are reported in full, not retried
        ErrorCode.AUTH_REQUIRED: False,  # client-side codes: never a job's error
        ErrorCode.SERVER_UNREACHABLE: False,
        ErrorCode.RESULT_CHECKSUM_MISMATCH: False,
    }
)


class Stage(StrEnum):
    """Where in the flow an error happened (also the progress stage names)."""

    SETUP = "setup"
    PROBE = "probe"
    DECODE = "decode"
    TRACK = "track"
    FEATURES = "features"
    RENDER = "render"
    BLEND = "blend"
    ENCODE = "encode"
    CACHE = "cache"
    EVALUATE = "evaluate"


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """An error as data: what crosses processes and enters the store."""

    code: ErrorCode
    stage: Stage | None
    retryable: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)  # Any: JSON-safe values only
    cause: str | None = None
    traceback: str | None = None

    def __post_init__(self) -> None:
        if not self.message.strip():
            raise ValueError("an ErrorRecord needs a non-empty message")

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "stage": self.stage.value if self.stage else None,
            "retryable": self.retryable,
            "message": self.message,
            "details": self.details,
            "cause": self.cause,
        }


class TalkingFaceError(Exception):
    """Something went wrong in talkingface."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL
    retryable: ClassVar[bool] = RETRYABLE[ErrorCode.INTERNAL]  # always RETRYABLE[code]
    http_status: ClassVar[int] = 500

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """`retryable` follows the class's code in RETRYABLE; a class may not set its own."""
        super().__init_subclass__(**kwargs)
        if "retryable" in vars(cls):
            raise TypeError(
                f"{cls.__name__} sets retryable; it follows the code ({cls.code.value}) "
                "in errors.RETRYABLE"
            )
        cls.retryable = RETRYABLE[cls.code]

    def __init__(
        self,
        message: str | None = None,
        *,
        stage: Stage | None = None,
        details: dict[str, Any] | None = None,  # Any: JSON-safe values only
        cause: BaseException | str | None = None,
    ) -> None:
        text = (message or "").strip() or _default_message(type(self))
        super().__init__(text)
        self.message = text
        self.stage = stage
        self.details = dict(details or {})
        self.cause = _describe_cause(cause) if isinstance(cause, BaseException) else cause

    def __str__(self) -> str:
        return self.message

    def to_record(self) -> ErrorRecord:
        tb = None
        if self.__traceback__ is not None:
            tb = "".join(traceback.format_exception(self))[-MAX_TRACEBACK_BYTES:]
        return ErrorRecord(
            code=self.code,
            stage=self.stage,
            retryable=self.retryable,
            message=self.message,
            details=self.details,
            cause=self.cause,
            traceback=tb,
        )

    def one_line(self) -> str:
        where = f" [{self.stage.value}]" if self.stage else ""
        return f"{self.code.value}{where}: {self.message}"


def _default_message(cls: type[BaseException]) -> str:
    doc = (cls.__doc__ or "").strip().splitlines()
    return doc[0] if doc and doc[0] else cls.__name__


def _describe_cause(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ConfigError(TalkingFaceError):
    """The configuration is invalid; fix the setting named in the message."""

    code = ErrorCode.CONFIG_INVALID


class InputError(TalkingFaceError):
    """The input cannot be used; check the file named in the message."""

    code = ErrorCode.INPUT_INVALID_MEDIA
    http_status = 422


class InputNotFoundError(InputError):
    """An input file does not exist; check the path."""

    code = ErrorCode.INPUT_NOT_FOUND


class InvalidMediaError(InputError):
    """An input file is not readable media; re-export it as MP4 (H.264/AAC) or WAV."""

    code = ErrorCode.INPUT_INVALID_MEDIA


class PermissionDeniedError(InputError):
    """An input or output path cannot be accessed; check its permissions."""

    code = ErrorCode.PERMISSION_DENIED


class NoFaceError(InputError):
    """No face was found in the template; use a video or photo with one frontal face."""

    code = ErrorCode.NO_FACE


class MultipleFacesError(InputError):
    """The template shows several faces; use one with a single face or the 'largest' policy."""

    code = ErrorCode.MULTIPLE_FACES


class InputTooLargeError(InputError):
    """An input exceeds a configured size limit; shorten or downscale it."""

    code = ErrorCode.INPUT_TOO_LARGE
    http_status = 413


class InvalidRequestError(InputError):
    """A request field is missing or malformed; the message names the field."""

    code = ErrorCode.INPUT_INVALID


class OutputPathError(InputError):
    """The output path cannot be used; give a writable .mp4 path that is not an input."""

    code = ErrorCode.OUTPUT_INVALID


class EngineError(TalkingFaceError):
    """The render engine failed; see the details."""

    code = ErrorCode.INTERNAL
    http_status = 500


class UnknownEngineError(EngineError):
    """No engine by that name; use 'classic' (default) or 'wav2lip'."""

    code = ErrorCode.UNKNOWN_ENGINE


class InvalidCheckpointError(EngineError):
    """The model checkpoint cannot be loaded; check the file and its format."""

    code = ErrorCode.INVALID_CHECKPOINT


class DeviceUnavailableError(EngineError):
    """The requested compute device is not available on this machine."""

    code = ErrorCode.DEVICE_UNAVAILABLE


class TransientError(TalkingFaceError):
    """A temporary failure (raise one of its kinds: their codes are retried)."""

    http_status = 503


class WorkerLostError(TransientError):
    """The worker process running the job died."""

    code = ErrorCode.WORKER_LOST


class StageTimeoutError(TransientError):
    """A pipeline stage waited too long for its neighbour."""

    code = ErrorCode.STAGE_TIMEOUT


class StalledError(TransientError):
    """The job made no progress for too long."""

    code = ErrorCode.STALLED


class IpcError(TransientError):
    """Communication between processes or stages failed."""

    code = ErrorCode.IPC_ERROR


class StoreUnavailableError(TransientError):
    """The job store cannot be reached."""

    code = ErrorCode.STORE_UNAVAILABLE


class StorageUnavailableError(TransientError):
    """The server's storage cannot be written (a read-only or failing file system)."""

    code = ErrorCode.STORAGE_UNAVAILABLE


class ResourceError(TalkingFaceError):
    """A machine resource ran out."""

    code = ErrorCode.INTERNAL


class GpuOutOfMemoryError(ResourceError):
    """The GPU ran out of memory; the job is retried once on a fresh worker."""

    code = ErrorCode.GPU_OUT_OF_MEMORY
    http_status = 503


class DiskFullError(ResourceError):
    """The disk is full; free space in the data directory. The service retries the job once
    space is back (nothing starts below api.min_free_disk_bytes)."""

    code = ErrorCode.DISK_FULL
    http_status = 507


class QueueFullError(TalkingFaceError):
    """The queue is full; retry after the time in Retry-After."""

    code = ErrorCode.QUEUE_FULL
    http_status = 429

    def __init__(
        self, message: str | None = None, *, retry_after_s: int = 30, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class DownloadsBusyError(TalkingFaceError):
    """The server cannot download URL inputs now; retry after the time in Retry-After."""

    code = ErrorCode.DOWNLOADS_BUSY
    http_status = 503

    def __init__(
        self, message: str | None = None, *, retry_after_s: int = 30, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class ServerBusyError(TalkingFaceError):
    """The server is serving as many of these requests as it allows; retry after Retry-After."""

    code = ErrorCode.SERVER_BUSY
    http_status = 503

    def __init__(
        self, message: str | None = None, *, retry_after_s: int = 10, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class NotReadyError(TalkingFaceError):
    """That file is not made yet; the message says how to have it made."""

    code = ErrorCode.NOT_READY
    http_status = 404


class JobNotFoundError(TalkingFaceError):
    """No job with that id; check the id (jobs are kept until their retention ends)."""

    code = ErrorCode.JOB_NOT_FOUND
    http_status = 404


class JobStateError(TalkingFaceError):
    """The job is not in a state that allows this operation."""

    code = ErrorCode.JOB_STATE
    http_status = 409


class TemplateNotFoundError(TalkingFaceError):
    """No registered template with that id; list them with GET /v1/templates."""

    code = ErrorCode.TEMPLATE_NOT_FOUND
    http_status = 404


class TemplateInUseError(TalkingFaceError):
    """The template is used by queued or running jobs; wait for them or cancel them."""

    code = ErrorCode.TEMPLATE_IN_USE
    http_status = 409


class JobCanceledError(TalkingFaceError):
    """The job was canceled."""

    code = ErrorCode.CANCELED
    http_status = 409


class ClientError(TalkingFaceError):
    """The command line client could not get an answer from the server."""


class AuthRequiredError(ClientError):
    """The server needs an API key; set TALKINGFACE_API_KEY or pass --api-key."""

    code = ErrorCode.AUTH_REQUIRED
    http_status = 401


class ServerUnreachableError(ClientError):
    """No talkingface server answered; start one with `talkingface serve` or pass --server."""

    code = ErrorCode.SERVER_UNREACHABLE


class ChecksumMismatchError(ClientError):
    """The downloaded result does not match the SHA-256 the server recorded; download it again."""

    code = ErrorCode.RESULT_CHECKSUM_MISMATCH


class UnexpectedError(TalkingFaceError):
    """An unexpected internal error; the details hold the original exception."""

    code = ErrorCode.INTERNAL

    @classmethod
    def from_exception(
        cls, exc: BaseException, *, stage: Stage | None = None, context: str | None = None
    ) -> UnexpectedError:
        """Describe any exception, including ones whose str() is empty (queue.Empty())."""
        text = str(exc).strip()
        where = f" during stage {stage.value}" if stage else ""
        what = f"{type(exc).__name__}: {text}" if text else f"{type(exc).__name__} (no message)"
        extra = f" while {context}" if context else ""
        return cls(f"Unexpected {what}{where}{extra}.", stage=stage, cause=exc)


def error_from_exception(
    exc: BaseException, *, stage: Stage | None = None, context: str | None = None
) -> TalkingFaceError:
    """Map a foreign exception to the most specific TalkingFaceError."""
    if isinstance(exc, TalkingFaceError):
        if exc.stage is None:
            exc.stage = stage
        return exc
    text = str(exc).strip() or type(exc).__name__
    suffix = f" ({context})" if context else ""
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or text
        return InputNotFoundError(f"File not found: {name}{suffix}.", stage=stage, cause=exc)
    if isinstance(exc, PermissionError):
        return PermissionDeniedError(f"Permission denied: {text}{suffix}.", stage=stage, cause=exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DiskFullError(f"No space left on device{suffix}.", stage=stage, cause=exc)
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        where = f" ({exc.filename})" if exc.filename else ""
        return StorageUnavailableError(
            f"Read-only file system{where}{suffix}: the server's storage cannot be written; "
            "the job is retried once it is writable again.",
            stage=stage,
            cause=exc,
        )
    if isinstance(exc, queue.Empty | queue.Full | TimeoutError):
        return StageTimeoutError(
            f"{type(exc).__name__}: a wait timed out during stage "
            f"{stage.value if stage else 'unknown'}{suffix}.",
            stage=stage,
            cause=exc,
        )
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, no torch import
        return GpuOutOfMemoryError(f"GPU out of memory{suffix}: {text}", stage=stage, cause=exc)
    return UnexpectedError.from_exception(exc, stage=stage, context=context)


@contextmanager
def translate_errors(stage: Stage, context: str | None = None) -> Iterator[None]:
    """Turn any exception raised inside into a TalkingFaceError stamped with `stage`."""
    try:
        yield
    except TalkingFaceError as exc:
        if exc.stage is None:
            exc.stage = stage
        raise
    except Exception as exc:
        raise error_from_exception(exc, stage=stage, context=context) from exc


def all_error_classes() -> list[type[TalkingFaceError]]:
    """Every concrete class in the tree (for the catalogue test and the README table)."""
    seen: list[type[TalkingFaceError]] = []
    stack: list[type[TalkingFaceError]] = [TalkingFaceError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen
