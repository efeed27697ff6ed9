"""`talkingface submit`: one job to a server (files uploaded, or server paths, or a template
id), optionally followed to the end with the result downloaded (`--wait -o`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from talkingface.cli_errors import user_errors
from talkingface.cli_format import format_duration
from talkingface.cli_options import (
    DEFAULT_SERVER,
    ApiKeyOpt,
    FacePolicyOpt,
    ForceOpt,
    JsonOpt,
    LoopOpt,
    ServerOpt,
)
from talkingface.cli_output import check_output_file
from talkingface.client import ApiClient, Job, Submission, iter_job_updates
from talkingface.errors import InputNotFoundError, InvalidRequestError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EXIT_FAILED = 1
EXIT_CANCELED = 2
MAX_LABEL_CHARS = 200  # the server's bounds, checked here to fail before an upload
MAX_METADATA_BYTES = 4096


def submit(
    audio: Annotated[
        str,
        typer.Option("--audio", "-a", help="Speech file (uploaded; a server path with --by-path)."),
    ],
    video: Annotated[
        str | None, typer.Option("--video", "-v", help="Template video or photo.")
    ] = None,
    template_id: Annotated[
        str | None,
        typer.Option(help="A registered template (`talkingface templates add`), instead of -v."),
    ] = None,
    server: ServerOpt = DEFAULT_SERVER,
    api_key: ApiKeyOpt = None,
    by_path: Annotated[
        bool, typer.Option("--by-path", help="Send server-side paths or URLs instead of uploading.")
    ] = False,
    engine: Annotated[str | None, typer.Option(help="Render engine (server default).")] = None,
    loop: LoopOpt = None,
    face_policy: FacePolicyOpt = None,
    priority: Annotated[int, typer.Option(help="Higher runs first (-100..100).")] = 0,
    label: Annotated[
        str | None, typer.Option(help="A name for the job, shown in lists (≤ 200 characters).")
    ] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option(
            "--metadata", "-m", help="KEY=VALUE kept with the job (repeatable; ≤ 4096 bytes)."
        ),
    ] = None,
    callback_url: Annotated[
        str | None, typer.Option(help="http(s) URL that receives the job's final state.")
    ] = None,
    evaluate: Annotated[
        bool | None,
        typer.Option(
            "--evaluate/--no-evaluate",
            help="Measure the result's quality after rendering (`jobs receipt ID` shows it); "
            "the server default (evaluate.default) if neither is given.",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Resubmitting with the same key returns the same job.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job with a progress bar until it ends.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="With --wait: download the result here."),
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Submit a job; prints its id, or with --wait its result (exit 1 failed, 2 canceled)."""
    with user_errors(as_json=as_json):
        job = Submission(
            audio=audio,
            video=video,
            template_id=template_id,
            by_path=by_path,
            priority=priority,
            engine=engine,
            loop=loop.value if loop else None,
            face_policy=face_policy.value if face_policy else None,
            callback_url=callback_url,
            evaluate=evaluate,
            label=_checked_label(label),
            metadata=parse_metadata(metadata or []),
        )
        code = submit_command(
            job,
            server,
            api_key=api_key,
            wait=wait,
            as_json=as_json,
            idempotency_key=idempotency_key,
            output=output,
            force=force,
        )
    raise typer.Exit(code)


def _checked_label(label: str | None) -> str | None:
    if label is not None and len(label) > MAX_LABEL_CHARS:
        raise InvalidRequestError(
            f"--label is {len(label)} characters; keep it to {MAX_LABEL_CHARS}."
        )
    return label


def parse_metadata(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` options as a dict (values stay strings; a later KEY wins)."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidRequestError(
                f"--metadata {pair!r} is not KEY=VALUE; e.g. --metadata customer=acme."
            )
        metadata[key.strip()] = value
    size = len(json.dumps(metadata).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise InvalidRequestError(
            f"--metadata is {size} bytes as JSON; keep it to {MAX_METADATA_BYTES}."
        )
    return metadata


def _check_template(job: Submission) -> None:
    if (job.video is None) == (job.template_id is None):
        raise InvalidRequestError(
            "Give the template either as -v/--video FILE or as --template-id ID (one of them)."
        )


def submit_command(
    job: Submission,
    server: str,
    *,
    api_key: str | None,
    wait: bool,
    as_json: bool,
    idempotency_key: str | None,
    output: Path | None,
    force: bool,
) -> int:
    """Submit one job; with wait, follow it to the end. Returns the exit code."""
    _check_template(job)
    if output is not None and not wait:
        raise InvalidRequestError(
            "-o/--output needs --wait: without it the command returns before the result "
            f"exists (download it later from {server}/v1/jobs/ID/result)."
        )
    if output is not None:
        check_output_file(output, force=force)  # before the job is even submitted
    if not job.by_path:
        _local(job.audio)
        if job.video is not None:
            _local(job.video)
    with ApiClient(server, api_key=api_key) as client:
        created = client.submit(job, idempotency_key=idempotency_key)
        if not wait:
            if as_json:
                out.print_json(json.dumps(created))
            else:
                out.print(created["id"], highlight=False)
            return 0
        final = _follow(client, created["id"], show=not as_json)
        if output is not None and final["state"] == "succeeded":
            client.download_result(final["id"], output)
        if as_json:
            out.print_json(json.dumps(final))
            return _exit_code(final)
        return _report_final(client, final, output)


def _local(path: str) -> Path:
    local = Path(path)
    if not local.is_file():
        raise InputNotFoundError(f"File not found: {path}; check the path (or use --by-path).")
    return local


def _exit_code(job: Job) -> int:
    if job["state"] == "succeeded":
        return 0
    return EXIT_CANCELED if job["state"] == "canceled" else EXIT_FAILED


def _follow(client: ApiClient, job_id: str, *, show: bool = True) -> Job:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, disable=not show) as bar:
        task = bar.add_task(job_id, total=1.0, detail="queued")
        job: Job = {}
        for job in iter_job_updates(client, job_id):
            progress = job.get("progress") or {}
            detail = f"{job['state']} {job.get('stage') or ''}".strip()
            if progress.get("frames_total"):
                detail += f" {progress['frames_done']}/{progress['frames_total']} frames"
            if progress.get("eta_s") is not None and job["state"] == "running":
                detail += f" ETA {format_duration(progress['eta_s'])}"
            bar.update(task, completed=progress.get("fraction") or 0.0, detail=detail)
        return job


def _report_final(client: ApiClient, job: Job, output: Path | None) -> int:
    if job["state"] == "succeeded":
        if output is not None:
            out.print(str(output.resolve()), highlight=False)
        else:
            out.print(f"{client.server}{job['result']['url']}", highlight=False)
        return 0
    error = job.get("error") or {}
    err.print(
        f"[bold red]{job['state']}[/] {escape(str(error.get('code', '')))}: "
        f"{escape(str(error.get('message', '')))}",
        highlight=False,
    )
    return _exit_code(job)
