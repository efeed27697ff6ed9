"""Test-only fault injection in a worker (④): wraps the engine's renderer or progress callback.

`JobOptions.fault` names one fault. Only a worker started with `workers.allow_faults` imports
this module: it runs its attempts through `with_faults` (worker.attempt_runner), the one place
faults enter; any other worker refuses a job naming a fault. Each fault changes one narrow
thing, so the pipeline itself has no fault branches:

* `crash`: the process exits with code 70 right after the first heartbeat that carries progress.
* `hang`: rendering blocks for good after a few frames; heartbeats keep coming (STALLED).
* `silent_hang`: like `hang`, and heartbeats stop after the first one with progress (LOST).
* `raise_transient`: rendering raises IPC_ERROR after a few frames (a retryable failure).
* `raise_empty`: rendering raises an exception whose message is empty (never shown empty).
* `ignore_sigterm`: SIGTERM is ignored for the attempt, then rendering hangs (SIGKILL needed).

`<fault>@<n>` strikes only in attempts 1..n, so a retry can show the job recovering.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from talkingface.engines.base import EngineInfo, FrameRenderer, LipSyncEngine, TemplateCollector
from talkingface.errors import ConfigError, IpcError, Stage
from talkingface.vocabulary import Articulation, AudioClip, MouthRender, Progress, TrackedFrame

if TYPE_CHECKING:
    from talkingface.config import Settings
    from talkingface.engines.prepared_template import PreparedTemplate
    from talkingface.executors.worker import AttemptContext, AttemptRunner
    from talkingface.pipeline.attempt import GenerateResult

logger = logging.getLogger(__name__)

FAULT_NAMES = ("crash", "hang", "silent_hang", "raise_transient", "raise_empty", "ignore_sigterm")
CRASH_EXIT_CODE = 70
FAULT_AFTER_FRAMES = 5  # hang/raise at this rendered frame index, so some progress is made first

ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class FaultControls:
    """What a fault may do to its worker besides the pipeline: the heartbeat sender's levers."""

    send_heartbeat: Callable[[], None]  # send the latest progress now (synchronously)
    stop_heartbeats: Callable[[], None]


class Fault:
    """One injected fault for one attempt; the base class changes nothing."""

    def __init__(self, name: str, controls: FaultControls) -> None:
        self.name = name
        self.controls = controls
        self._release = threading.Event()  # set only when the attempt is over

    def arm(self) -> None:
        """Called on the worker's main thread before the attempt runs."""

    def disarm(self) -> None:
        """Called on the worker's main thread after the attempt; releases a blocked renderer."""
        self._release.set()

    def wrap_engine(self, engine: LipSyncEngine) -> LipSyncEngine:
        return engine

    def wrap_progress(self, callback: ProgressCallback) -> ProgressCallback:
        return callback

    def _announce(self) -> None:
        logger.warning(
            "injecting fault %s", self.name, extra={"event": "fault_injected", "fault": self.name}
        )

    def _block(self) -> None:
        """Block the calling stage thread until the attempt is over (never, while it runs)."""
        self._announce()
        self._release.wait()


class _CrashFault(Fault):
    def wrap_progress(self, callback: ProgressCallback) -> ProgressCallback:
        def crash_after_progress(progress: Progress) -> None:
            callback(progress)
            if progress.frames_done > 0:
                self.controls.send_heartbeat()
                self._announce()
                os._exit(CRASH_EXIT_CODE)

        return crash_after_progress


class _RenderFault(Fault):
    """A fault that strikes when the renderer reaches frame FAULT_AFTER_FRAMES."""

    def wrap_engine(self, engine: LipSyncEngine) -> LipSyncEngine:
        return _FaultyEngine(engine, self._on_frame)

    def _on_frame(self, index: int) -> None:
        if index == FAULT_AFTER_FRAMES:
            self.strike()

    def strike(self) -> None:
        self._block()


class _SilentHangFault(_RenderFault):
    """Rendering blocks as in `hang`; heartbeats stop once one has carried progress."""

    def wrap_progress(self, callback: ProgressCallback) -> ProgressCallback:
        def silence_after_progress(progress: Progress) -> None:
            callback(progress)
            if progress.frames_done > 0:
                self.controls.send_heartbeat()
                self.controls.stop_heartbeats()

        return silence_after_progress


class _RaiseTransientFault(_RenderFault):
    def strike(self) -> None:
        self._announce()
        raise IpcError(
            f"Injected fault raise_transient at frame {FAULT_AFTER_FRAMES} (test only).",
            stage=Stage.RENDER,
            details={"fault": self.name},
        )


class _RaiseEmptyFault(_RenderFault):
    def strike(self) -> None:
        self._announce()
        raise RuntimeError()  # str() is "": the attempt boundary must still explain it


class _IgnoreSigtermFault(_RenderFault):
    def __init__(self, name: str, controls: FaultControls) -> None:
        super().__init__(name, controls)
        self._previous: signal.Handlers | int | Callable[..., object] | None = None

    def arm(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def disarm(self) -> None:
        super().disarm()
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


_FAULTS: dict[str, type[Fault]] = {
    "crash": _CrashFault,
    "hang": _RenderFault,
    "silent_hang": _SilentHangFault,
    "raise_transient": _RaiseTransientFault,
    "raise_empty": _RaiseEmptyFault,
    "ignore_sigterm": _IgnoreSigtermFault,
}


def parse_fault(spec: str) -> tuple[str, int | None]:
    """`hang` → ("hang", None): every attempt; `hang@2` → ("hang", 2): attempts 1 and 2 only."""
    name, at, limit = spec.partition("@")
    if not at:
        return name, None
    if not limit.isdigit() or int(limit) < 1:
        raise ConfigError(
            f"Bad fault {spec!r}: after '@' give how many attempts it strikes (e.g. hang@1).",
            stage=Stage.SETUP,
            details={"fault": spec},
        )
    return name, int(limit)


def get_fault(spec: str | None, controls: FaultControls, attempt_number: int = 1) -> Fault | None:
    """The fault `spec` names for this attempt (None: none); CONFIG_INVALID if unknown."""
    if spec is None:
        return None
    name, attempts = parse_fault(spec)
    if name not in _FAULTS:
        raise ConfigError(
            f"Unknown fault {name!r}; available: {', '.join(FAULT_NAMES)}.",
            stage=Stage.SETUP,
            details={"fault": name, "available": list(FAULT_NAMES)},
        )
    if attempts is not None and attempt_number > attempts:
        return None
    return _FAULTS[name](name, controls)


def with_faults(run: AttemptRunner) -> AttemptRunner:
    """`run` with the fault each attempt's job names injected around it (armed before,
    disarmed after); `run` itself sees the job without its fault."""

    def run_with_fault(
        attempt: AttemptContext, engine: LipSyncEngine, settings: Settings
    ) -> GenerateResult:
        assignment = attempt.assignment
        controls = FaultControls(attempt.send_heartbeat, attempt.stop_heartbeats)
        fault = get_fault(assignment.options.fault, controls, assignment.attempt_number)
        plain = replace(assignment, options=replace(assignment.options, fault=None))
        if fault is None:
            return run(replace(attempt, assignment=plain), engine, settings)
        fault.arm()
        try:
            faulty = replace(
                attempt, assignment=plain, progress=fault.wrap_progress(attempt.progress)
            )
            return run(faulty, fault.wrap_engine(engine), settings)
        finally:
            fault.disarm()

    return run_with_fault


class _FaultyEngine:
    """The wrapped engine: everything delegated, each rendered frame first shown to `on_frame`."""

    def __init__(self, inner: LipSyncEngine, on_frame: Callable[[int], None]) -> None:
        self.inner = inner
        self.on_frame = on_frame
        self.info: EngineInfo = inner.info

    def load(self, device: str | None = None) -> None:
        self.inner.load(device)

    def template_collector(self) -> TemplateCollector:
        return self.inner.template_collector()

    def start_job(
        self, template: PreparedTemplate, drive: Articulation, audio: AudioClip
    ) -> FrameRenderer:
        return _FaultyRenderer(self.inner.start_job(template, drive, audio), self.on_frame)

    def close(self) -> None:
        self.inner.close()


class _FaultyRenderer:
    def __init__(self, inner: FrameRenderer, on_frame: Callable[[int], None]) -> None:
        self.inner = inner
        self.on_frame = on_frame

    def render(self, item: TrackedFrame) -> MouthRender:
        self.on_frame(item.index)
        return self.inner.render(item)
