"""Small test media built in code once per session (templates, speech, broken files) and readers.

The clip builders live in bench/clips.py (benches must not import tests); they are re-used here."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from bench.clips import (
    FPS,
    TEMPLATE_FRAMES,
    faceless_frame,
    template_frames,
    write_clip,
)

from talkingface.samples import (
    SpeechSample,
    synth_speech,
    write_wav,
)

__all__ = ["FPS", "TEMPLATE_FRAMES", "faceless_frame", "template_frames", "write_clip"]  # re-used

SPEECH_DURATION_S = 3.0
ROTATED_UPRIGHT_HW = (320, 256)  # portrait once the display rotation is applied


@dataclass(frozen=True, slots=True)
class StreamFacts:
    """What PyAV reads back from an MP4 written by the pipeline."""

    video_codec: str
    audio_codec: str | None
    pix_fmt: str
    width: int
    height: int
    fps: float
    frame_count: int
    video_duration_s: float
    audio_duration_s: float | None
    moov_before_mdat: bool


def read_stream_facts(path: Path) -> StreamFacts:
    """Codec, geometry, frame count and durations of an MP4, plus whether 'moov' precedes 'mdat'."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frame_count = 0
        last_end_s = 0.0
        for frame in container.decode(video):
            frame_count += 1
            if frame.pts is not None and frame.time_base is not None:
                duration = frame.duration or 0
                last_end_s = float((frame.pts + duration) * frame.time_base)
        rate = video.average_rate or Fraction(FPS)
        video_duration_s = (
            float(video.duration * video.time_base)
            if video.duration and video.time_base
            else last_end_s
        )
        facts = StreamFacts(
            video_codec=video.codec_context.name,
            audio_codec=None if audio is None else audio.codec_context.name,
            pix_fmt=str(video.codec_context.pix_fmt),
            width=video.codec_context.width,
            height=video.codec_context.height,
            fps=float(rate),
            frame_count=frame_count,
            video_duration_s=video_duration_s,
            audio_duration_s=None if audio is None else _audio_duration_s(path),
            moov_before_mdat=_moov_before_mdat(path),
        )
    return facts


def _moov_before_mdat(path: Path) -> bool:
    """Walk the top-level MP4 boxes; True when 'moov' comes before 'mdat'."""
    order: list[str] = []
    with path.open("rb") as fh:
        while header := fh.read(8):
            if len(header) < 8:
                break
            size = int.from_bytes(header[:4], "big")
            kind = header[4:8].decode("latin-1")
            order.append(kind)
            if size == 1:
                size = int.from_bytes(fh.read(8), "big") - 8
            elif size == 0:
                break
            fh.seek(size - 8, 1)
    return "moov" in order and "mdat" in order and order.index("moov") < order.index("mdat")


def decode_audio_16k(path: Path) -> np.ndarray:
    """The first audio stream as mono float32 at 16 kHz (PyAV's resampler)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
    blocks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.audio[0]):
            for out in resampler.resample(frame):
                blocks.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):
        blocks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)


def _audio_duration_s(path: Path) -> float:
    return float(decode_audio_16k(path).shape[0]) / 16000.0


def read_frames(path: Path) -> list[np.ndarray]:
    """Every decoded video frame as RGB uint8 (display rotation not applied)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def envelope(samples_f32: np.ndarray, hop: int = 160) -> np.ndarray:
    """RMS per 10 ms at 16 kHz."""
    usable = samples_f32[: samples_f32.shape[0] // hop * hop].astype(np.float64)
    return np.sqrt((usable.reshape(-1, hop) ** 2).mean(axis=1))


# --- session fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e_media")


@pytest.fixture(scope="session")
def speech() -> SpeechSample:
    """3 s of synthetic speech: one phrase 0.4–1.8 s, then a 1.2 s pause."""
    return synth_speech(SPEECH_DURATION_S)


@pytest.fixture(scope="session")
def speech_wav(media_root: Path, speech: SpeechSample) -> Path:
    return write_wav(media_root / "speech.wav", speech.samples_f32, speech.sample_rate_hz)


@pytest.fixture(scope="session")
def template_clip(media_root: Path) -> Path:
    """512x512, 25 fps, 2 s of the astronaut with gentle head motion; no audio track."""
    return write_clip(media_root / "template.mp4", template_frames())


@pytest.fixture(scope="session")
def short_template_clip(media_root: Path) -> Path:
    """A second, different template: 256 px, 1 s."""
    return write_clip(media_root / "template_256.mp4", template_frames(FPS, 256))


@pytest.fixture(scope="session")
def photo_png(media_root: Path) -> Path:
    path = media_root / "photo.png"
    crop = template_frames(1, 256)[0]
    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def faceless_clip(media_root: Path) -> Path:
    return write_clip(media_root / "faceless.mp4", [faceless_frame(128, 128, i) for i in range(10)])


@pytest.fixture(scope="session")
def half_face_clip(media_root: Path) -> Path:
    """256 px, 2 s: the astronaut for the first second, a faceless gradient for the second."""
    faces = template_frames(FPS, 256)
    rest = [faceless_frame(256, 256, i) for i in range(FPS)]
    return write_clip(media_root / "half_face.mp4", faces + rest)


@pytest.fixture(scope="session")
def empty_mp4(media_root: Path) -> Path:
    path = media_root / "empty.mp4"
    path.write_bytes(b"")
    return path


@pytest.fixture(scope="session")
def garbage_wav(media_root: Path) -> Path:
    path = media_root / "garbage.wav"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


@pytest.fixture(scope="session")
def video_without_audio(media_root: Path) -> Path:
    return write_clip(media_root / "silent_video.mp4", template_frames(10, 128))


@pytest.fixture(scope="session")
def two_face_clip(media_root: Path) -> Path:
    """512x256: two astronaut copies side by side, 10 frames."""
    halves = template_frames(10, 256)
    return write_clip(media_root / "two_faces.mp4", [np.hstack([f, f[:, ::-1]]) for f in halves])


@pytest.fixture(scope="session")
def rotated_clip(media_root: Path) -> Path:
    """Stored 320x256 landscape with a 90° display rotation: upright it is 256 wide, 320 high."""
    height, width = ROTATED_UPRIGHT_HW
    upright = [f[:height, (512 - width) // 2 : (512 + width) // 2] for f in template_frames(25)]
    path = media_root / "rotated.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = height, width, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "12"}
        stream.set_display_rotation(90)  # players turn the stored frame 90° counter-clockwise
        for image in upright:
            stored = np.ascontiguousarray(np.rot90(image, k=-1))  # clockwise, undone on display
            container.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        container.mux(stream.encode(None))
    return path
