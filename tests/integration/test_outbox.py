"""The delivery outbox (webhooks and alerts) on SQLite and PostgreSQL, and the webhook sender
over it: one delivery per event, the same id, body and signature on every try, and a try cut
short by a dead sender made again once its hold ends."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from talkingface.config import ApiSettings, Settings, WebhookSettings
from talkingface.errors import ErrorCode, ErrorRecord, Stage
from talkingface.jobs.outbox import Delivery, DeliveryState
from talkingface.jobs.records import JobInputs, JobOptions, JobResult
from talkingface.jobs.service_state import WEBHOOK_CURSOR
from talkingface.jobs.states import AttemptOutcome
from talkingface.jobs.store import JobStore
from talkingface.ops.alerts import AlertManager
from talkingface.ops.webhooks import WebhookSender
from tests.integration.store_fixtures import FakeClock


def _delivery(delivery_id: str = "d1", url: str = "http://127.0.0.1:9/hook") -> Delivery:
    return Delivery(delivery_id, "alert", None, url, "alert.firing", '{"rule": "x"}')


def test_a_delivery_added_twice_is_kept_once(store: JobStore) -> None:
    store.add_deliveries([_delivery(), _delivery()])
    store.add_deliveries([_delivery()])

    assert [d.id for d in store.deliveries()] == ["d1"]


def test_a_claimed_delivery_is_held_then_claimed_again_if_its_try_never_ended(
    store: JobStore, clock: FakeClock
) -> None:
    store.add_deliveries([_delivery()])
    assert [d.id for d in store.claim_due_deliveries(hold_s=10)] == ["d1"]
    assert store.claim_due_deliveries(hold_s=10) == []  # another sender must not send it too

    clock.advance(11)  # the sender died mid-try: nothing was recorded
    again = store.claim_due_deliveries(hold_s=10)

    assert [(d.id, d.body, d.attempts) for d in again] == [("d1", '{"rule": "x"}', 0)]


def test_a_try_is_recorded_as_delivered_retried_later_or_given_up(
    store: JobStore, clock: FakeClock
) -> None:
    store.add_deliveries([_delivery("a"), _delivery("b"), _delivery("c")])
    store.claim_due_deliveries(hold_s=10, limit=3)
    store.record_delivery_try("a", delivered=True, error=None, retry_in_s=None)
    store.record_delivery_try("b", delivered=False, error="HTTP 500", retry_in_s=30)
    store.record_delivery_try("c", delivered=False, error="refused", retry_in_s=None)

    states = {d.id: (d.state, d.attempts) for d in store.deliveries()}
    assert states == {
        "a": (DeliveryState.DELIVERED, 1),
        "b": (DeliveryState.PENDING, 1),
        "c": (DeliveryState.FAILED, 1),
    }
    clock.advance(29)
    assert store.claim_due_deliveries(hold_s=10) == []
    clock.advance(2)
    assert [d.id for d in store.claim_due_deliveries(hold_s=10)] == ["b"]
    store.prune_deliveries(ended_before_s=0)
    assert [d.id for d in store.deliveries()] == ["b"]  # pending ones are never pruned


class FlakyReceiver(ThreadingHTTPServer):
    """Answers 500 to the first request, 200 after; records every request."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                self.send_response(500 if len(receiver.calls) == 1 else 200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def flaky() -> Iterator[FlakyReceiver]:
    server = FlakyReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _succeeded_job_with_callback(store: JobStore, url: str) -> str:
    inputs = JobInputs(audio_path="/in/a.wav", video_path="/in/a.mp4")
    job, _ = store.create(inputs, JobOptions(callback_url=url))
    claimed = store.claim_next("w1", lease_s=30)
    assert claimed is not None
    result = JobResult("/out/r.mp4", 1.0, 128, 128, 25.0, 25, 0, 2.5)
    assert store.succeed(job.id, claimed[1].id, result)
    return job.id


def test_a_webhook_is_collected_once_and_sent_with_the_same_id_and_signature_on_retry(
    store: JobStore, clock: FakeClock, flaky: FlakyReceiver
) -> None:
    settings = WebhookSettings(secret="s3cret", backoff_base_s=5)
    policy = ApiSettings(allow_private_url_hosts=True)
    sender = WebhookSender(store, settings, policy)
    store.write_state(WEBHOOK_CURSOR, 0)
    url = f"http://127.0.0.1:{flaky.server_address[1]}/hook"
    job_id = _succeeded_job_with_callback(store, url)

    sender.collect()
    store.write_state(WEBHOOK_CURSOR, 0)  # as if a restart came before the cursor was saved
    sender.collect()
    assert len(store.deliveries()) == 1
    with httpx.Client(trust_env=False, timeout=10) as http:
        sender.deliver_due(http)  # 500: retried in 5 s
        assert len(flaky.calls) == 1
        clock.advance(6)
        sender.deliver_due(http)

    assert len(flaky.calls) == 2
    (first_headers, first_body), (second_headers, second_body) = flaky.calls
    assert first_body == second_body and job_id.encode() in first_body
    key = first_headers["Idempotency-Key"]
    assert key == second_headers["Idempotency-Key"] == store.deliveries()[0].id
    expected = "sha256=" + hmac.new(b"s3cret", first_body, hashlib.sha256).hexdigest()
    assert first_headers["X-Talkingface-Signature"] == second_headers["X-Talkingface-Signature"]
    assert first_headers["X-Talkingface-Signature"] == expected
    assert [d.state for d in store.deliveries()] == [DeliveryState.DELIVERED]
    kinds = [e.kind for e in store.events(job_id) if e.kind.startswith("webhook_")]
    assert kinds == ["webhook_attempted", "webhook_attempted", "webhook_delivered"]


def test_an_alert_is_queued_in_the_outbox_and_sent_with_its_delivery_id(
    store: JobStore, clock: FakeClock, flaky: FlakyReceiver, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{flaky.server_address[1]}/alerts"
    settings = Settings(
        data_dir=tmp_path,
        alerts={"webhook_urls": [url], "failure_min_jobs": 1},
        webhooks={"backoff_base_s": 0},
        api={"min_free_disk_bytes": 0},
    )
    job, _ = store.create(JobInputs("/in/a.wav", "/in/a.mp4"), JobOptions())
    claimed = store.claim_next("w1", lease_s=30)
    assert claimed is not None
    error = ErrorRecord(ErrorCode.NO_FACE, Stage.TRACK, False, "No face found in a.mp4.")
    store.fail_attempt(job.id, claimed[1].id, error, outcome=AttemptOutcome.FAILED, retry_at=None)

    changes = AlertManager(settings, store).evaluate(clock())
    assert [(c.rule, c.state) for c in changes] == [("failure_rate", "firing")]
    (queued,) = store.deliveries()
    assert (queued.kind, queued.url, queued.event) == ("alert", url, "alert.firing")
    sender = WebhookSender(store, settings.webhooks, settings.api)
    with httpx.Client(trust_env=False, timeout=10) as http:
        sender.deliver_due(http)  # 500, then due again at once (backoff 0)
        sender.deliver_due(http)

    keys = [headers["Idempotency-Key"] for headers, _ in flaky.calls]
    assert keys == [queued.id, queued.id]
    assert json.loads(flaky.calls[-1][1])["rule"] == "failure_rate"
    assert [d.state for d in store.deliveries()] == [DeliveryState.DELIVERED]
