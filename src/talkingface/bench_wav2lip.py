"""`talkingface bench --engine wav2lip`: generator-only and end-to-end fps, vs encode-only.

Without engines.wav2lip.checkpoint (or --checkpoint) a randomly initialised generator is used:
the same architecture does the same arithmetic, so the speed is the real model's; the pictures
are noise. Inputs are made in code (the demo photo, synthetic speech) at 512×512 and
1920×1080; every ratio's base (encode-only) is measured in the same run.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from talkingface.bench import FPS, _peak_rss_mb, time_size
from talkingface.config import Settings
from talkingface.neural.torch_runtime import require_torch
from talkingface.samples import (
    synth_speech,
    write_wav,
)

GENERATOR_BATCHES = (1, 16, 32)
GENERATOR_REPEATS_FRAMES = 64  # frames timed per batch size, after one warm-up batch


def _random_checkpoint(path: Path) -> Path:
    torch = require_torch("The wav2lip bench")
    from talkingface.engines.wav2lip.model import Wav2LipGenerator

    torch.manual_seed(0)
    torch.save({"state_dict": Wav2LipGenerator().state_dict()}, path)
    return path


def generator_fps(
    settings: Settings, batch_size: int, precision: str | None = None
) -> tuple[float, float]:
    """Frames per second of the generator alone (uint8 in, uint8 out) at `batch_size`, and
    the process CPU milliseconds per frame (robust to other load on a shared machine)."""
    from talkingface.engines.wav2lip.inference import GeneratorRunner, load_generator

    update: dict[str, object] = {"batch_size": batch_size}
    if precision is not None:
        update["precision"] = precision
    wav2lip = settings.engines.wav2lip.model_copy(update=update)
    runner = GeneratorRunner(load_generator(wav2lip), wav2lip)
    rng = np.random.default_rng(0)
    mel = rng.uniform(-4, 4, (batch_size, 80, 16)).astype(np.float32)
    faces = rng.integers(0, 256, (batch_size, 96, 96, 6), dtype=np.uint8)
    for _ in range(2):  # warm-up: first-call allocations, oneDNN kernels built per shape
        runner.run(mel, faces)
    rounds = max(1, GENERATOR_REPEATS_FRAMES // batch_size)
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        runner.run(mel, faces)
    elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    runner.close()
    frames = rounds * batch_size
    return frames / elapsed, 1000.0 * cpu_s / frames


def run_wav2lip_bench(
    settings: Settings, *, duration_s: float = 4.0, log: Callable[[str], object] | None = None
) -> dict[str, float]:
    """Measure and return the figures; `log` gets a line per step."""
    say = log or (lambda _line: None)
    figures: dict[str, float] = {"audio_s": duration_s}
    frame_count = round(duration_s * FPS)
    with tempfile.TemporaryDirectory(prefix="talkingface-bench-w2l-") as tmp:
        root = Path(tmp)
        wav2lip = settings.engines.wav2lip
        if wav2lip.checkpoint is None:
            figures["random_weights"] = 1.0
            wav2lip = wav2lip.model_copy(update={"checkpoint": _random_checkpoint(root / "r.pth")})
        engines = settings.engines.model_copy(update={"default": "wav2lip", "wav2lip": wav2lip})
        cache = settings.cache.model_copy(update={"dir": root / "cache", "enabled": True})
        run_settings = settings.model_copy(update={"engines": engines, "cache": cache})
        for batch in GENERATOR_BATCHES:
            say(f"generator only, batch {batch}…")
            fps, cpu_ms = generator_fps(run_settings, batch)
            figures[f"generator_fps_b{batch}"] = round(fps, 1)
            figures[f"generator_cpu_ms_per_frame_b{batch}"] = round(cpu_ms, 1)
        say("generator only, batch 16, fp32 (the base of precision auto's gain)…")
        fps, cpu_ms = generator_fps(run_settings, 16, "fp32")
        figures["generator_fps_b16_fp32"] = round(fps, 1)
        figures["generator_cpu_ms_per_frame_b16_fp32"] = round(cpu_ms, 1)
        speech = synth_speech(duration_s)
        audio = write_wav(root / "speech.wav", speech.samples_f32, speech.sample_rate_hz)
        for size in ("512", "1080"):
            times = time_size(size, audio, root, run_settings, frame_count, say)
            encode_fps = times.encode_only_fps
            figures[f"encode_only_fps_{size}"] = round(encode_fps, 1)
            cpu_ms = 1000.0 * times.warm_cpu_s / frame_count
            figures[f"e2e_cpu_ms_per_frame_{size}"] = round(cpu_ms, 1)
            figures[f"cold_rtf_{size}"] = round(times.cold_s / duration_s, 3)
            figures[f"e2e_fps_{size}"] = round(frame_count / times.warm_s, 1)
            figures[f"e2e_vs_encode_only_{size}"] = round(
                frame_count / times.warm_s / encode_fps, 3
            )
    figures["torch_threads"] = float(require_torch("The wav2lip bench").get_num_threads())
    figures["load_average_1m"] = round(os.getloadavg()[0], 2)  # other work on this machine
    figures["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return figures
