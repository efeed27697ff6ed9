"""The worker process (④): loads the engine once, says Ready, then runs one attempt at a time.

`worker_main` runs in a spawned process (started at worker_entry.py). It owns its process
group (so the executor can kill everything it started), talks to the executor over one duplex
pipe, heartbeats while an attempt runs, exits when the pipe reaches EOF, and exits by itself
after `workers.recycle_after_jobs` attempts to contain leaks.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from talkingface.config import EngineSettings, Settings
from talkingface.engines.base import LipSyncEngine, get_engine
from talkingface.errors import (
    MAX_TRACEBACK_BYTES,
    ConfigError,
    Stage,
    TalkingFaceError,
    UnexpectedError,
    translate_errors,
)
from talkingface.executors.attempt_files import AttemptFiles
from talkingface.executors.confined_inputs import ConfinedInputs, input_roots
from talkingface.executors.messages import Assignment, Failed, Heartbeat, Ready, Succeeded
from talkingface.executors.worker_metrics import start_worker_metrics
from talkingface.jobs.states import JobKind
from talkingface.logs import bind, bind_job, configure_logging
from talkingface.pipeline.attempt import (
    GenerateRequest,
    GenerateResult,
    ProgressCallback,
    run_attempt,
)
from talkingface.pipeline.preparation import run_preparation
from talkingface.results import JobResult
from talkingface.storage.local import LocalStorage
from talkingface.vocabulary import FacePolicy, JobTag, LoopMode, Progress

logger = logging.getLogger(__name__)

PROCESS_NAME = "tf-worker"  # what `ps` and psutil show for a worker (Linux)
EXIT_ENGINE_LOAD_FAILED = 3
PROGRESS_MIN_INTERVAL_S = 1.0  # progress changes are sent at most this often between beats


def worker_main(conn: Connection, settings_json: dict[str, Any], worker_id: str) -> None:
    """Entry point of a spawned worker (Any: the JSON dump of Settings)."""
    os.setsid()  # own process group: a kill reaches everything this worker starts
    _set_process_name(PROCESS_NAME)
    settings = Settings(**settings_json)
    configure_logging(settings.logging.level, json_lines=True)
    start_worker_metrics(settings.data_dir, worker_id)
    channel = _Channel(conn)
    with bind(worker=worker_id):
        engines = _Engines(settings.engines)
        try:
            engines.get(settings.engines.default)
            _preload_receipts(settings)
        except TalkingFaceError as exc:
            logger.error(
                "worker %s could not load engine %s: %s",
                worker_id,
                settings.engines.default,
                exc,
                extra={"event": "worker_start_failed", "code": exc.code.value},
            )
            sys.exit(EXIT_ENGINE_LOAD_FAILED)
        engines.preload_configured()
        try:
            if channel.send(Ready(worker_id=worker_id, pid=os.getpid())):
                logger.info("worker ready", extra={"event": "worker_ready"})
                _serve(channel, conn, settings, worker_id, engines)
        finally:
            engines.close()
            conn.close()


def _serve(
    channel: _Channel,
    conn: Connection,
    settings: Settings,
    worker_id: str,
    engines: _Engines,
) -> None:
    """Receive and run assignments until EOF or until it is time to recycle."""
    run = attempt_runner(settings)
    for _ in range(settings.workers.recycle_after_jobs):
        try:
            assignment = conn.recv()
        except (EOFError, OSError):
            logger.info("parent pipe closed; exiting", extra={"event": "worker_parent_gone"})
            return
        if not isinstance(assignment, Assignment):
            logger.error(
                "unexpected message %s from the executor; exiting",
                type(assignment).__name__,
                extra={"event": "worker_protocol_error"},
            )
            return
        outcome = _run_assignment(channel, settings, worker_id, engines, assignment, run)
        if not channel.send(outcome):
            logger.info("parent pipe closed; exiting", extra={"event": "worker_parent_gone"})
            return
    logger.info(
        "recycling after %d jobs",
        settings.workers.recycle_after_jobs,
        extra={"event": "worker_recycled"},
    )


@dataclass(frozen=True, slots=True)
class AttemptContext:
    """One attempt as a runner sees it: its assignment, progress sink and levers."""

    assignment: Assignment
    progress: ProgressCallback
    cancel: threading.Event  # set when the parent is gone: stop early
    send_heartbeat: Callable[[], None]  # send the latest progress now (synchronously)
    stop_heartbeats: Callable[[], None]


AttemptRunner = Callable[[AttemptContext, LipSyncEngine, Settings], GenerateResult]


def attempt_runner(settings: Settings) -> AttemptRunner:
    """How this worker runs attempts, chosen once at start: run_attempt itself, or, only
    where workers.allow_faults is set (tests, the chaos campaign), wrapped with the fault
    injection its job names. The fault code is not even imported otherwise."""
    if not settings.workers.allow_faults:
        return _run
    from talkingface.executors.faults import with_faults

    return with_faults(_run)


def _run(attempt: AttemptContext, engine: LipSyncEngine, settings: Settings) -> GenerateResult:
    request = _request_for(attempt.assignment)
    return run_attempt(request, engine, settings, progress=attempt.progress, cancel=attempt.cancel)


class MessageSink(Protocol):
    """Where a worker's messages go: the pipe to the local executor, or a Ray actor's outbox."""

    def send(self, message: object) -> bool:
        """Send one message; False when the executor's end is gone."""
        ...


class AttemptService:
    """A worker's engines and attempt runner, for a host other than worker_main: the Ray
    actor (executors/ray_actor.py) runs its attempts through exactly this code path."""

    def __init__(self, settings: Settings, worker_id: str) -> None:
        """Load the default engine now (a failure raises, as worker_main exits on it)."""
        self.settings = settings
        self.worker_id = worker_id
        self._engines = _Engines(settings.engines)
        self._engines.get(settings.engines.default)
        self._engines.preload_configured()
        _preload_receipts(settings)
        self._run = attempt_runner(settings)

    def run(self, sink: MessageSink, assignment: Assignment) -> Succeeded | Failed:
        """Run one attempt with heartbeats to `sink`; the outcome is returned, not sent."""
        with bind(worker=self.worker_id):
            return _run_assignment(
                sink, self.settings, self.worker_id, self._engines, assignment, self._run
            )

    def close(self) -> None:
        self._engines.close()


def _run_assignment(
    channel: MessageSink,
    settings: Settings,
    worker_id: str,
    engines: _Engines,
    assignment: Assignment,
    run: AttemptRunner,
) -> Succeeded | Failed:
    """Run one attempt with heartbeats; every outcome becomes a Succeeded or Failed message."""
    cancel = threading.Event()  # set when the parent is gone: stop the attempt early
    beats = _Heartbeats(channel, assignment, worker_id, settings.workers.heartbeat_s, cancel)
    attempt = AttemptContext(assignment, beats.on_progress, cancel, beats.send_now, beats.silence)
    started_s = time.monotonic()
    with (
        bind_job(assignment.job_id, assignment.attempt_number),
        bind(attempt_id=assignment.attempt_id),
        ConfinedInputs(input_roots(settings), Path(assignment.output_path)) as inputs,
        AttemptFiles(settings, assignment) as files,
    ):
        try:
            beats.start()  # first beat at once: the executor sees the attempt has begun
            engine = engines.get(assignment.options.engine)
            local_video = files.local_input("video", assignment.video_path)  # from S3 if there
            video = str(inputs.open("video", local_video))  # inside the roots, pinned
            if assignment.kind == JobKind.PREPARE_TEMPLATE:
                confined = dataclasses.replace(assignment, video_path=video)
                return _prepare(worker_id, confined, engine, settings, beats.on_progress, cancel)
            local_audio = files.local_input("audio", assignment.audio_path)
            confined = dataclasses.replace(
                assignment, audio_path=str(inputs.open("audio", local_audio)), video_path=video
            )
            attempt = dataclasses.replace(attempt, assignment=confined)
            rendered = run(attempt, engine, settings).job_result()
            if confined.options.evaluate:  # before finish: with S3 it moves the file away
                rendered = _with_receipt(rendered, confined, attempt, settings)
            result = files.finish(rendered, attempt.progress)  # its SHA-256; uploaded if S3
            return Succeeded(worker_id, assignment.job_id, assignment.attempt_id, result)
        except TalkingFaceError as exc:
            _log_failure(assignment, exc, started_s, exc_info=False)
            return Failed(worker_id, assignment.job_id, assignment.attempt_id, exc.to_record())
        except Exception as exc:  # the attempt boundary: anything unexpected becomes INTERNAL
            error = UnexpectedError.from_exception(exc, context=f"attempt {assignment.attempt_id}")
            _log_failure(assignment, error, started_s, exc_info=True)
            tb = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK_BYTES:]
            record = dataclasses.replace(error.to_record(), traceback=tb)
            return Failed(worker_id, assignment.job_id, assignment.attempt_id, record)
        finally:
            beats.stop()


def _with_receipt(
    rendered: JobResult,
    assignment: Assignment,
    attempt: AttemptContext,
    settings: Settings,
) -> JobResult:
    """The result with its quality receipt (quality_receipt.py: never fails the job)."""
    from talkingface.quality_receipt import ReceiptRequest, receipt_maker  # models load on use

    tag = JobTag(assignment.job_id, assignment.attempt_number)
    started_s = time.monotonic()

    def progress(done: int, total: int) -> None:
        elapsed_s = time.monotonic() - started_s
        attempt.progress(Progress(tag, Stage.EVALUATE.value, done, total, elapsed_s))

    quality_dir = None
    if settings.storage.url is None:  # a sheet only where the API reads the same folder
        quality_dir = LocalStorage(settings.data_dir).quality_dir(assignment.job_id)
    request = ReceiptRequest(
        job_id=assignment.job_id,
        video_path=Path(assignment.output_path),
        audio_path=Path(assignment.audio_path),
        template_path=Path(assignment.video_path),
        loop=LoopMode(assignment.options.loop),
        quality_dir=quality_dir,
    )
    receipt = receipt_maker(settings.evaluate).make(request, progress, attempt.cancel)
    return dataclasses.replace(rendered, receipt=receipt)


def _preload_receipts(settings: Settings) -> None:
    """Warm the receipts' models where the server uses receipts (every job measured by
    default, or a SyncNet configured); otherwise the first job that asks loads them."""
    receipts = settings.evaluate
    if receipts.default or receipts.syncnet_checkpoint is not None:
        from talkingface.quality_receipt import receipt_maker

        receipt_maker(receipts).preload()


def _prepare(
    worker_id: str,
    assignment: Assignment,
    engine: LipSyncEngine,
    settings: Settings,
    progress: Callable[[Progress], None],
    cancel: threading.Event,
) -> Succeeded:
    """A prepare_template attempt: the template's face track into the cache, its thumbnail."""
    prepared = run_preparation(
        JobTag(assignment.job_id, assignment.attempt_number),
        Path(assignment.video_path),
        Path(assignment.output_path),
        engine,
        settings,
        face_policy=FacePolicy(assignment.options.face_policy),
        progress=progress,
        cancel=cancel,
    )
    return Succeeded(
        worker_id, assignment.job_id, assignment.attempt_id, prepared.result, prepared.outcome
    )


def _request_for(assignment: Assignment) -> GenerateRequest:
    options = assignment.options
    if options.fault is not None:  # with_faults takes it off the assignment where allowed
        raise ConfigError(
            f"Fault injection ({options.fault!r}) is disabled; it is for tests only "
            "(set workers.allow_faults = true in a test configuration).",
            stage=Stage.SETUP,
            details={"fault": options.fault},
        )
    try:
        loop = LoopMode(options.loop)
        face_policy = FacePolicy(options.face_policy)
    except ValueError as exc:
        raise ConfigError(
            f"Invalid job option ({exc}); loop is pingpong or restart, face_policy is "
            "largest or strict.",
            stage=Stage.SETUP,
            details={"loop": options.loop, "face_policy": options.face_policy},
        ) from exc
    return GenerateRequest(
        tag=JobTag(assignment.job_id, assignment.attempt_number),
        audio_path=Path(assignment.audio_path),
        video_path=Path(assignment.video_path),
        output_path=Path(assignment.output_path),
        loop=loop,
        face_policy=face_policy,
    )


def _log_failure(
    assignment: Assignment, error: TalkingFaceError, started_s: float, *, exc_info: bool
) -> None:
    logger.error(
        "attempt failed: %s",
        error.one_line(),
        exc_info=exc_info,
        extra={
            "event": "attempt_failed",
            "code": error.code.value,
            "error_stage": error.stage.value if error.stage else None,
            "retryable": error.retryable,
            "audio_path": assignment.audio_path,
            "video_path": assignment.video_path,
            "elapsed_s": round(time.monotonic() - started_s, 3),
        },
    )


class _Channel:
    """The pipe to the executor; sends are serialised (the heartbeat thread shares it)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: object) -> bool:
        """Send one message; False when the executor's end is gone."""
        with self._lock:
            try:
                self._conn.send(message)
            except (OSError, EOFError):
                return False
        return True


class _Heartbeats:
    """Sends the attempt's latest progress every interval, and on change (≤ 1 per second)."""

    def __init__(
        self,
        channel: MessageSink,
        assignment: Assignment,
        worker_id: str,
        interval_s: float,
        parent_gone: threading.Event,
    ) -> None:
        self._channel = channel
        self._assignment = assignment
        self._worker_id = worker_id
        self._interval_s = interval_s
        self._parent_gone = parent_gone
        self._lock = threading.Lock()
        self._latest: tuple[str, int, int, float | None] = (Stage.SETUP.value, 0, 0, None)
        self._last_progress_sent_s = 0.0  # progress-triggered sends only (≤ 1 per second)
        self._stopped = threading.Event()
        self._silenced = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tf-heartbeat", daemon=True)

    def start(self) -> None:
        self.send_now()
        self._thread.start()

    def on_progress(self, progress: Progress) -> None:
        latest = (progress.stage, progress.frames_done, progress.frames_total, progress.eta_s)
        now_s = time.monotonic()
        with self._lock:
            moved = latest[:3] != self._latest[:3]
            self._latest = latest
            due = now_s - self._last_progress_sent_s >= PROGRESS_MIN_INTERVAL_S
            if moved and due:
                self._last_progress_sent_s = now_s
        if moved and due:
            self.send_now()

    def send_now(self) -> None:
        if self._silenced.is_set() or self._parent_gone.is_set():
            return
        with self._lock:
            stage, done, total, eta_s = self._latest
        beat = Heartbeat(
            worker_id=self._worker_id,
            job_id=self._assignment.job_id,
            attempt_id=self._assignment.attempt_id,
            stage=stage,
            frames_done=done,
            frames_total=total,
            eta_s=eta_s,
        )
        if not self._channel.send(beat):
            logger.warning(
                "parent pipe closed; stopping the attempt", extra={"event": "worker_parent_gone"}
            )
            self._parent_gone.set()

    def silence(self) -> None:
        self._silenced.set()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval_s + 5.0)

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self.send_now()


class _Engines:
    """Engines loaded in this worker, by name; the default one is loaded before Ready. They stay
    loaded (a neural model warm) between jobs, and close() releases them (GPU memory too)."""

    def __init__(self, settings: EngineSettings) -> None:
        self._settings = settings
        self._loaded: dict[str, LipSyncEngine] = {}

    def get(self, name: str) -> LipSyncEngine:
        if name not in self._loaded:
            engine = get_engine(name, self._settings)
            with translate_errors(Stage.SETUP, context=f"loading engine {name}"):
                engine.load()
            self._loaded[name] = engine
        return self._loaded[name]

    def preload_configured(self) -> None:
        """Load, before Ready, the engines the operator configured beyond the default (wav2lip
        with a checkpoint): loading inside an attempt holds the GIL long enough (importing
        torch, reading the weights) to starve the heartbeats. A failure here is logged and
        left for the jobs that ask for the engine, which then fail with the same error."""
        if self._settings.wav2lip.checkpoint is None:
            return
        try:
            self.get("wav2lip")
        except TalkingFaceError as exc:
            logger.warning(
                "engine wav2lip could not be preloaded: %s",
                exc,
                extra={"event": "engine_preload_failed", "code": exc.code.value},
            )

    def close(self) -> None:
        for engine in self._loaded.values():
            engine.close()
        self._loaded.clear()


def _set_process_name(name: str) -> None:
    """Name the process (Linux prctl PR_SET_NAME) so operators and tests can find workers."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, name.encode()[:15], 0, 0, 0)  # 15 = PR_SET_NAME
