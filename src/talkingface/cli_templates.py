"""`talkingface templates …`: register (add), list, show and delete (rm) a server's templates.

A template is a video or photo registered once; the server face-tracks it into its cache,
and jobs then name it with `submit --template-id` instead of sending the video again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from talkingface.cli_errors import user_errors
from talkingface.cli_format import format_age, format_duration
from talkingface.cli_options import (
    CONTEXT_SETTINGS,
    DEFAULT_SERVER,
    ApiKeyOpt,
    JsonOpt,
    ServerOpt,
)
from talkingface.client import ApiClient, Job
from talkingface.errors import InputNotFoundError

templates_app = typer.Typer(
    help="Register, list, show and delete templates (videos or photos prepared once).",
    no_args_is_help=True,
    context_settings=CONTEXT_SETTINGS,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

POLL_S = 0.5  # polling interval while --wait follows the preparation


@templates_app.command("add")
def add_template(
    video: Annotated[str, typer.Argument(help="A local video or photo (uploaded).")],
    by_path: Annotated[
        bool, typer.Option("--by-path", help="VIDEO is a server path or URL, not an upload.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the preparation until the template is ready.")
    ] = False,
    server: ServerOpt = DEFAULT_SERVER,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a template; prints its id (the same content always gets the same id)."""
    with user_errors(as_json=as_json), ApiClient(server, api_key=api_key) as client:
        if not by_path and not _is_file(video):
            raise InputNotFoundError(
                f"File not found: {video}; check the path (or --by-path for a server path)."
            )
        template = client.add_template(video, by_path=by_path)
        if wait:
            template = _follow(client, template, show=not as_json)
    if as_json:
        out.print_json(json.dumps(template))
    else:
        out.print(template["id"], highlight=False)
        if wait:
            out.print(describe(template), highlight=False)
    if template["state"] == "failed":
        raise typer.Exit(1)


def _is_file(path: str) -> bool:
    return Path(path).is_file()


def _follow(client: ApiClient, template: Job, *, show: bool) -> Job:
    """Poll the template until it is ready or failed, with a progress bar on stderr."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, disable=not show) as bar:
        task = bar.add_task(f"template {template['id'][:8]}", total=1.0, detail="preparing")
        while template["state"] == "preparing":
            progress = template.get("progress") or {}
            done, total = progress.get("frames_done") or 0, progress.get("frames_total") or 0
            detail = f"{progress.get('stage') or 'queued'} {done}/{total} frames" if total else ""
            bar.update(task, completed=done / total if total else 0.0, detail=detail)
            time.sleep(POLL_S)  # polling interval, not synchronisation
            template = client.template(template["id"])
        bar.update(task, completed=1.0, detail=template["state"])
    return template


def describe(template: Job) -> str:
    """One line: state, faces, size, duration (and the error of a failed one)."""
    parts = [template["state"]]
    if template.get("face_count") is not None:
        parts.append(f"{template['face_count']} face(s)")
    if template.get("width"):
        parts.append(f"{template['width']}x{template['height']}")
    if template.get("is_still_image"):
        parts.append("photo")
    else:
        parts.append(format_duration(template.get("duration_s")))
    error = template.get("error") or {}
    if error:
        parts.append(f"{error.get('code')}: {error.get('message')}")
    return ", ".join(parts)


@templates_app.command("list")
def list_templates(
    server: ServerOpt = DEFAULT_SERVER,
    api_key: ApiKeyOpt = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List templates: id, state, faces, size, duration."""
    with user_errors(as_json=as_json), ApiClient(server, api_key=api_key) as client:
        page = client.templates(limit=limit, offset=offset)
    if as_json:
        out.print_json(json.dumps(page))
        return
    table = Table(box=None, pad_edge=False)
    for name in ("id", "state", "faces", "size", "duration", "age"):
        right = name in ("duration", "age")
        table.add_column(name, no_wrap=True, justify="right" if right else "left")
    for item in page["items"]:
        faces = item.get("face_count")
        table.add_row(
            item["id"],
            item["state"],
            "" if faces is None else str(faces),
            f"{item.get('width')}x{item.get('height')}" if item.get("width") else "",
            "photo" if item.get("is_still_image") else format_duration(item.get("duration_s")),
            format_age(item.get("created_at")),
        )
    out.print(table)
    shown = len(page["items"])
    more = page["total"] - page["offset"] - shown
    tail = f" (next page: --offset {page['offset'] + shown})" if more > 0 else ""
    out.print(f"{shown} of {page['total']}{tail}", highlight=False)


@templates_app.command("show")
def show_template(
    template_id: str, server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None
) -> None:
    """Show one template (JSON): state, faces, size, duration, thumbnail URL."""
    with user_errors(), ApiClient(server, api_key=api_key) as client:
        out.print_json(json.dumps(client.template(template_id)))


@templates_app.command("rm")
def remove_template(
    template_id: str, server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None
) -> None:
    """Delete a template with its cached face data (refused while a job uses it)."""
    with user_errors(), ApiClient(server, api_key=api_key) as client:
        client.delete_template(template_id)
    out.print(f"{template_id} deleted", highlight=False)
