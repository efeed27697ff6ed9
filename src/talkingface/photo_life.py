"""Signs of life for a photo template (engines.photo_life, off by default): blinks, and a slow
idle drift of the whole picture.

A still photo driven by speech otherwise keeps a frozen head and eyes that never close. Blinks
pull each upper lid down to the lower one with a vertical warp of the photo's own pixels (the
lid's skin stretches down, the lash line ends up where the eye was); the drift turns and shifts
the whole frame by a pixel or two. Both follow fixed schedules, so the same inputs render the
same video.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from talkingface.face import mesh
from talkingface.vocabulary import RenderedFrame

# MediaPipe face-mesh eye contours: the two corners, then the upper and the lower lid between.
EYES: tuple[tuple[int, int, tuple[int, ...], tuple[int, ...]], ...] = (
    (33, 133, (246, 161, 160, 159, 158, 157, 173), (7, 163, 144, 145, 153, 154, 155)),
    (263, 362, (466, 388, 387, 386, 385, 384, 398), (249, 390, 373, 374, 380, 381, 382)),
)
LID_SKIN_ABOVE = 0.35  # of the eye's width: the skin above the lid that stretches over the eye
BLINK_S = (0.08, 0.04, 0.13)  # closing, shut, opening
FIRST_BLINK_S = 1.1
BLINK_INTERVAL_S = (2.5, 5.5)  # people blink every 2-6 s when talking
DRIFT_SHIFT_EYE = 0.015  # translation amplitude, in eye distances
DRIFT_TURN_DEG = 0.5
DRIFT_PERIODS_S = (5.3, 7.1, 6.2)  # x, y, turn: unrelated, so the motion never visibly loops


def blink_closure(frame_count: int, fps: float, seed: int = 7) -> np.ndarray:
    """(N,) 0 (open) .. 1 (shut) per frame: blinks at 2.5-5.5 s intervals from a fixed seed."""
    closure = np.zeros(frame_count, np.float32)
    times = np.arange(frame_count) / fps
    close_s, shut_s, open_s = BLINK_S
    rng = np.random.default_rng(seed)
    start = FIRST_BLINK_S
    while start < frame_count / fps:
        t = times - start
        shape = np.where(
            t < close_s,
            t / close_s,
            np.where(t < close_s + shut_s, 1.0, 1.0 - (t - close_s - shut_s) / open_s),
        )
        closure = np.maximum(closure, np.clip(np.where(t >= 0.0, shape, 0.0), 0.0, 1.0))
        start += float(rng.uniform(*BLINK_INTERVAL_S))
    return closure


class PhotoLife:
    """Applies blinks and drift to a photo job's rendered frames, in order."""

    def __init__(self, landmarks: np.ndarray, fps: float, frame_count: int) -> None:
        self._landmarks = np.asarray(landmarks[:, :2], dtype=np.float64)
        self._fps = fps
        self._closure = blink_closure(frame_count, fps)
        self._eye_px = mesh.eye_distance_px(self._landmarks)
        self._centre = self._landmarks[list(mesh.FACE_OVAL)].mean(axis=0)

    def apply(self, item: RenderedFrame) -> RenderedFrame:
        if not item.face_rendered:
            return item
        image = item.image
        closure = float(self._closure[min(item.index, self._closure.shape[0] - 1)])
        if closure > 0.01:
            image = image.copy()
            for eye in EYES:
                _close_eye(image, self._landmarks, eye, closure)
        return replace(item, image=self._drift(image, item.index / self._fps))

    def _drift(self, image: np.ndarray, t: float) -> np.ndarray:
        px, py, pt = DRIFT_PERIODS_S
        shift = DRIFT_SHIFT_EYE * self._eye_px
        matrix = cv2.getRotationMatrix2D(
            (float(self._centre[0]), float(self._centre[1])),
            DRIFT_TURN_DEG * math.sin(2.0 * math.pi * t / pt),
            1.0,
        )
        matrix[0, 2] += shift * math.sin(2.0 * math.pi * t / px)
        matrix[1, 2] += 0.6 * shift * math.sin(2.0 * math.pi * t / py + 1.0)
        height, width = image.shape[:2]
        return np.asarray(
            cv2.warpAffine(
                image,
                matrix,
                (width, height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT101,
            )
        )


def _close_eye(
    image: np.ndarray,
    landmarks: np.ndarray,
    eye: tuple[int, int, tuple[int, ...], tuple[int, ...]],
    closure: float,
) -> None:
    """Moves the upper lid `closure` of the way to the lower one, in place.

    Per column: the skin from LID_SKIN_ABOVE above the lid down to the lid line is stretched
    down to the new lid line, and the eye between the old lid and the lower lid is squeezed
    into what is left above the lower lid; nothing moves above that skin or below the lower lid.
    """
    first, second, upper_ids, lower_ids = eye
    corners = landmarks[[first, second]]
    left, right = sorted((float(corners[0, 0]), float(corners[1, 0])))
    width = right - left
    if width < 4.0:
        return
    upper = landmarks[[first, *upper_ids, second]]
    lower = landmarks[[first, *lower_ids, second]]
    x0 = max(math.floor(left) - 1, 0)
    x1 = min(math.ceil(right) + 2, image.shape[1])
    top = float(upper[:, 1].min()) - LID_SKIN_ABOVE * width
    y0 = max(math.floor(top), 0)
    y1 = min(math.ceil(float(lower[:, 1].max())) + 2, image.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    xs = np.arange(x0, x1, dtype=np.float64)
    ys = np.arange(y0, y1, dtype=np.float64)[:, None]
    lid = _curve(upper, xs)[None, :]
    floor = np.maximum(_curve(lower, xs)[None, :], lid)
    new_lid = lid + closure * (floor - lid)
    above = top + (ys - top) * (lid - top) / np.maximum(new_lid - top, 1e-6)
    below = lid + (ys - new_lid) * (floor - lid) / np.maximum(floor - new_lid, 1e-6)
    source = np.where(ys <= new_lid, above, np.where(ys <= floor, below, ys))
    source = np.where(ys < top, ys, source)
    map_x = np.broadcast_to(xs[None, :], source.shape).astype(np.float32)
    patch = cv2.remap(
        image,
        map_x,
        source.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    image[y0:y1, x0:x1] = patch


def _curve(points: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The lid's y at each x (points from corner to corner), held at the corners beyond them."""
    order = np.argsort(points[:, 0])
    return np.interp(xs, points[order, 0], points[order, 1])
