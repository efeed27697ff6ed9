"""The local executor (④): a supervised pool of spawned worker processes on this machine.

Each worker has one duplex pipe and a process sentinel; `poll()` waits on all of them with
`multiprocessing.connection.wait`, so a message and a death are both seen at once, without
sleeps. A worker that exits, breaks its pipe, sends garbage or misses its Ready deadline is
killed (SIGTERM → kill_grace_s → SIGKILL of its process group), reaped, reported as
`WorkerExited` and replaced. Workers that keep failing before Ready are replaced with
exponential backoff, so a broken engine cannot fork-bomb the machine. This module never imports
the pipeline or torch: workers start at worker_entry.run_worker, which imports them in the child.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from dataclasses import dataclass
from itertools import count
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from talkingface.config import Settings
from talkingface.errors import WorkerLostError
from talkingface.executors.base import WorkerInfo
from talkingface.executors.messages import (
    Assignment,
    Failed,
    Heartbeat,
    Ready,
    Succeeded,
    WorkerExited,
    WorkerMessage,
)
from talkingface.executors.worker_entry import run_worker
from talkingface.jobs.states import WorkerState
from talkingface.vocabulary import JobId

logger = logging.getLogger(__name__)

RETIRE_GRACE_S = 10.0  # a recycled worker must exit this soon after its last result
RESPAWN_BACKOFF_BASE_S = 0.5  # after consecutive failures before Ready: 0.5, 1, 2… s
RESPAWN_BACKOFF_MAX_S = 30.0
REAP_TIMEOUT_S = 5.0  # after SIGKILL; only a process stuck in the kernel takes longer
_worker_numbers = count(1)  # worker ids stay unique across executors in one process
# what unpickling a corrupt message may raise (pickle's documentation lists these)
_UNPICKLING_ERRORS = (
    pickle.UnpicklingError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
)


@dataclass(slots=True)
class _Worker:
    """The executor's own bookkeeping for one worker process (mutable, never shared)."""

    id: str
    process: BaseProcess
    conn: Connection | None
    started_at_s: float
    deadline_s: float | None  # Ready (or, when retiring, exit) is due by then
    state: WorkerState = WorkerState.STARTING
    job_id: JobId | None = None
    attempt_id: str | None = None
    jobs_done: int = 0
    was_ready: bool = False  # dying before Ready counts as a start-up failure (backoff)
    retiring: bool = False  # sent its last result before recycling; already replaced

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            id=self.id,
            pid=self.process.pid,
            state=self.state,
            job_id=self.job_id,
            attempt_id=self.attempt_id,
            jobs_done=self.jobs_done,
            started_at_s=self.started_at_s,
        )


class LocalExecutor:
    """`settings.workers.count` spawned workers; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._settings_json = settings.model_dump(mode="json")
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[str, _Worker] = {}
        self._pending: list[WorkerMessage] = []
        self._respawn_at_s: list[float] = []  # empty slots, refilled at these times
        self._startup_failures = 0  # consecutive workers that died before Ready
        self._started = False
        self._shutting_down = False
        # interrupt(): a byte on this pipe ends the wait in poll() (a self-pipe; non-blocking)
        self._interrupt_r, self._interrupt_w = os.pipe()
        os.set_blocking(self._interrupt_r, False)
        os.set_blocking(self._interrupt_w, False)
        self._interrupt_lock = threading.Lock()  # no write to the pipe once it is closed

    # --- the Executor protocol ------------------------------------------------------------

    def start(self) -> None:
        """Spawn the workers; each sends Ready when its engine is loaded."""
        if self._started:
            return
        self._started = True
        for _ in range(self._settings.workers.count):
            self._spawn()

    def idle_worker(self) -> str | None:
        for worker in self._workers.values():
            if worker.state is WorkerState.READY and worker.attempt_id is None:
                return worker.id
        return None

    def start_attempt(self, worker_id: str, assignment: Assignment) -> None:
        """Send the assignment; if the pipe is broken the worker is lost (WorkerExited follows)."""
        worker = self._workers.get(worker_id)
        if worker is None or worker.state is not WorkerState.READY or worker.conn is None:
            state = worker.state.value if worker else "gone"
            raise WorkerLostError(
                f"Worker {worker_id} cannot take attempt {assignment.attempt_id}: it is "
                f"{state}, not ready; dispatch to the worker idle_worker() returns.",
                details={"worker": worker_id, "attempt_id": assignment.attempt_id},
            )
        worker.state = WorkerState.BUSY
        worker.job_id, worker.attempt_id = assignment.job_id, assignment.attempt_id
        try:
            worker.conn.send(assignment)
        except OSError as exc:
            self._lose(worker, f"its pipe broke while sending the assignment ({exc})")

    def cancel_attempt(self, attempt_id: str, reason: str) -> None:
        """Kill the worker running `attempt_id` (no-op if none does) and spawn a replacement."""
        for worker in list(self._workers.values()):
            if worker.attempt_id == attempt_id:
                logger.info(
                    "canceling attempt %s on worker %s: %s",
                    attempt_id,
                    worker.id,
                    reason,
                    extra={
                        "event": "attempt_kill_requested",
                        "worker": worker.id,
                        "job_id": worker.job_id,
                        "attempt_id": attempt_id,
                        "reason": reason,
                    },
                )
                self._lose(worker, f"killed: {reason}", drain=False, requested=True)
                return
        logger.debug(
            "no worker runs attempt %s",
            attempt_id,
            extra={"event": "attempt_kill_ignored", "attempt_id": attempt_id},
        )

    def poll(self, timeout_s: float) -> list[WorkerMessage]:
        """Messages and WorkerExited events, waiting at most `timeout_s` for the first one."""
        self._spawn_due()
        if not self._pending:
            self._wait(max(0.0, timeout_s))
        self._enforce_deadlines()
        self._spawn_due()
        messages, self._pending = self._pending, []
        return messages

    def workers(self) -> list[WorkerInfo]:
        return [worker.info() for worker in self._workers.values()]

    def interrupt(self) -> None:
        """End a poll() in progress now (any thread: the API's wake() on a submit)."""
        with self._interrupt_lock:
            if self._interrupt_w < 0:  # shut down
                return
            with contextlib.suppress(BlockingIOError):  # already full of wake-ups
                os.write(self._interrupt_w, b"!")

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Close every pipe, then SIGTERM → join → SIGKILL each process group, and reap all."""
        self._shutting_down = True
        self._respawn_at_s.clear()
        workers = list(self._workers.values())
        deadline_s = time.monotonic() + timeout_s
        for worker in workers:
            self._close_pipe(worker)  # an idle worker exits on EOF
        grace_s = min(self._settings.workers.kill_grace_s, timeout_s / 2)
        alive = self._still_running(workers, time.monotonic() + grace_s)
        for worker in alive:
            _signal_group(worker, signal.SIGTERM)
        for worker in self._still_running(alive, deadline_s):
            _signal_group(worker, signal.SIGKILL)
        for worker in workers:
            self._reap(worker)
            logger.info(
                "worker %s stopped (exit code %s)",
                worker.id,
                worker.process.exitcode,
                extra={"event": "worker_stopped", "worker": worker.id},
            )
        self._workers.clear()
        self._pending.clear()
        with self._interrupt_lock:
            if self._interrupt_w >= 0:
                os.close(self._interrupt_w)
                os.close(self._interrupt_r)
                self._interrupt_w = self._interrupt_r = -1

    # --- spawning and replacing -----------------------------------------------------------

    def _spawn(self) -> None:
        worker_id = f"local-{os.getpid()}-{next(_worker_numbers)}"
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=run_worker,
            args=(child_conn, self._settings_json, worker_id),
            name=f"talkingface-worker-{worker_id}",
            daemon=False,
        )
        process.start()
        child_conn.close()  # the child has its copy; ours would hide the child's EOF
        now_s = time.monotonic()
        self._workers[worker_id] = _Worker(
            id=worker_id,
            process=process,
            conn=parent_conn,
            started_at_s=now_s,
            deadline_s=now_s + self._settings.workers.ready_timeout_s,
        )
        logger.info(
            "spawned worker %s (pid %s)",
            worker_id,
            process.pid,
            extra={"event": "worker_spawned", "worker": worker_id, "worker_pid": process.pid},
        )

    def _replace(self, worker: _Worker) -> None:
        """Refill the slot of a lost worker: at once, or with backoff if it never got Ready."""
        if self._shutting_down or worker.retiring:
            return
        if not worker.was_ready:
            self._startup_failures += 1
            delay_s = min(
                RESPAWN_BACKOFF_MAX_S,
                RESPAWN_BACKOFF_BASE_S * 2 ** (self._startup_failures - 1),
            )
            self._respawn_at_s.append(time.monotonic() + delay_s)
            return
        self._spawn()

    def _spawn_due(self) -> None:
        now_s = time.monotonic()
        due = [at_s for at_s in self._respawn_at_s if at_s <= now_s]
        self._respawn_at_s = [at_s for at_s in self._respawn_at_s if at_s > now_s]
        for _ in due:
            self._spawn()

    # --- waiting and reading --------------------------------------------------------------

    def _wait(self, timeout_s: float) -> None:
        owners: dict[object, _Worker] = {}
        handles: list[Connection | int] = []
        for worker in self._workers.values():
            handles.append(worker.process.sentinel)
            owners[worker.process.sentinel] = worker
            if worker.conn is not None:
                handles.append(worker.conn)
                owners[worker.conn] = worker
        if self._interrupt_r >= 0:
            handles.append(self._interrupt_r)
        ready = wait(handles, timeout=min(timeout_s, self._next_due_s()))
        exited: dict[str, _Worker] = {}
        for handle in ready:
            if handle == self._interrupt_r:
                self._drain_interrupts()
                continue
            worker = owners[handle]
            if handle is worker.conn:
                self._drain(worker)
            else:
                exited[worker.id] = worker
        for worker in exited.values():
            if worker.id in self._workers:
                self._lose(worker, "its process exited")

    def _drain_interrupts(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._interrupt_r, 4096):
                pass

    def _next_due_s(self) -> float:
        """Seconds until the next respawn or deadline (a bound on how long to wait)."""
        due = list(self._respawn_at_s)
        due += [w.deadline_s for w in self._workers.values() if w.deadline_s is not None]
        return max(0.0, min(due) - time.monotonic()) if due else float("inf")

    def _drain(self, worker: _Worker) -> None:
        """Read every message waiting on the worker's pipe; a broken pipe loses the worker."""
        while worker.conn is not None and worker.id in self._workers:
            try:
                if not worker.conn.poll():
                    return
                message = worker.conn.recv()
            except (EOFError, OSError):
                self._pipe_closed(worker)
                return
            except _UNPICKLING_ERRORS as exc:
                self._lose(worker, f"it sent an unreadable message ({exc!r})", drain=False)
                return
            self._handle(worker, message)

    def _pipe_closed(self, worker: _Worker) -> None:
        """EOF: the worker is exiting (or broken). Its sentinel reports the exit; if it does
        not come within kill_grace_s, the deadline kills it."""
        self._close_pipe(worker)
        if not worker.retiring:
            worker.state = WorkerState.LOST
            worker.deadline_s = time.monotonic() + self._settings.workers.kill_grace_s

    def _handle(self, worker: _Worker, message: object) -> None:
        if isinstance(message, Ready) and worker.state is WorkerState.STARTING:
            self._mark_ready(worker)
            self._pending.append(message)
        elif isinstance(message, Heartbeat) and message.attempt_id == worker.attempt_id:
            self._pending.append(message)
        elif isinstance(message, Succeeded | Failed) and message.attempt_id == worker.attempt_id:
            self._finish_attempt(worker)
            self._pending.append(message)
        else:
            self._lose(worker, f"it sent an unexpected {type(message).__name__}", drain=False)

    def _mark_ready(self, worker: _Worker) -> None:
        worker.state, worker.deadline_s = WorkerState.READY, None
        worker.was_ready = True
        self._startup_failures = 0
        logger.info(
            "worker %s ready after %.2f s",
            worker.id,
            time.monotonic() - worker.started_at_s,
            extra={"event": "worker_ready", "worker": worker.id},
        )

    def _finish_attempt(self, worker: _Worker) -> None:
        worker.job_id = worker.attempt_id = None
        worker.jobs_done += 1
        worker.state = WorkerState.READY
        if worker.jobs_done >= self._settings.workers.recycle_after_jobs:
            # the worker exits by itself now: never offer it again, replace it at once
            worker.state, worker.retiring = WorkerState.LOST, True
            worker.deadline_s = time.monotonic() + RETIRE_GRACE_S
            self._spawn_if_running()

    def _spawn_if_running(self) -> None:
        if not self._shutting_down:
            self._spawn()

    def _enforce_deadlines(self) -> None:
        now_s = time.monotonic()
        for worker in list(self._workers.values()):
            if worker.deadline_s is not None and now_s > worker.deadline_s:
                self._lose(worker, f"it did not {_awaited(worker)} in time", drain=False)

    # --- losing, killing, reaping ---------------------------------------------------------

    def _lose(
        self, worker: _Worker, why: str, *, drain: bool = True, requested: bool = False
    ) -> None:
        """Kill (if needed), reap and report the worker, then refill its slot."""
        if drain:
            self._drain(worker)  # results it sent before dying come first
            if worker.id not in self._workers:
                return  # draining found it broken and already lost it
        del self._workers[worker.id]
        self._close_pipe(worker)
        self._kill(worker)
        exit_code = worker.process.exitcode
        self._pending.append(
            WorkerExited(
                worker_id=worker.id,
                pid=worker.process.pid or 0,
                exit_code=exit_code,
                job_id=worker.job_id,
                attempt_id=worker.attempt_id,
            )
        )
        clean = worker.retiring and exit_code == 0
        level = logging.INFO if clean else logging.WARNING if requested else logging.ERROR
        logger.log(
            level,
            "worker %s (pid %s) gone: %s; exit code %s",
            worker.id,
            worker.process.pid,
            why,
            exit_code,
            extra={
                "event": "worker_exited" if clean or requested else "worker_lost",
                "worker": worker.id,
                "job_id": worker.job_id,
                "attempt_id": worker.attempt_id,
                "exit_code": exit_code,
            },
        )
        self._replace(worker)
        worker.state = WorkerState.LOST

    def _kill(self, worker: _Worker) -> None:
        """SIGTERM → wait kill_grace_s → SIGKILL the group, then reap (nothing left behind)."""
        if not _has_exited(worker, 0.0):
            _signal_group(worker, signal.SIGTERM)
            if not _has_exited(worker, self._settings.workers.kill_grace_s):
                _signal_group(worker, signal.SIGKILL)
        self._reap(worker)

    def _reap(self, worker: _Worker) -> None:
        if _has_exited(worker, REAP_TIMEOUT_S):
            # the leader is a zombie until joined, so its group id cannot be reused yet:
            # kill whatever else is left in the group, then reap
            _signal_group(worker, signal.SIGKILL)
        worker.process.join(timeout=REAP_TIMEOUT_S)
        if worker.process.exitcode is None:
            logger.error(
                "worker %s (pid %s) survived SIGKILL",
                worker.id,
                worker.process.pid,
                extra={"event": "worker_unkillable", "worker": worker.id},
            )

    def _close_pipe(self, worker: _Worker) -> None:
        if worker.conn is not None:
            worker.conn.close()
            worker.conn = None

    def _still_running(self, workers: list[_Worker], until_s: float) -> list[_Worker]:
        """Wait until every worker has exited or `until_s`; return those still running."""
        running = list(workers)
        while running and (left_s := until_s - time.monotonic()) > 0:
            wait([worker.process.sentinel for worker in running], timeout=left_s)
            running = [worker for worker in running if not _has_exited(worker, 0.0)]
        return running


def _awaited(worker: _Worker) -> str:
    """What a worker with a deadline was expected to do."""
    if worker.retiring:
        return "exit after recycling"
    if worker.conn is None:
        return "exit after closing its pipe"
    return "become ready"


def _has_exited(worker: _Worker, timeout_s: float) -> bool:
    """Whether the process has exited, waiting up to `timeout_s`; does not reap it."""
    return bool(wait([worker.process.sentinel], timeout=timeout_s))


def _signal_group(worker: _Worker, sig: signal.Signals) -> None:
    """Signal the worker's process group; before its setsid() there is only the process."""
    pid = worker.process.pid
    if pid is None:
        return
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        _signal_process(pid, sig)


def _signal_process(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        logger.debug("pid %s already gone", pid, extra={"event": "signal_skipped"})
