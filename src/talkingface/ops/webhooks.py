"""Webhooks: POST a job's terminal state to its callback_url, signed, retried, recorded.

A thread of its own follows the store's terminal events (job_succeeded, job_failed,
job_canceled), whichever path produced them, from a cursor kept in the store, and turns each
one for a job with a callback_url into a delivery in the store's outbox (jobs/outbox.py). The
same thread sends every due delivery, alerts' included, until it is delivered or given up:
at least once, across restarts, with the same body, signature and `Idempotency-Key` header
(the delivery's id) on every try, so a receiver dedupes by that header. Each try is recorded
on the job as a `webhook_attempted` event (status or error), then `webhook_delivered` or
`webhook_failed`. A slow or dead receiver only delays its own retries: sends run on this
thread with a timeout, never on the scheduler's or the API's.

Signature: `X-Talkingface-Signature: sha256=<hex HMAC-SHA256 of the raw body>` with
`webhooks.secret` (absent when no secret is configured).

Every try checks the callback host again, as URL inputs are checked (url_guard), and
connects to the address it checked: a host that re-resolves to a private address after the
job was accepted (DNS rebinding) is refused, not called. Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import asdict
from typing import Any

import httpx

from talkingface.config import ApiSettings, WebhookSettings
from talkingface.errors import JobNotFoundError, TalkingFaceError
from talkingface.jobs.outbox import Delivery
from talkingface.jobs.service_state import WEBHOOK_CURSOR
from talkingface.jobs.store import JobStore
from talkingface.url_guard import Resolver, check_url

logger = logging.getLogger(__name__)

TERMINAL_KINDS = {
    "job_succeeded": "job.succeeded",
    "job_failed": "job.failed",
    "job_canceled": "job.canceled",
}
POLL_S = 0.5
IDEMPOTENCY_HEADER = "Idempotency-Key"  # the delivery's id: the same on every try
CLAIM_MARGIN_S = 5.0  # a claimed delivery is held (not tried again) 2 × timeout_s plus this
PRUNE_INTERVAL_S = 600.0
DELIVERY_RETENTION_S = 7 * 86400.0  # ended deliveries are kept this long for inspection


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_delivery_id(event_id: int, url: str) -> str:
    """The stable id of one terminal event's delivery to one URL: the same every time the
    event is collected (so a collector that restarts adds no second delivery)."""
    return hashlib.sha256(f"webhook|{event_id}|{url}".encode()).hexdigest()[:32]


class WebhookSender:
    """Turns terminal events into outbox deliveries and sends every due delivery (webhooks
    and alerts) until it is delivered or given up; start() / stop()."""

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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_prune_s = 0.0

    def start(self) -> None:
        if self.store.read_state(WEBHOOK_CURSOR) is None:  # a new store: from now on
            self.store.write_state(WEBHOOK_CURSOR, self.store.last_event_id())
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
                    self.collect()
                    self.deliver_due(http)
                    self._prune()
                except Exception:  # a boundary: a bad receiver or store hiccup never kills it
                    logger.exception("webhook loop failed", extra={"event": "webhook_error"})
                self._stop.wait(POLL_S)

    def collect(self) -> None:
        """Terminal events since the stored cursor become deliveries; then the cursor moves."""
        cursor = int(str(self.store.read_state(WEBHOOK_CURSOR) or 0))
        found = self.store.events_since(cursor, kinds=set(TERMINAL_KINDS))
        if not found:
            return
        deliveries = []
        for event in found:
            try:
                job = self.store.get(event.job_id)
            except JobNotFoundError:
                continue  # purged since
            if not job.options.callback_url:
                continue
            payload = webhook_payload(job, TERMINAL_KINDS[event.kind])
            body = json.dumps(payload, default=str, sort_keys=True)
            url = job.options.callback_url
            deliveries.append(
                Delivery(
                    webhook_delivery_id(event.id, url),
                    "webhook",
                    job.id,
                    url,
                    payload["event"],
                    body,
                )
            )
        self.store.add_deliveries(deliveries)
        self.store.write_state(WEBHOOK_CURSOR, found[-1].id)

    def deliver_due(self, http: httpx.Client) -> None:
        """Send every due delivery once; record each try, schedule the retry or give up."""
        hold_s = 2 * self.settings.timeout_s + CLAIM_MARGIN_S  # connect + read, then margin
        while not self._stop.is_set():
            claimed = self.store.claim_due_deliveries(hold_s=hold_s, limit=1)
            if not claimed:
                return
            self._try(http, claimed[0])

    def _try(self, http: httpx.Client, delivery: Delivery) -> None:
        attempt = delivery.attempts + 1
        outcome = self.send(
            http,
            delivery.url,
            delivery.body.encode(),
            delivery.event,
            delivery_id=delivery.id,
            check_host=delivery.kind == "webhook",
        )
        ok = bool(outcome.get("ok"))
        give_up = not ok and (bool(outcome.get("refused")) or attempt >= self.settings.max_attempts)
        retry_in_s = None
        if not ok and not give_up:
            retry_in_s = self.settings.backoff_base_s * 2 ** (attempt - 1)
        error = None if ok else str(outcome.get("error") or f"HTTP {outcome.get('status')}")
        self.store.record_delivery_try(
            delivery.id, delivered=ok, error=error, retry_in_s=retry_in_s
        )
        if delivery.job_id is not None:
            data: dict[str, Any] = {"url": delivery.url, "attempt": attempt, **outcome}
            self._job_event(delivery.job_id, "webhook_attempted", data)
            if ok:
                self._job_event(delivery.job_id, "webhook_delivered", data)
            elif give_up:
                self._job_event(delivery.job_id, "webhook_failed", data)
        if give_up:
            logger.warning(
                "%s delivery to %s failed %d times; giving up",
                delivery.kind,
                delivery.url,
                attempt,
                extra={"event": "webhook_failed", "job_id": delivery.job_id},
            )

    def _job_event(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        try:
            self.store.add_event(job_id, kind, data)
        except JobNotFoundError:
            return  # purged while its webhook was pending: the delivery record remains

    def _prune(self) -> None:
        now_s = time.monotonic()
        if now_s < self._next_prune_s:
            return
        self._next_prune_s = now_s + PRUNE_INTERVAL_S
        self.store.prune_deliveries(ended_before_s=DELIVERY_RETENTION_S)

    def send(
        self,
        http: httpx.Client,
        url: str,
        body: bytes,
        event: str,
        *,
        delivery_id: str | None = None,
        check_host: bool = True,
    ) -> dict[str, Any]:
        """One try: `ok`, and the HTTP `status` or the `error` (`refused`: not to be retried).
        Alert URLs (the operator's own) are not held to the callback host rules."""
        headers = {"Content-Type": "application/json", "X-Talkingface-Event": event}
        if delivery_id is not None:
            headers[IDEMPOTENCY_HEADER] = delivery_id
        if self.settings.secret is not None:
            headers["X-Talkingface-Signature"] = sign(self.settings.secret.get_secret_value(), body)
        if not check_host:
            return _post(http, url, body, headers, {})
        try:
            target = check_url("callback_url", url, self.url_policy, self.resolver)
        except TalkingFaceError as exc:
            return {"ok": False, "error": exc.message, "refused": True}
        headers.update(target.headers())
        return _post(http, target.pinned_url, body, headers, target.extensions())


def _post(
    http: httpx.Client,
    url: str | httpx.URL,
    body: bytes,
    headers: dict[str, str],
    extensions: dict[str, Any],  # Any: httpx request extensions
) -> dict[str, Any]:  # Any: JSON-safe values
    try:
        response = http.post(url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()}
    return {"ok": 200 <= response.status_code < 300, "status": response.status_code}


def webhook_payload(job: Any, event: str) -> dict[str, Any]:  # Any: a JobRecord; JSON-safe
    """The body of a job's callback: its terminal state, the engine that rendered it, the
    result's figures and, for a job that asked for them (`evaluate`), its quality receipt."""
    result = job.result
    receipt = None if result is None or result.receipt is None else asdict(result.receipt)
    return {
        "event": event,
        "job_id": job.id,
        "state": job.state.value,
        "engine": job.options.engine,
        "attempt": job.attempt,
        "error": None if job.error is None else job.error.to_dict(),
        "result": None if result is None else result.figures(),
        "receipt": receipt,
    }
