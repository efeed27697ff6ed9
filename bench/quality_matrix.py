"""Quality matrix: render every case (bench/quality_cases.py) and judge it with the independent
figures of `evaluate`, optionally side by side with outputs an older engine rendered.

Usage:
  python bench/quality_matrix.py [--media DIR] [--out DIR] [--only TEXT] [--sheets] [--json]
      [--mandarin FILE]
      [--render-only | --evaluate-only] [--before DIR]

Cases: the 6 talking videos in shared/media, each driven by an English and a Mandarin clip;
three photos taken from those videos (closed, smiling with teeth, open); an idle clip whose
mouth stays closed; the hostile clip whose face leaves the frame; a talking video driven by
0.2 s of audio. One row per case: sync correlation and lag, margin over the foil, opening
speech/silence ratio, amplitude p50/p90 against the person's own, outside-mouth PSNR, and
PASS/FAIL per threshold (quality_checks) where it applies to the case: photos, the hostile
and the short case are held to sync and margin; the idle clip also to the speech/silence
ratio and PSNR; talking videos to all of them. "-" marks a figure not judged for the case.
A case that fails prints its error code and message instead of figures.

--render-only renders into --out and records each result or error in renders.json; it
imports only what the engine at commit 2f120c4 also has, so older code can render the cases
(PYTHONPATH=<old checkout>/src). --evaluate-only judges what is already in --out.
--before DIR judges DIR's outputs too (same file names) and prints "before→after" cells.
--sheets writes, per case, a PNG of template and output mouths at the most closed, a middle
and the most open output moment (sheets/ under --out; *.before.png for DIR's outputs).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.quality_cases import MANDARIN, Case, Kind, build_cases
from talkingface.errors import TalkingFaceError, error_from_exception

RENDERS_FILE = "renders.json"
CHECKS = ("sync", "margin", "speech_silence", "amplitude_p50", "amplitude_p90", "psnr")
JUDGED = {  # the checks each kind of case is held to (quality_checks.CheckName values)
    Kind.VIDEO: set(CHECKS),
    Kind.PHOTO: {"sync", "margin"},
    Kind.IDLE: {"sync", "margin", "speech_silence", "psnr"},
    Kind.HOSTILE: {"sync", "margin"},
    Kind.SHORT: {"sync", "margin"},
}
FIGURES = (  # (column, report key, digits)
    ("corr", "sync_correlation", 2),
    ("lag", "sync_lag_frames", 0),
    ("margin", "sync_margin", 2),
    ("sp/sil", "open_speech_silence_ratio", 2),
    ("amp50", "amplitude_p50_ratio", 2),
    ("amp90", "amplitude_p90_ratio", 2),
    ("psnr", "outside_mouth_psnr_db", 1),
)
SHORT_CHECK = {"sync": "sync", "margin": "marg", "speech_silence": "ratio"}
SHORT_CHECK |= {"amplitude_p50": "a50", "amplitude_p90": "a90", "psnr": "psnr"}


@dataclass(slots=True)
class Outcome:
    """One case judged on one side (before or after): figures and checks, or an error."""

    error: str | None = None  # "CODE [stage]: message"
    figures: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)  # check -> PASS / FAIL / n/a / -
    evaluate_s: float = 0.0

    @property
    def verdict(self) -> str:
        """ERROR; FAIL if a judged check fails; n/a if one could not be measured; else PASS."""
        if self.error is not None:
            return "ERROR"
        judged = {mark for mark in self.checks.values() if mark != "-"}
        return "FAIL" if "FAIL" in judged else ("n/a" if "n/a" in judged else "PASS")


def main() -> int:
    args = _parse_args()
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="talkingface-quality-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    every = build_cases(args.media, out_dir / "inputs", args.mandarin)
    cases = [c for c in every if args.only in c.name]
    if not args.evaluate_only:
        render_cases(cases, out_dir)
    if args.render_only:
        print(f"rendered into {out_dir} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return 0
    after = {c.name: judge(c, out_dir, sheets=args.sheets) for c in cases}
    before: dict[str, Outcome] | None = None
    if args.before is not None:
        older = build_cases(args.media, args.before / "inputs", args.mandarin)
        old_cases = {c.name: c for c in older}
        before = {
            c.name: judge(old_cases[c.name], args.before, sheets=args.sheets, sheet_dir=out_dir)
            for c in cases
        }
    if args.json:
        print(json.dumps(_json_rows(cases, after, before), indent=1))
    else:
        print("\n".join(format_table(cases, after, before)))
    print(f"outputs in {out_dir}; {time.monotonic() - started:.0f} s in all", file=sys.stderr)
    return 0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_media = Path(__file__).resolve().parents[2] / "shared" / "media"
    parser.add_argument("--media", type=Path, default=default_media)
    parser.add_argument("--out", type=Path, default=None, help="outputs (default: a temp dir)")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument(
        "--mandarin",
        default=MANDARIN,
        help=f"the Mandarin drive, a file in --media (default {MANDARIN}: 5 s, so its sync "
        "figures vary by about ±0.06; audio_zh_male_acknowledgement_17s_aac.m4a is steadier)",
    )
    parser.add_argument("--json", action="store_true", help="print rows as JSON")
    parser.add_argument("--sheets", action="store_true", help="write mouth-moment sheets")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--render-only", action="store_true", help="render, do not evaluate")
    mode.add_argument("--evaluate-only", action="store_true", help="judge what --out holds")
    parser.add_argument("--before", type=Path, default=None, help="older outputs to compare")
    return parser.parse_args()


# --- render ---------------------------------------------------------------------------------


def render_cases(cases: list[Case], out_dir: Path) -> None:
    """Render each case with the engine on the path; record results and errors in renders.json."""
    from talkingface.config import load_settings
    from talkingface.engines.base import get_engine
    from talkingface.pipeline.attempt import GenerateRequest, run_attempt

    try:
        from talkingface.vocabulary import JobId, JobTag
    except ImportError:  # engine code older than the move to vocabulary.py (d9e5722)
        from talkingface.pipeline.items import JobId, JobTag  # type: ignore[no-redef]

    settings = load_settings(cache={"dir": out_dir / "cache"})
    engine = get_engine("classic")
    print(f"rendering with {Path(run_attempt.__code__.co_filename).parents[2]}", file=sys.stderr)
    renders = _read_renders(out_dir)
    for case in cases:
        output = out_dir / f"{case.name}.mp4"
        output.unlink(missing_ok=True)
        request = GenerateRequest(JobTag(JobId(case.name)), case.audio, case.template, output)
        try:
            result = run_attempt(request, engine, settings)
        except Exception as exc:  # the matrix's boundary: record any failure, go on
            renders[case.name] = {"error": _one_line(exc)}
        else:
            renders[case.name] = {"processing_s": round(result.processing_s, 2)}
        print(f"{case.name:20} {renders[case.name]}", file=sys.stderr, flush=True)
        (out_dir / RENDERS_FILE).write_text(json.dumps(renders, indent=1))


def _read_renders(out_dir: Path) -> dict[str, dict[str, Any]]:
    path = out_dir / RENDERS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _one_line(exc: Exception) -> str:
    error = exc if isinstance(exc, TalkingFaceError) else error_from_exception(exc)
    where = f" [{error.stage.value}]" if error.stage else ""
    return f"{error.code.value}{where}: {error.message}"


# --- judge ----------------------------------------------------------------------------------


def judge(case: Case, out_dir: Path, *, sheets: bool, sheet_dir: Path | None = None) -> Outcome:
    """Evaluate one rendered case in `out_dir` (or report why it has no output)."""
    from talkingface.quality import measure
    from talkingface.quality_checks import check_report

    recorded = _read_renders(out_dir).get(case.name, {})
    output = out_dir / f"{case.name}.mp4"
    if "error" in recorded:
        return Outcome(error=str(recorded["error"]))
    if not output.is_file():
        return Outcome(error=f"no output {output.name} in {out_dir}")
    started = time.monotonic()
    try:
        measured = measure(output, audio_path=case.audio, template_path=case.template)
        if sheets:
            suffix = "" if sheet_dir is None else ".before"
            sheet = (sheet_dir or out_dir) / "sheets" / f"{case.name}{suffix}.png"
            _write_sheet(case, output, measured.opening, sheet)
    except Exception as exc:  # the matrix's boundary: a failing case is a row, not a crash
        return Outcome(error="evaluate: " + _one_line(exc))
    checks = {
        check.name.value: _mark(check.passed) if check.name.value in JUDGED[case.kind] else "-"
        for check in check_report(measured.report)
    }
    return Outcome(None, measured.report.to_dict(), checks, time.monotonic() - started)


def _mark(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "FAIL")


def _write_sheet(case: Case, output: Path, opening: Any, path: Path) -> None:
    from talkingface.contact_sheet import (
        MouthMoment,
        mouth_moment_indices,
        write_mouth_moments_sheet,
    )
    from talkingface.media.decode import iter_frames, iter_template_frames
    from talkingface.media.probe import choose_output_fps, probe
    from talkingface.vocabulary import LoopMode

    picks = mouth_moment_indices(opening)
    if not picks:
        return
    info = probe(output)
    fps = choose_output_fps(info)
    wanted = {index for _, index in picks}
    last = max(wanted) + 1
    outputs = {i: f for i, f in enumerate(iter_frames(output, fps=fps, info=info, max_frames=last))}
    templates = iter_template_frames(
        case.template, fps=fps, output_frame_count=last, loop=LoopMode.PINGPONG
    )
    shown = {i: f for i, (_, f) in enumerate(templates) if i in wanted}
    moments = [MouthMoment(label, i, float(opening[i]), outputs[i], shown[i]) for label, i in picks]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mouth_moments_sheet(moments, path)


# --- print ----------------------------------------------------------------------------------


def format_table(
    cases: list[Case], after: dict[str, Outcome], before: dict[str, Outcome] | None
) -> list[str]:
    """The matrix as text: one row per case, "before→after" cells when `before` is given."""
    width = 11 if before is not None else 6
    header = f"{'case':20} {'kind':7} " + " ".join(f"{name:>{width}}" for name, _, _ in FIGURES)
    header += "  " + " ".join(f"{SHORT_CHECK[c]:>{width}}" for c in CHECKS)
    header += f"  {'verdict':>{width + 2}}"
    lines = [header]
    errors: list[str] = []
    for case in cases:
        sides = [after[case.name]] if before is None else [before[case.name], after[case.name]]
        row = f"{case.name:20} {case.kind.value:7} "
        if all(side.error is not None for side in sides):
            lines.append(row + "ERROR " + " → ".join(str(side.error) for side in sides))
            continue
        cells = [_cell([_figure(s, key, digits) for s in sides]) for _, key, digits in FIGURES]
        marks = [_cell([s.checks.get(check, "ERR") for s in sides]) for check in CHECKS]
        verdict = _cell([s.verdict for s in sides])
        row += " ".join(f"{c:>{width}}" for c in cells)
        row += "  " + " ".join(f"{m:>{width}}" for m in marks) + f"  {verdict:>{width + 2}}"
        lines.append(row)
        for label, side in zip(("before", "after") if before else ("",), sides, strict=False):
            if side.error is not None:
                errors.append(f"  {case.name} {label}: {side.error}")
    if errors:
        lines += ["", "errors:", *errors]
    return lines


def _figure(outcome: Outcome, key: str, digits: int) -> str:
    if outcome.error is not None:
        return "ERR"
    value = outcome.figures.get(key)
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cell(parts: list[str]) -> str:
    return "-" if set(parts) == {"-"} else "→".join(parts)


def _json_rows(
    cases: list[Case], after: dict[str, Outcome], before: dict[str, Outcome] | None
) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        row: dict[str, Any] = {"case": case.name, "kind": case.kind.value}
        row |= {"template": str(case.template), "audio": str(case.audio)}
        for label, side in (("after", after), ("before", before)):
            if side is not None:
                outcome = side[case.name]
                row[label] = {"error": outcome.error, "verdict": outcome.verdict}
                row[label] |= {"checks": outcome.checks, "figures": outcome.figures}
        rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(main())
