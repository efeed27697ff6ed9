"""Alerts: rules evaluated periodically; each fires once when its condition starts and
resolves once when it ends (no storms), to the log, to webhook URLs and to GET /v1/alerts.
Webhook deliveries go through the store's outbox (sent by ops.webhooks: retried with backoff,
kept across restarts, the same Idempotency-Key header on every try).

Rules (thresholds in `alerts.*`):
- `failure_rate`: failed / finished jobs over `failure_window_s` above `failure_rate_max`
  (once at least `failure_min_jobs` finished in the window);
- `workers_lost`: at least `lost_attempts_max` attempts lost (worker died or went silent)
  within `lost_window_s`: a worker dying or restarting repeatedly;
- `job_stalled`: an attempt stalled or timed out within `lost_window_s`;
- `queue_wait`: the oldest queued job has waited longer than `queue_wait_max_s`;
- `disk_free`: the data directory has less than `api.min_free_disk_bytes` free.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from talkingface.config import Settings
from talkingface.errors import StoreUnavailableError
from talkingface.jobs.outbox import Delivery
from talkingface.jobs.states import AttemptOutcome, JobState
from talkingface.jobs.stats import recent_activity
from talkingface.jobs.store import JobStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Condition:
    rule: str
    firing: bool
    message: str  # what is wrong and what to look at (also sent when it resolves)


@dataclass(frozen=True, slots=True)
class AlertChange:
    rule: str
    state: str  # "firing" | "resolved"
    message: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:  # Any: JSON-safe values
        return {
            "rule": self.rule,
            "state": self.state,
            "message": self.message,
            "at": self.at.isoformat(),
        }


class AlertManager:
    """Evaluates the rules on its own thread; `active()` and `history()` for the API."""

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings, self.store = settings, store
        self._active: dict[str, AlertChange] = {}
        self._history: deque[AlertChange] = deque(maxlen=200)
        self._unqueued: deque[Delivery] = deque(maxlen=200)  # not in the outbox yet
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tf-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def active(self) -> list[dict[str, Any]]:  # Any: JSON-safe values
        with self._lock:
            return [change.to_dict() for change in self._active.values()]

    def history(self) -> list[dict[str, Any]]:  # Any: JSON-safe values
        with self._lock:
            return [change.to_dict() for change in self._history]

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.alerts.interval_s):
            try:
                self.evaluate(datetime.now(UTC))
            except Exception:  # a boundary: alerting must never stop on a bad evaluation
                logger.exception("alert evaluation failed", extra={"event": "alerts_error"})

    def evaluate(self, now: datetime) -> list[AlertChange]:
        """Check every rule; return (and deliver) what started or stopped firing."""
        self._queue_deliveries()
        changes = []
        for condition in self._conditions(now):
            with self._lock:
                was_firing = condition.rule in self._active
                if condition.firing == was_firing:
                    continue
                state = "firing" if condition.firing else "resolved"
                change = AlertChange(condition.rule, state, condition.message, now)
                if condition.firing:
                    self._active[condition.rule] = change
                else:
                    del self._active[condition.rule]
                self._history.append(change)
            changes.append(change)
            self._deliver(change)
        return changes

    def _conditions(self, now: datetime) -> list[Condition]:
        a = self.settings.alerts
        activity = recent_activity(
            self.store,
            finished_since=now - timedelta(seconds=a.failure_window_s),
            ended_since=now - timedelta(seconds=a.lost_window_s),
        )
        return [
            self._failure_rate(activity.finished_by_state),
            self._lost(activity.ended_by_outcome),
            self._stalled(activity.ended_by_outcome),
            self._queue_wait(activity.oldest_queued_at, now),
            self._disk_free(),
        ]

    def _failure_rate(self, finished: dict[JobState, int]) -> Condition:
        a = self.settings.alerts
        failed = finished.get(JobState.FAILED, 0)
        total = failed + finished.get(JobState.SUCCEEDED, 0)
        rate = failed / total if total else 0.0
        firing = total >= a.failure_min_jobs and rate > a.failure_rate_max
        return Condition(
            "failure_rate",
            firing,
            f"{failed} of {total} jobs failed in the last {a.failure_window_s:.0f} s "
            f"({rate:.0%}, limit {a.failure_rate_max:.0%}); see GET /v1/stats failures_by_code.",
        )

    def _lost(self, outcomes: dict[AttemptOutcome, int]) -> Condition:
        a = self.settings.alerts
        lost = outcomes.get(AttemptOutcome.LOST, 0)
        return Condition(
            "workers_lost",
            lost >= a.lost_attempts_max,
            f"{lost} attempts lost their worker in the last {a.lost_window_s:.0f} s "
            f"(limit {a.lost_attempts_max}); workers are dying: check memory and the worker log.",
        )

    def _stalled(self, outcomes: dict[AttemptOutcome, int]) -> Condition:
        a = self.settings.alerts
        stuck = outcomes.get(AttemptOutcome.STALLED, 0) + outcomes.get(AttemptOutcome.TIMED_OUT, 0)
        return Condition(
            "job_stalled",
            stuck > 0,
            f"{stuck} attempts stalled or timed out in the last {a.lost_window_s:.0f} s; "
            "their workers were killed and the jobs retried.",
        )

    def _queue_wait(self, oldest: datetime | None, now: datetime) -> Condition:
        a = self.settings.alerts
        waited = (now - oldest).total_seconds() if oldest is not None else 0.0
        return Condition(
            "queue_wait",
            waited > a.queue_wait_max_s,
            f"The oldest queued job has waited {waited:.0f} s (limit {a.queue_wait_max_s:.0f} s); "
            "add workers or check that dispatching is not paused.",
        )

    def _disk_free(self) -> Condition:
        directory: Path = self.settings.data_dir
        free = shutil.disk_usage(directory).free if directory.exists() else 0
        minimum = self.settings.api.min_free_disk_bytes
        return Condition(
            "disk_free",
            free < minimum,
            f"{free / 2**30:.1f} GiB free in {directory} (minimum {minimum / 2**30:.1f} GiB); "
            "free space or lower api.result_retention_s.",
        )

    def _deliver(self, change: AlertChange) -> None:
        level = logging.WARNING if change.state == "firing" else logging.INFO
        logger.log(
            level,
            "alert %s %s: %s",
            change.rule,
            change.state,
            change.message,
            extra={"event": f"alert_{change.state}", "rule": change.rule},
        )
        body = json.dumps(change.to_dict(), sort_keys=True)
        self._unqueued.extend(
            Delivery(uuid.uuid4().hex, "alert", None, url, f"alert.{change.state}", body)
            for url in self.settings.alerts.webhook_urls
        )
        self._queue_deliveries()

    def _queue_deliveries(self) -> None:
        """Hand alert deliveries to the outbox; while the store refuses them (a full disk:
        the disk_free alert's own moment), keep them here and try again next round."""
        if not self._unqueued:
            return
        try:
            self.store.add_deliveries(list(self._unqueued))
        except StoreUnavailableError as exc:
            logger.warning(
                "%d alert deliveries wait for the store (%s)",
                len(self._unqueued),
                exc.message,
                extra={"event": "alert_delivery_deferred"},
            )
            return
        self._unqueued.clear()
