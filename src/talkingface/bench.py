"""`talkingface bench`: end-to-end speed at 512x512 and 1280x720, cold and cached, vs encode-only.

Inputs are made in code (the demo photo, synthetic speech), so the figures are comparable
between machines and runs. Every ratio's base is measured in the same run.
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from talkingface.config import Settings, load_settings
from talkingface.media.decode import iter_frames
from talkingface.media.encode import VideoWriter
from talkingface.samples import (
    astronaut_photo,
    iter_template_frames_from_photo,
    synth_speech,
    write_wav,
)

FPS = 25.0
TEMPLATE_S = 4.0


def _widened(frames: Iterator[np.ndarray], width: int) -> Iterator[np.ndarray]:
    """A square face clip widened to `width` with mirrored edges: a real 16:9 frame layout."""
    for frame in frames:
        pad = (width - frame.shape[1]) // 2
        yield cv2.copyMakeBorder(frame, 0, 0, pad, pad, cv2.BORDER_REFLECT_101)


def write_bench_template(path: Path, size: str) -> Path:
    """ "512": a 512x512 face clip; any other size (a frame height, "720", "1080"): a square
    face clip of that height widened to 16:9."""
    face_px = int(size)
    count = int(TEMPLATE_S * FPS)
    frames = iter_template_frames_from_photo(astronaut_photo(), frame_count=count, size_px=face_px)
    width = height = face_px
    if face_px != 512:
        width = face_px * 16 // 9
        frames = _widened(frames, width)
    with VideoWriter(path, width=width, height=height, fps=FPS) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def _encode_only_fps(template: Path, audio: Path, out: Path, frame_count: int) -> float:
    """The ratio base: encode (and mux the audio of) already-decoded frames, nothing else."""
    frames = list(islice(iter_frames(template, fps=FPS), int(TEMPLATE_S * FPS)))
    height, width = frames[0].shape[:2]
    started = time.perf_counter()
    with VideoWriter(out, width=width, height=height, fps=FPS, audio_path=audio) as writer:
        for i in range(frame_count):
            writer.write(frames[i % len(frames)])
    return frame_count / (time.perf_counter() - started)


def _generate_s(audio: Path, video: Path, out: Path, settings: Settings) -> float:
    from talkingface.engines.base import get_engine
    from talkingface.pipeline.attempt import GenerateRequest, run_attempt
    from talkingface.vocabulary import JobId, JobTag

    engine = get_engine(settings.engines.default, settings.engines)
    engine.load()
    request = GenerateRequest(JobTag(JobId("bench")), audio, video, out)
    started = time.perf_counter()
    run_attempt(request, engine, settings)
    return time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class SizeTimes:
    """One template size timed: encode-only, then the render cold and with the template cached."""

    encode_only_fps: float
    cold_s: float
    warm_s: float
    warm_cpu_s: float  # this process's CPU time during the cached render


def time_size(
    size: str,
    audio: Path,
    root: Path,
    settings: Settings,
    frame_count: int,
    say: Callable[[str], object],
) -> SizeTimes:
    """The bench template at `size` (write_bench_template) timed, each step announced."""
    template = write_bench_template(root / f"template_{size}.mp4", size)
    say(f"encode-only {size}…")
    encode_fps = _encode_only_fps(template, audio, root / "encode.mp4", frame_count)
    say(f"end to end {size}, cold (template not cached)…")
    cold = _generate_s(audio, template, root / f"out_{size}.mp4", settings)
    say(f"end to end {size}, template cached…")
    cpu_started = time.process_time()
    warm = _generate_s(audio, template, root / f"out_{size}.mp4", settings)
    return SizeTimes(encode_fps, cold, warm, time.process_time() - cpu_started)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def run_bench(
    *, duration_s: float = 10.0, log: Callable[[str], object] | None = None
) -> dict[str, float]:
    """Measure and return the figures; `log` gets a line per step."""
    say = log or (lambda _line: None)
    figures: dict[str, float] = {"audio_s": duration_s}
    frame_count = round(duration_s * FPS)
    with tempfile.TemporaryDirectory(prefix="talkingface-bench-") as tmp:
        root = Path(tmp)
        speech = synth_speech(duration_s)
        audio = write_wav(root / "speech.wav", speech.samples_f32, speech.sample_rate_hz)
        settings = load_settings(cache={"dir": root / "cache"})
        for size in ("512", "720"):
            times = time_size(size, audio, root, settings, frame_count, say)
            figures[f"encode_only_fps_{size}"] = round(times.encode_only_fps, 1)
            figures[f"cold_rtf_{size}"] = round(times.cold_s / duration_s, 3)
            figures[f"e2e_fps_{size}"] = round(frame_count / times.warm_s, 1)
            figures[f"rtf_{size}"] = round(times.warm_s / duration_s, 3)
            e2e_fps = figures[f"e2e_fps_{size}"]
            figures[f"e2e_vs_encode_only_{size}"] = round(e2e_fps / times.encode_only_fps, 3)
    figures["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return figures
