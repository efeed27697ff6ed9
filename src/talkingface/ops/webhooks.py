"""Webhooks: POST a job's terminal state to its callback_url, signed, retried, recorded.

A thread of its own follows the store's terminal events (job_succeeded, job_failed,
job_canceled), whichever path produced them, and delivers to jobs that have a callback_url.
Each try is recorded on the job as a `webhook_attempted` event (status or error), then
`webhook_delivered` or `webhook_failed`. A slow or dead receiver only delays its own retries:
sends run on this thread with a timeout, never on the scheduler's or the API's.

Signature: `X-Talkingface-Signature: sha256=<hex HMAC-SHA256 of the raw body>` with
`webhooks.secret` (absent when no secret is configured).

Every try checks the callback host again, as URL inputs are checked (api.url_fetch), and
connects to the address it checked: a host that re-resolves to a private address after the
job was accepted (DNS rebinding) is refused, not called. Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from talkingface.api.url_fetch import Resolver, check_url
from talkingface.config import ApiSettings, WebhookSettings
from talkingface.errors import TalkingFaceError
from talkingface.jobs.store import JobStore

logger = logging.getLogger(__name__)

TERMINAL_KINDS = {
    "job_succeeded": "job.succeeded",
    "job_failed": "job.failed",
    "job_canceled": "job.canceled",
}
POLL_S = 0.5


@dataclass(order=True)
class _Delivery:
    due_s: float
    job_id: str = field(compare=False)
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    event: str = field(compare=False)
    attempt: int = field(compare=False, default=1)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Follows terminal events from the store and delivers them; start() / stop()."""

    def __init__(
        self,
        store: JobStore,
        settings: WebhookSettings,
        url_policy: ApiSettings,
        resolver: Resolver | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.url_policy = url_policy  # which hosts may be called (api.url_allowed_networks…)
        self.resolver = resolver
        self._pending: list[_Delivery] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_event_id = 0

    def start(self) -> None:
        self._last_event_id = self.store.last_event_id()  # deliver what happens from now on
        self._thread = threading.Thread(target=self._loop, name="tf-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        with httpx.Client(
            timeout=self.settings.timeout_s, follow_redirects=False, trust_env=False
        ) as http:
            while not self._stop.is_set():
                try:
                    self._collect()
                    self._deliver_due(http)
                except Exception:  # a boundary: a bad receiver or store hiccup never kills it
                    logger.exception("webhook loop failed", extra={"event": "webhook_error"})
                self._stop.wait(POLL_S)

    def _collect(self) -> None:
        for event in self.store.events_since(self._last_event_id, kinds=set(TERMINAL_KINDS)):
            self._last_event_id = max(self._last_event_id, event.id)
            job = self.store.get(event.job_id)
            if not job.options.callback_url:
                continue
            payload = _payload(job, TERMINAL_KINDS[event.kind])
            body = json.dumps(payload, default=str, sort_keys=True).encode()
            heapq.heappush(
                self._pending,
                _Delivery(
                    time.monotonic(), job.id, job.options.callback_url, body, payload["event"]
                ),
            )

    def _deliver_due(self, http: httpx.Client) -> None:
        while self._pending and self._pending[0].due_s <= time.monotonic():
            delivery = heapq.heappop(self._pending)
            outcome = self.send(http, delivery.url, delivery.body, delivery.event)
            data: dict[str, Any] = {"url": delivery.url, "attempt": delivery.attempt, **outcome}
            self.store.add_event(delivery.job_id, "webhook_attempted", data)
            if outcome.get("ok"):
                self.store.add_event(delivery.job_id, "webhook_delivered", data)
            elif outcome.get("refused") or delivery.attempt >= self.settings.max_attempts:
                self.store.add_event(delivery.job_id, "webhook_failed", data)
                logger.warning(
                    "webhook to %s for job %s failed %d times",
                    delivery.url,
                    delivery.job_id,
                    delivery.attempt,
                    extra={"event": "webhook_failed", "job_id": delivery.job_id},
                )
            else:
                delay = self.settings.backoff_base_s * 2 ** (delivery.attempt - 1)
                delivery.attempt += 1
                delivery.due_s = time.monotonic() + delay
                heapq.heappush(self._pending, delivery)

    def send(self, http: httpx.Client, url: str, body: bytes, event: str) -> dict[str, Any]:
        """One try: `ok`, and the HTTP `status` or the `error` (`refused`: not to be retried)."""
        headers = {"Content-Type": "application/json", "X-Talkingface-Event": event}
        if self.settings.secret is not None:
            headers["X-Talkingface-Signature"] = sign(self.settings.secret.get_secret_value(), body)
        try:
            target = check_url("callback_url", url, self.url_policy, self.resolver)
        except TalkingFaceError as exc:
            return {"ok": False, "error": exc.message, "refused": True}
        headers.update(target.headers())
        try:
            response = http.post(
                target.pinned_url,
                content=body,
                headers=headers,
                extensions=target.extensions(),
            )
        except httpx.HTTPError as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()}
        return {"ok": 200 <= response.status_code < 300, "status": response.status_code}


def _payload(job: Any, event: str) -> dict[str, Any]:  # Any: a JobRecord; JSON-safe result
    return {
        "event": event,
        "job_id": job.id,
        "state": job.state.value,
        "attempt": job.attempt,
        "error": None if job.error is None else job.error.to_dict(),
        "result": None if job.result is None else job.result.figures(),
    }
