"""② The store's database connection: SQLite in WAL mode with its own BEGIN, or a server
database (PostgreSQL) with a checked pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_POOL_SIZE = 40


def sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # The API serves requests from a pool of up to 40 threads (AnyIO's default); a smaller
    # connection pool closes and reopens connections (4 PRAGMAs each) under load.
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 5.0},
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=10,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:  # Any: DBAPI objects
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def server_engine(url: str) -> Engine:
    connect_args = (
        {"connect_timeout": 5} if make_url(url).get_backend_name() == "postgresql" else {}
    )
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
