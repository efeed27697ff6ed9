"""① The HTTP server around the app: uvicorn, stopped by SIGINT/SIGTERM within a bounded time.

uvicorn stops accepting connections on a signal, then waits for open responses to finish
before the app's lifespan shutdown runs. An event stream never finishes by itself, so the
app is told at the signal itself (`begin_shutdown`), and api.shutdown_timeout_s caps the
wait for anything else still open.
"""

from __future__ import annotations

import contextlib
import multiprocessing.util
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from talkingface.api.app import begin_shutdown
from talkingface.api.http_protocol import GatheringHttpToolsProtocol
from talkingface.config import Settings
from talkingface.storage.data_dir_lock import DataDirLock


class _StoppingServer(uvicorn.Server):
    """uvicorn's server, which also tells the app the moment a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        self.stop_signals: list[int] = []

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stop_signals.append(sig)
        super().handle_exit(sig, frame)
        begin_shutdown(self.app)


def configure_serve_logging(settings: Settings) -> None:
    """A server logs its lifecycle: info unless the settings ask for more than warning."""
    from talkingface.logs import configure_logging

    level = settings.logging.level
    configure_logging(level if level != "warning" else "info", settings.logging.json_lines)


def serve_process(settings: Settings, sock: socket.socket | None = None) -> int:
    """One API process of `--api-workers`, on the listening socket `sock` they share: the
    data-dir lock (shared: they are on PostgreSQL), then as serve_locked."""
    lock = lock_data_dir(settings)
    try:
        return serve_locked(settings, sock)
    finally:
        lock.release()


def serve_locked(settings: Settings, sock: socket.socket | None = None) -> int:
    """With the data dir locked: the probe's fork server, then the app until a stop signal."""
    from talkingface.api.app import create_app
    from talkingface.media.probe_process import start_probe_server

    if sock is None and settings.api.reuse_port:  # one of several servers on this port
        from talkingface.api.server_processes import bind_listening_socket

        sock = bind_listening_socket(settings)
    start_probe_server()
    return serve_app(create_app(settings), settings, sock)


def lock_data_dir(settings: Settings) -> DataDirLock:
    """The janitor, the inputs and the results own the data dir, whatever runs the attempts
    (a ray executor's actors write their results there too): one server with SQLite has it
    to itself; API processes sharing a PostgreSQL store share it (one of them leads)."""
    shared = not settings.database_url.startswith("sqlite")
    lock = DataDirLock(settings.data_dir).acquire(shared=shared)
    lock.record_temp_dir(multiprocessing.util.get_temp_dir())
    return lock


def serve_app(app: FastAPI, settings: Settings, sock: socket.socket | None = None) -> int:
    """Serve until a stop signal; the exit status: 128 + the signal's number after a signal
    (130 for Ctrl-C, 143 for SIGTERM), 3 when the server could not start, else 0.
    `sock`: an already listening socket (shared by API processes) instead of binding one."""
    config = uvicorn.Config(
        app,
        host=settings.api.host,
        port=settings.api.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.api.shutdown_timeout_s,
        http=GatheringHttpToolsProtocol,  # one write per reply (api/http_protocol.py)
    )
    server = _StoppingServer(config, app)
    sockets = [sock] if sock is not None else None
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises the stop signal again
        server.run(sockets)  # once it has stopped; the exit status below says which it was
    if not server.started:
        return STARTUP_FAILURE
    return 128 + server.stop_signals[0] if server.stop_signals else 0
