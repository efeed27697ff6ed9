"""Slow URL inputs on a real server: downloads run beside, not instead of, every other request.

The media host here is this file's own trickling server on loopback, which the server under
test may reach through api.url_allowed_networks.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.service_fixtures import Service, wait_until

ServiceFactory = Callable[..., Service]
READ_DEADLINE_S = 5.0  # generous: a status read takes milliseconds when it is not starved
STOP_BOUND_S = 30.0
TRICKLE_PAUSE_S = 0.5


class TrickleServer(ThreadingHTTPServer):
    """Answers every GET with a 1 MB Content-Length and then one byte every 0.5 s, until
    the client hangs up or the test ends; counts the requests it has begun to answer."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        self.started = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(10**6))
                self.end_headers()
                with outer.lock:
                    outer.started += 1
                try:
                    while not outer.stop.wait(TRICKLE_PAUSE_S):
                        self.wfile.write(b"\0")
                        self.wfile.flush()
                except OSError:  # the client hung up
                    return

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        super().__init__(("127.0.0.1", 0), Handler)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


@pytest.fixture(name="trickle")
def trickle_fixture() -> Iterator[TrickleServer]:
    server = TrickleServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.stop.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _serve(service_factory: ServiceFactory, max_downloads: int) -> Service:
    return service_factory(
        extra_env={
            "TALKINGFACE_API__URL_ALLOWED_NETWORKS": json.dumps(["127.0.0.1/32"]),
            "TALKINGFACE_API__MAX_URL_DOWNLOADS": str(max_downloads),
            "TALKINGFACE_API__URL_TIMEOUT_S": "120",
        }
    )


class Submissions:
    """URL submissions sent at once from threads; each keeps its response (or error)."""

    def __init__(self, service: Service, trickle: TrickleServer, count: int) -> None:
        self.http = httpx.Client(
            base_url=service.url,
            timeout=httpx.Timeout(150.0),
            limits=httpx.Limits(max_connections=count + 10),
        )
        body = {"audio": trickle.url("speech.wav"), "video": trickle.url("face.mp4")}
        self.responses: list[httpx.Response | Exception] = []
        self.threads = [threading.Thread(target=self._post, args=(body,)) for _ in range(count)]
        for thread in self.threads:
            thread.start()

    def _post(self, body: dict[str, str]) -> None:
        try:
            self.responses.append(self.http.post("/v1/jobs", json=body))
        except httpx.HTTPError as exc:
            self.responses.append(exc)

    def join(self, timeout_s: float) -> None:
        for thread in self.threads:
            thread.join(timeout=timeout_s)
        self.http.close()


def _queued_job(service: Service, audio: Path, video: Path) -> str:
    assert service.http.post("/v1/queue/pause").status_code == 200
    with audio.open("rb") as a, video.open("rb") as v:
        files = {"audio": (audio.name, a), "video": (video.name, v)}
        response = service.http.post("/v1/jobs", files=files)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_status_reads_answer_while_45_downloads_trickle_and_past_the_cap_submits_wait(
    service_factory: ServiceFactory,
    trickle: TrickleServer,
    speech_wav: Path,
    short_template_clip: Path,
) -> None:
    # Given a server with a queued job, and 45 submissions whose URL sends a byte every 0.5 s
    service = _serve(service_factory, max_downloads=45)
    job_id = _queued_job(service, speech_wav, short_template_clip)
    submissions = Submissions(service, trickle, 45)
    try:
        # (the request thread pool has 40 threads: that many downloads used to take them all)
        wait_until(lambda: trickle.started >= 40, timeout_s=60, what="40 downloads to begin")

        # When a client reads the job, a HeyGem task and readiness
        with httpx.Client(base_url=service.url, timeout=READ_DEADLINE_S) as reader:
            job = reader.get(f"/v1/jobs/{job_id}")
            query = reader.get("/easy/query", params={"code": "unknown-task"})
            ready = reader.get("/readyz")
            # and, all 45 downloading, one more URL submission (v1, then HeyGem) arrives
            wait_until(lambda: trickle.started >= 45, timeout_s=60, what="45 downloads")
            refused = reader.post(
                "/v1/jobs",
                json={"audio": trickle.url("a.wav"), "video": trickle.url("b.mp4")},
            )
            heygem = reader.post(
                "/easy/submit",
                json={
                    "audio_url": trickle.url("a.wav"),
                    "video_url": trickle.url("b.mp4"),
                    "code": "over-the-cap",
                },
            )

        # Then every read answers at once
        assert job.status_code == 200 and job.json()["state"] == "queued"
        assert query.status_code == 200 and query.json()["code"] == 10004
        assert ready.status_code == 200, ready.text
        # and the submissions past the cap are refused with when to come back
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"].isdigit()
        error = refused.json()["error"]
        assert error["code"] == "DOWNLOADS_BUSY"
        assert "api.max_url_downloads" in error["message"]
        assert heygem.status_code == 200
        reply = heygem.json()
        assert reply["code"] == 10001 and reply["success"] is False
        assert reply["msg"].startswith("忙碌中") and "下载" in reply["msg"]
        assert trickle.started == 45  # the refused ones never connected
    finally:
        trickle.stop.set()  # the downloads end (cut short), then the submissions answer
        submissions.join(timeout_s=60)
    assert len(submissions.responses) == 45
    assert all(
        isinstance(r, httpx.Response) and r.status_code == 422 for r in submissions.responses
    )


def test_stopping_the_server_ends_hanging_downloads_with_a_retry_later_answer(
    service_factory: ServiceFactory, trickle: TrickleServer
) -> None:
    # Given two submissions hanging on a trickling URL
    service = _serve(service_factory, max_downloads=4)
    submissions = Submissions(service, trickle, 2)
    wait_until(lambda: trickle.started >= 2, timeout_s=60, what="2 downloads to begin")

    # When the server is asked to stop
    service.process.send_signal(signal.SIGTERM)

    # Then it exits within the bound, and each submission is told to come back later
    try:
        returncode = service.process.wait(timeout=STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait(timeout=10)
        raise AssertionError(
            f"the server did not exit within {STOP_BOUND_S:.0f} s of SIGTERM while URL "
            f"downloads hung:\n{service.log()[-2000:]}"
        ) from None
    assert returncode == 128 + signal.SIGTERM
    submissions.join(timeout_s=30)
    assert len(submissions.responses) == 2
    for response in submissions.responses:
        assert isinstance(response, httpx.Response), response
        assert response.status_code == 503 and "Retry-After" in response.headers
        assert "stopping" in response.json()["error"]["message"]
