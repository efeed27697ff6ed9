"""s1 probe in a child process: FFmpeg reads untrusted media outside the caller, within memory
and time limits, so a file that crashes or hangs it costs one probe, not the server.

Each probe is a fresh process forked by multiprocessing's fork server, which has imported
PyAV once: a probe costs a fork (tens of ms), not a new interpreter (a quarter of a second).
The child caps its own data memory (RLIMIT_DATA) and CPU time and arms an alarm, so it ends
even if its parent is gone; the parent kills it at the time limit. The child answers in
JSON, never a pickle: the parent must not unpickle what a process that read a hostile file
sends it.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
import resource
import signal
import sys
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from talkingface.config import Settings
from talkingface.errors import (
    ErrorCode,
    InputNotFoundError,
    InputTooLargeError,
    InvalidMediaError,
    PermissionDeniedError,
    Stage,
    TalkingFaceError,
    UnexpectedError,
)
from talkingface.media.probe import REEXPORT_HINT, MediaInfo, probe

MAX_REPLY_BYTES = 64 * 1024
ORPHAN_GRACE_S = 5  # the child's own alarm rings this long after the parent's time limit
KILL_WAIT_S = 5.0
TIMED_OUT, DIED = "timed out", "died"  # why no reply came
# What a child may report; anything else it claims becomes INTERNAL.
_PROBE_ERRORS: dict[ErrorCode, type[TalkingFaceError]] = {
    cls.code: cls
    for cls in (InputNotFoundError, InvalidMediaError, PermissionDeniedError, InputTooLargeError)
}


@dataclass(frozen=True, slots=True)
class IsolatedProbe:
    """`probe`, run in a child process per call (a Prober for media.input_checks)."""

    timeout_s: float
    memory_bytes: int
    allow_faults: bool = False  # test-only: see _inject_fault

    @classmethod
    def from_settings(cls, settings: Settings) -> IsolatedProbe:
        return cls(
            timeout_s=settings.limits.probe_timeout_s,
            memory_bytes=settings.limits.probe_memory_mb * 2**20,
            allow_faults=settings.workers.allow_faults,
        )

    def __call__(
        self,
        path: str | Path,
        *,
        max_width_px: int = 4096,
        max_height_px: int = 4096,
        max_duration_s: float = 3600.0,
    ) -> MediaInfo:
        bounds = (max_width_px, max_height_px, max_duration_s)
        context = _probe_context()
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(
            target=_child_main,
            args=(sender, str(path), bounds, self.timeout_s, self.memory_bytes, self.allow_faults),
            name="talkingface-probe",
            daemon=True,
        )
        try:
            child.start()
        finally:
            sender.close()  # the child's copy is its own: EOF here means it is gone
        try:
            reply = _receive(receiver, self.timeout_s)
        finally:
            receiver.close()
            if child.is_alive():  # no answer in time: a hang
                child.kill()
            child.join(KILL_WAIT_S)
        if isinstance(reply, bytes):
            return self._read_reply(Path(path), reply)
        raise self._failure(Path(path), timed_out=reply == TIMED_OUT, exitcode=child.exitcode)

    def _failure(self, path: Path, *, timed_out: bool, exitcode: int | None) -> InvalidMediaError:
        """Why a child gave no answer: it ran out of time, or it died."""
        if timed_out or exitcode in (-signal.SIGXCPU, -signal.SIGALRM):
            return _unsafe(
                path,
                f"probing it took longer than {self.timeout_s:g} s (limits.probe_timeout_s)",
                {"timeout_s": self.timeout_s, "exitcode": exitcode},
            )
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit {exitcode}"
        return _unsafe(path, f"the media reader crashed ({how})", {"exitcode": exitcode})

    def _read_reply(self, path: Path, reply: bytes) -> MediaInfo:
        try:
            answer = json.loads(reply)
            if "info" in answer:
                info = answer["info"]
                sar = Fraction(info["sample_aspect_ratio"])
                return MediaInfo(**{**info, "path": path, "sample_aspect_ratio": sar})
            if answer.get("out_of_memory"):
                raise _unsafe(
                    path,
                    f"reading it needs more than {self.memory_bytes // 2**20} MB "
                    "(limits.probe_memory_mb)",
                    {"memory_bytes": self.memory_bytes},
                )
            _raise_reported(answer["error"])
        except (KeyError, TypeError, ValueError) as exc:  # a reply no sound child sends
            raise _unsafe(path, "its probe answered nonsense", {"reply": reply[:64].hex()}) from exc


def start_probe_server() -> None:
    """Start the fork server that probe children come from now, so the first submission
    does not wait for it (about half a second). `serve` calls this once at start-up."""
    _probe_context()
    multiprocessing.forkserver.ensure_running()


def _probe_context() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_preloaded_modules())
    return context


def _preloaded_modules() -> list[str]:
    """What the fork server imports once: this module (PyAV), and the modules the main script
    took its names from. A child runs the main script again (a console script such as
    `talkingface`: `from talkingface.cli import main`), and Python 3.11's fork server ignores
    a `__main__` preload, so the child finds those modules imported instead of importing them
    itself (a quarter of a second per probe)."""
    main = sys.modules.get("__main__")
    names = {__name__}
    for value in vars(main).values() if main is not None else ():
        name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", "")
        module = sys.modules.get(name) if isinstance(name, str) else None
        if module is not None and module is not main and getattr(module, "__file__", None):
            names.add(module.__name__)  # an imported file, not a builtin
    return sorted(names)


def _receive(receiver: Connection, timeout_s: float) -> bytes | str:
    """The child's reply, else TIMED_OUT (nothing in time) or DIED (it closed its end)."""
    try:
        if not receiver.poll(timeout_s):
            return TIMED_OUT
        return receiver.recv_bytes(MAX_REPLY_BYTES)  # poll is also true at EOF: a death
    except (EOFError, OSError):
        return DIED


def _unsafe(
    path: Path,
    problem: str,
    details: dict[str, Any],  # Any: JSON-safe values
) -> InvalidMediaError:
    return InvalidMediaError(
        f"{path.name} could not be read safely: {problem}; {REEXPORT_HINT}.",
        stage=Stage.PROBE,
        details={"path": str(path), **details},
    )


def _raise_reported(record: dict[str, Any]) -> NoReturn:  # Any: an ErrorRecord as JSON
    cls = _PROBE_ERRORS.get(ErrorCode(record["code"]), UnexpectedError)
    details = record.get("details") or {}
    raise cls(str(record["message"]), stage=Stage.PROBE, details=details, cause=record["cause"])


# --- in the child -------------------------------------------------------------------------


def _child_main(
    sender: Connection,
    path: str,
    bounds: tuple[int, int, float],
    timeout_s: float,
    memory_bytes: int,
    allow_faults: bool,
) -> None:
    _limit_self(timeout_s, memory_bytes)
    if allow_faults:
        _inject_fault(path)
    width, height, duration = bounds
    reply: dict[str, Any]  # Any: JSON
    try:
        info = probe(path, max_width_px=width, max_height_px=height, max_duration_s=duration)
        # JSON has no fractions: the aspect ratio travels as "3/2"
        fields = {"path": str(info.path), "sample_aspect_ratio": str(info.sample_aspect_ratio)}
        reply = {"info": {**asdict(info), **fields}}
    except TalkingFaceError as exc:
        reply = {"error": exc.to_record().to_dict()}
    except MemoryError:
        reply = {"out_of_memory": True}
    except Exception as exc:  # the child's boundary: the parent raises it as INTERNAL
        error = UnexpectedError.from_exception(exc, stage=Stage.PROBE, context=f"probing {path}")
        reply = {"error": error.to_record().to_dict()}
    sender.send_bytes(json.dumps(reply).encode())
    sender.close()


def _limit_self(timeout_s: float, memory_bytes: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    cpu_s = math.ceil(timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    signal.alarm(math.ceil(timeout_s) + ORPHAN_GRACE_S)  # SIGALRM's default action ends it


def _inject_fault(path: str) -> None:
    """Test-only (workers.allow_faults): a file named *probe-fault-crash* kills its probe
    with SIGSEGV, as a crashing decoder would; *probe-fault-hang* hangs it."""
    name = Path(path).name
    if "probe-fault-crash" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "probe-fault-hang" in name:
        time.sleep(3600)  # the parent's time limit, or the alarm, ends it
