"""③ The scheduler leader's lock: a PostgreSQL session-level advisory lock, held on a
connection of its own for the leader's whole life.

PostgreSQL releases a session's advisory locks when the session ends, however it ends: the
process exits or is killed (its socket closes), the network drops (TCP keepalives, set
here, notice within a few seconds), or the session sits silent past `idle_session_timeout`
(set here to the lease: a leader that hangs, or is stopped, loses the lock after one lease).
The leader confirms the lock every election interval, which also keeps its session busy, and
writes its status under the lock in the same statement (cluster/leader_status.py).
Every statement and connection attempt is bounded, so a confirmation cannot hang.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import psycopg
from psycopg.types.json import Json
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x7466_0010  # beside the store's own keys (jobs/store.py: 0x7466_000n)
LEADER_STATE = "scheduler_leader"  # the service_state row that describes the leader
CONNECT_TIMEOUT_S = 5


class LeaderLock:
    """try_acquire() / confirm() / release() over one dedicated connection."""

    def __init__(self, database_url: str, *, lease_s: float) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._where = url.render_as_string(hide_password=True)
        self._lease_s = lease_s
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._problem: str | None = None  # the last one logged: each is logged once
        self.identity = f"{socket.gethostname()}:{os.getpid()}"

    def try_acquire(self) -> bool:
        """Take the lock if no other session holds it; False when another one does or the
        database cannot be reached now (the reason is logged)."""
        try:
            conn = self._connect()
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()
        except psycopg.Error as exc:
            self._drop(f"could not try the scheduler leader lock at {self._where}: {exc}")
            return False
        self._problem = None
        return bool(row and row[0])

    def confirm(self, status: dict[str, Any]) -> bool:
        """Record the leader's `status` (JSON-safe) in the store's `scheduler_leader` row if,
        and only if, this session holds the lock at that moment: one statement on the lock's
        own session, so no leader that has lost the lock can overwrite its successor's
        record. True: the lock is held (asked of PostgreSQL, not assumed) and the status
        written; False: the session or the lock is gone, and the caller must stop leading."""
        if self._conn is None:
            return False
        try:
            row = self._conn.execute(
                "INSERT INTO service_state (name, value, updated_at) "
                "SELECT %(name)s, %(value)s, now() WHERE EXISTS (SELECT 1 FROM pg_locks "
                "WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND classid = 0 "
                "AND objid = %(key)s AND granted) "
                "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, "
                "updated_at = EXCLUDED.updated_at RETURNING name",
                {"name": LEADER_STATE, "value": Json(status), "key": LEADER_LOCK_KEY},
            ).fetchone()
        except psycopg.Error as exc:
            self._drop(f"lost the scheduler leader session at {self._where}: {exc}")
            return False
        if row is None:
            self._drop("the scheduler leader lock is no longer held by this session")
            return False
        return True

    def release(self) -> None:
        """Give the lock up (closing the session releases it)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        lease_ms = int(self._lease_s * 1000)
        bound_ms = max(500, lease_ms // 4)  # a statement, or unacknowledged data, past this
        conn = psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=f"talkingface scheduler {self.identity}",
            keepalives=1,
            keepalives_idle=max(1, int(self._lease_s / 4)),
            keepalives_interval=1,
            keepalives_count=3,
            tcp_user_timeout=bound_ms,
        )
        conn.execute(f"SET statement_timeout = {bound_ms}")
        try:  # PostgreSQL 14 and later: the server ends a session silent for a lease
            conn.execute(f"SET idle_session_timeout = {lease_ms}")
        except psycopg.errors.UndefinedObject:
            logger.warning(
                "PostgreSQL before 14 has no idle_session_timeout: a hung (not dead) leader "
                "keeps the scheduler lock until its connection drops",
                extra={"event": "leader_lease_unenforced"},
            )
        self._conn = conn
        return conn

    def _drop(self, reason: str) -> None:
        if reason != self._problem:
            self._problem = reason
            logger.warning(reason, extra={"event": "leader_lock_unavailable"})
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
