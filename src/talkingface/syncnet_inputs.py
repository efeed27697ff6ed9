"""What SyncNet scoring reads from a video: MFCC windows of its audio and 224×224 face crops.

Both follow joonson/syncnet_python's recipe (run_pipeline.py, SyncNetInstance.evaluate):
- audio: 16 kHz mono as 16-bit PCM values, `python_speech_features.mfcc` with its defaults
  (25 ms windows every 10 ms → 100 Hz, 13 cepstra, energy in c0), shaped (13, T);
- video at 25 fps; per frame a square crop around the face box (half side s = the box's
  larger half side; s above and 1.8·s below the centre, 1.4·s either side), the centre and
  size median-filtered over 13 frames, the frame padded with grey 110 where the crop leaves
  it, resized to 224×224, BGR.
The recipe boxes faces with S3FD; here the box is the bounding box of the project's own face
tracker landmarks (face/track.py), which spans the same forehead-to-chin, cheek-to-cheek
region. Frames where the tracker finds no face take the box interpolated from their
neighbours, as the recipe interpolates a track over its missed detections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.signal import medfilt

from talkingface.errors import NoFaceError, Stage
from talkingface.face.track import FaceTracker
from talkingface.media.decode import iter_frames
from talkingface.media.probe import MediaInfo
from talkingface.vocabulary import AudioClip

SYNCNET_FPS = 25.0
SYNCNET_SAMPLE_RATE_HZ = 16000
MFCC_STEPS_PER_FRAME = 4  # 100 Hz MFCC / 25 fps video
CROP_SIZE_PX = 224
CROP_SCALE = 0.40  # run_pipeline.py's --crop_scale
SMOOTH_FRAMES = 13  # median filter length for the crop centre and size
PAD_GREY = 110

FrameCallback = Callable[[int, int], None]  # (frames done, frames total)


@dataclass(frozen=True, slots=True)
class CropBoxes:
    """Per-frame crop geometry in frame pixels, already smoothed."""

    centre_x: np.ndarray  # (N,)
    centre_y: np.ndarray  # (N,)
    half_side: np.ndarray  # (N,) the face box's larger half side (s)
    faces_found: int  # frames where the tracker saw the face (the rest are interpolated)

    @property
    def frame_count(self) -> int:
        return int(self.centre_x.shape[0])


def syncnet_mfcc(audio: AudioClip) -> np.ndarray:
    """(13, T) MFCC at 100 Hz, as syncnet_python computes it from 16-bit PCM at 16 kHz."""
    import python_speech_features  # the recipe's own MFCC (pure Python; the neural extra)

    if audio.sample_rate_hz != SYNCNET_SAMPLE_RATE_HZ:
        raise ValueError(f"SyncNet needs 16 kHz audio, got {audio.sample_rate_hz} Hz")
    pcm = np.clip(np.round(audio.samples_f32.astype(np.float64) * 32768.0), -32768, 32767)
    mfcc = python_speech_features.mfcc(pcm.astype(np.int16), SYNCNET_SAMPLE_RATE_HZ)  # (T, 13)
    return np.ascontiguousarray(mfcc.T, dtype=np.float32)  # (13, T)


def find_crop_boxes(
    video: Path,
    info: MediaInfo,
    *,
    max_frames: int | None = None,
    on_frame: FrameCallback | None = None,
    frame_total: int = 0,
) -> CropBoxes:
    """Track the face through the video at 25 fps and derive the recipe's smoothed crops."""
    tracker = FaceTracker(fps=SYNCNET_FPS)
    rows: list[tuple[float, float, float, float]] = []
    for index, frame in enumerate(
        iter_frames(video, fps=SYNCNET_FPS, info=info, max_frames=max_frames)
    ):
        observation = tracker.process(frame)
        if observation is None:
            rows.append((np.nan, np.nan, np.nan, np.nan))
        else:
            points = observation.landmarks_f32
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            rows.append((float(x0), float(y0), float(x1), float(y1)))
        if on_frame is not None:
            on_frame(index + 1, frame_total)
    boxes = np.array(rows, dtype=np.float64).reshape(-1, 4)  # (N, 4) x0, y0, x1, y1
    found = np.isfinite(boxes[:, 0])
    if not found.any():
        raise NoFaceError(
            f"No face found in {video.name}: SyncNet scores the lips of one visible face.",
            stage=Stage.EVALUATE,
        )
    frame_index = np.arange(boxes.shape[0])
    filled = np.stack(
        [np.interp(frame_index, frame_index[found], boxes[found, c]) for c in range(4)], axis=1
    )
    half_side = np.maximum(filled[:, 3] - filled[:, 1], filled[:, 2] - filled[:, 0]) / 2.0
    kernel = min(SMOOTH_FRAMES, boxes.shape[0] - 1 + boxes.shape[0] % 2)  # odd, ≤ the length
    return CropBoxes(
        centre_x=medfilt((filled[:, 0] + filled[:, 2]) / 2.0, kernel),
        centre_y=medfilt((filled[:, 1] + filled[:, 3]) / 2.0, kernel),
        half_side=medfilt(half_side, kernel),
        faces_found=int(found.sum()),
    )


def crop_face_bgr(
    frame_rgb: np.ndarray, centre_x: float, centre_y: float, half: float
) -> np.ndarray:
    """(224, 224, 3) BGR uint8: the recipe's crop of one frame (grey where it leaves it)."""
    pad = int(half * (1 + 2 * CROP_SCALE))
    padded = cv2.copyMakeBorder(
        frame_rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(PAD_GREY,) * 3
    )
    cy, cx = centre_y + pad, centre_x + pad
    face = padded[
        int(cy - half) : int(cy + half * (1 + 2 * CROP_SCALE)),
        int(cx - half * (1 + CROP_SCALE)) : int(cx + half * (1 + CROP_SCALE)),
    ]
    resized = cv2.resize(face, (CROP_SIZE_PX, CROP_SIZE_PX))
    return np.ascontiguousarray(resized[:, :, ::-1])  # RGB → BGR, as cv2.imread gave the recipe


def iter_face_crops_bgr(video: Path, info: MediaInfo, boxes: CropBoxes) -> Iterator[np.ndarray]:
    """The video's frames at 25 fps cropped by `boxes`, one (224, 224, 3) BGR array each."""
    frames = iter_frames(video, fps=SYNCNET_FPS, info=info, max_frames=boxes.frame_count)
    for index, frame in enumerate(frames):
        yield crop_face_bgr(
            frame,
            float(boxes.centre_x[index]),
            float(boxes.centre_y[index]),
            float(boxes.half_side[index]),
        )
