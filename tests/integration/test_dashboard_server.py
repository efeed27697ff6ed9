"""The dashboard's endpoints on a real `talkingface serve`: the all-jobs event stream (its cap,
its end on SIGTERM), a job's quality figures measured in a child process, the workers."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx

from talkingface.api.activity_stream import MAX_STREAMS
from talkingface.quality import QualityReport
from tests.integration.service_fixtures import Service, wait_until

ServiceFactory = Callable[..., Service]
SSE = {"Accept": "text/event-stream"}


class StreamReader(threading.Thread):
    """Reads GET /v1/events until the server ends it, keeping every raw line."""

    def __init__(self, service: Service) -> None:
        super().__init__(daemon=True)
        self.url = f"{service.url}/v1/events"
        self.lines: list[str] = []
        self.status: int | None = None
        self.ended_cleanly = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(60.0)) as http,
                http.stream("GET", self.url, headers=SSE) as response,
            ):
                self.status = response.status_code
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


def _submit(service: Service, audio: Path, video: Path) -> str:
    with audio.open("rb") as a, video.open("rb") as v:
        response = service.http.post(
            "/v1/jobs", files={"audio": (audio.name, a), "video": (video.name, v)}
        )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_event_stream_is_capped_and_ends_with_shutdown_on_sigterm(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path
) -> None:
    service = service_factory()
    plain = service.http.get("/v1/events")
    assert plain.status_code == 406 and "text/event-stream" in plain.json()["error"]["message"]

    # Given the most streams the server allows, open
    assert service.http.post("/v1/queue/pause").status_code == 200
    readers = [StreamReader(service) for _ in range(MAX_STREAMS)]
    for reader in readers:
        reader.start()
    wait_until(
        lambda: all(any(k == "ready" for k, _ in r.events()) for r in readers),
        timeout_s=60,
        what="every stream to say ready",
    )
    # When one more is asked for, Then it is refused with a clear 503
    refused = service.http.get("/v1/events", headers=SSE)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "SERVER_BUSY"
    assert int(refused.headers["Retry-After"]) > 0

    # and every open stream sees a new job and the queue with it
    job_id = _submit(service, speech_wav, short_template_clip)
    for reader in readers:
        wait_until(
            lambda r=reader: any(  # type: ignore[misc]
                k == "job" and d["job"]["id"] == job_id for k, d in r.events()
            ),
            timeout_s=30,
            what="the job_created event on every stream",
        )
    wait_until(
        lambda: any(
            k == "queue" and [i["job_id"] for i in d["items"]] == [job_id]
            for k, d in readers[0].events()
        ),
        timeout_s=30,
        what="a queue snapshot listing the job",
    )

    queue = service.http.get("/v1/queue").json()  # the same estimate as the stream's
    assert [i["id"] for i in queue["items"]] == [job_id] and queue["paused"] is True
    assert queue["items"][0]["eta_s"] is None and queue["estimate_basis"] == "default"

    # When the server is asked to stop, Then every stream ends with a shutdown event
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(timeout=30) == 128 + signal.SIGTERM
    for reader in readers:
        reader.join(timeout=10)
        assert reader.ended_cleanly, reader.error
        kind, data = reader.events()[-1]
        assert kind == "shutdown" and data["reconnect"] is True


def test_quality_figures_are_measured_in_a_child_process_and_stored_with_the_result(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path
) -> None:
    service = service_factory()
    http = service.http
    job_id = _submit(service, speech_wav, short_template_clip)
    service.wait_state(job_id, "succeeded")
    workers = http.get("/v1/workers").json()
    assert workers[0]["jobs_done"] >= 1 and workers[0]["uptime_s"] > 0
    assert set(workers[0]) == {
        "id",
        "pid",
        "scheduler_host",
        "scheduler_pid",
        "state",
        "job_id",
        "attempt_id",
        "jobs_done",
        "uptime_s",
        "node",
    }

    # Nothing measured yet: a 404 that says how to have it measured
    missing = http.get(f"/v1/jobs/{job_id}/quality")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_READY"
    assert f"POST /v1/jobs/{job_id}/quality" in missing.json()["error"]["message"]

    # When it is requested twice, Then one evaluation runs
    first = http.post(f"/v1/jobs/{job_id}/quality")
    second = http.post(f"/v1/jobs/{job_id}/quality")
    assert first.status_code == 202 and first.json()["state"] in ("queued", "running")
    assert second.status_code in (200, 202)

    def measured() -> dict[str, Any] | None:
        response = http.get(f"/v1/jobs/{job_id}/quality")
        assert response.status_code in (200, 202), response.text
        return response.json() if response.status_code == 200 else None

    quality = wait_until(measured, timeout_s=180, what="the quality figures")
    assert quality["state"] == "succeeded", quality
    assert set(quality["figures"]) == {f.name for f in fields(QualityReport)}
    assert quality["figures"]["frame_count"] > 0
    assert quality["verdicts"] and isinstance(quality["verdicts"][0], str)
    sheet = http.get(quality["sheet_url"])
    assert sheet.status_code == 200 and sheet.content.startswith(b"\x89PNG")
    assert http.post(f"/v1/jobs/{job_id}/quality").status_code == 200  # stored: not again
    assert (service.data_dir / "results" / f"{job_id}.quality" / "quality.json").is_file()

    # A job without a result has no quality to measure
    assert http.post("/v1/queue/pause").status_code == 200
    queued = _submit(service, speech_wav, short_template_clip)
    refused = http.post(f"/v1/jobs/{queued}/quality")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "JOB_STATE"
    with contextlib.suppress(httpx.HTTPError):
        http.post("/v1/queue/resume")


def _drawn_pixels(preview: bytes, plain: bytes, rgb: tuple[int, int, int]) -> int:
    """How many pixels the preview changed from the plain frame to about `rgb` (JPEG shifts
    colours a little; the template's own orange suit is in both, so it does not count)."""
    import cv2
    import numpy as np

    def decoded(jpeg: bytes) -> Any:  # Any: a numpy image
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(int)

    drawn, frame = decoded(preview), decoded(plain)
    changed = np.abs(drawn - frame).sum(axis=2) > 90
    near = np.abs(drawn - np.array(rgb)).sum(axis=2) < 120
    return int((changed & near).sum())


def test_template_pictures_are_drawn_by_the_worker_and_404_until_then(
    service_factory: ServiceFactory, short_template_clip: Path, faceless_clip: Path
) -> None:
    from talkingface.template_preview import FACE_RGB, MOUTH_RGB

    service = service_factory()
    http = service.http
    assert http.post("/v1/queue/pause").status_code == 200
    ids = {}
    for name, clip in (("face", short_template_clip), ("faceless", faceless_clip)):
        with clip.open("rb") as video:
            registered = http.post("/v1/templates", files={"video": (clip.name, video)})
        assert registered.status_code == 202, registered.text
        ids[name] = registered.json()["id"]

    # While it waits for a worker: 404 saying it is being prepared and where to watch
    waiting = http.get(f"/v1/templates/{ids['face']}/preview.jpg")
    assert waiting.status_code == 404 and waiting.json()["error"]["code"] == "NOT_READY"
    assert "still being prepared" in waiting.json()["error"]["message"]
    assert f"GET /v1/templates/{ids['face']}" in waiting.json()["error"]["message"]

    assert http.post("/v1/queue/resume").status_code == 200
    for template_id in ids.values():
        wait_until(
            lambda t=template_id: http.get(f"/v1/templates/{t}").json()["state"] != "preparing",
            timeout_s=90,
            what="the preparations to end",
        )

    preview = http.get(f"/v1/templates/{ids['face']}/preview.jpg")
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/jpeg"
    thumbnail = http.get(f"/v1/templates/{ids['face']}/thumbnail.jpg")
    assert thumbnail.status_code == 200 and thumbnail.content.startswith(b"\xff\xd8")
    # the same first frame (both 256 px), with the face box and the mouth region drawn
    assert _drawn_pixels(preview.content, thumbnail.content, FACE_RGB) > 100
    assert _drawn_pixels(preview.content, thumbnail.content, MOUTH_RGB) > 100

    failed = http.get(f"/v1/templates/{ids['faceless']}/preview.jpg")
    assert failed.status_code == 404 and "failed (NO_FACE)" in failed.json()["error"]["message"]
    unknown = "0" * 32
    assert (
        http.get(f"/v1/templates/{unknown}/preview.jpg").status_code
        == http.get(f"/v1/templates/{unknown}").status_code
    )
