"""The ray executor: warm worker actors on a Ray cluster, behind the local executor's protocol.

* **Placement.** With GPUs in the cluster, one actor per GPU (`num_gpus=1`); without, one per
  configured slot (`workers.count`, `workers.ray_cpus_per_actor` CPUs each). Every actor also
  asks for `workers.ray_actor_resources`, so actors can be kept on the nodes that joined with
  `talkingface worker`. Each actor (ray_actor.WorkerActor) loads the engine once.
* **No backlog in Ray.** The scheduler hands an attempt only to an idle actor, so the queue and
  its priorities stay in the job store; Ray never holds a job that has not started.
* **Templates.** `idle_worker_for(template)` prefers an idle actor that already ran the job's
  template video (its node's template cache is warm).
* **Supervision.** Every actor always has one long-polling `messages()` call outstanding;
  `poll()` waits on all of them (and on the running `run()` calls) with `ray.wait`. A failed
  call means the actor or its node is dead: the actor is reported as `WorkerExited` (the
  scheduler records WORKER_LOST and retries through the normal path) and replaced. Cancel and
  hangs `ray.kill` the actor. Ray's own retries are off (`max_restarts=0`,
  `max_task_retries=0`), so only the job layer counts attempts.

Ray is an optional extra: it is imported here only, when the executor is created.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from talkingface.config import Settings
from talkingface.errors import ConfigError, WorkerLostError
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
from talkingface.jobs.states import WorkerState
from talkingface.vocabulary import JobId

logger = logging.getLogger(__name__)

NAMESPACE = "talkingface"
LONG_POLL_S = 2.0  # an actor's messages() call returns after this long with nothing to say
ACTOR_CONCURRENCY = 4  # threads per actor: run() and messages() side by side, with room
TEMPLATES_REMEMBERED = 32  # template videos remembered per actor, most recent first
GPU_RECHECK_S = 10.0  # how often a GPU cluster is checked for GPUs that joined
RESPAWN_BACKOFF_BASE_S = 0.5  # after consecutive failures before Ready: 0.5, 1, 2… s
RESPAWN_BACKOFF_MAX_S = 30.0
INTERRUPT_CHECK_S = 0.02  # a poll's ray.wait runs in slices this long, checking interrupt()
_worker_numbers = count(1)  # worker ids stay unique across executors in one process


def import_ray() -> Any:  # Any: the ray module (an optional dependency, untyped here)
    """The ray module, or CONFIG_INVALID saying how to install it."""
    # Ray's C++ core installs a failure signal handler for SIGTERM in the driver too; after
    # a ray.shutdown() (this server stopped leading) and a second ray.init (it leads again)
    # it hands SIGTERM to the default action, killing the server outright. The server
    # handles its own signals, so it goes (an operator's setting is kept). Ray reads this
    # when it is imported.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "The ray executor needs Ray, which is not installed: "
            "pip install 'talkingface[ray]' (or set workers.executor = \"local\").",
            details={"executor": "ray"},
            cause=exc,
        ) from exc
    return ray


@dataclass(slots=True)
class _Actor:
    """The executor's bookkeeping for one worker actor (mutable, never shared)."""

    id: str
    handle: Any  # ray.actor.ActorHandle
    started_at_s: float
    deadline_s: float | None  # Ready is due by then
    inbox: Any  # the outstanding messages() ObjectRef
    running: Any = None  # the outstanding run() ObjectRef while an attempt runs
    state: WorkerState = WorkerState.STARTING
    pid: int | None = None
    node: str | None = None
    job_id: JobId | None = None
    attempt_id: str | None = None
    video_path: str | None = None  # the running attempt's template video
    jobs_done: int = 0
    templates: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            id=self.id,
            pid=self.pid,
            state=self.state,
            job_id=self.job_id,
            attempt_id=self.attempt_id,
            jobs_done=self.jobs_done,
            started_at_s=self.started_at_s,
            node=self.node,
        )


class RayExecutor:
    """Worker actors on the Ray cluster at `workers.ray_address`; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self._ray = import_ray()
        self._settings = settings
        self._settings_json = settings.model_dump(mode="json")
        self._actors: dict[str, _Actor] = {}
        self._pending: list[WorkerMessage] = []
        self._respawn_at_s: list[float] = []
        self._startup_failures = 0
        self._gpu_slots = 0  # > 0: one actor per GPU
        self._next_gpu_check_s = 0.0
        self._owns_ray = False  # ray.init was called here (so shutdown ends it)
        self._remote_class: Any = None
        self._started = False
        self._shutting_down = False
        self._interrupted = threading.Event()  # set by interrupt(), from any thread

    # --- the Executor protocol ------------------------------------------------------------

    def start(self) -> None:
        """Connect to Ray (or start a private one-node Ray) and create the actors."""
        if self._started:
            return
        self._started = True
        self._connect()
        from talkingface.executors.ray_actor import WorkerActor

        self._remote_class = self._ray.remote(WorkerActor)
        self._gpu_slots = int(self._ray.cluster_resources().get("GPU", 0))
        self._next_gpu_check_s = time.monotonic() + GPU_RECHECK_S
        for _ in range(self._gpu_slots or self._settings.workers.count):
            self._spawn()

    def idle_worker(self) -> str | None:
        return self.idle_worker_for(None)

    def idle_worker_for(self, template: str | None) -> str | None:
        """An idle actor, one that already ran `template` when there is one."""
        idle = [a for a in self._actors.values() if a.state is WorkerState.READY]
        warm = [a for a in idle if template is not None and template in a.templates]
        chosen = (warm or idle)[:1]
        return chosen[0].id if chosen else None

    def start_attempt(self, worker_id: str, assignment: Assignment) -> None:
        actor = self._actors.get(worker_id)
        if actor is None or actor.state is not WorkerState.READY:
            state = actor.state.value if actor else "gone"
            raise WorkerLostError(
                f"Worker {worker_id} cannot take attempt {assignment.attempt_id}: it is "
                f"{state}, not ready; dispatch to the worker idle_worker() returns.",
                details={"worker": worker_id, "attempt_id": assignment.attempt_id},
            )
        actor.state = WorkerState.BUSY
        actor.job_id, actor.attempt_id = assignment.job_id, assignment.attempt_id
        actor.video_path = assignment.video_path
        actor.running = actor.handle.run.remote(assignment)

    def cancel_attempt(self, attempt_id: str, reason: str) -> None:
        """ray.kill the actor running `attempt_id` (no-op if none does) and replace it."""
        for actor in list(self._actors.values()):
            if actor.attempt_id == attempt_id:
                logger.info(
                    "canceling attempt %s on worker %s: %s",
                    attempt_id,
                    actor.id,
                    reason,
                    extra={
                        "event": "attempt_kill_requested",
                        "worker": actor.id,
                        "job_id": actor.job_id,
                        "attempt_id": attempt_id,
                        "reason": reason,
                    },
                )
                self._lose(actor, f"killed: {reason}", requested=True)
                return

    def poll(self, timeout_s: float) -> list[WorkerMessage]:
        """Messages and WorkerExited events, waiting at most `timeout_s` for the first one."""
        self._spawn_due()
        if not self._pending:
            self._wait(max(0.0, min(timeout_s, self._next_due_s())))
        self._enforce_deadlines()
        self._check_gpus()
        self._spawn_due()
        messages, self._pending = self._pending, []
        return messages

    def interrupt(self) -> None:
        """End a poll() in progress now, or the next one at once (any thread: the API's
        wake() on a submit). ray.wait cannot be woken from outside, so poll() waits in
        INTERRUPT_CHECK_S slices and looks at this flag between them."""
        self._interrupted.set()

    def workers(self) -> list[WorkerInfo]:
        return [actor.info() for actor in list(self._actors.values())]  # API threads read it

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Kill every actor; end Ray too if this executor started it."""
        self._shutting_down = True
        self._respawn_at_s.clear()
        for actor in list(self._actors.values()):
            self._kill(actor)
            logger.info(
                "worker %s stopped", actor.id, extra={"event": "worker_stopped", "worker": actor.id}
            )
        self._actors.clear()
        self._pending.clear()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()

    # --- connecting and spawning ----------------------------------------------------------

    def _connect(self) -> None:
        """Join the cluster at workers.ray_address (or RAY_ADDRESS); with neither, start a
        private one-node Ray sized for the configured slots. A Ray already initialised in
        this process (a test's, an embedding application's) is used as it is."""
        if self._ray.is_initialized():
            return
        address = self._settings.workers.ray_address or os.environ.get("RAY_ADDRESS")
        try:
            with _sigterm_handler_kept():
                self._init_ray(address)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"Cannot connect to the Ray cluster at {address or 'a new local Ray'}: {exc}. "
                "Check workers.ray_address (--ray-address), and that `ray status` works there.",
                details={"ray_address": address},
                cause=exc,
            ) from exc
        self._owns_ray = True
        logger.info(
            "connected to Ray at %s",
            address or "a private one-node Ray",
            extra={"event": "ray_connected", "ray_address": address},
        )

    def _init_ray(self, address: str | None) -> None:
        if address:
            self._ray.init(address=address, namespace=NAMESPACE, logging_level="warning")
            return
        w = self._settings.workers
        self._ray.init(
            namespace=NAMESPACE,
            num_cpus=max(1, round(w.count * w.ray_cpus_per_actor)),
            resources=dict(w.ray_actor_resources) or None,
            include_dashboard=False,
            logging_level="warning",
        )

    def _actor_options(self) -> dict[str, Any]:  # Any: Ray's option values
        w = self._settings.workers
        options: dict[str, Any] = {
            "num_cpus": w.ray_cpus_per_actor,
            "max_restarts": 0,  # a dead actor stays dead: the job layer retries, not Ray
            "max_task_retries": 0,
            "max_concurrency": ACTOR_CONCURRENCY,
        }
        if self._gpu_slots:
            options["num_gpus"] = 1
        if w.ray_actor_resources:
            options["resources"] = dict(w.ray_actor_resources)
        return options

    def _spawn(self) -> None:
        worker_id = f"ray-{os.getpid()}-{next(_worker_numbers)}"
        handle = self._remote_class.options(**self._actor_options()).remote(
            self._settings_json, worker_id
        )
        now_s = time.monotonic()
        self._actors[worker_id] = _Actor(
            id=worker_id,
            handle=handle,
            started_at_s=now_s,
            deadline_s=now_s + self._settings.workers.ready_timeout_s,
            inbox=handle.messages.remote(LONG_POLL_S),
        )
        logger.info(
            "created worker actor %s",
            worker_id,
            extra={"event": "worker_spawned", "worker": worker_id},
        )

    def _replace(self, actor: _Actor) -> None:
        """Refill the slot of a lost actor: at once, or with backoff if it never got Ready."""
        if self._shutting_down:
            return
        if actor.pid is None:  # it never became ready
            self._startup_failures += 1
            delay_s = min(
                RESPAWN_BACKOFF_MAX_S, RESPAWN_BACKOFF_BASE_S * 2 ** (self._startup_failures - 1)
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

    def _check_gpus(self) -> None:
        """On a GPU cluster, add an actor for every GPU that joined since the last check."""
        now_s = time.monotonic()
        if not self._gpu_slots or self._shutting_down or now_s < self._next_gpu_check_s:
            return
        self._next_gpu_check_s = now_s + GPU_RECHECK_S
        gpus = int(self._ray.cluster_resources().get("GPU", 0))
        for _ in range(gpus - len(self._actors) - len(self._respawn_at_s)):
            self._spawn()
        self._gpu_slots = max(self._gpu_slots, gpus)

    # --- waiting and reading --------------------------------------------------------------

    def _wait(self, timeout_s: float) -> None:
        owners: dict[Any, tuple[_Actor, str]] = {}
        for actor in self._actors.values():
            owners[actor.inbox] = (actor, "inbox")
            if actor.running is not None:
                owners[actor.running] = (actor, "run")
        if not owners:  # nothing to wait on until a respawn is due
            self._interrupted.wait(min(timeout_s, 1.0))
            self._interrupted.clear()
            return
        refs = list(owners)
        ready = self._wait_first(refs, timeout_s)
        if ready:  # take everything else that is ready too, in one round
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=True)
        for ref in ready:
            actor, kind = owners[ref]
            if actor.id not in self._actors:
                continue  # lost while handling an earlier ref of this round
            if kind == "inbox":
                self._read_inbox(actor)
            else:
                self._read_run(actor)

    def _wait_first(self, refs: list[Any], timeout_s: float) -> list[Any]:
        """ray.wait for the first ready ref, for at most `timeout_s`, or until interrupt()."""
        deadline_s = time.monotonic() + timeout_s
        while True:
            if self._interrupted.is_set():
                self._interrupted.clear()
                return []
            slice_s = max(0.0, min(INTERRUPT_CHECK_S, deadline_s - time.monotonic()))
            ready, _ = self._ray.wait(refs, num_returns=1, timeout=slice_s, fetch_local=True)
            if ready or time.monotonic() >= deadline_s:
                return list(ready)

    def _read_inbox(self, actor: _Actor) -> None:
        try:
            messages = self._ray.get(actor.inbox)
        except self._ray.exceptions.RayError as exc:
            self._lose(actor, _why_lost(exc))
            return
        for message in messages:
            self._handle(actor, message)
            if actor.id not in self._actors:
                return
        actor.inbox = actor.handle.messages.remote(LONG_POLL_S)

    def _read_run(self, actor: _Actor) -> None:
        try:
            self._ray.get(actor.running)
        except self._ray.exceptions.RayError as exc:
            self._lose(actor, _why_lost(exc))
            return
        actor.running = None

    def _handle(self, actor: _Actor, message: object) -> None:
        if isinstance(message, Ready) and actor.state is WorkerState.STARTING:
            self._mark_ready(actor, message)
            self._pending.append(message)
        elif isinstance(message, Heartbeat) and message.attempt_id == actor.attempt_id:
            self._pending.append(message)
        elif isinstance(message, Succeeded | Failed) and message.attempt_id == actor.attempt_id:
            self._finish_attempt(actor)
            self._pending.append(message)
        else:
            self._lose(actor, f"it sent an unexpected {type(message).__name__}")

    def _mark_ready(self, actor: _Actor, ready: Ready) -> None:
        actor.state, actor.deadline_s = WorkerState.READY, None
        actor.pid, actor.node = ready.pid, ready.node
        self._startup_failures = 0
        logger.info(
            "worker %s ready on node %s (pid %s) after %.2f s",
            actor.id,
            ready.node,
            ready.pid,
            time.monotonic() - actor.started_at_s,
            extra={"event": "worker_ready", "worker": actor.id, "node": ready.node},
        )

    def _finish_attempt(self, actor: _Actor) -> None:
        if actor.video_path is not None:
            actor.templates[actor.video_path] = None
            actor.templates.move_to_end(actor.video_path, last=False)
            while len(actor.templates) > TEMPLATES_REMEMBERED:
                actor.templates.popitem()
        actor.job_id = actor.attempt_id = actor.video_path = None
        actor.jobs_done += 1
        actor.state = WorkerState.READY
        if actor.jobs_done >= self._settings.workers.recycle_after_jobs:
            self._lose(actor, "recycled after its jobs", requested=True)

    def _next_due_s(self) -> float:
        due = list(self._respawn_at_s)
        due += [a.deadline_s for a in self._actors.values() if a.deadline_s is not None]
        if self._gpu_slots:
            due.append(self._next_gpu_check_s)
        return max(0.0, min(due) - time.monotonic()) if due else float("inf")

    def _enforce_deadlines(self) -> None:
        now_s = time.monotonic()
        for actor in list(self._actors.values()):
            if actor.deadline_s is not None and now_s > actor.deadline_s:
                self._lose(
                    actor,
                    "it did not become ready in time (no node with room, or a slow engine load)",
                )

    # --- losing and killing ---------------------------------------------------------------

    def _lose(self, actor: _Actor, why: str, *, requested: bool = False) -> None:
        """Kill the actor (if it still lives), report it, and refill its slot."""
        del self._actors[actor.id]
        self._kill(actor)
        self._pending.append(
            WorkerExited(
                worker_id=actor.id,
                pid=actor.pid or 0,
                exit_code=None,
                job_id=actor.job_id,
                attempt_id=actor.attempt_id,
            )
        )
        logger.log(
            logging.INFO if requested else logging.ERROR,
            "worker %s (pid %s on node %s) gone: %s",
            actor.id,
            actor.pid,
            actor.node,
            why,
            extra={
                "event": "worker_exited" if requested else "worker_lost",
                "worker": actor.id,
                "node": actor.node,
                "job_id": actor.job_id,
                "attempt_id": actor.attempt_id,
            },
        )
        actor.state = WorkerState.LOST
        self._replace(actor)

    def _kill(self, actor: _Actor) -> None:
        try:
            self._ray.kill(actor.handle, no_restart=True)
        except Exception as exc:  # an actor already gone with its node: nothing to kill
            logger.debug(
                "ray.kill of %s: %s", actor.id, exc, extra={"event": "worker_kill_skipped"}
            )


@contextlib.contextmanager
def _sigterm_handler_kept() -> Iterator[None]:
    """ray.init, called in the main thread, replaces the SIGTERM handler with one that calls
    sys.exit wherever the main thread is: the server's graceful stop (hand-over of the
    leadership, streams ended, exit 143) became a SystemExit inside the event loop, and then
    often an abort (exit -6). The handler in place before is put back."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Ray sets no Python handler outside the main thread
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if previous is not None:  # None: set outside Python, nothing to put back
            signal.signal(signal.SIGTERM, previous)


def _why_lost(exc: Exception) -> str:
    """One line on why a call to an actor failed (its death, its node's, or unreachable)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"its call failed with {type(exc).__name__}" + (f" ({first})" if first else "")
