"""Fixtures over a real `talkingface serve` child process (bench/service_process.py starts it).

Tests may build on bench/, never the reverse; the names below are re-used by the tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from bench.service_process import (
    FAST_SETTINGS,
    Service,
    free_port,
    fresh_postgres_database,
    start_service,
    wait_until,
)

__all__ = [  # re-used by the tests from bench/, where they live
    "FAST_SETTINGS",
    "Service",
    "free_port",
    "fresh_postgres_database",
    "start_service",
    "wait_until",
]


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def factory(
        *, extra_env: dict[str, str] | None = None, workers: int = 1, data_dir: Path | None = None
    ) -> Service:
        directory = data_dir or tmp_path / "data"
        service = start_service(
            directory, tmp_path / "server.log", extra_env=extra_env, workers=workers
        )
        started.append(service)
        return service

    yield factory
    for service in started:
        service.stop()


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


def submit_upload(service: Service, audio: Path, video: Path, **fields: Any) -> dict[str, Any]:
    """POST /v1/jobs with both files uploaded and `fields` as form fields; the 202's job."""
    with audio.open("rb") as a, video.open("rb") as v:
        response = service.http.post(
            "/v1/jobs",
            files={"audio": (audio.name, a), "video": (video.name, v)},
            data={k: str(value) for k, value in fields.items()},
        )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def descendants_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def all_error_messages(job: dict[str, Any]) -> list[str]:
    messages = []
    if job.get("error"):
        messages.append(job["error"]["message"])
    for attempt in job.get("attempts", []):
        if attempt.get("error"):
            messages.append(attempt["error"]["message"])
    return messages


def json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
