"""① The HTTP server around the app: uvicorn, stopped by SIGINT/SIGTERM within a bounded time.

uvicorn stops accepting connections on a signal, then waits for open responses to finish
before the app's lifespan shutdown runs. An event stream never finishes by itself, so the
app is told at the signal itself (`begin_shutdown`), and api.shutdown_timeout_s caps the
wait for anything else still open.
"""

from __future__ import annotations

import contextlib
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from talkingface.api.app import begin_shutdown
from talkingface.api.http_protocol import GatheringHttpToolsProtocol
from talkingface.config import Settings


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


def serve_app(app: FastAPI, settings: Settings) -> int:
    """Serve until a stop signal; the exit status: 128 + the signal's number after a signal
    (130 for Ctrl-C, 143 for SIGTERM), 3 when the server could not start, else 0."""
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
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises the stop signal again
        server.run()  # once it has stopped; the exit status below says which it was
    if not server.started:
        return STARTUP_FAILURE
    return 128 + server.stop_signals[0] if server.stop_signals else 0
