"""Stage threads joined by bounded queues: the only place the pipeline owns threads.

A chain is a source (an iterator, run on its own thread), zero or more transforms (one thread
each) and a sink that runs on the caller's thread. Every `get`/`put` waits in short polls up
to `timeout_s`, checking between polls that the run has not failed or been canceled and that
the neighbour it waits on is still alive. The first stage to fail records its error (stamped
with the stage name) and stops the others; the caller re-raises it. No wait is ever endless.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from talkingface.errors import (
    IpcError,
    JobCanceledError,
    Stage,
    StageTimeoutError,
    TalkingFaceError,
    error_from_exception,
)
from talkingface.logs import bind_stage
from talkingface.vocabulary import JobTag

logger = logging.getLogger(__name__)

POLL_S = 0.2
JOIN_GRACE_S = 5.0  # after a stop, how long to wait for a stage stuck inside its own work
_END = object()  # end-of-stream marker


@dataclass(frozen=True, slots=True)
class StageSpec:
    stage: Stage
    # Any: one tagged item in, the next tagged item out; with batch_size > 1, a list of up to
    # batch_size items in order, and a list of as many results out.
    process: Callable[[Any], Any]
    batch_size: int = 1


class _Run:
    """Shared state of one chain run: the first failure and the stop flag."""

    def __init__(self, tag: JobTag, cancel: threading.Event | None, timeout_s: float) -> None:
        self.tag = tag
        self.cancel = cancel or threading.Event()
        self.timeout_s = timeout_s
        self.stop = threading.Event()
        self.error: TalkingFaceError | None = None
        self._lock = threading.Lock()

    def fail(self, exc: BaseException, stage: Stage) -> None:
        with self._lock:
            if self.error is None:
                self.error = error_from_exception(exc, stage=stage)
                self.error.details.setdefault("job_id", self.tag.job_id)
        self.stop.set()

    def check(self, stage: Stage) -> None:
        if self.cancel.is_set():
            raise JobCanceledError(f"Job {self.tag.job_id} was canceled.", stage=stage)
        if self.stop.is_set():
            raise _Stopped


class _Stopped(Exception):
    """Another stage failed; this one just exits."""


def _wait(
    run: _Run, stage: Stage, action: Callable[[], Any], peer: threading.Thread | None, what: str
) -> Any:
    deadline = time.monotonic() + run.timeout_s
    while True:
        run.check(stage)
        try:
            return action()
        except (queue.Empty, queue.Full):
            pass
        if peer is not None and not peer.is_alive() and not run.stop.is_set():
            raise IpcError(f"Stage {stage.value}: {what} ended without finishing.", stage=stage)
        if time.monotonic() > deadline:
            raise StageTimeoutError(
                f"Stage {stage.value} waited {run.timeout_s:.0f} s for {what}; "
                "the neighbouring stage is stuck.",
                stage=stage,
            )


def _get(run: _Run, stage: Stage, q: queue.Queue[Any], peer: threading.Thread | None) -> Any:
    item = _wait(run, stage, lambda: q.get(timeout=POLL_S), peer, "its input")
    if item is not _END:
        tag = getattr(item, "tag", run.tag)
        if tag != run.tag:
            raise IpcError(f"Stage {stage.value} received an item of {tag}, not {run.tag}.")
    return item


def _put(run: _Run, stage: Stage, q: queue.Queue[Any], item: Any, peer: threading.Thread) -> None:
    _wait(run, stage, lambda: q.put(item, timeout=POLL_S), peer, "room in its output queue")


def _join_stages(threads: list[threading.Thread], *, grace_s: float) -> None:
    """Wait for the stage threads; one stuck inside a stage call is left behind (daemon) and
    logged, so a cancel or Ctrl-C never waits out a hung stage."""
    deadline = time.monotonic() + grace_s
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        logger.warning(
            "stage threads still busy after the run stopped: %s",
            ", ".join(stuck),
            extra={"event": "stage_thread_abandoned", "threads": stuck},
        )


def run_chain(
    tag: JobTag,
    source_stage: Stage,
    source: Iterable[Any],
    transforms: list[StageSpec],
    sink_stage: Stage,
    sink: Callable[[Any], None],
    *,
    queue_size: int = 16,
    timeout_s: float = 120.0,
    cancel: threading.Event | None = None,
) -> None:
    """Run source → transforms → sink concurrently; re-raise the first error with its stage."""
    run = _Run(tag, cancel, timeout_s)
    queues: list[queue.Queue[Any]] = [
        queue.Queue(maxsize=queue_size) for _ in range(1 + len(transforms))
    ]
    threads: list[threading.Thread] = []
    consumers: list[threading.Thread] = []

    def source_loop() -> None:
        with bind_stage(source_stage.value):
            try:
                for item in source:
                    run.check(source_stage)
                    _put(run, source_stage, queues[0], item, consumers[0])
                _put(run, source_stage, queues[0], _END, consumers[0])
            except _Stopped:
                return
            except BaseException as exc:
                run.fail(exc, source_stage)

    def transform_loop(i: int, spec: StageSpec) -> None:
        with bind_stage(spec.stage.value):
            try:
                while True:
                    item = _get(run, spec.stage, queues[i], threads[i])
                    out = _END if item is _END else spec.process(item)
                    _put(run, spec.stage, queues[i + 1], out, consumers[i + 1])
                    if item is _END:
                        return
            except _Stopped:
                return
            except BaseException as exc:
                run.fail(exc, spec.stage)

    def batch_loop(i: int, spec: StageSpec) -> None:
        """Gathers up to batch_size items (fewer at the end of the stream) per call."""
        with bind_stage(spec.stage.value):
            try:
                ended = False
                while not ended:
                    batch: list[Any] = []
                    while len(batch) < spec.batch_size:
                        item = _get(run, spec.stage, queues[i], threads[i])
                        if item is _END:
                            ended = True
                            break
                        batch.append(item)
                    results = spec.process(batch) if batch else []
                    if len(results) != len(batch):
                        raise IpcError(
                            f"Stage {spec.stage.value} returned {len(results)} items for a "
                            f"batch of {len(batch)}.",
                            stage=spec.stage,
                        )
                    for out in [*results, _END] if ended else results:
                        _put(run, spec.stage, queues[i + 1], out, consumers[i + 1])
            except _Stopped:
                return
            except BaseException as exc:
                run.fail(exc, spec.stage)

    ctx = contextvars.copy_context()
    threads.append(
        threading.Thread(
            target=ctx.copy().run, args=(source_loop,), name=f"tf-{source_stage}", daemon=True
        )
    )
    for i, spec in enumerate(transforms):
        threads.append(
            threading.Thread(
                target=ctx.copy().run,
                args=(batch_loop if spec.batch_size > 1 else transform_loop, i, spec),
                name=f"tf-{spec.stage}",
                daemon=True,
            )
        )
    consumers.extend(threads[1:])
    consumers.append(threading.current_thread())
    try:  # started inside the try: an interrupt between two starts still stops the first
        for t in threads:
            t.start()
        with bind_stage(sink_stage.value):
            while True:
                item = _get(run, sink_stage, queues[-1], threads[-1])
                if item is _END:
                    break
                sink(item)
    except _Stopped:
        pass
    except (KeyboardInterrupt, SystemExit):
        run.stop.set()  # stop the stages, then let the interrupt go on unchanged
        raise
    except BaseException as exc:
        run.fail(exc, sink_stage)
    finally:
        run.stop.set()
        started = [t for t in threads if t.ident is not None]
        _join_stages(started, grace_s=min(timeout_s, JOIN_GRACE_S))
    if run.error is not None:
        raise run.error
