"""② The store's database connection: SQLite in WAL mode with its own BEGIN, or a server
database (PostgreSQL) with a checked pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from talkingface.errors import StoreUnavailableError

SQLITE_POOL_SIZE = 40
# Connections for single read statements (the status reads) on a server database, and so at
# most this many such reads at once per API process (api/deps.py read_store): more would open
# and close overflow connections under load, each a new PostgreSQL backend process.
STATEMENT_POOL_SIZE = 8
SQLITE_DAMAGE_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes)


def sqlite_engine(url: str, *, transactions: bool = True) -> Engine:
    """transactions=False: an engine for single read statements only, in autocommit, with no
    `begin` listener (a Connection event makes SQLAlchemy dispatch events on every execute:
    a fifth of a status read's store time)."""
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

    if not transactions:
        return engine

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def server_engine(url: str, *, transactions: bool = True) -> Engine:
    """transactions=False: an engine for single read statements only, in AUTOCOMMIT (no
    BEGIN and COMMIT round trips), with a fixed pool of STATEMENT_POOL_SIZE connections."""
    connect_args = (
        {"connect_timeout": 5} if make_url(url).get_backend_name() == "postgresql" else {}
    )
    if not transactions:
        return create_engine(
            url,
            pool_pre_ping=True,
            connect_args=connect_args,
            isolation_level="AUTOCOMMIT",
            pool_size=STATEMENT_POOL_SIZE,
            max_overflow=0,
        )
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def is_damaged_sqlite(exc: DBAPIError) -> bool:
    """The SQLite file is corrupt or not a database at all (not a lock or a missing dir)."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in SQLITE_DAMAGE_CODES


def damaged_sqlite_error(database: str, exc: DBAPIError) -> StoreUnavailableError:
    """One line for the operator: which file, and the way out (nothing is deleted for them)."""
    reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else "corrupt"
    return StoreUnavailableError(
        f"The job store {database} is damaged ({reason}); stop every server using it, move it "
        "aside (with its -wal and -shm files) and restore a backup, or start again without it "
        "for a new empty store.",
        details={"path": database, "damaged": True},
        cause=exc,
    )
