"""CLI commands of the job service: serve (server side); submit, stats, queue (client side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from talkingface.cli_errors import user_errors
from talkingface.cli_format import format_duration, format_figure
from talkingface.cli_options import (
    CONTEXT_SETTINGS,
    DEFAULT_SERVER,
    ApiKeyOpt,
    JsonOpt,
    ServerOpt,
)
from talkingface.client import ApiClient

if TYPE_CHECKING:
    from talkingface.config import Settings

queue_app = typer.Typer(
    help="The queue of a server: list, pause, resume.",
    no_args_is_help=True,
    context_settings=CONTEXT_SETTINGS,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EXIT_FAILED = 1
EXIT_CANCELED = 2


def serve_command(
    host: str | None,
    port: int | None,
    workers: int | None,
    data_dir: Path | None,
    config: Path | None,
    *,
    heygem_temp_dir: Path | None = None,
    api_workers: int | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
) -> int:
    """Run the API, the scheduler and the local workers until Ctrl-C or SIGTERM, in this
    process or in `api_workers` API processes on one PostgreSQL store; returns the exit
    status (128 + the signal's number after one)."""
    from talkingface.api.auth import check_bind_is_protected
    from talkingface.api.server import configure_serve_logging, lock_data_dir, serve_locked
    from talkingface.api.server_processes import check_api_processes
    from talkingface.config import load_settings

    overrides: dict[str, Any] = {}  # Any: nested settings sections
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    options = (
        ("host", host),
        ("port", port),
        ("heygem_temp_dir", heygem_temp_dir),
        ("processes", api_workers),
    )
    api = {k: v for k, v in options if v is not None}
    if api:
        overrides["api"] = api
    chosen = (("count", workers), ("executor", executor), ("ray_address", ray_address))
    worker_options = {k: v for k, v in chosen if v is not None}
    if worker_options:
        overrides["workers"] = worker_options
    settings = load_settings(config, **overrides)
    check_bind_is_protected(settings)
    check_api_processes(settings)
    if settings.workers.executor == "ray":  # say now, not after binding, if Ray is missing
        from talkingface.executors.ray_executor import import_ray

        import_ray()
    configure_serve_logging(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_data_dir(settings)
    try:
        _open_store(settings)
        processes = settings.api.processes
        err.print(
            f"talkingface serving on http://{settings.api.host}:{settings.api.port} "
            f"(data {settings.data_dir}, {_workers_line(settings)}"
            + (f", {processes} API processes" if processes > 1 else "")
            + "; docs at /docs)",
            highlight=False,
        )
        if processes > 1:
            from talkingface.api.server_processes import ApiProcesses

            return ApiProcesses(config, overrides, settings, processes).run()
        return serve_locked(settings)
    finally:
        lock.release()


def _workers_line(settings: Settings) -> str:
    """How many workers, and where: for the start-up line."""
    w = settings.workers
    if w.executor == "ray":
        where = w.ray_address or "RAY_ADDRESS or a private one-node Ray"
        return f"ray executor at {where}: one actor per GPU, else {w.count} CPU actor(s)"
    return f"{w.count} worker(s)"


def _open_store(settings: Settings) -> None:
    """Open and migrate the job store before serving: a damaged or unreachable store is then
    one error line (user_errors) instead of uvicorn's start-up traceback."""
    from talkingface.jobs.store import JobStore

    store = JobStore(settings.database_url)
    try:
        store.migrate()
    finally:
        store.close()


def stats_command(server: str, as_json: bool, api_key: str | None = None) -> None:
    with ApiClient(server, api_key=api_key) as client:
        stats = client.stats()
    if as_json:
        out.print_json(json.dumps(stats))
        return
    for key, value in stats.items():
        out.print(f"{key:24} {format_figure(key, value)}", highlight=False)


@queue_app.command("list")
def list_queue(
    server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None, as_json: JsonOpt = False
) -> None:
    """Queued jobs in the order they will start, with estimated start times."""

    with user_errors(as_json=as_json), ApiClient(server, api_key=api_key) as client:
        queue = client.queue()
    if as_json:
        out.print_json(json.dumps(queue))
        return
    table = Table("#", "priority", "starts in", "attempt")
    table.add_column("id", no_wrap=True, min_width=32)
    for item in queue["items"]:
        eta = item["estimated_start_s"]
        table.add_row(
            str(item["position"]),
            str(item["priority"]),
            "paused" if eta is None else format_duration(eta),
            str(item["attempt"]),
            item["id"],
        )
    out.print(table)
    state = "paused" if queue["paused"] else "dispatching"
    out.print(f"{queue['queued']} queued, {queue['running']} running, {state}")


@queue_app.command("pause")
def pause_queue(server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None) -> None:
    """Start nothing new (running jobs finish, submissions still queue)."""

    with user_errors(), ApiClient(server, api_key=api_key) as client:
        client.set_paused(True)
    out.print("paused")


@queue_app.command("resume")
def resume_queue(server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None) -> None:
    """Dispatch queued jobs again."""

    with user_errors(), ApiClient(server, api_key=api_key) as client:
        client.set_paused(False)
    out.print("resumed")
