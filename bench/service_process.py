"""A real `talkingface serve` in a child process: the service the benches measure and the
end-to-end tests drive (tests/integration/service_fixtures.py builds its fixtures on this)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

FAST_SETTINGS: dict[str, str] = {
    "TALKINGFACE_WORKERS__HEARTBEAT_S": "0.5",
    "TALKINGFACE_WORKERS__LOST_AFTER_BEATS": "3",
    "TALKINGFACE_WORKERS__STALL_S": "3",
    "TALKINGFACE_WORKERS__ALLOW_FAULTS": "true",
    "TALKINGFACE_WORKERS__KILL_GRACE_S": "0.5",
    "TALKINGFACE_RETRY__BACKOFF_BASE_S": "0.1",
    "TALKINGFACE_RETRY__BACKOFF_MAX_S": "0.5",
    "TALKINGFACE_LOGGING__LEVEL": "info",
    "TALKINGFACE_LOGGING__JSON_LINES": "true",
}


class ServiceExitedError(RuntimeError):
    """The server exited before it became ready."""


def wait_until(predicate: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)  # polling interval


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A running server: its URL, process, data dir and an HTTP client."""

    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=30.0)

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/jobs/{job_id}")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def wait_state(self, job_id: str, *states: str, timeout_s: float = 90.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"] in states else None

        result: dict[str, Any] = wait_until(
            reached, timeout_s=timeout_s, what=f"job {job_id} to reach {states}"
        )
        return result

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.http.get("/v1/workers").json() if w.get("pid")]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_service(
    data_dir: Path, log_path: Path, *, extra_env: dict[str, str] | None = None, workers: int = 1
) -> Service:
    env = {**os.environ, **FAST_SETTINGS, **(extra_env or {})}
    return launch_serve(
        ["--workers", str(workers), "--data-dir", str(data_dir)],
        data_dir,
        log_path,
        env,
        timeout_s=90,
        what="the server to become ready",
    )


def launch_serve(
    args: list[str],
    data_dir: Path,
    log_path: Path,
    env: dict[str, str],
    *,
    timeout_s: float,
    what: str,
) -> Service:
    """`talkingface serve --port <free> ARGS`, returned once /readyz answers 200; a server that
    exits first raises ServiceExitedError with its log, and one that never gets ready is stopped
    (the caller never gets it, so it could not stop it)."""
    port = free_port()
    command = [sys.executable, "-m", "talkingface", "serve", "--port", str(port), *args]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    service = Service(f"http://127.0.0.1:{port}", process, data_dir, log_path, env)

    def ready() -> bool:
        if process.poll() is not None:
            raise ServiceExitedError(
                f"the server exited with {process.returncode}:\n{service.log()[-3000:]}"
            )
        try:
            return service.http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout_s=timeout_s, what=what)
    except BaseException:
        service.stop()
        raise
    return service


@contextmanager
def fresh_postgres_database(prefix: str = "tf_service") -> Iterator[str]:
    """Create a uniquely named database on the local server; yield its URL; drop it after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        # FORCE ends any session still open and drops in one step (terminating them first and
        # dropping after lost a race with a running server's pool reconnecting in between).
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
