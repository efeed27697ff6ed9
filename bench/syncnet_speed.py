"""What a quality receipt costs: `evaluate`'s independent figures and SyncNet's LSE on one clip.

Usage:
  python bench/syncnet_speed.py [--seconds 4] [--size 512] [--checkpoint syncnet_v2.model] [--json]

Builds the astronaut template clip (bench/clips.py) and synthetic speech of --seconds, then
times, in one run: the video's decode alone (the floor), `evaluate` without SyncNet, and
SyncNet scoring (the face track at 25 fps, then the embeddings and the ±15-frame search).
Without --checkpoint a randomly initialised SyncNet is used: the figures are meaningless, the
time is the same as the real file's (same architecture). Prints seconds, windows per second,
the real-time factor (seconds of work per second of video) and the ratios to the decode.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.clips import template_frames, write_clip
from talkingface.media.decode import iter_frames
from talkingface.neural.syncnet import SyncNet
from talkingface.quality import evaluate
from talkingface.samples import synth_speech, write_wav
from talkingface.syncnet_score import SyncNetScorer


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        frames = round(args.seconds * 25)
        clip = write_clip(root / "clip.mp4", template_frames(frames, args.size))
        audio = write_wav(root / "speech.wav", synth_speech(args.seconds).samples_f32, 16000)
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = root / "syncnet_v2.model"
            torch.save(SyncNet().state_dict(), checkpoint)
        scorer = SyncNetScorer(checkpoint, threads=torch.get_num_threads())
        scorer.score(clip, audio_path=audio)  # warm-up: oneDNN builds its kernels per shape
        decode_s = _timed(lambda: sum(1 for _ in iter_frames(clip, fps=25.0)))
        evaluate_s = _timed(lambda: evaluate(clip, audio_path=audio, template_path=clip))
        figures = {}
        syncnet_s = _timed(lambda: figures.update(lse=scorer.score(clip, audio_path=audio)))
    windows = figures["lse"].window_count
    result = {
        "clip": f"{args.size}x{args.size}, {frames} frames ({args.seconds:g} s at 25 fps)",
        "threads": torch.get_num_threads(),
        "decode_s": round(decode_s, 3),
        "evaluate_s": round(evaluate_s, 3),
        "syncnet_s": round(syncnet_s, 3),
        "syncnet_windows_per_s": round(windows / syncnet_s, 1),
        "evaluate_realtime_factor": round(evaluate_s / args.seconds, 2),
        "syncnet_realtime_factor": round(syncnet_s / args.seconds, 2),
        "evaluate_vs_decode": round(evaluate_s / decode_s, 1),
        "syncnet_vs_decode": round(syncnet_s / decode_s, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:26} {value}")


if __name__ == "__main__":
    main()
