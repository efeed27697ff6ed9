"""Job-store fixtures: an injected clock, and a migrated JobStore on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from talkingface.jobs.store import JobStore

# the admin connection used to create and drop one scratch database per test session
PG_ADMIN_DSN = os.environ.get(
    "TALKINGFACE_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)


class FakeClock:
    """A settable aware-UTC clock (the store's `clock`)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))


def _pg_url(database: str) -> str:
    params = dict(item.split("=", 1) for item in PG_ADMIN_DSN.split())
    host, port, user = params["host"], params.get("port", "5432"), params["user"]
    return f"postgresql+psycopg://{user}@{host}:{port}/{database}"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh, uniquely named PostgreSQL databases, all dropped at session end."""
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed for the store tests ({PG_ADMIN_DSN}): {exc}")
    created: list[str] = []

    def create() -> str:
        name = f"tf_test_{uuid.uuid4().hex[:12]}"
        admin.execute(f"CREATE DATABASE {name}")
        created.append(name)
        return _pg_url(name)

    try:
        yield create
    finally:
        for name in created:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_database: Callable[[], str]) -> str:
    """One migrated PostgreSQL database shared by the session (emptied before each test)."""
    url = postgres_database()
    store = JobStore(url)
    store.migrate()
    store.close()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[JobStore]:
    """A migrated, empty JobStore on the given backend, with the injected clock."""
    if request.param == "sqlite":
        job_store = JobStore(f"sqlite:///{tmp_path}/jobs.db", clock=clock)
        job_store.migrate()
    else:
        job_store = JobStore(request.getfixturevalue("postgres_url"), clock=clock)
        with job_store.engine.begin() as conn:
            conn.execute(
                text(
                    "TRUNCATE events, attempts, templates, jobs, outbox, service_state "
                    "RESTART IDENTITY"
                )
            )
    try:
        yield job_store
    finally:
        job_store.close()
