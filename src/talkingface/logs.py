"""Logging setup for entry points, and context binding (job, stage) copied onto every record."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_context: ContextVar[dict[str, Any]] = ContextVar("talkingface_log_context", default={})  # noqa: B039

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


@contextmanager
def bind(**fields: Any) -> Iterator[None]:  # Any: values are JSON-safe scalars
    """Attach fields (job_id, attempt, stage, worker…) to every record logged inside."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def bind_job(job_id: str, attempt: int = 1) -> Any:  # Any: a context manager
    return bind(job_id=job_id, attempt=attempt)


def bind_stage(stage: str) -> Any:  # Any: a context manager
    return bind(stage=stage)


def current_context() -> dict[str, Any]:
    """The bound fields, to re-bind in a new thread (threads start empty)."""
    return dict(_context.get())


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        if not hasattr(record, "event"):
            record.event = "log"
        record.pid = os.getpid()
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    # "_…" attributes are other libraries' (Ray's record factory adds _ray_timestamp_ns)
    return {
        k: v
        for k, v in record.__dict__.items()
        if k not in _RESERVED and k != "event" and not k.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, message and bound fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class KeyValueFormatter(logging.Formatter):
    """Human-readable `level event message key=value…` lines for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items() if k != "pid")
        line = f"{record.levelname.lower():7} {getattr(record, 'event', 'log')}: "
        line += record.getMessage() + (f"  {fields}" if fields else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "warning", json_lines: bool | None = None) -> None:
    """Install one stderr handler on the talkingface logger; called by entry points only."""
    logger = logging.getLogger("talkingface")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    use_json = (not sys.stderr.isatty()) if json_lines is None else json_lines
    handler.setFormatter(JsonFormatter() if use_json else KeyValueFormatter())
    handler.addFilter(_ContextFilter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
