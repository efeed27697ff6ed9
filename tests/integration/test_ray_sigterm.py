"""The ray executor leaves the process's SIGTERM handler alone: ray.init (in the main
thread) installs one that calls sys.exit wherever the main thread is, which turned a
server's graceful stop into a SystemExit inside its event loop and often an abort. Its own
module: the executor must start Ray itself here (test_ray_executor's Ray is already up)."""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path
from types import FrameType

import pytest
import ray  # the dev extra installs it (pyproject): never skipped

from talkingface.config import Settings
from talkingface.executors.ray_executor import RayExecutor


def _graceful_stop(signum: int, frame: FrameType | None) -> None:
    """Stands for the server's own SIGTERM handler."""


def test_starting_the_ray_executor_keeps_the_sigterm_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not ray.is_initialized()
    # a short private temp dir (Ray's socket paths must fit in 107 bytes)
    temp_dir = tempfile.mkdtemp(prefix="tfsig-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", temp_dir)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    settings = Settings(
        data_dir=tmp_path / "data",
        logging={"level": "error"},
        workers={"executor": "ray", "count": 1, "ready_timeout_s": 60.0},
    )
    previous = signal.signal(signal.SIGTERM, _graceful_stop)
    executor = RayExecutor(settings)
    try:
        # When the executor starts a private Ray in this (the main) thread
        executor.start()
        # Then SIGTERM still goes to the handler set before
        assert ray.is_initialized()
        assert signal.getsignal(signal.SIGTERM) is _graceful_stop
    finally:
        executor.shutdown()  # ends the private Ray it started
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(temp_dir, ignore_errors=True)
