"""Peak memory of `talkingface generate` on a long 1080p input (bounded-RAM check).

Usage: python bench/long_input.py [--minutes 10] [--height 1080] [--preset ultrafast] [--dir D]
Builds a template video of the given length (the demo photo with head motion, 16:9) and a
speech clip of the same length, runs `talkingface generate` in a child process and prints
its peak RSS, processing time and real-time factor as JSON. `--preset` only changes the
x264 preset of the run (to keep the check quick); memory does not depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from talkingface.media.encode import VideoWriter
from talkingface.samples import (
    astronaut_photo,
    iter_template_frames_from_photo,
    synth_speech,
    write_wav,
)

FPS = 25.0


def build_inputs(directory: Path, minutes: float, height: int) -> tuple[Path, Path]:
    width = height * 16 // 9
    video = directory / f"template_{height}p_{minutes:g}min.mp4"
    audio = directory / f"speech_{minutes:g}min.wav"
    if not audio.exists():
        speech = synth_speech(minutes * 60.0)
        write_wav(audio, speech.samples_f32, speech.sample_rate_hz)
    if not video.exists():
        frames = iter_template_frames_from_photo(
            astronaut_photo(), frame_count=round(minutes * 60 * FPS), size_px=height
        )
        pad = (width - height) // 2
        with VideoWriter(video, width=width, height=height, fps=FPS, preset="ultrafast") as out:
            for frame in frames:
                out.write(cv2.copyMakeBorder(frame, 0, 0, pad, pad, cv2.BORDER_REFLECT_101))
    return video, audio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--preset", default="ultrafast")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="talkingface-long-"))
    directory.mkdir(parents=True, exist_ok=True)
    video, audio = build_inputs(directory, args.minutes, args.height)
    env = {
        **os.environ,
        "TALKINGFACE_ENGINES__PRESET": args.preset,
        "TALKINGFACE_CACHE__DIR": str(directory / "cache"),
    }
    command = [sys.executable, "-m", "talkingface", "generate", "--json"]
    command += ["--audio", str(audio), "--video", str(video), "-o", str(directory / "out.mp4")]
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - started
    if completed.returncode != 0:
        print(completed.stderr, file=sys.stderr)
        return completed.returncode
    result = json.loads(completed.stdout)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    figures = {
        "minutes": args.minutes,
        "height": args.height,
        "frames": result["frame_count"],
        "processing_s": result["processing_s"],
        "wall_s": round(wall_s, 1),
        "rtf": result["realtime_factor"],
        "peak_rss_mb": round(peak_kb / 1024.0, 1),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
