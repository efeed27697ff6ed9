"""CLI commands of the job service: serve (server side); submit, jobs, stats (client side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from talkingface.cli_errors import user_errors
from talkingface.client import DEFAULT_SERVER, ApiClient, Job, iter_job_updates

if TYPE_CHECKING:
    from talkingface.config import Settings

ServerOpt = Annotated[
    str, typer.Option("--server", envvar="TALKINGFACE_SERVER", help="The talkingface server URL.")
]
jobs_app = typer.Typer(help="List, show, cancel and retry jobs on a server.", no_args_is_help=True)
queue_app = typer.Typer(help="The queue of a server: list, pause, resume.", no_args_is_help=True)
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
) -> int:
    """Run the API, the scheduler and the local workers in this process until Ctrl-C or
    SIGTERM; returns the exit status (128 + the signal's number after one)."""
    from talkingface.api.app import create_app
    from talkingface.api.auth import check_bind_is_protected
    from talkingface.api.server import serve_app
    from talkingface.config import load_settings
    from talkingface.logs import configure_logging
    from talkingface.media.probe_process import start_probe_server

    overrides: dict[str, Any] = {}  # Any: nested settings sections
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    options = (("host", host), ("port", port), ("heygem_temp_dir", heygem_temp_dir))
    api = {k: v for k, v in options if v is not None}
    if api:
        overrides["api"] = api
    if workers is not None:
        overrides["workers"] = {"count": workers}
    settings = load_settings(config, **overrides)
    check_bind_is_protected(settings)
    configure_logging(
        settings.logging.level if settings.logging.level != "warning" else "info",
        settings.logging.json_lines,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = None
    if settings.workers.executor == "local":  # local workers and the janitor own the data dir
        import multiprocessing.util

        from talkingface.storage.data_dir_lock import DataDirLock

        lock = DataDirLock(settings.data_dir).acquire()
        lock.record_temp_dir(multiprocessing.util.get_temp_dir())
    _open_store(settings)
    start_probe_server()
    err.print(
        f"talkingface serving on http://{settings.api.host}:{settings.api.port} "
        f"(data {settings.data_dir}, {settings.workers.count} worker(s); docs at /docs)",
        highlight=False,
    )
    try:
        return serve_app(create_app(settings), settings)
    finally:
        if lock is not None:
            lock.release()


def _open_store(settings: Settings) -> None:
    """Open and migrate the job store before serving: a damaged or unreachable store is then
    one error line (user_errors) instead of uvicorn's start-up traceback."""
    from talkingface.jobs.store import JobStore

    store = JobStore(settings.database_url)
    try:
        store.migrate()
    finally:
        store.close()


def submit_command(
    audio: str,
    video: str,
    server: str,
    *,
    by_path: bool,
    wait: bool,
    as_json: bool,
    priority: int,
    idempotency_key: str | None,
    output: Path | None,
) -> int:
    """Submit one job; with wait, follow it to the end. Returns the exit code."""
    with ApiClient(server) as client:
        if by_path:
            job = client.submit_paths(
                audio, video, priority=priority, idempotency_key=idempotency_key
            )
        else:
            job = client.submit_files(
                _local(audio), _local(video), priority=priority, idempotency_key=idempotency_key
            )
        if not wait:
            if as_json:
                out.print_json(json.dumps(job))
            else:
                out.print(job["id"], highlight=False)
            return 0
        final = _follow(client, job["id"])
        if as_json:
            out.print_json(json.dumps(final))
        return _report_final(client, final, output)


def _local(path: str) -> Path:
    from talkingface.errors import InputNotFoundError

    local = Path(path)
    if not local.is_file():
        raise InputNotFoundError(f"File not found: {path}; check the path (or use --by-path).")
    return local


def _follow(client: ApiClient, job_id: str) -> Job:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(job_id, total=1.0, detail="queued")
        job: Job = {}
        for job in iter_job_updates(client, job_id):
            progress = job.get("progress") or {}
            detail = f"{job['state']} {job.get('stage') or ''}".strip()
            if progress.get("frames_total"):
                detail += f" {progress['frames_done']}/{progress['frames_total']} frames"
            if progress.get("eta_s") is not None and job["state"] == "running":
                detail += f" ETA {progress['eta_s']:.0f} s"
            bar.update(task, completed=progress.get("fraction") or 0.0, detail=detail)
        return job


def _report_final(client: ApiClient, job: Job, output: Path | None) -> int:
    if job["state"] == "succeeded":
        if output is not None:
            client.download_result(job["id"], output)
            out.print(str(output.resolve()), highlight=False)
        else:
            out.print(f"{client.server}{job['result']['url']}", highlight=False)
        return 0
    error = job.get("error") or {}
    err.print(f"[bold red]{job['state']}[/] {error.get('code', '')}: {error.get('message', '')}")
    return EXIT_CANCELED if job["state"] == "canceled" else EXIT_FAILED


@jobs_app.command("list")
def list_jobs(
    server: ServerOpt = DEFAULT_SERVER,
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many (newest first).")] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List jobs, newest first."""

    with user_errors(), ApiClient(server) as client:
        page = client.jobs(state=state, limit=limit, offset=offset)
    if as_json:
        out.print_json(json.dumps(page))
        return
    table = Table("state", "stage", "progress", "attempt", "created", "error")
    table.add_column("id", no_wrap=True, min_width=32)
    for job in page["items"]:
        fraction = (job.get("progress") or {}).get("fraction") or 0.0
        error = (job.get("error") or {}).get("code") or ""
        table.add_row(
            job["state"],
            job.get("stage") or "",
            f"{fraction:.0%}",
            str(job["attempt"]),
            job["created_at"][:19],
            error,
            job["id"],
        )
    out.print(table)
    out.print(f"{len(page['items'])} of {page['total']}")


@jobs_app.command("show")
def show_job(job_id: str, server: ServerOpt = DEFAULT_SERVER) -> None:
    """Show one job (JSON), with its attempts and error."""

    with user_errors(), ApiClient(server) as client:
        out.print_json(json.dumps(client.job(job_id)))


@jobs_app.command("cancel")
def cancel_job(job_id: str, server: ServerOpt = DEFAULT_SERVER) -> None:
    """Cancel a queued job at once, or a running one (its worker is stopped)."""

    with user_errors(), ApiClient(server) as client:
        job = client.cancel(job_id)
    out.print(
        f"{job['id']} {job['state']}{' (cancel requested)' if job['state'] == 'running' else ''}"
    )


@jobs_app.command("retry")
def retry_job(job_id: str, server: ServerOpt = DEFAULT_SERVER) -> None:
    """Queue a failed or canceled job again."""

    with user_errors(), ApiClient(server) as client:
        job = client.retry(job_id)
    out.print(f"{job['id']} {job['state']}")


def stats_command(server: str, as_json: bool) -> None:
    with ApiClient(server) as client:
        stats = client.stats()
    if as_json:
        out.print_json(json.dumps(stats))
        return
    for key, value in stats.items():
        out.print(f"{key:24} {json.dumps(value)}", highlight=False)


@jobs_app.command("prioritize")
def prioritize_job(job_id: str, priority: int, server: ServerOpt = DEFAULT_SERVER) -> None:
    """Give a queued job a new priority (-100..100, higher starts first)."""

    with user_errors(), ApiClient(server) as client:
        job = client.prioritize(job_id, priority)
    out.print(f"{job['id']} priority {job['priority']}")


@queue_app.command("list")
def list_queue(
    server: ServerOpt = DEFAULT_SERVER, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Queued jobs in the order they will start, with estimated start times."""

    with user_errors(), ApiClient(server) as client:
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
            "paused" if eta is None else f"{eta:.0f} s",
            str(item["attempt"]),
            item["id"],
        )
    out.print(table)
    state = "paused" if queue["paused"] else "dispatching"
    out.print(f"{queue['queued']} queued, {queue['running']} running, {state}")


@queue_app.command("pause")
def pause_queue(server: ServerOpt = DEFAULT_SERVER) -> None:
    """Start nothing new (running jobs finish, submissions still queue)."""

    with user_errors(), ApiClient(server) as client:
        client.set_paused(True)
    out.print("paused")


@queue_app.command("resume")
def resume_queue(server: ServerOpt = DEFAULT_SERVER) -> None:
    """Dispatch queued jobs again."""

    with user_errors(), ApiClient(server) as client:
        client.set_paused(False)
    out.print("resumed")
