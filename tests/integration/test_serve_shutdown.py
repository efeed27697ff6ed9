"""Stopping a real `talkingface serve` while a dashboard holds an event stream open."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.integration.service_fixtures import Service, wait_until

ServiceFactory = Callable[..., Service]
STOP_BOUND_S = 30.0  # generous on a loaded machine; today's server never stops at all


class StreamReader(threading.Thread):
    """Reads one job's event stream until the server ends it, keeping every raw line."""

    def __init__(self, service: Service, job_id: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{service.url}/v1/jobs/{job_id}/events"
        self.lines: list[str] = []
        self.ended_cleanly = False
        self.error: BaseException | None = None

    def run(self) -> None:
        headers = {"Accept": "text/event-stream"}
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(60.0)) as http,
                http.stream("GET", self.url, headers=headers) as response,
            ):
                for line in response.iter_lines():
                    self.lines.append(line)
            self.ended_cleanly = True
        except httpx.HTTPError as exc:
            self.error = exc

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        kinds = [line[len("event: ") :] for line in self.lines if line.startswith("event: ")]
        datas = [
            json.loads(line[len("data: ") :]) for line in self.lines if line.startswith("data")
        ]
        return list(zip(kinds, datas, strict=True))


def _queued_job(service: Service, audio: Path, video: Path) -> str:
    """A job that stays queued (dispatch paused), so its event stream stays open."""
    assert service.http.post("/v1/queue/pause").status_code == 200
    with audio.open("rb") as a, video.open("rb") as v:
        response = service.http.post(
            "/v1/jobs", files={"audio": (audio.name, a), "video": (video.name, v)}
        )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_sigterm_ends_open_event_streams_with_a_reconnect_event_and_the_server_exits(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path
) -> None:
    # Given a dashboard following a queued job over server-sent events
    service = service_factory()
    job_id = _queued_job(service, speech_wav, short_template_clip)
    reader = StreamReader(service, job_id)
    reader.start()
    wait_until(
        lambda: any(kind == "job_created" for kind, _ in reader.events()),
        timeout_s=30,
        what="the stream to deliver the job's history",
    )

    # When the server is asked to stop
    service.process.send_signal(signal.SIGTERM)

    # Then it exits on its own within the bound, as a stopped (not crashed) server does
    try:
        returncode = service.process.wait(timeout=STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait(timeout=10)
        raise AssertionError(
            f"the server did not exit within {STOP_BOUND_S:.0f} s of SIGTERM while an event "
            f"stream was open:\n{service.log()[-2000:]}"
        ) from None
    assert returncode == 128 + signal.SIGTERM, service.log()[-2000:]
    # and the client got a last event telling it to reconnect later, then a clean end
    reader.join(timeout=10)
    assert reader.ended_cleanly, reader.error
    kind, data = reader.events()[-1]
    assert kind == "shutdown"
    assert data["job_id"] == job_id and data["reconnect"] is True
    retry_lines = [line for line in reader.lines if line.startswith("retry: ")]
    assert len(retry_lines) == 2  # the stream's first line, and again just before the end
    assert reader.lines.index(retry_lines[-1]) > reader.lines.index("event: job_created")
