"""⑥ A job's quality figures, in a process of their own: `python -m talkingface.quality_job`.

The API (api/quality_runs.py) starts this so that the face models `evaluate` needs load here,
never in the server. It measures the result against the job's audio and template, exactly as
`talkingface evaluate --json` does (with `--syncnet`, the server's evaluate.syncnet_checkpoint,
LSE too), and writes into the folder it is given `figures.json`
(`{"figures": …, "verdicts": […]}`) and `sheet.png` (the mouth contact sheet), or, on a
failure, `error.json` (`{"code", "message"}`) and exit status 1.

`quality.json`, what the API's /v1/jobs/{id}/quality routes read, is written by one function
here (write_quality_outcome) for both paths that produce it: an on-request evaluation
(api/quality_runs.py) and a job's receipt (quality_receipt.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FIGURES_NAME = "figures.json"
SHEET_NAME = "sheet.png"
ERROR_NAME = "error.json"
QUALITY_NAME = "quality.json"


def write_quality_outcome(
    folder: Path,
    job_id: str,
    duration_s: float,
    *,
    figures: dict[str, Any] | None = None,  # Any: JSON-safe values
    verdicts: list[str] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write `quality.json` into the job's quality folder, whole or not at all (staged, then
    renamed): succeeded with `figures` and `verdicts`, else failed with `error`. Returns it."""
    outcome: dict[str, Any] = {
        "job_id": job_id,
        "state": "failed" if figures is None else "succeeded",
        "computed_at": datetime.now(UTC).isoformat(),
        "duration_s": round(duration_s, 2),
    }
    if figures is not None:
        outcome |= {"figures": figures, "verdicts": verdicts or []}
    else:
        outcome["error"] = error
    staged = folder / f".{QUALITY_NAME}.{os.getpid()}"
    staged.write_text(json.dumps(outcome), encoding="utf-8")
    os.replace(staged, folder / QUALITY_NAME)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m talkingface.quality_job")
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--audio", type=Path)
    parser.add_argument("--template", type=Path)
    parser.add_argument("--loop", default="pingpong")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--syncnet", type=Path)  # evaluate.syncnet_checkpoint: LSE too
    parser.add_argument("--trust-checkpoint", action="store_true")
    args = parser.parse_args(argv)
    from talkingface.errors import Stage, TalkingFaceError, UnexpectedError
    from talkingface.quality import evaluate
    from talkingface.quality_checks import describe_report
    from talkingface.vocabulary import LoopMode

    out: Path = args.out
    try:
        syncnet = None
        if args.syncnet is not None:
            from talkingface.syncnet_score import SyncNetScorer

            syncnet = SyncNetScorer(args.syncnet, trust=args.trust_checkpoint)
        report = evaluate(
            args.video,
            audio_path=args.audio,
            template_path=args.template,
            loop=LoopMode(args.loop),
            contact_sheet_path=out / SHEET_NAME,
            syncnet=syncnet,
        )
        body = {"figures": report.to_dict(), "verdicts": describe_report(report)}
        (out / FIGURES_NAME).write_text(json.dumps(body), encoding="utf-8")
        return 0
    except Exception as exc:  # the boundary of this process: report it as data, then exit
        error = (
            exc
            if isinstance(exc, TalkingFaceError)
            else UnexpectedError.from_exception(exc, stage=Stage.EVALUATE)
        )
        payload = {"code": error.code.value, "message": error.message}
        (out / ERROR_NAME).write_text(json.dumps(payload), encoding="utf-8")
        return 1


if __name__ == "__main__":
    sys.exit(main())
