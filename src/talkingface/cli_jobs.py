"""`talkingface jobs …`: list, show, cancel, retry, prioritize and delete a server's jobs."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from talkingface.cli_errors import user_errors
from talkingface.cli_format import cut, format_age, short_id
from talkingface.cli_options import (
    CONTEXT_SETTINGS,
    DEFAULT_SERVER,
    ApiKeyOpt,
    JsonOpt,
    ServerOpt,
)
from talkingface.client import ApiClient, Job
from talkingface.errors import JobStateError

jobs_app = typer.Typer(
    help="List, show, cancel, retry, prioritize and delete jobs on a server.",
    no_args_is_help=True,
    context_settings=CONTEXT_SETTINGS,
)
out = Console(soft_wrap=True)

NAME_CHARS = 40  # the label/input column; the whole row fits 80 columns


class StateChoice(StrEnum):
    """The job states `jobs list --state` filters by (the server's JobState values)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


@jobs_app.command("list")
def list_jobs(
    server: ServerOpt = DEFAULT_SERVER,
    api_key: ApiKeyOpt = None,
    state: Annotated[StateChoice | None, typer.Option(help="Only jobs in this state.")] = None,
    label: Annotated[str | None, typer.Option(help="Only jobs with this label.")] = None,
    error_code: Annotated[
        str | None, typer.Option(help="Only jobs that failed with this code (e.g. NO_FACE).")
    ] = None,
    search: Annotated[
        str | None, typer.Option("--search", help="Only jobs whose label or inputs contain this.")
    ] = None,
    low_sync: Annotated[
        bool,
        typer.Option(
            "--low-sync", help="Only results whose quality receipt fell under the sync floor."
        ),
    ] = False,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many (newest first).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first: short id, state, progress, age, label or inputs."""
    with user_errors(as_json=as_json), ApiClient(server, api_key=api_key) as client:
        page = client.jobs(
            limit=limit,
            offset=offset,
            state=state.value if state else None,
            label=label,
            error_code=error_code.upper() if error_code else None,
            q=search,
            low_sync="true" if low_sync else None,
        )
    if as_json:
        out.print_json(json.dumps(page))
        return
    table = Table(box=None, pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("done", justify="right", no_wrap=True)
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("label / inputs", no_wrap=True, overflow="ellipsis", max_width=NAME_CHARS)
    for job in page["items"]:
        fraction = (job.get("progress") or {}).get("fraction") or 0.0
        table.add_row(
            short_id(job["id"]),
            _state_text(job),
            f"{fraction:.0%}",
            format_age(job.get("created_at")),
            cut(job_name(job), NAME_CHARS),
        )
    out.print(table)
    out.print(f"{len(page['items'])} of {page['total']}", highlight=False)


def _state_text(job: Job) -> str:
    error = (job.get("error") or {}).get("code")
    if error and job["state"] == "failed":
        return f"{job['state']} {error}"
    receipt = (job.get("result") or {}).get("receipt") or {}
    return f"{job['state']} low_sync" if receipt.get("low_sync") else str(job["state"])


def job_name(job: Job) -> str:
    """What a person calls the job: its label, else its inputs' file names."""
    if job.get("label"):
        return str(job["label"])
    inputs = job.get("inputs") or {}
    names = [str(inputs[key]) for key in ("audio_name", "video_name") if inputs.get(key)]
    if inputs.get("template_id") and not inputs.get("video_name"):
        names.append(f"template {short_id(str(inputs['template_id']))}")
    return " + ".join(names)


@jobs_app.command("show")
def show_job(job_id: str, server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None) -> None:
    """Show one job (JSON), with its attempts and error."""
    with user_errors(), ApiClient(server, api_key=api_key) as client:
        out.print_json(json.dumps(client.job(job_id)))


@jobs_app.command("receipt")
def show_receipt(
    job_id: str,
    server: ServerOpt = DEFAULT_SERVER,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a succeeded job's quality receipt (jobs submitted with --evaluate)."""
    with user_errors(as_json=as_json), ApiClient(server, api_key=api_key) as client:
        job = client.job(job_id)
        receipt = (job.get("result") or {}).get("receipt")
        if receipt is None:
            raise JobStateError(
                f"Job {job_id} has no quality receipt: it is {job['state']}, or was submitted "
                "without evaluate.",
                details={"state": job["state"]},
            )
    if as_json:
        out.print_json(json.dumps(receipt))
        return
    for line in receipt_lines(receipt):
        out.print(line, highlight=False, markup=False)


def receipt_lines(receipt: Job) -> list[str]:
    """A receipt for people: its state and flag, the evaluate lines, LSE and the sheet."""
    if receipt["state"] != "measured":
        error = receipt.get("error") or {}
        return [
            f"no figures: {error.get('code', 'INTERNAL')}: {error.get('message', '')}",
            "(the evaluation failed; the video itself succeeded)",
        ]
    lines = [f"measured in {receipt['duration_s']:.1f} s"]
    if receipt["low_sync"]:
        lines.append("LOW SYNC: " + "; ".join(receipt["low_sync_reasons"]))
    lines += receipt["verdicts"]
    if receipt["lse"] == "not_configured":
        lines.append("SyncNet LSE: not configured on the server (evaluate.syncnet_checkpoint)")
    elif receipt["lse"] == "failed":
        lines.append(f"SyncNet LSE failed: {receipt.get('lse_message')}")
    if receipt.get("sheet_url"):
        lines.append(f"contact sheet {receipt['sheet_url']}")
    return lines


@jobs_app.command("cancel")
def cancel_job(job_id: str, server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None) -> None:
    """Cancel a queued job at once, or a running one (its worker is stopped)."""
    with user_errors(), ApiClient(server, api_key=api_key) as client:
        job = client.cancel(job_id)
    running = " (cancel requested)" if job["state"] == "running" else ""
    out.print(f"{job['id']} {job['state']}{running}", highlight=False)


@jobs_app.command("retry")
def retry_job(job_id: str, server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None) -> None:
    """Queue a failed or canceled job again."""
    with user_errors(), ApiClient(server, api_key=api_key) as client:
        job = client.retry(job_id)
    out.print(f"{job['id']} {job['state']}", highlight=False)


@jobs_app.command("prioritize")
def prioritize_job(
    job_id: str, priority: int, server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None
) -> None:
    """Give a queued job a new priority (-100..100, higher starts first)."""
    with user_errors(), ApiClient(server, api_key=api_key) as client:
        job = client.prioritize(job_id, priority)
    out.print(f"{job['id']} priority {job['priority']}", highlight=False)


@jobs_app.command("delete")
def delete_job(job_id: str, server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None) -> None:
    """Delete a finished job with its files (a queued or running one: cancel it first)."""
    with user_errors(), ApiClient(server, api_key=api_key) as client:
        client.delete_job(job_id)
    out.print(f"{job_id} deleted", highlight=False)
