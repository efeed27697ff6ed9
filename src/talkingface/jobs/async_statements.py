"""② The status reads awaited in the event loop on PostgreSQL (GET /v1/jobs/{id}, /easy/query).

Status polling is the API's hottest path (bench/load.py). On a server database its reads ran
in the thread pool, so that a stalled connection could not stop the loop; the hand-off cost a
third of a read's CPU. psycopg's asyncio connections wait without blocking the loop and
without a thread. The reads are the same prebuilt statements as the synchronous path
(jobs/status_reads.py), compiled once for psycopg and run as server-side prepared statements
straight on the driver: through SQLAlchemy's asyncio layer (a greenlet per call, parameter
and row processing) a read cost about three times the server CPU of the same read on SQLite. Column
values get SQLAlchemy's own result processing (aware UTC datetimes), so a row means the
same on both paths.

The pool belongs to the event loop it was opened in, so it is opened lazily in the first loop
that reads, and again if a later read comes from another loop (tests that start one app
several times).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import URL, ColumnElement, Select
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from talkingface.jobs.database import STATEMENT_POOL_SIZE
from talkingface.jobs.status_reads import StatusRead

T = TypeVar("T")
POOL_WAIT_S = 5.0  # a read waits this long for a free connection
CONNECT_TIMEOUT_S = 5


def async_statement_conninfo(url: URL) -> str | None:
    """The libpq URI for psycopg, or None where the database has no asyncio path here
    (SQLite reads run in the loop already)."""
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class _Row:
    """A result row as the status reads use it: `row._mapping[key]` and `row.key`."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping

    def __getattr__(self, key: str) -> Any:
        try:
            return self._mapping[key]
        except KeyError:
            raise AttributeError(key) from None


@dataclass(slots=True)
class _Compiled:
    sql: str
    defaults: dict[str, Any]  # the statement's own bound literals
    columns: tuple[ColumnElement[Any], ...]
    keys: tuple[str, ...]  # the row keys, one per column
    # One per column, made from the first reply's column types (the driver's type OIDs
    # decide some processors, as in SQLAlchemy's own results).
    processors: tuple[Callable[[Any], Any] | None, ...] | None = None

    def rows(self, cursor: psycopg.AsyncCursor[tuple[Any, ...]], values: list[Any]) -> list[_Row]:
        if self.processors is None:
            types = [column.type_code for column in cursor.description or ()]
            self.processors = tuple(
                column.type._cached_result_processor(_DIALECT, type_code)
                for column, type_code in zip(self.columns, types, strict=True)
            )
        return [
            _Row(
                {
                    key: value if process is None or value is None else process(value)
                    for key, process, value in zip(self.keys, self.processors, row, strict=True)
                }
            )
            for row in values
        ]


_DIALECT = PGDialect_psycopg()
_compiled: dict[int, _Compiled] = {}


def _compile(statement: Select[Any]) -> _Compiled:
    """The statement as psycopg SQL (the prebuilt statements live as long as the process,
    so id() keys are stable)."""
    found = _compiled.get(id(statement))
    if found is None:
        compiled = statement.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
        columns = tuple(statement.selected_columns)
        found = _compiled[id(statement)] = _Compiled(
            sql=str(compiled),
            defaults={k: v for k, v in compiled.params.items() if v is not None},
            columns=columns,
            keys=tuple(str(column.key) for column in columns),
        )
    return found


class AsyncStatements:
    """A pool of at most STATEMENT_POOL_SIZE AUTOCOMMIT connections on asyncio; a read waits
    for a free one (at most this many reads at once per process, as on the thread path)."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _pool_for_this_loop(self) -> AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        # A pool of an earlier, finished loop is dropped, not closed: its connections cannot
        # be closed from another loop (they close when collected).
        pool = AsyncConnectionPool(
            self._conninfo,
            min_size=0,
            max_size=STATEMENT_POOL_SIZE,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            timeout=POOL_WAIT_S,
            open=False,
            name="talkingface-status-reads",
        )
        await pool.open()
        if self._pool is not None and self._loop is loop:  # another first read opened one
            await pool.close()
            return self._pool
        self._pool, self._loop = pool, loop
        return pool

    async def run(self, read: StatusRead[T]) -> T:
        """The read on a pooled connection. A connection found broken (the database
        restarted since it was opened) is discarded and the read tried once more on a new
        one; other errors propagate as the driver raised them (the store translates them)."""
        compiled = _compile(read.statement)
        values = {**compiled.defaults, **read.values}
        pool = await self._pool_for_this_loop()
        for tries_left in (1, 0):
            try:
                async with pool.connection() as conn:
                    cursor = await conn.execute(compiled.sql, values, prepare=True)
                    rows = compiled.rows(cursor, await cursor.fetchall())
                break
            except PoolTimeout:
                raise
            except psycopg.OperationalError:
                if tries_left == 0:
                    raise
        return read.interpret(rows)

    async def why_unavailable(self) -> psycopg.OperationalError | None:
        """After a wait for a connection timed out: the error of opening one now (the
        database is down or refuses us: the reason an operator needs), or None when one
        opens (the pool was busy)."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, connect_timeout=CONNECT_TIMEOUT_S
            )
        except psycopg.OperationalError as exc:
            return exc
        await conn.close()
        return None

    async def close(self) -> None:
        """Close the pooled connections (from the loop that opened them: the app's shutdown)."""
        pool, self._pool = self._pool, None
        if pool is not None and self._loop is asyncio.get_running_loop():
            await pool.close()
