"""The `talkingface` command line: generate, demo, evaluate, bench (prints with Rich)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from talkingface import vocabulary
from talkingface.cli_errors import user_errors
from talkingface.cli_format import format_duration, format_figure
from talkingface.cli_jobs import jobs_app
from talkingface.cli_options import (
    CONTEXT_SETTINGS,
    ApiKeyOpt,
    FacePolicyOpt,
    ForceOpt,
    JsonOpt,
    LoopOpt,
)
from talkingface.cli_output import check_output_file
from talkingface.cli_service import queue_app
from talkingface.cli_signals import interrupts
from talkingface.cli_submit import submit
from talkingface.cli_templates import templates_app
from talkingface.cli_usage import run_app
from talkingface.cli_worker import worker
from talkingface.config import Settings, load_settings
from talkingface.errors import UnknownEngineError
from talkingface.logs import configure_logging

if TYPE_CHECKING:
    from talkingface.syncnet_score import SyncNetScorer

app = typer.Typer(
    no_args_is_help=True,
    context_settings=CONTEXT_SETTINGS,
    help="Lip-synced talking-head videos from a speech file and a template video or photo. "
    "Shell completion: talkingface --install-completion (bash, zsh, fish, PowerShell).",
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML settings file (else TALKINGFACE_* env vars).")
]


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"talkingface {version('talkingface')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool | None,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = None,
) -> None:
    """Lip-synced talking-head videos from a speech file and a template video or photo."""


def _settings(config: Path | None, *, verbose: bool = False) -> Settings:
    settings = load_settings(config)
    configure_logging("info" if verbose else settings.logging.level, settings.logging.json_lines)
    return settings


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[vocabulary.Progress], None] | None]:
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=err, transient=False)
    tasks: dict[str, TaskID] = {}

    def update(p: vocabulary.Progress) -> None:
        if not tasks:
            bar.start()  # lazily: an input error before any work prints no empty bar
        if p.stage not in tasks:
            tasks[p.stage] = bar.add_task(p.stage, total=p.frames_total)
        bar.update(tasks[p.stage], completed=p.frames_done, total=p.frames_total)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


def run_generate(
    audio: Path,
    video: Path,
    output: Path,
    settings: Settings,
    *,
    engine_name: str | None = None,
    loop: vocabulary.LoopMode | None = None,
    face_policy: vocabulary.FacePolicy | None = None,
    show_progress: bool = True,
) -> Any:  # Any: GenerateResult (imported lazily to keep `--help` fast)
    from talkingface.engines.base import get_engine
    from talkingface.pipeline.attempt import GenerateRequest, run_attempt

    engine = get_engine(engine_name or settings.engines.default, settings.engines)
    engine.load()
    request = GenerateRequest(
        tag=vocabulary.JobTag(vocabulary.JobId(uuid.uuid4().hex[:12])),
        audio_path=audio,
        video_path=video,
        output_path=output,
        loop=loop or settings.engines.loop,
        face_policy=face_policy or settings.engines.face_policy,
    )
    try:
        with _progress_bar(show_progress) as update:
            result = run_attempt(
                request, engine, settings, progress=update, cancel=interrupts.event
            )
    finally:
        engine.close()
    if interrupts.received:  # the signal came as the file was published: an interrupted
        output.unlink(missing_ok=True)  # command leaves no output behind
        raise KeyboardInterrupt
    return result


def with_wav2lip_checkpoint(
    settings: Settings, checkpoint: Path | None, *, trust: bool
) -> Settings:
    """`settings` with generate's --checkpoint / --trust-checkpoint applied to engines.wav2lip."""
    update: dict[str, object] = {}
    if checkpoint is not None:
        update["checkpoint"] = checkpoint.expanduser().resolve()
    if trust:
        update["trust_checkpoint"] = True
    if not update:
        return settings
    wav2lip = settings.engines.wav2lip.model_copy(update=update)
    engines = settings.engines.model_copy(update={"wav2lip": wav2lip})
    return settings.model_copy(update={"engines": engines})


@app.command()
def generate(
    audio: Annotated[
        Path,
        typer.Option(
            "--audio", "-a", help="Speech: wav/mp3/m4a/aac/flac/ogg or a video with sound."
        ),
    ],
    video: Annotated[
        Path, typer.Option("--video", "-v", help="Template: a video or photo of one person.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the MP4.")],
    engine: Annotated[
        str | None, typer.Option(help="Render engine: classic (default) or wav2lip.")
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="wav2lip: your Wav2Lip checkpoint (wav2lip.pth, wav2lip_gan.pth or a "
            "TorchScript .pt); default engines.wav2lip.checkpoint.",
        ),
    ] = None,
    trust_checkpoint: Annotated[
        bool,
        typer.Option(
            "--trust-checkpoint",
            help="wav2lip: also load a checkpoint that needs arbitrary unpickling (it can run "
            "code: only for files from a source you trust).",
        ),
    ] = False,
    loop: LoopOpt = None,
    face_policy: FacePolicyOpt = None,
    force: ForceOpt = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary (errors too) instead of text.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Log the lifecycle to stderr.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Make OUTPUT: the template person saying the audio, lips in sync."""
    with user_errors(as_json=as_json):
        settings = with_wav2lip_checkpoint(
            _settings(config, verbose=verbose), checkpoint, trust=trust_checkpoint
        )
        check_output_file(output, force=force)
        result = run_generate(
            audio,
            video,
            output,
            settings,
            engine_name=engine,
            loop=loop,
            face_policy=face_policy,
            show_progress=not as_json,
        )
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    out.print(f"[green]wrote[/] {result.output_path}", highlight=False)
    out.print(
        f"{format_duration(result.duration_s)}, {result.width}x{result.height} "
        f"@ {result.fps:g} fps, {result.frame_count} frames in "
        f"{format_duration(result.processing_s)} (real-time factor "
        f"{result.processing_s / max(result.duration_s, 1e-6):.2f})"
        + (", template from cache" if result.template_from_cache else ""),
        highlight=False,
    )
    out.print(_articulation_line(result.articulation), highlight=False)
    if result.frames_without_face:
        out.print(
            f"[yellow]{result.frames_without_face} frames had no face and were left unchanged[/]"
        )


def _articulation_line(articulation: dict[str, object]) -> str:
    """'mouth driven by …' with the person model's held-out fit when there is one."""
    fit = articulation.get("person_fit")
    figures = ""
    if isinstance(fit, dict):
        r = fit["held_out_r"]["gap"]
        figures = f", held-out r {r:.2f}, needs ≥ {fit['threshold_r']:.2f}"
    kind = "this person's learned" if articulation.get("model") == "person" else "the generic"
    return f"mouth driven by {kind} articulation ({articulation.get('reason')}{figures})"


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write the inputs and the result.")
    ] = Path("talkingface-demo"),
    force: ForceOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Make sample inputs (a photo from scikit-image, synthetic speech), generate, score.

    Writes DIR/result.mp4 and DIR/contact_sheet.png; --force replaces them."""
    from talkingface.quality import evaluate as evaluate_video
    from talkingface.samples import make_demo_inputs

    with user_errors():
        settings = _settings(config)
        output = directory / "result.mp4"
        check_output_file(output, force=force)
        check_output_file(directory / "contact_sheet.png", force=force)
        inputs = make_demo_inputs(directory)
        out.print(f"inputs: {inputs.audio_path}  {inputs.video_path}", highlight=False)
        result = run_generate(inputs.audio_path, inputs.video_path, output, settings)
        report = evaluate_video(
            output,
            audio_path=inputs.audio_path,
            template_path=inputs.video_path,
            contact_sheet_path=directory / "contact_sheet.png",
        )
    out.print(f"[green]output[/] {result.output_path.resolve()}", highlight=False)
    corr, margin = report.sync_correlation, report.sync_margin
    out.print(
        f"sync score {corr:.2f} (lag {report.sync_lag_frames} frames, independent mouth meter; "
        "needs ≥ 0.60)"
        if corr is not None
        else "sync score: n/a (no face measured)",
        highlight=False,
    )
    out.print(
        f"sync margin {margin:.2f} over an unrelated speech clip (needs ≥ 0.20)"
        if margin is not None
        else "sync margin: n/a",
        highlight=False,
    )
    out.print(f"contact sheet {(directory / 'contact_sheet.png').resolve()}", highlight=False)


@app.command()
def evaluate(
    video: Annotated[Path, typer.Option("--video", help="The generated MP4 to measure.")],
    audio: Annotated[
        Path | None,
        typer.Option("--audio", help="Driving speech (default: the video's own audio)."),
    ] = None,
    template: Annotated[
        Path | None,
        typer.Option(
            "--template",
            help="The template it was made from: outside-mouth PSNR/SSIM, and amplitude "
            "against the person's own talking (a video with its own speech).",
        ),
    ] = None,
    foil: Annotated[
        Path | None,
        typer.Option(
            "--foil", help="Unrelated speech for the sync margin (default: built-in synthetic)."
        ),
    ] = None,
    loop: Annotated[
        vocabulary.LoopMode, typer.Option(help="Loop mode used when generating.")
    ] = vocabulary.LoopMode.PINGPONG,
    contact_sheet: Annotated[
        Path | None, typer.Option("--contact-sheet", help="Write a PNG grid of frames.")
    ] = None,
    max_frames: Annotated[
        int | None, typer.Option(help="Measure at most this many frames.")
    ] = None,
    syncnet: Annotated[
        Path | None,
        typer.Option(
            "--syncnet",
            help="A SyncNet checkpoint (syncnet_v2.model from joonson/syncnet_python) for "
            "LSE-D / LSE-C / AV offset; default: evaluate.syncnet_checkpoint. Needs the "
            "neural extra.",
        ),
    ] = None,
    trust_checkpoint: Annotated[
        bool,
        typer.Option(
            "--trust-checkpoint",
            help="Load a SyncNet file that needs arbitrary unpickling (only from a source "
            "you trust).",
        ),
    ] = False,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Objective quality figures: lip sync (independent mouth meter), amplitude, fidelity;
    with --syncnet also LSE-D / LSE-C, the field's SyncNet metrics."""
    from talkingface.quality import evaluate as evaluate_video
    from talkingface.quality_checks import describe_report

    with user_errors(as_json=as_json):
        settings = _settings(config)
        if contact_sheet is not None:
            check_output_file(contact_sheet, force=force)
        scorer = _syncnet_scorer(
            syncnet or settings.evaluate.syncnet_checkpoint,
            trust=trust_checkpoint or settings.evaluate.trust_checkpoint,
        )
        report = evaluate_video(
            video,
            audio_path=audio,
            template_path=template,
            foil_path=foil,
            loop=loop,
            contact_sheet_path=contact_sheet,
            max_frames=max_frames,
            syncnet=scorer,
        )
    sheet = None if contact_sheet is None else f"contact sheet {contact_sheet.resolve()}"
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
        if sheet is not None:
            err.print(sheet, highlight=False)
        return
    styles = {"PASS": "green", "FAIL": "bold red", "n/a ": "yellow"}
    for line in describe_report(report):
        style = styles.get(line[:4])
        mark = f"[{style}]{escape(line[:4])}[/]" if style else escape(line[:4])
        out.print(mark + escape(line[4:]), highlight=False)
    if sheet is not None:
        out.print(sheet, highlight=False)


def _syncnet_scorer(checkpoint: Path | None, *, trust: bool) -> SyncNetScorer | None:
    """The loaded SyncNet for `evaluate`, before any measuring (a bad file fails at once)."""
    if checkpoint is None:
        return None
    from talkingface.syncnet_score import SyncNetScorer

    return SyncNetScorer(checkpoint, trust=trust)


@app.command()
def bench(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the figures as one JSON object.")
    ] = False,
    seconds: Annotated[
        float | None,
        typer.Option(help="Length of the speech clip to render (default 10 s; wav2lip 4 s)."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(help="classic, or wav2lip: generator-only and end-to-end fps on this CPU."),
    ] = "classic",
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="wav2lip: a checkpoint to time (default: random weights, same speed)."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Measure end-to-end fps and real-time factor, cold and cached, against encode-only."""
    with user_errors(as_json=as_json):
        settings = _settings(config)
        log = None if as_json else err.print
        if engine == "wav2lip":
            from talkingface.bench_wav2lip import run_wav2lip_bench

            settings = with_wav2lip_checkpoint(settings, checkpoint, trust=False)
            figures = run_wav2lip_bench(settings, duration_s=seconds or 4.0, log=log)
        elif engine == "classic":
            from talkingface.bench import run_bench

            figures = run_bench(duration_s=seconds or 10.0, log=log)
        else:
            raise UnknownEngineError(
                f"bench measures the classic or wav2lip engine, not {engine!r}.",
                details={"engine": engine},
            )
    if as_json:
        out.print_json(json.dumps(figures))
    else:
        for key, value in figures.items():
            out.print(f"{key:24} {format_figure(key, value)}", highlight=False)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8383).")] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default 1).")] = None,
    api_workers: Annotated[
        int | None,
        typer.Option(
            help="API processes on this port, sharing a PostgreSQL db.url (default 1); "
            "one of them leads the scheduler."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Jobs database, inputs and results (default ./talkingface-data)."),
    ] = None,
    heygem_temp_dir: Annotated[
        Path | None,
        typer.Option(help="HeyGem clients' shared temp folder (default <data dir>/temp)."),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            help="Where attempts run: local (worker processes here) or ray (actors "
            "on a Ray cluster; pip install 'talkingface[ray]')."
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="The Ray cluster to join with --executor ray, e.g. 10.0.0.5:6379 "
            "(default RAY_ADDRESS, else a private one-node Ray)."
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the v1 and HeyGem /easy APIs with a scheduler and warm workers, until Ctrl-C."""
    from talkingface.cli_service import serve_command

    with user_errors():
        status = serve_command(
            host,
            port,
            workers,
            data_dir,
            config,
            heygem_temp_dir=heygem_temp_dir,
            api_workers=api_workers,
            executor=executor,
            ray_address=ray_address,
        )
    raise typer.Exit(status)


app.command()(worker)


@app.command()
def batch(
    manifest: Annotated[
        Path, typer.Argument(help="CSV with columns audio, video, output, priority.")
    ],
    server: Annotated[
        str, typer.Option(envvar="TALKINGFACE_SERVER", help="Server URL.")
    ] = "http://127.0.0.1:8383",
    concurrency: Annotated[int, typer.Option(help="Rows in flight at once.")] = 2,
    report: Annotated[
        Path | None, typer.Option(help="Write a CSV report of every row here.")
    ] = None,
    by_path: Annotated[
        bool, typer.Option("--by-path", help="audio/video are server paths, not uploads.")
    ] = False,
    api_key: ApiKeyOpt = None,
) -> None:
    """Submit a manifest of jobs, follow them, download results; a re-run resumes them."""
    from talkingface.cli_batch import BatchRun, read_manifest, write_report

    reports = []
    with user_errors():
        rows = read_manifest(manifest)
        run = BatchRun(server, manifest, by_path=by_path, concurrency=concurrency, api_key=api_key)
        try:
            reports = run.run(rows, err)
        finally:
            if report is not None and reports:
                write_report(report, reports)
    counts: dict[str, int] = {}
    for row in reports:
        counts[row.status] = counts.get(row.status, 0) + 1
    out.print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())), highlight=False)
    for row in reports:
        if row.status != "succeeded":
            err.print(
                f"row {row.row}: {row.status} {row.error_code} {escape(row.error_message)}",
                highlight=False,
            )
    raise typer.Exit(0 if all(r.status == "succeeded" for r in reports) else 1)


@app.command()
def stats(
    server: Annotated[
        str, typer.Option(envvar="TALKINGFACE_SERVER", help="Server URL.")
    ] = "http://127.0.0.1:8383",
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Job statistics of a server: counts, success rates, durations, queue wait, retries."""
    from talkingface.cli_service import stats_command

    with user_errors(as_json=as_json):
        stats_command(server, as_json, api_key)


app.command()(submit)
app.add_typer(jobs_app, name="jobs")
app.add_typer(templates_app, name="templates")
app.add_typer(queue_app, name="queue")


def main() -> None:
    """Entry point: Ctrl-C and SIGTERM unwind (partial outputs are removed on the way out) and
    the process exits 130 or 143, even where the interrupt itself got lost on the way."""
    interrupts.install()
    try:
        run_app(app, prog_name="talkingface")
    except (SystemExit, KeyboardInterrupt):
        if interrupts.received:
            raise SystemExit(interrupts.exit_code) from None
        raise


if __name__ == "__main__":
    main()
