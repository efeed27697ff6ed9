"""Several real `talkingface serve` processes on one PostgreSQL database (and one data dir):
start them, ask who leads, follow a job's event stream, stop them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.service_fixtures import (
    FAST_SETTINGS,
    Service,
    free_port,
    fresh_postgres_database,
    wait_until,
)

LEASE_S = 3.0  # cluster.leader_lease_s in these tests: a dead leader is replaced within it
CLUSTER_SETTINGS = {
    "TALKINGFACE_CLUSTER__LEADER_LEASE_S": str(LEASE_S),
    "TALKINGFACE_CLUSTER__ELECTION_INTERVAL_S": "0.5",
}


@dataclass
class Cluster:
    """Servers started on one database and data dir; stop_all() ends every one."""

    database_url: str
    data_dir: Path
    log_dir: Path
    servers: list[Service] = field(default_factory=list)

    def start(
        self,
        *,
        workers: int = 1,
        api_workers: int | None = None,
        wait_ready: bool = True,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Service:
        port = port or free_port()
        env = {
            **os.environ,
            **FAST_SETTINGS,
            **CLUSTER_SETTINGS,
            "TALKINGFACE_DB__URL": self.database_url,
            **(extra_env or {}),
        }
        command = [sys.executable, "-m", "talkingface", "serve", "--port", str(port)]
        command += ["--workers", str(workers), "--data-dir", str(self.data_dir)]
        if api_workers is not None:
            command += ["--api-workers", str(api_workers)]
        log_path = self.log_dir / f"server-{len(self.servers)}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        service = Service(f"http://127.0.0.1:{port}", process, self.data_dir, log_path, env)
        self.servers.append(service)

        def answering() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{service.log()}")
            try:
                path = "/readyz" if wait_ready else "/healthz"
                return service.http.get(path).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answering, timeout_s=120, what=f"the server on port {port} to answer")
        return service

    def stop_all(self) -> None:
        for service in self.servers:
            service.stop()

    def sql(self, query: str, *args: object) -> list[tuple[Any, ...]]:
        """Rows of a query on the cluster's database (what the store really holds)."""
        libpq_url = self.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(libpq_url, autocommit=True) as conn:
            return list(conn.execute(query, args).fetchall())  # type: ignore[arg-type]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with fresh_postgres_database("tf_cluster") as url:
        group = Cluster(url, tmp_path / "data", tmp_path)
        try:
            yield group
        finally:
            group.stop_all()


def cluster_view(service: Service) -> dict[str, Any]:
    response = service.http.get("/v1/cluster")
    response.raise_for_status()
    view: dict[str, Any] = response.json()
    return view


def leader_pid(service: Service) -> int | None:
    """The pid of the leader as `service` sees it, once the leader's lease is confirmed."""
    leader = cluster_view(service)["leader"]
    return int(leader["pid"]) if leader and leader["confirmed"] else None


def sigkill(service: Service) -> None:
    service.process.send_signal(signal.SIGKILL)
    service.process.wait(timeout=30)


class EventStream:
    """A job's server-sent events read on a thread: (id, kind) of each stored event."""

    def __init__(self, service: Service, job_id: str) -> None:
        self.url = f"{service.url}/v1/jobs/{job_id}/events"
        self.events: list[tuple[int, str]] = []
        self.ended = threading.Event()
        self.opened = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> EventStream:
        self._thread.start()
        return self

    def _read(self) -> None:
        try:
            headers = {"Accept": "text/event-stream"}
            with httpx.stream("GET", self.url, headers=headers, timeout=120.0) as response:
                self.opened.set()
                event_id: int | None = None
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        event_id = int(line[4:])
                    elif line.startswith("event: ") and event_id is not None:
                        self.events.append((event_id, line[7:]))
                    elif line.startswith("data: ") and event_id is None:
                        json.loads(line[6:])  # progress: state, not history
                    elif line == "":
                        event_id = None
        except BaseException as exc:  # reported by wait(): the test fails with it
            self.error = exc
        finally:
            self.ended.set()

    def wait(self, timeout_s: float) -> list[tuple[int, str]]:
        """The events, once the stream has ended (after the job's terminal event)."""
        assert self.ended.wait(timeout_s), f"the event stream {self.url} did not end"
        if self.error is not None:
            raise self.error
        return self.events
