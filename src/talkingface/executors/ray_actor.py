"""The Ray actor of the ray executor: one warm worker (engine loaded once) on some Ray node.

It is a plain class; the executor turns it into an actor with `ray.remote(WorkerActor)`. It
runs attempts through worker.AttemptService, the code path of the local executor's worker
processes, and keeps every message it would have written to a pipe (Ready, Heartbeat,
Succeeded/Failed) in an outbox that the executor drains with `messages()`: one long-polling
call per actor is always outstanding, so a message arrives within one round trip, and the
death of the actor or of its node fails that call, which is how the executor learns of it.
The actor is threaded (max_concurrency > 1): `run` and `messages` execute side by side.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

from talkingface.executors.messages import Assignment, Ready, WorkerMessage

OUTBOX_DRAIN_MAX = 256  # messages returned by one messages() call at most


class _Outbox:
    """The actor's MessageSink: messages queue here until the executor drains them."""

    def __init__(self) -> None:
        self._queue: queue.Queue[WorkerMessage] = queue.Queue()

    def send(self, message: object) -> bool:
        self._queue.put(message)  # type: ignore[arg-type]  # only WorkerMessages are sent
        return True

    def drain(self, wait_s: float) -> list[WorkerMessage]:
        """Every waiting message; if none, wait up to `wait_s` for the first one."""
        try:
            first = self._queue.get(timeout=wait_s) if wait_s > 0 else self._queue.get_nowait()
        except queue.Empty:
            return []
        messages = [first]
        while len(messages) < OUTBOX_DRAIN_MAX:
            try:
                messages.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return messages


class WorkerActor:
    """One worker: loads the default engine in __init__ (a failure kills the actor at
    creation, which the executor sees as a worker that never became ready), then runs one
    attempt at a time when the executor calls `run`."""

    def __init__(self, settings_json: dict[str, Any], worker_id: str) -> None:
        import ray

        from talkingface.config import Settings
        from talkingface.executors.worker import AttemptService
        from talkingface.logs import configure_logging

        settings = Settings(**settings_json)
        configure_logging(settings.logging.level, json_lines=True)
        self._outbox = _Outbox()
        self._busy = threading.Lock()
        self._service = AttemptService(settings, worker_id)  # the engine loads here
        self._node_id = ray.get_runtime_context().get_node_id()
        self._outbox.send(Ready(worker_id=worker_id, pid=os.getpid(), node=self._node_id))

    def run(self, assignment: Assignment) -> None:
        """Run the attempt; its heartbeats and its outcome go to the outbox, in order."""
        with self._busy:  # the executor never overlaps attempts; this makes sure
            outcome = self._service.run(self._outbox, assignment)
            self._outbox.send(outcome)

    def messages(self, wait_s: float) -> list[WorkerMessage]:
        """What the worker sent since the last call, waiting up to `wait_s` for something."""
        return self._outbox.drain(wait_s)
