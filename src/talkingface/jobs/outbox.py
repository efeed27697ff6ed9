"""② The outbox: webhook and alert deliveries kept in the store until sent, mixed into JobStore.

A delivery is written once with a stable id and its exact body, then tried until it is
delivered or given up: at least once, with the same id (the receiver's Idempotency-Key) and
the same body (so the same signature) on every try, across restarts. A sender claims due
deliveries by pushing their due time past a hold, so a sender that dies mid-try leaves them
to be tried again when the hold ends.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.engine import Row

from talkingface.jobs.service_state import dialect_insert
from talkingface.jobs.tables import outbox


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # given up: refused, or out of tries


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str  # stable across tries and restarts: the Idempotency-Key header
    kind: str  # webhook | alert
    job_id: str | None  # a webhook's job
    url: str
    event: str  # X-Talkingface-Event
    body: str  # the exact JSON sent
    attempts: int = 0  # tries made so far
    state: DeliveryState = DeliveryState.PENDING


class DeliveryOutbox:
    """Outbox rows over JobStore's engine and transactions."""

    _clock: Callable[[], datetime]

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # JobStore: a read transaction with errors translated

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # JobStore: a write transaction (BEGIN IMMEDIATE on SQLite)

    def add_deliveries(self, deliveries: list[Delivery]) -> None:
        """Queue deliveries, due now; an id already in the outbox is left as it is."""
        if not deliveries:
            return
        with self._write() as conn:
            now = self._clock()
            for d in deliveries:
                statement = dialect_insert(conn, outbox).values(
                    id=d.id,
                    kind=d.kind,
                    job_id=d.job_id,
                    url=d.url,
                    event=d.event,
                    body=d.body,
                    state=DeliveryState.PENDING.value,
                    attempts=0,
                    due_at=now,
                    created_at=now,
                    updated_at=now,
                )
                conn.execute(statement.on_conflict_do_nothing(index_elements=[outbox.c.id]))

    def claim_due_deliveries(self, *, hold_s: float, limit: int = 20) -> list[Delivery]:
        """Pending deliveries that are due, held for `hold_s` (no other try starts meanwhile)."""
        with self._write() as conn:
            now = self._clock()
            query = (
                select(outbox)
                .where(outbox.c.state == DeliveryState.PENDING.value, outbox.c.due_at <= now)
                .order_by(outbox.c.due_at, outbox.c.id)
                .limit(limit)
            )
            if conn.dialect.name == "postgresql":  # SQLite: BEGIN IMMEDIATE serialises writers
                query = query.with_for_update(skip_locked=True)
            claimed = [_delivery(row) for row in conn.execute(query)]
            if claimed:
                conn.execute(
                    outbox.update()
                    .where(outbox.c.id.in_([d.id for d in claimed]))
                    .values(due_at=now + timedelta(seconds=hold_s), updated_at=now)
                )
            return claimed

    def record_delivery_try(
        self, delivery_id: str, *, delivered: bool, error: str | None, retry_in_s: float | None
    ) -> None:
        """One more try made: delivered, to be tried again in retry_in_s, or given up."""
        if delivered:
            state = DeliveryState.DELIVERED
        else:
            state = DeliveryState.PENDING if retry_in_s is not None else DeliveryState.FAILED
        with self._write() as conn:
            now = self._clock()
            values: dict[str, Any] = {  # Any: column values of several types
                "state": state.value,
                "attempts": outbox.c.attempts + 1,
                "last_error": error,
                "updated_at": now,
            }
            if retry_in_s is not None and not delivered:
                values["due_at"] = now + timedelta(seconds=retry_in_s)
            conn.execute(outbox.update().where(outbox.c.id == delivery_id).values(**values))

    def deliveries(self, *, state: DeliveryState | None = None) -> list[Delivery]:
        """Every delivery in the outbox (optionally in one state), oldest first."""
        query = select(outbox).order_by(outbox.c.created_at, outbox.c.id)
        if state is not None:
            query = query.where(outbox.c.state == state.value)
        with self._read() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    def prune_deliveries(self, *, ended_before_s: float) -> None:
        """Forget deliveries that ended (delivered or given up) over `ended_before_s` ago."""
        with self._write() as conn:
            before = self._clock() - timedelta(seconds=ended_before_s)
            conn.execute(
                delete(outbox).where(
                    outbox.c.state != DeliveryState.PENDING.value, outbox.c.updated_at < before
                )
            )


def _delivery(row: Row[Any]) -> Delivery:
    values = row._mapping
    return Delivery(
        id=values["id"],
        kind=values["kind"],
        job_id=values["job_id"],
        url=values["url"],
        event=values["event"],
        body=values["body"],
        attempts=int(values["attempts"]),
        state=DeliveryState(values["state"]),
    )
