"""Fixtures for the API tests: settings over tmp dirs, a real SQLite store, a fake scheduler."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from talkingface.api.app import create_app
from talkingface.config import Settings
from talkingface.executors.base import WorkerInfo
from talkingface.jobs.states import WorkerState
from talkingface.jobs.store import JobStore


@dataclass
class FakeScheduler:
    """The SchedulerView protocol without processes: counts wakes, readiness is a flag."""

    ready: bool = True
    paused: bool = False
    wakes: int = 0
    infos: list[WorkerInfo] = field(default_factory=list)

    def workers(self) -> list[WorkerInfo]:
        return list(self.infos)

    def is_ready(self) -> bool:
        return self.ready

    def wake(self) -> None:
        self.wakes += 1

    def set_paused(self, paused: bool) -> None:
        self.paused = paused

    def is_paused(self) -> bool:
        return self.paused


@dataclass
class ApiHarness:
    client: TestClient
    settings: Settings
    store: JobStore
    scheduler: FakeScheduler
    input_root: Path


def make_settings(
    tmp_path: Path, workers: dict[str, Any] | None = None, **api: Any
) -> Settings:  # Any: setting values
    api_fields = {"input_roots": [tmp_path / "inputs"], "min_free_disk_bytes": 0, **api}
    return Settings(data_dir=tmp_path / "data", api=api_fields, workers=workers or {})


@pytest.fixture(name="input_root")
def input_root_fixture(
    tmp_path: Path, template_clip: Path, speech_wav: Path, garbage_wav: Path
) -> Path:
    root = tmp_path / "inputs"
    root.mkdir()
    for source in (template_clip, speech_wav, garbage_wav):
        shutil.copy(source, root / source.name)
    return root


@pytest.fixture(name="job_store")
def job_store_fixture(tmp_path: Path) -> Iterator[JobStore]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.migrate()
    yield store
    store.close()


@pytest.fixture(name="make_api")
def make_api_fixture(
    tmp_path: Path, input_root: Path, job_store: JobStore
) -> Iterator[Any]:  # Any: a factory taking ApiSettings overrides
    clients: list[TestClient] = []

    def make(workers: dict[str, Any] | None = None, **api: Any) -> ApiHarness:  # Any: settings
        settings = make_settings(tmp_path, workers, **api)
        scheduler = FakeScheduler(
            infos=[WorkerInfo("w1", 4242, WorkerState.READY, None, None, 0, 0.0)]
        )
        app = create_app(settings, store=job_store, scheduler=scheduler)
        client = TestClient(app, base_url="http://localhost", raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return ApiHarness(client, settings, job_store, scheduler, input_root)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(name="api")
def api_fixture(make_api: Any) -> ApiHarness:
    harness: ApiHarness = make_api()
    return harness


class CountingServer(ThreadingHTTPServer):
    """Serves one directory on loopback and counts the connections it accepts."""

    connections = 0

    def verify_request(self, request: Any, client_address: Any) -> bool:  # Any: socket types
        self.connections += 1
        return True


@pytest.fixture(name="media_server")
def media_server_fixture(input_root: Path) -> Iterator[CountingServer]:
    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(input_root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = CountingServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
