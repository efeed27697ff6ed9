"""Checks on a job's inputs and output path before any work starts (fail fast, say what to do).

The API runs them at submit time and the worker again per attempt; they need the probe only,
so the API process never imports the pipeline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from talkingface.config import LimitSettings
from talkingface.errors import (
    InputTooLargeError,
    InvalidMediaError,
    OutputPathError,
    Stage,
)
from talkingface.media.audio import MIN_AUDIO_S, too_short
from talkingface.media.probe import MediaInfo, probe

OUTPUT_SUFFIXES = (".mp4", ".m4v")


class Prober(Protocol):
    """`media.probe.probe`, or a stand-in with its signature (e.g. one in a child process)."""

    def __call__(
        self, path: str | Path, *, max_width_px: int, max_height_px: int, max_duration_s: float
    ) -> MediaInfo: ...


def check_output_path(output: Path, inputs: tuple[Path, ...]) -> None:
    """Refuse outputs that would overwrite an input, have the wrong suffix, or cannot be
    written; create the output's directory."""
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise OutputPathError(
            f"Output {output.name} must end in .mp4 (the result is an H.264/AAC MP4).",
            stage=Stage.PROBE,
        )
    resolved = output.resolve()
    if any(path.exists() and resolved == path.resolve() for path in inputs):
        raise OutputPathError(
            f"Output {output.name} is also an input; choose another output path.",
            stage=Stage.PROBE,
        )
    if output.is_dir():
        raise OutputPathError(
            f"Output {output} is a directory; give a file name.", stage=Stage.PROBE
        )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(
            f"Cannot create the output directory {output.parent} ({exc.strerror or exc}).",
            stage=Stage.PROBE,
            cause=exc,
        ) from exc
    if not os.access(output.parent, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(output.parent).f_flag & os.ST_RDONLY)
        why = "is on a read-only file system" if read_only else "is not writable"
        raise OutputPathError(f"Cannot write {output}: {output.parent} {why}.", stage=Stage.PROBE)


def _human_bytes(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count} bytes"


def checked_probe(path: Path, limits: LimitSettings, prober: Prober = probe) -> MediaInfo:
    """Probe within every configured input limit (size, dimensions, duration)."""
    info = prober(
        path,
        max_width_px=limits.max_width_px,
        max_height_px=limits.max_height_px,
        max_duration_s=limits.max_duration_s,
    )
    if info.size_bytes > limits.max_input_bytes:
        raise InputTooLargeError(
            f"{path.name} is {_human_bytes(info.size_bytes)}, over the "
            f"{_human_bytes(limits.max_input_bytes)} limit (limits.max_input_bytes); "
            "shorten or re-encode it.",
            stage=Stage.PROBE,
            details={"size_bytes": info.size_bytes, "limit_bytes": limits.max_input_bytes},
        )
    return info


def check_inputs(
    audio: Path, video: Path, limits: LimitSettings, prober: Prober = probe
) -> tuple[MediaInfo, MediaInfo]:
    """Probe both inputs within the limits; the audio must have sound, the template a picture."""
    audio_info = checked_probe(audio, limits, prober)
    if not audio_info.has_audio:
        raise InvalidMediaError(
            f"{audio.name} has no audio track; give a speech file (wav, mp3, m4a…) "
            "or a video with sound as --audio.",
            stage=Stage.PROBE,
        )
    if 0 < audio_info.duration_s < MIN_AUDIO_S:  # 0: unknown until decoded (s3 checks again)
        raise too_short(audio, audio_info.duration_s, stage=Stage.PROBE)
    video_info = checked_probe(video, limits, prober)
    if not video_info.has_video:
        raise InvalidMediaError(
            f"{video.name} has no picture; give a video or a photo as the template.",
            stage=Stage.PROBE,
        )
    return audio_info, video_info
