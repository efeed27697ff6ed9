"""② Operator switches that outlive a restart (the dispatch pause), mixed into JobStore."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from talkingface.jobs.tables import service_state


def dialect_insert(conn: Connection, table: Table = service_state) -> Any:
    """The backend's INSERT (SQLite's or PostgreSQL's: both have ON CONFLICT); Any: the two
    dialects' Insert classes share no public base that declares on_conflict_*."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


DISPATCH_PAUSED = "dispatch_paused"
WEBHOOK_CURSOR = "webhook_cursor"  # the last store event turned into webhook deliveries


class ServiceState:
    """Named JSON values in the store's service_state table."""

    _clock: Callable[[], datetime]

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # JobStore: a read transaction with errors translated

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # JobStore: a write transaction (BEGIN IMMEDIATE on SQLite)

    def read_state(self, name: str) -> object | None:
        """The value stored under `name`, or None when it was never set."""
        with self._read() as conn:
            row = conn.execute(
                select(service_state.c.value).where(service_state.c.name == name)
            ).first()
        return None if row is None else row[0]

    def write_state(self, name: str, value: object) -> None:
        """Store `value` (JSON-safe) under `name`, replacing what was there."""
        with self._write() as conn:
            now = self._clock()
            statement = dialect_insert(conn).values(name=name, value=value, updated_at=now)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[service_state.c.name],
                    set_={"value": value, "updated_at": now},
                )
            )

    def is_dispatch_paused(self) -> bool:
        return self.read_state(DISPATCH_PAUSED) is True

    def set_dispatch_paused(self, paused: bool) -> None:
        self.write_state(DISPATCH_PAUSED, paused)
