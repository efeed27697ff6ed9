"""Small clips built in code (the astronaut template, faceless frames), for benches and tests.

The tests' media fixtures (tests/media.py) are built from these; benches must not import tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from talkingface.media.encode import VideoWriter
from talkingface.samples import astronaut_photo, iter_template_frames_from_photo

FPS = 25
TEMPLATE_SIZE_PX = 512
TEMPLATE_FRAMES = 50  # 2 s


def write_clip(path: Path, frames: Iterable[np.ndarray], *, fps: float = FPS) -> Path:
    """Write RGB frames as an H.264 MP4 without audio (the pipeline's own writer, CRF 18)."""
    frame_list = list(frames)
    height, width = frame_list[0].shape[:2]
    with VideoWriter(path, width=width, height=height, fps=fps, audio_path=None) as writer:
        for frame in frame_list:
            writer.write(frame)
    return path


def template_frames(frame_count: int = TEMPLATE_FRAMES, size_px: int = TEMPLATE_SIZE_PX) -> list:
    """The astronaut template frames (gentle head motion), as written into template_clip."""
    return list(
        iter_template_frames_from_photo(astronaut_photo(), frame_count=frame_count, size_px=size_px)
    )


def faceless_frame(height: int, width: int, index: int = 0) -> np.ndarray:
    """A smooth colour gradient with a moving disc: textured, but nothing like a face."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack(
        [x / width * 200 + 30, y / height * 180 + 40, np.full_like(x, 90.0)], axis=-1
    ).astype(np.uint8)
    cv2.circle(image, (20 + 3 * index, height // 2), max(4, height // 8), (240, 240, 60), -1)
    return image
