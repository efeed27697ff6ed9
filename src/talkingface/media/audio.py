"""Stage s3 input: decode any audio PyAV reads into the mono float32 analysis clip (never muxed).

Time zero is the first decoded sample of the first audio stream; media/encode.py muxes the same
stream from the same sample, so analysis frames and the output's audio line up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import av.container
import av.error
import numpy as np

from talkingface.errors import InputTooLargeError, InvalidMediaError, Stage
from talkingface.media.probe import invalid_media, open_input
from talkingface.vocabulary import AudioClip

MIN_AUDIO_S = 0.04  # one frame at 25 fps: shorter audio gives no video


def load_audio(
    path: str | Path, *, sample_rate_hz: int = 16000, max_duration_s: float = 3600.0
) -> AudioClip:
    """Decode the first audio stream of `path` to mono float32 at `sample_rate_hz`, streaming."""
    file_path = Path(path)
    max_samples = int(max_duration_s * sample_rate_hz)
    chunks: list[np.ndarray] = []
    sample_count = 0
    with open_input(file_path, stage=Stage.FEATURES) as container:
        _check_has_audio(container, file_path)
        _check_declared_duration(container, file_path, max_duration_s)
        for chunk in _iter_mono_chunks(container, file_path, sample_rate_hz):
            if not np.all(np.isfinite(chunk)):
                raise invalid_media(
                    file_path, "its audio holds NaN or infinite samples", stage=Stage.FEATURES
                )
            sample_count += chunk.shape[0]
            if sample_count > max_samples:
                raise _too_long(file_path, max_duration_s, sample_count / sample_rate_hz)
            chunks.append(chunk)
    if sample_count < MIN_AUDIO_S * sample_rate_hz:
        raise too_short(file_path, sample_count / sample_rate_hz, stage=Stage.FEATURES)
    samples_f32 = np.clip(np.concatenate(chunks), -1.0, 1.0).astype(np.float32, copy=False)
    return AudioClip(samples_f32=samples_f32, sample_rate_hz=sample_rate_hz)


def too_short(path: Path, duration_s: float, *, stage: Stage) -> InvalidMediaError:
    """The audio is empty or shorter than one video frame: nothing to lip-sync."""
    held = (
        "holds no samples"
        if duration_s <= 0
        else f"lasts only {duration_s * 1000:.2f} ms, less than one video frame ({MIN_AUDIO_S:g} s)"
    )
    return InvalidMediaError(
        f"The audio of {path.name} {held}; give a speech file with sound.",
        stage=stage,
        details={"path": str(path), "duration_s": duration_s, "min_duration_s": MIN_AUDIO_S},
    )


def _iter_mono_chunks(
    container: av.container.InputContainer, path: Path, sample_rate_hz: int
) -> Iterator[np.ndarray]:
    """(S,) float32 chunks at the target rate; the original-rate audio is never kept."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate_hz)
    decoded_count = 0
    try:
        for frame in container.decode(audio=0):
            decoded_count += 1
            for out in resampler.resample(frame):
                yield out.to_ndarray().reshape(-1)
        for out in resampler.resample(None):
            yield out.to_ndarray().reshape(-1)
    except av.error.FFmpegError as exc:
        raise InvalidMediaError(
            f"The audio of {path.name} cannot be decoded after frame {decoded_count}; "
            "re-export it as WAV or M4A (AAC).",
            stage=Stage.FEATURES,
            details={"path": str(path), "frame": decoded_count, "ffmpeg": str(exc)},
        ) from exc


def _check_has_audio(container: av.container.InputContainer, path: Path) -> None:
    if not container.streams.audio:
        raise InvalidMediaError(
            f"{path.name} has no audio track; give a speech file (WAV, MP3, M4A) or a video "
            "with sound.",
            stage=Stage.FEATURES,
            details={"path": str(path)},
        )


def _check_declared_duration(
    container: av.container.InputContainer, path: Path, max_duration_s: float
) -> None:
    """Refuse before decoding when the container already says the audio is too long."""
    if container.duration is not None and container.duration > 0:
        duration_s = float(container.duration) / av.time_base
        if duration_s > max_duration_s + 1.0:  # 1 s slack: declared durations are approximate
            raise _too_long(path, max_duration_s, duration_s)


def _too_long(path: Path, max_duration_s: float, duration_s: float) -> InputTooLargeError:
    return InputTooLargeError(
        f"The audio of {path.name} lasts {duration_s:.1f} s or more, longer than the limit of "
        f"{max_duration_s:.0f} s; shorten it.",
        stage=Stage.FEATURES,
        details={"path": str(path), "duration_s": duration_s, "max_duration_s": max_duration_s},
    )
