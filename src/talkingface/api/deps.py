"""① What route functions receive: settings, the store, storage and the scheduler's view."""

from __future__ import annotations

import functools
from typing import Annotated, Protocol, TypeVar

from anyio import CapacityLimiter, to_thread
from fastapi import Depends, Request

from talkingface.config import Settings
from talkingface.executors.base import WorkerInfo
from talkingface.jobs.database import STATEMENT_POOL_SIZE
from talkingface.jobs.status_reads import StatusRead
from talkingface.jobs.store import JobStore
from talkingface.storage.local import LocalStorage


class SchedulerView(Protocol):
    """What the API needs from the scheduler."""

    def workers(self) -> list[WorkerInfo]: ...

    def is_ready(self) -> bool:
        """The dispatch loop runs and at least one worker is ready or busy."""
        ...

    def wake(self) -> None:
        """A job was submitted/canceled: look now, don't wait for the next tick."""
        ...

    def set_paused(self, paused: bool) -> None:
        """Stop (or restart) dispatching new jobs; running jobs go on."""
        ...

    def is_paused(self) -> bool: ...


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_storage(request: Request) -> LocalStorage:
    storage: LocalStorage = request.app.state.storage
    return storage


def get_scheduler(request: Request) -> SchedulerView:
    scheduler: SchedulerView = request.app.state.scheduler
    return scheduler


T = TypeVar("T")


async def read_store(request: Request, read: StatusRead[T]) -> T:
    """Run one hot read (jobs/status_reads.py) for an async route:
    in the event loop on SQLite, whose reads of a local file in WAL mode never wait for a
    writer; awaited on an asyncio connection on PostgreSQL, so a stalled database delays the
    read, never the loop (health probes, event streams); elsewhere in the thread pool, at most
    STATEMENT_POOL_SIZE at once (the connections of JobStore._read_statement). Handing a read
    to a thread cost more than the read itself (bench/load.py)."""
    store: JobStore = request.app.state.store
    if store.reads_are_local:
        return store.read_statement(read)
    if store.statements_are_awaitable:
        return await store.read_statement_awaited(read)
    limiter = getattr(request.app.state, "store_read_limiter", None)
    if limiter is None:
        limiter = request.app.state.store_read_limiter = CapacityLimiter(STATEMENT_POOL_SIZE)
    return await to_thread.run_sync(functools.partial(store.read_statement, read), limiter=limiter)


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
StorageDep = Annotated[LocalStorage, Depends(get_storage)]
SchedulerDep = Annotated[SchedulerView, Depends(get_scheduler)]
