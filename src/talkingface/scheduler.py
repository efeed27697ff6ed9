"""③ The supervisor: claim queued jobs, dispatch them to idle workers, apply heartbeats and
results, and reap lost, stalled and timed-out attempts; plus start-up recovery and the janitor.

The store is the record; the scheduler keeps only rebuildable bookkeeping per running attempt
(when it started, when it last beat, when its progress last moved). Every attempt that stops
without a result is recorded with a sentence saying what happened, and the retry policy
decides what comes next. No path leaves a job `running` without a live worker behind it:
a worker's exit, missed heartbeats, stalled progress, the time limit and a server restart
each end the attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from talkingface.config import Settings
from talkingface.dispatch_pause import DispatchPause
from talkingface.errors import (
    ErrorRecord,
    Stage,
    StageTimeoutError,
    StalledError,
    StoreUnavailableError,
    TalkingFaceError,
    WorkerLostError,
)
from talkingface.executors.base import (
    Executor,
    Interruptible,
    RoutesTemplates,
    WorkerInfo,
    get_executor,
)
from talkingface.executors.messages import (
    Assignment,
    Failed,
    Heartbeat,
    Succeeded,
    WorkerExited,
    WorkerMessage,
)
from talkingface.heygem_results import expose_result
from talkingface.janitor import Janitor
from talkingface.jobs.records import AttemptRecord, JobRecord
from talkingface.jobs.retry import RetryPolicy
from talkingface.jobs.states import AttemptOutcome, JobKind, WorkerState
from talkingface.jobs.store import JobStore
from talkingface.logs import bind_job
from talkingface.ops.metrics import ServiceMetrics
from talkingface.results import QualityReceipt, ReceiptState
from talkingface.storage.base import get_storage
from talkingface.storage.local import LocalStorage
from talkingface.template_files import TEMPLATE_THUMBNAIL_NAME

logger = logging.getLogger(__name__)

TICK_S = 0.05  # poll timeout with an idle worker: bounds the submit → dispatch latency
BUSY_TICK_S = 0.25  # with every worker busy, worker messages wake the poll anyway
CANCEL_CHECK_S = 0.25
RECOVER_CHECK_S = 1.0  # abandoned running jobs (expired lease, no live attempt here)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Running:
    """Bookkeeping for one running attempt (rebuildable: the store holds the record)."""

    job_id: str
    attempt_id: str
    attempt_number: int
    worker_id: str
    started_s: float
    limit_s: float
    last_beat_s: float
    last_progress_s: float
    stage: str = "starting"
    frames_done: int = 0
    kind: JobKind = JobKind.RENDER


class Scheduler:
    """Runs the dispatch loop on its own thread; the API talks to it through wake()/workers()."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        *,
        executor: Executor | None = None,
        storage: LocalStorage | None = None,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: ServiceMetrics | None = None,
        is_leader: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.is_leader = is_leader  # the leadership's fence (cluster/leadership.py); None: alone
        self.store = store
        self.executor = executor or get_executor(settings.workers.executor, settings)
        self.storage = storage or get_storage(settings)
        self.policy = policy or RetryPolicy(settings.retry)
        self.clock = clock
        self.metrics = metrics
        self._pause = DispatchPause(store)
        self._disk_low = False
        self._results_unwritable: str | None = None
        self._unapplied: list[WorkerMessage] = []  # terminal messages whose handling failed
        self._running: dict[str, _Running] = {}  # by attempt id
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_alive_s = 0.0
        self._next_cancel_check_s = 0.0
        self._next_janitor_s = 0.0
        self._next_recover_s = 0.0

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Scheduler:
        self._pause.load()
        self.recover()
        self.executor.start()
        self._thread = threading.Thread(target=self._loop, name="tf-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        self.executor.shutdown()

    def wake(self) -> None:
        self._wake.set()
        if isinstance(self.executor, Interruptible):  # end the dispatch loop's wait now
            self.executor.interrupt()

    def hand_over(self, reason: str) -> None:
        """After stop(), as this process stops leading: end its attempts (their workers are
        gone) as lost, so the next leader retries them now, not after their lease."""
        for run in list(self._running.values()):
            error = WorkerLostError(
                f"The scheduler running attempt {run.attempt_number} stopped leading ({reason}) "
                "and stopped its worker; the attempt is retried under the next leader.",
                stage=_as_stage(run.stage),
            ).to_record()
            self._end_attempt(
                run.job_id, run.attempt_id, run.attempt_number, error, AttemptOutcome.LOST
            )
            self._running.pop(run.attempt_id, None)

    def set_paused(self, paused: bool) -> None:
        """Maintenance: no new job starts while paused; running jobs finish; submissions queue.
        The flag is kept in the store: a restart (or another server on the same store) keeps
        the queue paused until it is resumed."""
        self._pause.set(paused)
        logger.warning(
            "dispatching %s",
            "paused" if paused else "resumed",
            extra={"event": "dispatch_paused" if paused else "dispatch_resumed"},
        )
        self.wake()

    def is_paused(self) -> bool:
        return self._pause.paused

    def workers(self) -> list[WorkerInfo]:
        return self.executor.workers()

    def is_ready(self) -> bool:
        loop_ok = self._thread is not None and self._thread.is_alive()
        live = {WorkerState.READY, WorkerState.BUSY}
        return loop_ok and any(w.state in live for w in self.executor.workers())

    # --- recovery and the loop -------------------------------------------------------------

    def recover(self) -> None:
        """End running attempts that no live scheduler owns: their lease ran out with no
        heartbeat. Runs at start-up and every second, so a job left running by a crashed or
        restarted server (or by a lost track here) is always ended, and a second scheduler on
        the same PostgreSQL database never takes over attempts another one still renews."""
        now = utcnow()
        for job, attempt in self.store.running():
            if attempt.id in self._running:
                continue
            if job.lease_expires_at is not None and job.lease_expires_at > now:
                continue
            error = WorkerLostError(
                f"The worker of attempt {attempt.number} ({attempt.worker}) is gone: its lease "
                "expired with no heartbeat (the server stopped or crashed while it ran).",
                stage=_as_stage(job.stage),
            ).to_record()
            self._end_attempt(job.id, attempt.id, attempt.number, error, AttemptOutcome.LOST)
            logger.warning(
                "recovered an abandoned running job",
                extra={"event": "attempt_recovered", "job_id": job.id, "attempt": attempt.number},
            )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the scheduler loop is a boundary: log, keep serving
                logger.exception("scheduler tick failed", extra={"event": "scheduler_error"})
                self._stop.wait(1.0)

    def tick(self) -> None:
        """One round: messages, cancels, supervision, dispatch, janitor; none of it while
        this process may not lead (its leadership is lost or unconfirmed)."""
        if self.is_leader is not None and not self.is_leader():
            self._stop.wait(BUSY_TICK_S)
            return
        now = self.clock()
        self._loop_alive_s = now
        timeout_s = TICK_S if self.executor.idle_worker() is not None else BUSY_TICK_S
        polled = self.executor.poll(0.0 if self._wake.is_set() else timeout_s)
        messages, self._unapplied = [*self._unapplied, *polled], []
        for message in messages:
            self._apply_safely(message)
        self._wake.clear()
        if now >= self._next_cancel_check_s:
            self._next_cancel_check_s = now + CANCEL_CHECK_S
            self._handle_cancels()
        if now >= self._next_recover_s:
            self._next_recover_s = now + RECOVER_CHECK_S
            self.recover()
            self._pause.sync()
        self._supervise(self.clock())
        self._dispatch()
        if now >= self._next_janitor_s:
            self._next_janitor_s = now + self.settings.api.janitor_interval_s
            self.run_janitor()

    # --- dispatch --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while not self._pause.paused:
            worker_id = self.executor.idle_worker()
            if worker_id is None or self._disk_is_low() or self._results_are_unwritable():
                return
            worker_id = self._worker_for_next_template(worker_id)
            lease_s = self.settings.workers.heartbeat_s * self.settings.workers.lost_after_beats
            claimed = self.store.claim_next(worker_id, lease_s=lease_s)
            if claimed is None:
                return
            job, attempt = claimed
            output = self._output_path(job, attempt.id)
            assignment = Assignment(
                job_id=job.id,
                attempt_id=attempt.id,
                attempt_number=attempt.number,
                audio_path=job.inputs.audio_path,
                video_path=job.inputs.video_path,
                output_path=str(output),
                options=job.options,
                kind=job.kind,
            )
            now = self.clock()
            self._running[attempt.id] = _Running(
                job.id,
                attempt.id,
                attempt.number,
                worker_id,
                now,
                self._limit_s(job),
                now,
                now,
                kind=job.kind,
            )
            self.executor.start_attempt(worker_id, assignment)
            if self.metrics is not None and attempt.number == 1:
                self.metrics.job_started((attempt.started_at - job.created_at).total_seconds())
            with bind_job(job.id, attempt.number):
                logger.info(
                    "attempt %d of job %s dispatched to %s",
                    attempt.number,
                    job.id,
                    worker_id,
                    extra={"event": "attempt_dispatched", "worker": worker_id},
                )

    def _worker_for_next_template(self, idle_worker_id: str) -> str:
        """With an executor whose workers hold templates of their own (ray), the idle worker
        that already ran the template of the job at the head of the queue, if there is one.
        The head may still be taken by another scheduler first: then this was only a hint."""
        if not isinstance(self.executor, RoutesTemplates):
            return idle_worker_id
        head = self.store.queued_in_order(limit=1)
        template = head[0].inputs.video_path if head else None
        return self.executor.idle_worker_for(template) or idle_worker_id

    def _output_path(self, job: JobRecord, attempt_id: str) -> Path:
        """Where the attempt writes: a render's partial result; a template's thumbnail, beside
        the template video (its preparation job has no result file to publish)."""
        if job.kind == JobKind.PREPARE_TEMPLATE:
            return Path(job.inputs.video_path).parent / TEMPLATE_THUMBNAIL_NAME
        output = self.storage.partial_result_path(job.id, attempt_id)
        output.parent.mkdir(parents=True, exist_ok=True)
        return output

    def _disk_is_low(self) -> bool:
        """Under api.min_free_disk_bytes nothing starts (it would fail DISK_FULL); jobs wait.
        The change is logged once each way; the disk alert tells the operator."""
        free = self.storage.free_disk_bytes()
        low = free < self.settings.api.min_free_disk_bytes
        if low != self._disk_low:
            self._disk_low = low
            logger.log(
                logging.WARNING if low else logging.INFO,
                "dispatch %s: %d bytes free in the data directory (minimum %d)",
                "held" if low else "resumed",
                free,
                self.settings.api.min_free_disk_bytes,
                extra={"event": "dispatch_held_disk_low" if low else "dispatch_resumed_disk"},
            )
        return low

    def _results_are_unwritable(self) -> bool:
        """While results cannot be written (a read-only file system) nothing starts: every
        attempt would fail at its output. Logged once each way; /readyz says why."""
        reason = self.storage.results_unwritable_reason()
        if reason != self._results_unwritable:
            self._results_unwritable = reason
            logger.log(
                logging.WARNING if reason else logging.INFO,
                "dispatch %s: %s",
                "held" if reason else "resumed",
                reason or "the results directory is writable again",
                extra={"event": "dispatch_held_storage" if reason else "dispatch_resumed_storage"},
            )
        return reason is not None

    def _limit_s(self, job: JobRecord) -> float:
        """The attempt's time limit; a job measured after rendering gets the evaluation's too."""
        w = self.settings.workers
        limit_s = w.timeout_base_s + w.timeout_per_input_s * (job.inputs.input_duration_s or 0.0)
        return limit_s + (self.settings.evaluate.timeout_s if job.options.evaluate else 0.0)

    # --- messages from workers -------------------------------------------------------------

    def _apply_safely(self, message: WorkerMessage) -> None:
        """Apply one message; if that fails (a store or storage fault) the rest of the tick
        still runs, and a terminal message is kept and applied again next tick: its attempt's
        bookkeeping is only dropped once its end is recorded."""
        try:
            self._apply(message)
        except Exception:  # a boundary like the loop's: log it, keep the scheduler serving
            logger.exception(
                "applying %s for attempt %s failed; retrying next tick",
                type(message).__name__,
                getattr(message, "attempt_id", None),
                extra={"event": "scheduler_message_failed"},
            )
            if not isinstance(message, Heartbeat):  # the next beat supersedes a lost one
                self._unapplied.append(message)

    def _apply(self, message: WorkerMessage) -> None:
        if isinstance(message, Heartbeat):
            self._on_heartbeat(message)
        elif isinstance(message, Succeeded):
            self._on_succeeded(message)
        elif isinstance(message, Failed):
            self._on_failed(message)
        elif isinstance(message, WorkerExited):
            self._on_exited(message)

    def _on_heartbeat(self, beat: Heartbeat) -> None:
        run = self._running.get(beat.attempt_id)
        if run is None:
            return
        now = self.clock()
        run.last_beat_s = now
        if beat.stage != run.stage or beat.frames_done != run.frames_done:
            run.last_progress_s = now
            run.stage, run.frames_done = beat.stage, beat.frames_done
        lease_s = self.settings.workers.heartbeat_s * self.settings.workers.lost_after_beats
        current = self.store.heartbeat(
            beat.job_id,
            beat.attempt_id,
            stage=beat.stage,
            frames_done=beat.frames_done,
            frames_total=beat.frames_total,
            lease_s=lease_s,
        )
        if not current:  # the job was canceled, retried or removed under this attempt
            self._running.pop(beat.attempt_id, None)
            self.executor.cancel_attempt(beat.attempt_id, "the attempt is no longer current")
            self.storage.discard_attempt_files(beat.job_id, beat.attempt_id)

    def _on_succeeded(self, done: Succeeded) -> None:
        run = self._running.get(done.attempt_id)
        if run is None:
            return
        if run.kind == JobKind.PREPARE_TEMPLATE:
            self._on_template_prepared(done)
            return
        # Publish first, then record: a job the store calls succeeded always has its file.
        try:
            final = self.storage.publish(done.job_id, done.attempt_id)
        except TalkingFaceError as exc:  # a read-only results directory, the bucket down
            error = exc.to_record()
            self._end_attempt(
                done.job_id, done.attempt_id, run.attempt_number, error, AttemptOutcome.FAILED
            )
            self._running.pop(done.attempt_id, None)
            return
        result = replace(done.result, path=final)
        try:
            exposed = expose_result(
                self.store,
                self.settings.heygem_temp_dir,
                done.job_id,
                self.storage.result_source(done.job_id),
            )
        except StoreUnavailableError:  # it reads the store first: keep the published file,
            raise  # and apply this success again next tick (_apply_safely)
        except TalkingFaceError as exc:  # the HeyGem temp folder refused the file: say why
            self.storage.discard_result(done.job_id)
            error = exc.to_record()
            self._end_attempt(
                done.job_id, done.attempt_id, run.attempt_number, error, AttemptOutcome.FAILED
            )
            self._running.pop(done.attempt_id, None)
            return
        succeeded = self.store.succeed(done.job_id, done.attempt_id, result)
        self._running.pop(done.attempt_id, None)
        if not succeeded:
            self.storage.discard_result(done.job_id)  # canceled meanwhile: not wanted
            if exposed is not None:
                exposed.unlink(missing_ok=True)
            with bind_job(done.job_id, run.attempt_number):
                logger.info(
                    "job %s finished after it was canceled or replaced; result withdrawn",
                    done.job_id,
                    extra={"event": "result_withdrawn"},
                )
            return
        if self.metrics is not None:
            job = self.store.get(done.job_id)
            started, finished = job.started_at, job.finished_at
            duration_s = (finished - started).total_seconds() if started and finished else 0.0
            self.metrics.job_succeeded(
                duration_s, result.frame_count, receipt=_receipt_outcome(result.receipt)
            )
        with bind_job(done.job_id, run.attempt_number):
            logger.info(
                "job %s succeeded",
                done.job_id,
                extra={"event": "job_succeeded", "processing_s": result.processing_s},
            )

    def _on_template_prepared(self, done: Succeeded) -> None:
        """Keep what preparation found on the template's row, then record the success."""
        if done.template is not None:
            self.store.record_template_outcome(done.job_id, done.template)
        succeeded = self.store.succeed(done.job_id, done.attempt_id, done.result)
        self._running.pop(done.attempt_id, None)  # after the store has recorded the end
        if succeeded:
            logger.info(
                "template of job %s prepared",
                done.job_id,
                extra={"event": "template_prepared", "job_id": done.job_id},
            )

    def _on_failed(self, failed: Failed) -> None:
        run = self._running.get(failed.attempt_id)
        if run is None:
            return
        self._end_attempt(
            failed.job_id,
            failed.attempt_id,
            run.attempt_number,
            failed.error,
            AttemptOutcome.FAILED,
        )
        self._running.pop(failed.attempt_id, None)

    def _on_exited(self, exited: WorkerExited) -> None:
        if exited.attempt_id is None:
            return
        run = self._running.get(exited.attempt_id)
        if run is None:
            return
        how = _describe_exit(exited.exit_code)
        error = WorkerLostError(
            f"Worker {exited.worker_id} (pid {exited.pid}) {how} during stage {run.stage} "
            f"after {self.clock() - run.started_s:.0f} s.",
            stage=_as_stage(run.stage),
            details={"exit_code": exited.exit_code, "pid": exited.pid, "worker": exited.worker_id},
        ).to_record()
        self._end_attempt(
            run.job_id, run.attempt_id, run.attempt_number, error, AttemptOutcome.LOST
        )
        self._running.pop(exited.attempt_id, None)

    # --- supervision -----------------------------------------------------------------------

    def _supervise(self, now: float) -> None:
        w = self.settings.workers
        lost_after_s = w.heartbeat_s * w.lost_after_beats
        for run in list(self._running.values()):
            error: TalkingFaceError | None = None
            outcome = AttemptOutcome.LOST
            if now - run.last_beat_s > lost_after_s:
                error = WorkerLostError(
                    f"Worker {run.worker_id} sent no heartbeat for {now - run.last_beat_s:.0f} s "
                    f"({w.lost_after_beats} missed) during stage {run.stage}; it was killed.",
                    stage=_as_stage(run.stage),
                )
            elif now - run.last_progress_s > w.stall_s:
                outcome = AttemptOutcome.STALLED
                error = StalledError(
                    f"No progress for {now - run.last_progress_s:.0f} s in stage {run.stage} "
                    f"at frame {run.frames_done} (limit {w.stall_s:.0f} s); the worker was killed.",
                    stage=_as_stage(run.stage),
                )
            elif now - run.started_s > run.limit_s:
                outcome = AttemptOutcome.TIMED_OUT
                error = StageTimeoutError(
                    f"The attempt ran {now - run.started_s:.0f} s, over its limit of "
                    f"{run.limit_s:.0f} s for this input; the worker was killed.",
                    stage=_as_stage(run.stage),
                )
            if error is not None:
                self._kill(run, error.message)
                self._end_attempt(
                    run.job_id, run.attempt_id, run.attempt_number, error.to_record(), outcome
                )

    def _kill(self, run: _Running, reason: str) -> None:
        self._running.pop(run.attempt_id, None)
        self.executor.cancel_attempt(run.attempt_id, reason)

    def _handle_cancels(self) -> None:
        for job, attempt in self.store.cancel_requested_running():
            run = self._running.get(attempt.id)
            if run is not None:
                self._kill(run, "canceled by request")
            self.store.mark_canceled(job.id, attempt.id)
            self.storage.discard_attempt_files(job.id, attempt.id)
            with bind_job(job.id, attempt.number):
                logger.info("job %s canceled", job.id, extra={"event": "job_canceled"})

    # --- ending attempts -------------------------------------------------------------------

    def _end_attempt(
        self,
        job_id: str,
        attempt_id: str,
        attempt_number: int,
        error: ErrorRecord,
        outcome: AttemptOutcome,
    ) -> None:
        """Record the attempt's end; requeue with backoff or fail, as the policy decides.
        The record comes first: a file that cannot be removed (read-only storage) is left
        for the janitor and never keeps the job `running`."""
        attempts = self._attempts_this_run(job_id)
        previous = [a.error.code for a in attempts if a.error is not None and a.id != attempt_id]
        decision = self.policy.decide(error, len(attempts), previous)
        retry_at = utcnow() + timedelta(seconds=decision.delay_s) if decision.retry else None
        job = self.store.fail_attempt(job_id, attempt_id, error, outcome=outcome, retry_at=retry_at)
        self.storage.discard_attempt_files(job_id, attempt_id)
        if self.metrics is not None:
            self.metrics.attempt_ended(outcome.value, error.code.value)
        this = next((a for a in attempts if a.id == attempt_id), None)
        elapsed_s = (utcnow() - this.started_at).total_seconds() if this is not None else None
        with bind_job(job_id, attempt_number):
            logger.log(
                logging.WARNING if decision.retry else logging.ERROR,
                "attempt %d of job %s ended (%s): %s; %s",
                attempt_number,
                job_id,
                error.code.value,
                error.message,
                decision.reason,
                extra={
                    "event": "retry_scheduled" if decision.retry else "job_failed",
                    "code": error.code.value,
                    "stage": error.stage.value if error.stage else None,
                    "outcome": outcome.value,
                    "retryable": error.retryable,
                    "audio_path": job.inputs.audio_path,
                    "video_path": job.inputs.video_path,
                    "elapsed_s": None if elapsed_s is None else round(elapsed_s, 3),
                    "error_cause": error.cause,
                },
            )

    def _attempts_this_run(self, job_id: str) -> list[AttemptRecord]:
        """Attempts since the job was last retried by hand: each manual retry gets the full
        automatic retry budget again, while the history keeps every attempt."""
        requeued = [e.at for e in self.store.events(job_id) if e.kind == "job_requeued"]
        attempts = self.store.attempts(job_id)
        if not requeued:
            return attempts
        return [a for a in attempts if a.started_at >= requeued[-1]]

    # --- janitor ---------------------------------------------------------------------------

    def run_janitor(self) -> None:
        """Remove expired results and files no job owns, bound the template cache."""
        own = [(r.job_id, r.attempt_id) for r in self._running.values()]
        Janitor(self.settings, self.store, self.storage).run(own)


def _describe_exit(exit_code: int | None) -> str:
    if exit_code is None:
        return "stopped responding"
    if exit_code < 0:
        return f"was killed by signal {-exit_code}"
    return f"exited with code {exit_code}"


def _as_stage(name: str | None) -> Stage | None:
    try:
        return Stage(name) if name else None
    except ValueError:
        return None


def _receipt_outcome(receipt: QualityReceipt | None) -> str | None:
    """The receipt's metric label: measured, low_sync or failed (None without one)."""
    if receipt is None:
        return None
    if receipt.state is not ReceiptState.MEASURED:
        return "failed"
    return "low_sync" if receipt.low_sync else "measured"
