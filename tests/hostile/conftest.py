"""Fixtures for the hostile-input tests: the broken-file corpus and good inputs, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.corpus import (
    HostileCase,
    build_corpus,
    write_h264,
    write_mjpeg,
    write_mp4_with_zero_frame_durations,
    write_short_speech,
)
from tests.media import FPS, faceless_frame, template_frames, write_clip


@pytest.fixture(scope="session")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="session")
def good_speech(hostile_dir: Path) -> Path:
    """1 s of synthetic speech, 16 kHz 16-bit WAV."""
    return write_short_speech(hostile_dir / "good_speech.wav", duration_s=1.0)


@pytest.fixture(scope="session")
def hostile_cases(
    hostile_dir: Path, good_speech: Path, short_template_clip: Path
) -> dict[str, HostileCase]:
    cases = build_corpus(hostile_dir / "corpus", good_speech, short_template_clip)
    return {case.name: case for case in cases}


@pytest.fixture(scope="session")
def face_leaves_clip(hostile_dir: Path) -> Path:
    """256 px, 1 s: the astronaut for the first 12 frames, then a faceless gradient."""
    faces = template_frames(12, 256)
    rest = [faceless_frame(256, 256, i) for i in range(FPS - 12)]
    return write_clip(hostile_dir / "face_leaves.mp4", faces + rest)


@pytest.fixture(scope="session")
def vfr_clip(hostile_dir: Path) -> Path:
    """256 px astronaut frames at irregular times (0–0.96 s): a variable-frame-rate template."""
    pts_ms = [0, 30, 90, 130, 240, 270, 300, 360, 400, 510, 540, 560, 700, 740, 790, 880, 960]
    return write_h264(hostile_dir / "vfr.mp4", template_frames(len(pts_ms), 256), pts_ms=pts_ms)


@pytest.fixture(scope="session")
def zero_fps_clip(hostile_dir: Path) -> Path:
    """Motion JPEG whose 10 frames all sit at time 0 with duration 0: no rate anywhere."""
    source = write_mjpeg(hostile_dir / "mjpeg.mp4", template_frames(10, 256))
    return write_mp4_with_zero_frame_durations(source, hostile_dir / "zero_fps.mp4")
