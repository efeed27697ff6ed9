"""The error tree never yields an empty message, and translate_errors maps foreign exceptions."""

from __future__ import annotations

import errno
import queue

import pytest

from talkingface.errors import (
    MAX_TRACEBACK_BYTES,
    ConfigError,
    DiskFullError,
    ErrorCode,
    ErrorRecord,
    GpuOutOfMemoryError,
    InputError,
    InputNotFoundError,
    IpcError,
    JobCanceledError,
    Stage,
    StageTimeoutError,
    StalledError,
    StoreUnavailableError,
    TalkingFaceError,
    TransientError,
    UnexpectedError,
    WorkerLostError,
    all_error_classes,
    translate_errors,
)

LEAVES = [cls for cls in all_error_classes() if not cls.__subclasses__()]


def test_every_leaf_class_has_a_unique_code() -> None:
    codes = [cls.code for cls in LEAVES]
    assert len(codes) == len(set(codes)), sorted(codes)


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_docstring_first_line_is_the_default_message(cls: type[TalkingFaceError]) -> None:
    doc_lines = (cls.__doc__ or "").strip().splitlines()
    assert doc_lines and doc_lines[0].strip(), f"{cls.__name__} has no docstring"
    error = cls()
    assert str(error) == doc_lines[0].strip()
    assert str(error).strip()


@pytest.mark.parametrize(
    "cls",
    [
        WorkerLostError,
        StageTimeoutError,
        StalledError,
        IpcError,
        StoreUnavailableError,
        GpuOutOfMemoryError,
    ],
)
def test_transient_failures_and_gpu_oom_are_retryable(cls: type[TalkingFaceError]) -> None:
    assert cls.retryable


@pytest.mark.parametrize(
    "cls",
    [c for c in LEAVES if issubclass(c, InputError)]
    + [JobCanceledError, UnexpectedError, ConfigError],
    ids=lambda c: c.__name__,
)
def test_input_cancel_and_unexpected_errors_are_not_retryable(cls: type[TalkingFaceError]) -> None:
    assert not cls.retryable


def test_every_transient_leaf_is_retryable() -> None:
    transient = [c for c in LEAVES if issubclass(c, TransientError)]
    assert transient and all(c.retryable for c in transient)


@pytest.mark.parametrize("exc", [queue.Empty(), TimeoutError()], ids=["queue.Empty", "Timeout"])
def test_from_exception_names_type_and_stage_of_empty_exception(exc: BaseException) -> None:
    error = UnexpectedError.from_exception(exc, stage=Stage.RENDER, context="waiting for frames")
    assert type(exc).__name__ in error.message
    assert "render" in error.message
    assert "waiting for frames" in error.message
    assert error.stage is Stage.RENDER
    assert error.cause == type(exc).__name__


def _translated(exc: BaseException) -> TalkingFaceError:
    with pytest.raises(TalkingFaceError) as info, translate_errors(Stage.DECODE):
        raise exc
    error = info.value
    assert error.stage is Stage.DECODE
    assert error.__cause__ is exc
    assert error.message.strip()
    return error


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (FileNotFoundError(errno.ENOENT, "No such file", "missing.mp4"), ErrorCode.INPUT_NOT_FOUND),
        (
            PermissionError(errno.EACCES, "Permission denied", "/root/x"),
            ErrorCode.PERMISSION_DENIED,
        ),
        (OSError(errno.ENOSPC, "No space left on device"), ErrorCode.DISK_FULL),
        (
            OSError(errno.EROFS, "Read-only file system", "/data/results"),
            ErrorCode.STORAGE_UNAVAILABLE,
        ),
        (queue.Empty(), ErrorCode.STAGE_TIMEOUT),
        (KeyError("boom"), ErrorCode.INTERNAL),
    ],
    ids=["not-found", "permission", "disk-full", "read-only", "queue-empty", "unknown"],
)
def test_translate_errors_maps_foreign_exceptions(exc: BaseException, code: ErrorCode) -> None:
    error = _translated(exc)
    assert error.code is code


def test_translated_not_found_names_the_file() -> None:
    error = _translated(FileNotFoundError(errno.ENOENT, "No such file", "missing.mp4"))
    assert isinstance(error, InputNotFoundError)
    assert "missing.mp4" in error.message


def test_translated_disk_full_is_a_disk_full_error() -> None:
    assert isinstance(_translated(OSError(errno.ENOSPC, "full")), DiskFullError)


def test_translated_unknown_exception_is_unexpected_and_not_retryable() -> None:
    error = _translated(RuntimeError())
    assert isinstance(error, UnexpectedError)
    assert "RuntimeError" in error.message
    assert not error.retryable


def test_translate_errors_keeps_our_own_errors_stage() -> None:
    original = IpcError("pipe closed", stage=Stage.RENDER)
    with pytest.raises(IpcError) as info, translate_errors(Stage.DECODE):
        raise original
    assert info.value is original
    assert info.value.stage is Stage.RENDER


def test_translate_errors_stamps_our_errors_without_stage() -> None:
    with pytest.raises(IpcError) as info, translate_errors(Stage.ENCODE):
        raise IpcError("pipe closed")
    assert info.value.stage is Stage.ENCODE


@pytest.mark.parametrize("message", ["", "   ", "\n\t"])
def test_error_record_refuses_empty_message(message: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        ErrorRecord(code=ErrorCode.INTERNAL, stage=None, retryable=False, message=message)


def test_blank_message_falls_back_to_the_default() -> None:
    assert str(StalledError("  ")) == "The job made no progress for too long."


def test_to_record_carries_code_stage_retryable_message_and_cause() -> None:
    try:
        with translate_errors(Stage.FEATURES):
            raise queue.Empty()
    except TalkingFaceError as exc:
        record = exc.to_record()
    assert record.code is ErrorCode.STAGE_TIMEOUT
    assert record.stage is Stage.FEATURES
    assert record.retryable is True
    assert record.message.strip()
    assert record.cause == "Empty"
    assert record.traceback is not None and "queue.Empty" in record.traceback
    assert record.to_dict()["code"] == "STAGE_TIMEOUT"


def _recurse(depth: int) -> None:
    if depth == 0:
        raise ValueError("x" * 4000)
    _recurse(depth - 1)


def test_to_record_caps_the_traceback_at_8_kb() -> None:
    try:
        with translate_errors(Stage.RENDER):
            _recurse(200)
    except TalkingFaceError as exc:
        record = exc.to_record()
    assert record.traceback is not None
    assert len(record.traceback.encode("utf-8")) <= MAX_TRACEBACK_BYTES
    assert "ValueError" in record.traceback  # the end (the actual failure) is kept


def test_error_without_traceback_has_none_in_record() -> None:
    record = ConfigError("bad port", details={"key": "api.port"}).to_record()
    assert record.traceback is None
    assert record.details == {"key": "api.port"}
    assert record.code is ErrorCode.CONFIG_INVALID
