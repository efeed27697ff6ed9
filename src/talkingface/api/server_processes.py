"""① `serve --api-workers N`: N API processes on one listening socket, started, restarted and
stopped by this supervising process, which serves nothing itself.

The supervisor binds the socket once and hands it to each child (spawned, never forked);
the kernel gives each new connection to one of the processes accepting on it. Each child is
a whole `serve` process (api/server.serve_process) over the same PostgreSQL store: one of
them wins the scheduler leadership and runs the scheduler and the local workers, the others
serve the API (cluster/leadership.py). A child that dies is started again after
RESTART_DELAY_S (its store leadership, if it held it, passes to another child at once);
a child that fails as it starts stops the group with its exit status.

SIGINT and SIGTERM stop the group: each child gets SIGTERM and shuts down as one server
would (streams ended, the leader's workers stopped), then the supervisor exits 128 + the
signal's number. A child whose supervisor disappears (SIGKILL) stops itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from talkingface.config import Settings
from talkingface.errors import ConfigError, TalkingFaceError

logger = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
STARTUP_GRACE_S = 10.0  # a child that fails (exit status > 0) this soon stops the group
STOP_GRACE_S = 20.0  # beyond api.shutdown_timeout_s, before SIGKILL
PARENT_CHECK_S = 1.0
CONFIG_INVALID_EXIT = 2  # as the CLI exits on a ConfigError


def check_api_processes(settings: Settings) -> None:
    """Several API processes need a store they can share: PostgreSQL, not SQLite."""
    if not settings.database_url.startswith("sqlite"):
        return
    if settings.api.processes > 1:
        raise ConfigError(
            f"{settings.api.processes} API processes (--api-workers) need a PostgreSQL job "
            "store that they share: set db.url (TALKINGFACE_DB__URL=postgresql://…), or serve "
            "with one API process on SQLite.",
            details={"api_processes": settings.api.processes},
        )
    if settings.api.reuse_port:
        raise ConfigError(
            "api.reuse_port lets several servers share one port, which needs a PostgreSQL job "
            "store that they share: set db.url (TALKINGFACE_DB__URL=postgresql://…), or turn "
            "api.reuse_port off.",
            details={"reuse_port": True},
        )


def bind_listening_socket(settings: Settings) -> socket.socket:
    """The socket API processes accept on (IPv4, or IPv6 for an address with ':'); with
    api.reuse_port, other servers may bind the same port (SO_REUSEPORT) and the kernel
    spreads new connections over them."""
    host, port = settings.api.host, settings.api.port
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if settings.api.reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}); stop what uses the port, "
            "choose another with --port, or set api.reuse_port on every server sharing it.",
            details={"host": host, "port": port},
            cause=exc,
        ) from exc
    return sock


class ApiProcesses:
    """Runs `count` API processes until a stop signal; run() returns the exit status."""

    def __init__(
        self,
        config_file: Path | None,
        overrides: dict[str, Any],  # Any: nested settings sections, as load_settings takes
        settings: Settings,
        count: int,
    ) -> None:
        self.config_file = config_file
        self.overrides = overrides
        self.settings = settings
        self.count = count
        self._context = multiprocessing.get_context("spawn")
        self._children: dict[int, multiprocessing.process.BaseProcess] = {}  # by slot
        self._started_s: dict[int, float] = {}
        self._signal: int | None = None

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        sock = bind_listening_socket(self.settings)
        status = 0
        try:
            for slot in range(self.count):
                self._start(slot, sock)
            status = self._supervise(sock)
        finally:
            self._stop_children()
            sock.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 128 + self._signal if self._signal is not None else status

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._signal is None:
            self._signal = signum

    def _start(self, slot: int, sock: socket.socket) -> None:
        child = self._context.Process(
            target=run_child,
            args=(self.config_file, self.overrides, sock, slot),
            name=f"tf-api-{slot}",
        )
        child.start()
        self._children[slot] = child
        self._started_s[slot] = time.monotonic()
        logger.info(
            "API process %d started (pid %s)",
            slot,
            child.pid,
            extra={"event": "api_process_started", "slot": slot, "child_pid": child.pid},
        )

    def _supervise(self, sock: socket.socket) -> int:
        """Wait for a stop signal, starting again any child that dies; the status of a child
        that could not start, else 0."""
        restart_at: dict[int, float] = {}
        while self._signal is None:
            alive = {c.sentinel: slot for slot, c in self._children.items() if c.is_alive()}
            multiprocessing.connection.wait(list(alive), timeout=0.25)
            now = time.monotonic()
            for slot, child in list(self._children.items()):
                if child.is_alive() or slot in restart_at or self._signal is not None:
                    continue
                code = child.exitcode
                if code and code > 0 and now - self._started_s[slot] < STARTUP_GRACE_S:
                    logger.error(
                        "API process %d could not start (exit status %s); stopping the others",
                        slot,
                        code,
                        extra={"event": "api_process_failed", "slot": slot, "exit_code": code},
                    )
                    return code
                logger.error(
                    "API process %d (pid %s) exited with %s; starting another in %.0f s",
                    slot,
                    child.pid,
                    code,
                    RESTART_DELAY_S,
                    extra={"event": "api_process_exited", "slot": slot, "exit_code": code},
                )
                restart_at[slot] = now + RESTART_DELAY_S
            for slot, due in list(restart_at.items()):
                if now >= due and self._signal is None:
                    del restart_at[slot]
                    self._start(slot, sock)
        return 0

    def _stop_children(self) -> None:
        """SIGTERM to each child, a bounded wait, then SIGKILL for any still running."""
        for child in self._children.values():
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.api.shutdown_timeout_s + STOP_GRACE_S
        for child in self._children.values():
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                logger.error(
                    "API process %s did not stop in time; killing it",
                    child.pid,
                    extra={"event": "api_process_killed", "child_pid": child.pid},
                )
                child.kill()
                child.join(5.0)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_child(
    config_file: Path | None,
    overrides: dict[str, Any],  # Any: nested settings sections
    sock: socket.socket,
    slot: int,
) -> None:
    """A spawned API process: the same settings as its supervisor, serving on `sock`."""
    from talkingface.api.server import configure_serve_logging, serve_process
    from talkingface.cli_signals import interrupts
    from talkingface.config import load_settings

    interrupts.install()  # uvicorn raises the stop signal again once it has stopped: it
    # must then interrupt (the locks are released on the way out), not kill at once
    settings = load_settings(config_file, **overrides)
    configure_serve_logging(settings)
    _stop_when_orphaned(os.getppid())
    try:
        status = serve_process(settings, sock)
    except TalkingFaceError as exc:  # one line, as the CLI would print it, not a traceback
        logger.error(
            "API process %d could not start: %s",
            slot,
            exc.message,
            extra={"event": "api_process_failed", "code": exc.code.value},
        )
        status = CONFIG_INVALID_EXIT if isinstance(exc, ConfigError) else 1
    sys.exit(status)


def _stop_when_orphaned(parent_pid: int) -> None:
    """SIGTERM ourselves when the supervisor is gone (killed): no child serves on alone."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)  # polling the parent: there is no event to wait on
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="tf-parent-watch", daemon=True).start()
