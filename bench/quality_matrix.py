"""Quality figures for every talking video in ../shared/media, driven by English and Mandarin.

Usage: python bench/quality_matrix.py [--media DIR] [--out DIR] [--json] [--sheets]
Prints one row per (template, audio): sync correlation and lag, mouth opening in speech and
in silence, outside-mouth PSNR/SSIM, jitter and the real-time factor of the generation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from talkingface.config import load_settings
from talkingface.engines.base import get_engine
from talkingface.pipeline.attempt import GenerateRequest, run_attempt
from talkingface.pipeline.items import JobId, JobTag
from talkingface.quality import evaluate

TEMPLATES = (
    "video_en_female_older_512x512_talking.mp4",
    "video_en_male_asian_suit_700x700_talking.mp4",
    "video_en_female_bluebg_700x700_talking.mp4",
    "video_en_female_512x512_mpeg4_talking.mp4",
    "video_female_seated_1080x1920_hevc_talking.mp4",
    "video_male_asian_glasses_720x1280_noaudio_talking.mp4",
)
AUDIOS = ("audio_en_male_radio_8s_16k_stereo.wav", "audio_zh_female_5s_24k.wav")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default_media = Path(__file__).resolve().parents[2] / "shared" / "media"
    parser.add_argument("--media", type=Path, default=default_media)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sheets", action="store_true", help="write a contact sheet per row")
    args = parser.parse_args()
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="talkingface-quality-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = load_settings(cache={"dir": out_dir / "cache"})
    engine = get_engine("classic")
    rows = []
    for template in TEMPLATES:
        for audio in AUDIOS:
            name = f"{Path(template).stem}__{Path(audio).stem}"
            output = out_dir / f"{name}.mp4"
            request = GenerateRequest(
                JobTag(JobId(name)), args.media / audio, args.media / template, output
            )
            result = run_attempt(request, engine, settings)
            sheet = out_dir / f"{name}.png" if args.sheets else None
            report = evaluate(
                output,
                audio_path=args.media / audio,
                template_path=args.media / template,
                contact_sheet_path=sheet,
            )
            row = {"template": template, "audio": audio, **report.to_dict()}
            row["rtf"] = round(result.processing_s / result.duration_s, 3)
            rows.append(row)
            if not args.json:
                print(_format(row), flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
    print(f"outputs in {out_dir}", file=sys.stderr)
    return 0


def _format(row: dict[str, object]) -> str:
    def num(key: str, digits: int = 3) -> str:
        value = row.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"  # type: ignore[str-format]

    return (
        f"{row['template'][:34]:34} {row['audio'][:22]:22} "  # type: ignore[index]
        f"corr {num('sync_correlation', 2)} lag {row['sync_lag_frames']} "
        f"open speech {num('open_speech_mean')} silence {num('open_silence_mean')} "
        f"psnr {num('outside_mouth_psnr_db', 1)} ssim {num('outside_mouth_ssim')} "
        f"jitter {num('mouth_jitter')} rtf {row['rtf']}"
    )


if __name__ == "__main__":
    sys.exit(main())
