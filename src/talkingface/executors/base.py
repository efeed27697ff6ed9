"""Where attempts run: the Executor protocol, and get_executor() to pick one by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from talkingface.errors import ConfigError
from talkingface.executors.messages import Assignment, WorkerMessage
from talkingface.jobs.states import WorkerState

if TYPE_CHECKING:
    from talkingface.config import Settings


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    pid: int | None
    state: WorkerState
    job_id: str | None
    attempt_id: str | None
    jobs_done: int
    started_at_s: float  # time.monotonic() when spawned
    node: str | None = None  # the Ray node it runs on (ray executor); None: this machine


class Executor(Protocol):
    """Runs attempts in warm workers. All methods are called from the scheduler thread."""

    def start(self) -> None:
        """Spawn the workers (returns at once; each sends Ready when its engine is loaded)."""

    def idle_worker(self) -> str | None:
        """The id of a ready, idle worker, or None."""

    def start_attempt(self, worker_id: str, assignment: Assignment) -> None:
        """Hand the assignment to that idle worker."""

    def cancel_attempt(self, attempt_id: str, reason: str) -> None:
        """Kill the worker running this attempt (whole process group) and spawn a replacement."""

    def poll(self, timeout_s: float) -> list[WorkerMessage]:
        """Messages from workers, and WorkerExited for workers that died, waiting ≤ timeout_s."""

    def workers(self) -> list[WorkerInfo]:
        """Every worker and what it does (for /v1/workers and liveness)."""

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop all workers (SIGTERM → join → SIGKILL of each process group)."""


@runtime_checkable
class Interruptible(Protocol):
    """An executor whose poll() another thread can cut short (optional): the scheduler's
    wake() calls interrupt(), so a submitted job is dispatched at once instead of at the end
    of the poll's timeout (25 ms on average: bench/service.py)."""

    def interrupt(self) -> None:
        """End a poll() in progress now, or the next one at once (thread-safe)."""


@runtime_checkable
class RoutesTemplates(Protocol):
    """An executor whose workers keep templates in memory of their own (the ray executor's
    actors, on different machines): the scheduler names the template of the job it is about
    to claim, and gets an idle worker that already holds it when there is one."""

    def idle_worker_for(self, template: str | None) -> str | None:
        """An idle worker, preferring one that ran `template` (a template video path)."""


EXECUTORS = ("local", "ray")


def get_executor(name: str, settings: Settings) -> Executor:
    """The executor called `name`; an unknown name, or ray without Ray installed, raises
    CONFIG_INVALID."""
    if name == "local":
        from talkingface.executors.local import LocalExecutor

        return LocalExecutor(settings)
    if name == "ray":
        from talkingface.executors.ray_executor import RayExecutor

        return RayExecutor(settings)
    raise ConfigError(
        f"Unknown executor {name!r}; available: {', '.join(EXECUTORS)}.",
        details={"executor": name},
    )
