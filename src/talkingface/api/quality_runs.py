"""① Quality figures of finished jobs, computed on request in a child process, one at a time.

`evaluate` loads face models, which the API process never imports, so each evaluation runs
`python -m talkingface.quality_job` in its own process group, with a timeout. At most
MAX_WAITING evaluations wait behind the running one; more is a 503. The outcome is stored
in `<data>/results/<job id>.quality/` (quality.json and sheet.png), which storage deletes
with the job's result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from talkingface.config import EvaluateSettings
from talkingface.errors import ServerBusyError
from talkingface.jobs.records import JobRecord
from talkingface.quality_job import (
    ERROR_NAME,
    FIGURES_NAME,
    QUALITY_NAME,
    SHEET_NAME,
    write_quality_outcome,
)
from talkingface.storage.local import LocalStorage

logger = logging.getLogger(__name__)

MAX_WAITING = 4
TIMEOUT_S = 600.0
STAGING_NAME = ".staging"


class QualityRuns:
    """The evaluation queue: one child process at a time, its outcome written to disk."""

    def __init__(
        self,
        storage: LocalStorage,
        *,
        max_waiting: int = MAX_WAITING,
        timeout_s: float = TIMEOUT_S,
        syncnet: EvaluateSettings | None = None,
    ) -> None:
        """`syncnet`: the server's evaluate settings; with a checkpoint, LSE is measured too."""
        self._storage = storage
        self._syncnet_args = _syncnet_arguments(syncnet)
        self._max_waiting = max_waiting
        self._timeout_s = timeout_s
        self._waiting: deque[tuple[str, list[str]]] = deque()
        self._running: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def stored(self, job_id: str) -> dict[str, Any] | None:  # Any: JSON-safe values
        """The stored outcome (succeeded or failed), or None when there is none."""
        path = self._storage.quality_dir(job_id) / QUALITY_NAME
        try:
            stored: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return stored

    def sheet_path(self, job_id: str) -> Path:
        return self._storage.quality_dir(job_id) / SHEET_NAME

    def pending(self, job_id: str) -> tuple[str, int] | None:
        """("running", 0) or ("queued", evaluations ahead), or None when not pending."""
        with self._changed:
            if self._running == job_id:
                return "running", 0
            for ahead, (waiting_id, _) in enumerate(self._waiting):
                if waiting_id == job_id:
                    return "queued", ahead + 1 if self._running else ahead
        return None

    def request(self, job: JobRecord, result_path: str) -> tuple[str, int]:
        """Queue an evaluation of `job`'s result unless it is already pending; ServerBusyError
        when MAX_WAITING others wait."""
        arguments = ["--video", result_path, "--loop", job.options.loop]
        if job.inputs.audio_path:
            arguments += ["--audio", job.inputs.audio_path]
        if job.inputs.video_path:
            arguments += ["--template", job.inputs.video_path]
        arguments += self._syncnet_args
        with self._changed:
            found = self.pending(job.id)
            if found is not None:
                return found
            if len(self._waiting) >= self._max_waiting:
                raise ServerBusyError(
                    f"{len(self._waiting)} quality evaluations are already waiting (the limit); "
                    "retry after Retry-After.",
                    retry_after_s=30,
                    details={"limit": self._max_waiting},
                )
            self._waiting.append((job.id, arguments))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="quality-runs", daemon=True)
                self._thread.start()
            self._changed.notify_all()
            found = self.pending(job.id)
        return found or ("queued", len(self._waiting))

    def stop(self) -> None:
        """Stop: kill a running evaluation (its process group); waiting ones are dropped."""
        with self._changed:
            self._stopping = True
            self._waiting.clear()
            process = self._process
            self._changed.notify_all()
        if process is not None and process.poll() is None:
            _kill_group(process)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                job_id, arguments = self._waiting.popleft()
                self._running = job_id
            try:
                self._evaluate(job_id, arguments)
            except OSError as exc:  # the results folder: logged; the next request tries again
                logger.error(
                    "quality evaluation of job %s could not be stored: %s",
                    job_id,
                    exc,
                    extra={"event": "quality_failed", "job_id": job_id},
                )
            finally:
                with self._changed:
                    self._running = None
                    self._process = None

    def _evaluate(self, job_id: str, arguments: list[str]) -> None:
        """Measure in a staging folder inside the job's quality folder, removed in any case."""
        staging = self._storage.quality_dir(job_id) / STAGING_NAME
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            self._measure(job_id, arguments, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _measure(self, job_id: str, arguments: list[str], staging: Path) -> None:
        target = staging.parent
        command = [sys.executable, "-m", "talkingface.quality_job", *arguments]
        command += ["--out", str(staging)]
        started = time.monotonic()
        with self._changed:
            if self._stopping:
                return
            self._process = subprocess.Popen(  # our own module, fixed arguments
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout kills it whole
            )
            process = self._process
        try:
            _, stderr = process.communicate(timeout=self._timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            error = {
                "code": "STAGE_TIMEOUT",
                "message": f"The evaluation took longer than {self._timeout_s:.0f} s and was "
                "stopped; POST again to retry.",
            }
            self._store(job_id, started, error=error)
            return
        if self._stopping:
            return
        if process.returncode == 0 and (staging / FIGURES_NAME).is_file():
            body = json.loads((staging / FIGURES_NAME).read_text(encoding="utf-8"))
            if (staging / SHEET_NAME).is_file():
                os.replace(staging / SHEET_NAME, target / SHEET_NAME)
            self._store(job_id, started, body=body)
        elif (staging / ERROR_NAME).is_file():
            self._store(job_id, started, error=json.loads((staging / ERROR_NAME).read_text()))
        else:
            last = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            message = f"The evaluation process exited with {process.returncode}: {last[0]}"
            self._store(job_id, started, error={"code": "INTERNAL", "message": message})

    def _store(
        self,
        job_id: str,
        started: float,
        *,
        body: dict[str, Any] | None = None,  # Any: JSON-safe values
        error: dict[str, Any] | None = None,
    ) -> None:
        figures = None if body is None else body["figures"]
        verdicts = None if body is None else body["verdicts"]
        outcome = write_quality_outcome(
            self._storage.quality_dir(job_id),
            job_id,
            time.monotonic() - started,
            figures=figures,
            verdicts=verdicts,
            error=error,
        )
        logger.info(
            "quality evaluation of job %s %s",
            job_id,
            outcome["state"],
            extra={"event": "quality_evaluated", "job_id": job_id, "state": outcome["state"]},
        )


def _syncnet_arguments(settings: EvaluateSettings | None) -> list[str]:
    if settings is None or settings.syncnet_checkpoint is None:
        return []
    trust = ["--trust-checkpoint"] if settings.trust_checkpoint else []
    return ["--syncnet", str(settings.syncnet_checkpoint), *trust]


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
        os.killpg(process.pid, signal.SIGKILL)
