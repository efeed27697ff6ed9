"""State a restart must not lose: a template being prepared, a webhook being delivered and the
dispatch pause, each across a SIGKILL of a real `talkingface serve` and a fresh start."""

from __future__ import annotations

import hashlib
import hmac
import signal
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from talkingface.media.encode import VideoWriter
from talkingface.samples import astronaut_photo, iter_template_frames_from_photo
from tests.integration.service_fixtures import Service, descendants_alive, wait_until

ServiceFactory = Callable[..., Service]
LONG_TEMPLATE_S = 40  # long enough that its preparation is seen running, on a loaded machine
SECRET = "restart-secret"
RESTART_ENV = {
    "TALKINGFACE_API__ALLOW_PRIVATE_URL_HOSTS": "true",  # the receiver is on loopback
    "TALKINGFACE_WEBHOOKS__SECRET": SECRET,
    "TALKINGFACE_WEBHOOKS__TIMEOUT_S": "1",  # a try cut by a kill is held 2 × 1 + 5 s
    "TALKINGFACE_WEBHOOKS__BACKOFF_BASE_S": "0.2",
}


@pytest.fixture(scope="module")
def long_template_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """256 px, LONG_TEMPLATE_S seconds of the astronaut: a preparation that takes a while."""
    path = tmp_path_factory.mktemp("long") / "long_template.mp4"
    frames = iter_template_frames_from_photo(
        astronaut_photo(), frame_count=25 * LONG_TEMPLATE_S, size_px=256
    )
    with VideoWriter(path, width=256, height=256, fps=25, audio_path=None) as writer:
        for frame in frames:
            writer.write(frame)
    return path


class DedupingReceiver(ThreadingHTTPServer):
    """A webhook receiver on loopback that records every raw delivery and dedupes by the
    Idempotency-Key header, as receivers are told to; `on_first` runs when the first delivery
    has arrived, before it is answered (the test kills the server there)."""

    def __init__(self) -> None:
        self.raw: list[tuple[dict[str, str], bytes]] = []
        self.on_first: Callable[[], None] = lambda: None
        self.first_handled = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.raw.append((dict(self.headers), body))
                if len(receiver.raw) == 1:
                    receiver.on_first()
                    receiver.first_handled.set()
                try:
                    self.send_response(200)
                    self.end_headers()
                except OSError:
                    return  # the sender was killed while we held its request

            def log_message(self, format: str, *args: Any) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def distinct_deliveries(self) -> dict[str, bytes]:
        return {headers.get("Idempotency-Key", ""): body for headers, body in self.raw}


@pytest.fixture
def receiver() -> Iterator[DedupingReceiver]:
    server = DedupingReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def orphan_workers() -> Iterator[list[int]]:
    """Worker pids of killed servers: they exit once their pipe breaks; killed if not."""
    pids: list[int] = []
    yield pids
    wait_until(lambda: not descendants_alive(pids), timeout_s=30, what="orphaned workers to exit")


def _kill(service: Service, orphans: list[int]) -> None:
    orphans.extend(service.worker_pids())
    service.process.send_signal(signal.SIGKILL)
    service.process.wait(timeout=30)


def _template(service: Service, template_id: str) -> dict[str, Any]:
    response = service.http.get(f"/v1/templates/{template_id}")
    response.raise_for_status()
    meta: dict[str, Any] = response.json()
    return meta


def _is_mid_preparation(service: Service, template_id: str) -> bool:
    """Preparing, with its thumbnail written: the worker has started on it (any version)."""
    if _template(service, template_id)["state"] != "preparing":
        return False
    return service.http.get(f"/v1/templates/{template_id}/thumbnail").status_code == 200


def test_a_template_and_a_webhook_survive_a_server_killed_in_the_middle(
    service_factory: ServiceFactory,
    receiver: DedupingReceiver,
    orphan_workers: list[int],
    long_template_clip: Path,
    short_template_clip: Path,
    speech_wav: Path,
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    # Given a server preparing a long template (its own cache: no entry from an earlier run)
    env = {**RESTART_ENV, "TALKINGFACE_CACHE__DIR": str(tmp_path / "cache")}
    first = service_factory(workers=2, extra_env=env)
    with long_template_clip.open("rb") as video:
        registered = first.http.post("/v1/templates", files={"video": ("long.mp4", video)})
    assert registered.status_code == 202, registered.text
    template_id = registered.json()["id"]
    wait_until(
        lambda: _is_mid_preparation(first, template_id),
        timeout_s=60,
        what="the template's preparation to start",
    )
    # When it is killed mid-preparation and started again
    _kill(first, orphan_workers)
    second = service_factory(workers=2, extra_env=env)

    # And that server is killed while a webhook it sends is in flight (received, unanswered)
    receiver.on_first = lambda: _kill(second, orphan_workers)
    with speech_wav.open("rb") as audio, short_template_clip.open("rb") as video:
        submitted = second.http.post(
            "/v1/jobs",
            files={"audio": ("voice.wav", audio), "video": ("me.mp4", video)},
            data={"callback_url": receiver.url},
        )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    assert receiver.first_handled.wait(timeout=120), "the webhook never arrived"
    assert second.process.poll() is not None
    third = service_factory(workers=2, extra_env=env)

    # Then the template is prepared, and the webhook arrives once (one delivery id)
    meta = wait_until(
        lambda: (m := _template(third, template_id))["state"] != "preparing" and m,
        timeout_s=180,
        what="the template to be prepared after the restarts",
    )
    assert meta["state"] == "ready", meta
    assert meta["face_count"] == 1
    preparation = third.job(meta["job_id"])  # recovered and retried like a render job
    lost = [a["error"]["code"] for a in preparation["attempts"] if a.get("error")]
    assert "WORKER_LOST" in lost and preparation["attempts"][-1]["outcome"] == "succeeded"
    wait_until(lambda: len(receiver.raw) >= 2, timeout_s=60, what="the webhook to be sent again")
    distinct = receiver.distinct_deliveries()
    assert len(distinct) == 1 and "" not in distinct, [h for h, _ in receiver.raw]
    bodies = {body for _, body in receiver.raw}
    signatures = {headers["X-Talkingface-Signature"] for headers, _ in receiver.raw}
    assert len(bodies) == 1  # the same payload every time…
    body = bodies.pop()
    assert signatures == {"sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}
    assert job_id.encode() in body
    events = third.http.get(f"/v1/jobs/{job_id}/events").json()
    delivered = [e for e in events if e["kind"] == "webhook_delivered"]
    assert len(delivered) == 1
    record_property("raw_webhook_deliveries", len(receiver.raw))


def test_a_paused_queue_stays_paused_across_a_restart(
    service_factory: ServiceFactory,
    orphan_workers: list[int],
    speech_wav: Path,
    short_template_clip: Path,
) -> None:
    first = service_factory()
    assert first.http.post("/v1/queue/pause").status_code == 200
    _kill(first, orphan_workers)

    second = service_factory()
    assert second.http.get("/v1/queue").json()["paused"] is True
    with speech_wav.open("rb") as audio, short_template_clip.open("rb") as video:
        submitted = second.http.post(
            "/v1/jobs", files={"audio": ("a.wav", audio), "video": ("v.mp4", video)}
        )
    job_id = submitted.json()["id"]
    queue = second.http.get("/v1/queue").json()
    assert [item["id"] for item in queue["items"]] == [job_id]
    assert second.job(job_id)["state"] == "queued"
    assert second.http.post("/v1/queue/resume").status_code == 200
    assert second.wait_state(job_id, "succeeded", "failed")["state"] == "succeeded"
