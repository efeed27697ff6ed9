"""① The HTTP entry point: create_app(settings) wires the store, storage, scheduler and routes."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from talkingface.api.auth import (
    API_KEY_HEADER,
    API_KEY_QUERY,
    BEARER,
    ApiKeyMiddleware,
    BrowserGuardMiddleware,
    is_loopback,
)
from talkingface.api.deps import SchedulerView
from talkingface.api.docs_pages import install_docs_pages
from talkingface.api.elected_scheduler import is_shared_store, start_elected
from talkingface.api.events_stream import StreamPoll
from talkingface.api.openapi_doc import openapi_builder
from talkingface.api.problems import install_problem_handlers
from talkingface.api.quality_runs import QualityRuns
from talkingface.api.routes import (
    cluster,
    easy,
    events,
    jobs,
    ops,
    quality,
    queue,
    template_pictures,
    templates,
)
from talkingface.api.templates_registry import TemplateRegistry
from talkingface.api.url_downloads import UrlDownloads
from talkingface.config import Settings
from talkingface.dashboard import routes as dashboard
from talkingface.jobs.store import JobStore
from talkingface.logs import bind
from talkingface.ops.alerts import AlertManager
from talkingface.ops.metrics import ServiceMetrics
from talkingface.ops.webhooks import WebhookSender
from talkingface.storage.base import get_storage

logger = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Bind `request_id` (the X-Request-ID header if sane, else a new one) for every log line,
    and echo it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        with bind(request_id=request_id):
            await self.app(scope, receive, send_with_id)


def _lifespan(
    settings: Settings, store: JobStore | None, scheduler: SchedulerView | None
) -> Callable[[FastAPI], Any]:  # Any: an async context manager factory
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        owned_store = None
        if store is None:
            owned_store = JobStore(settings.database_url)
            owned_store.migrate()
        app.state.store = store or owned_store
        app.state.stream_poll = StreamPoll(app.state.store)
        owned_scheduler = None
        view: list[SchedulerView] = []  # the metrics read workers from whichever scheduler runs
        metrics = ServiceMetrics(app.state.store, lambda: view[0].workers(), settings.data_dir)
        webhooks = None
        app.state.templates = TemplateRegistry(settings, app.state.store)
        alerts = AlertManager(settings, app.state.store)
        app.state.alerts = alerts
        elected = None
        if scheduler is None and is_shared_store(app.state.store):  # PostgreSQL: one leader
            elected = start_elected(settings, app, metrics)
        elif scheduler is None:
            from talkingface.scheduler import Scheduler

            owned_scheduler = Scheduler(settings, app.state.store, metrics=metrics)
            owned_scheduler.start()
            webhooks = WebhookSender(app.state.store, settings.webhooks, settings.api)
            webhooks.start()
            app.state.templates.adopt_legacy()
            alerts.start()
        else:
            app.state.templates.adopt_legacy()
        app.state.scheduler = scheduler or elected or owned_scheduler
        view.append(app.state.scheduler)
        app.state.metrics = metrics
        logger.info("api started", extra={"event": "api_started"})
        try:
            yield
        finally:
            app.state.url_downloads.stop()  # a download must not hold the exit
            app.state.quality_runs.stop()  # nor a quality evaluation
            alerts.stop()
            app.state.templates.close()
            if webhooks is not None:
                webhooks.stop()
            if owned_scheduler is not None:
                owned_scheduler.stop()
            if elected is not None:
                elected.stop()
            metrics.close()
            await app.state.store.close_awaited_statements()  # the loop's own connections
            if owned_store is not None:
                owned_store.close()
            logger.info("api stopped", extra={"event": "api_stopped"})

    return lifespan


def begin_shutdown(app: FastAPI) -> None:
    """The server has begun to stop (called from its signal handler): end open event streams
    now, each with a `shutdown` event, and cut URL downloads short (their submissions answer
    "retry later"), instead of waiting for clients and slow hosts."""
    app.state.url_downloads.stop()
    poll: StreamPoll | None = getattr(app.state, "stream_poll", None)
    if poll is not None:
        poll.close_threadsafe()


def create_app(
    settings: Settings,
    *,
    store: JobStore | None = None,
    scheduler: SchedulerView | None = None,
) -> FastAPI:
    """The v1 API. Without `store`/`scheduler` the lifespan opens the store (and migrates it)
    and starts the real scheduler, and stops both on shutdown."""
    keyed = bool(settings.api.keys)  # then the document declares the key schemes (auth.py)
    app = FastAPI(
        title="talkingface",
        version="1",
        summary="Lip-sync jobs: speech audio + template video → MP4.",
        lifespan=_lifespan(settings, store, scheduler),
        docs_url=None,  # docs_pages serves /docs and /redoc with local assets
        redoc_url=None,
        dependencies=[Depends(API_KEY_HEADER), Depends(BEARER)] if keyed else None,
        # FastAPI's own OpenTelemetry hooks: off, as talkingface exports Prometheus metrics
        # (/metrics); on, each request looked up the global providers (~7 % of a status read).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_docs_pages(app)
    app.state.settings = settings
    app.state.storage = get_storage(settings)
    app.state.url_downloads = UrlDownloads(settings.api)
    app.state.quality_runs = QualityRuns(app.state.storage, syncnet=settings.evaluate)
    if store is not None:
        app.state.store = store
        app.state.stream_poll = StreamPoll(store)
    if scheduler is not None:
        app.state.scheduler = scheduler
    app.include_router(jobs.router)
    app.include_router(ops.router)
    app.include_router(cluster.router)
    app.include_router(easy.router, dependencies=[Depends(API_KEY_QUERY)] if keyed else None)
    app.include_router(queue.router)
    app.include_router(templates.router)
    app.include_router(events.router)  # dashboard: all-jobs stream (docs/dashboard-api.md)
    app.include_router(quality.router)  # dashboard: a job's quality figures, on request
    app.include_router(template_pictures.router)  # dashboard: thumbnail.jpg, preview.jpg
    app.include_router(dashboard.router)  # the web page at /
    install_problem_handlers(app)
    app.add_middleware(ApiKeyMiddleware, keys=[k.get_secret_value() for k in settings.api.keys])
    guarded = not settings.api.keys and is_loopback(settings.api.host)
    if guarded:
        app.add_middleware(BrowserGuardMiddleware, trusted_hosts=settings.api.trusted_hosts)
    app.add_middleware(RequestIdMiddleware)
    app.openapi = openapi_builder(  # type: ignore[method-assign]
        app,
        keyed=keyed,
        guarded=guarded,
        test_only=settings.workers.allow_faults,
    )
    return app
