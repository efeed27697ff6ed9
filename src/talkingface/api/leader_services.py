"""① What only the scheduler leader runs, begun and ended by its leadership
(cluster/leadership.py): the scheduler (dispatch, supervision, recovery, the janitor) with its
workers, the webhook sender, the alert rules, and the one-time adoption of legacy templates.

Each must run once per store: two schedulers would each recover the other's attempts and
each janitor would remove the other's files, two webhook senders would race on one cursor,
two alert loops would notify twice. Everything else (submissions, reads, event streams,
/easy, metrics of the process) runs in every API process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from talkingface.api.templates_registry import TemplateRegistry
from talkingface.config import Settings
from talkingface.errors import TalkingFaceError
from talkingface.executors.base import WorkerInfo
from talkingface.jobs.store import JobStore
from talkingface.ops.alerts import AlertManager
from talkingface.ops.metrics import ServiceMetrics
from talkingface.ops.webhooks import WebhookSender
from talkingface.scheduler import Scheduler

logger = logging.getLogger(__name__)


class LeaderServices:
    """The leader's duties (cluster/leadership.LeaderDuties); `scheduler` while leading."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        metrics: ServiceMetrics,
        templates: TemplateRegistry,
        show_alerts: Callable[[AlertManager | None], None],
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.templates = templates
        # GET /v1/alerts answers from the rules running here, or (None) from the leader's
        self.show_alerts = show_alerts
        self.scheduler: Scheduler | None = None
        self._webhooks: WebhookSender | None = None
        self._alerts: AlertManager | None = None

    def begin(self, is_leader: Callable[[], bool]) -> None:
        self.templates.adopt_legacy()
        scheduler = Scheduler(self.settings, self.store, metrics=self.metrics, is_leader=is_leader)
        scheduler.start()
        self.scheduler = scheduler
        self._webhooks = WebhookSender(self.store, self.settings.webhooks, self.settings.api)
        self._webhooks.start()
        self._alerts = AlertManager(self.settings, self.store)
        self._alerts.start()
        self.show_alerts(self._alerts)

    def end(self, reason: str) -> None:
        """Stop everything begun; the scheduler's attempts (their workers killed) are ended
        as lost, so the next leader retries them at once (if the store takes the record;
        else they are recovered when their lease runs out)."""
        if self._alerts is not None:
            self._alerts.stop()
            self.show_alerts(None)
        if self._webhooks is not None:
            self._webhooks.stop()
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is None:
            return
        scheduler.stop()
        try:
            scheduler.hand_over(reason)
        except TalkingFaceError as exc:
            logger.warning(
                "the attempts of this server are left to recovery: %s",
                exc.message,
                extra={"event": "hand_over_failed"},
            )

    def is_ready(self) -> bool:
        return self.scheduler is not None and self.scheduler.is_ready()

    def workers(self) -> list[WorkerInfo]:
        return self.scheduler.workers() if self.scheduler is not None else []

    def alerts(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # Any: JSON-safe
        alerts = self._alerts
        return (alerts.active(), alerts.history()) if alerts is not None else ([], [])
