"""Faults injected from outside: signals to workers and server, a full disk, a DB restart."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
from bench.chaos.processes import PrivatePostgres, ServerGroup, Tmpfs, same_process
from bench.chaos.workload import Api

STOP_HOLD_S = 6.0  # a SIGSTOPped worker gets SIGCONT this much later (if it is still there)
DISK_FULL_HOLD_S = 6.0


@dataclass
class FaultRecord:
    kind: str
    at: datetime
    until: datetime  # when the fault itself was over (space freed, server back, …)
    affected_job_ids: list[str] = field(default_factory=list)
    note: str = ""
    figures: dict[str, float] = field(default_factory=dict)  # the kind's own timings


def _now() -> datetime:
    return datetime.now(UTC)


class Injector:
    """One method per fault kind; each returns what it did, or None if it found nothing to hit."""

    def __init__(
        self,
        api: Api,
        group: ServerGroup,
        workers: int,
        tmpfs: Tmpfs | None,
        postgres: PrivatePostgres | None,
        cache_dir: Path,
    ) -> None:
        self.api = api
        self.group = group
        self.workers = workers
        self.tmpfs = tmpfs
        self.postgres = postgres
        self.cache_dir = cache_dir
        self._timers: list[threading.Timer] = []

    def kinds(self) -> list[str]:
        kinds = ["worker_kill", "worker_stop", "server_kill", "cache_delete"]
        if self.tmpfs is not None:
            kinds.append("disk_full")
        if self.postgres is not None:
            kinds.append("pg_restart")
        return kinds

    def run(self, kind: str) -> FaultRecord | None:
        method: Callable[[], FaultRecord | None] = getattr(self, f"_{kind}")
        return method()

    def _busy_worker(self) -> tuple[int, str] | None:
        workers = self.api.call("GET", "/v1/workers").json()
        busy = [(w["pid"], w["job_id"]) for w in workers if w["job_id"] and w["pid"]]
        return busy[0] if busy else None

    def _running_job_ids(self) -> list[str]:
        listing = self.api.call("GET", "/v1/jobs", params={"state": "running", "limit": 500})
        return [job["id"] for job in listing.json()["items"]]

    def _worker_kill(self) -> FaultRecord | None:
        target = self._busy_worker()
        if target is None:
            return None
        pid, job_id = target
        at = _now()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return FaultRecord("worker_kill", at, at, [job_id], f"pid {pid}")

    def _worker_stop(self) -> FaultRecord | None:
        target = self._busy_worker()
        if target is None:
            return None
        pid, job_id = target
        try:
            created = psutil.Process(pid).create_time()
            at = _now()
            os.kill(pid, signal.SIGSTOP)
        except (ProcessLookupError, psutil.NoSuchProcess):
            return None

        def resume() -> None:
            if same_process(pid, created):  # the supervisor may have killed it already
                os.kill(pid, signal.SIGCONT)

        timer = threading.Timer(STOP_HOLD_S, resume)
        timer.start()
        self._timers.append(timer)
        return FaultRecord("worker_stop", at, at, [job_id], f"pid {pid}, SIGCONT after hold")

    def _server_kill(self) -> FaultRecord | None:
        """SIGKILL the server (with two, the standby: an API process's death must cost
        nothing) and restart it."""
        server = self.group.standby()
        killed_pid = server.pid
        running = self._running_job_ids()
        at = _now()
        server.kill()
        startup_s = server.start(self.workers)
        note = f"pid {killed_pid}, restart took {startup_s:.1f} s"
        return FaultRecord("server_kill", at, _now(), running, note)

    def _disk_full(self) -> FaultRecord | None:
        assert self.tmpfs is not None
        running = self._running_job_ids()
        at = _now()
        written = self.tmpfs.fill()
        time.sleep(DISK_FULL_HOLD_S)
        self.tmpfs.drain()
        return FaultRecord("disk_full", at, _now(), running, f"filled {written >> 20} MiB")

    def _pg_restart(self) -> FaultRecord | None:
        assert self.postgres is not None
        running = self._running_job_ids()
        at = _now()
        self.postgres.restart()
        return FaultRecord("pg_restart", at, _now(), running)

    def _cache_delete(self) -> FaultRecord | None:
        at = _now()
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        return FaultRecord("cache_delete", at, at, [])

    def close(self) -> None:
        for timer in self._timers:
            timer.join()
