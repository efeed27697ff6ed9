"""An independent eye for `evaluate`: mouth opening measured with dlib's 68-point predictor.

The renderer drives and places the mouth with MediaPipe's 468-point face mesh. Measuring its
output with that same tracker would reward it for agreeing with itself, so quality figures
read the mouth with a model of a different family: dlib's HOG face detector and its
ensemble-of-regression-trees 68-point shape predictor, which ship inside the `dlib-bin` and
`face-recognition-models` wheels (nothing is downloaded at run time).

Opening = mean inner-lip gap (points 61-67, 62-66, 63-65) divided by the jaw width
(points 0-16), so people, poses and resolutions compare.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from talkingface.errors import EngineError, Stage

logger = logging.getLogger(__name__)

DETECT_SIDE_PX = 640  # full frames are searched at most this large (faces >= ~80 px then)
CROP_FACE_PX = 160  # a face is re-detected in a crop scaled so it is about this wide
INNER_UPPER = (61, 62, 63)
INNER_LOWER = (67, 66, 65)
JAW_LEFT, JAW_RIGHT = 0, 16


@dataclass(frozen=True, slots=True)
class MouthReading:
    """One frame's independent mouth measurement."""

    opening: float  # inner-lip gap / jaw width (0 closed, ~0.1 wide open)
    width: float  # inner-corner distance (60-64) / jaw width
    points_px: np.ndarray  # (68, 2) dlib landmarks in frame pixels


class _Models:
    def __init__(self, detector: Any, predictor: Any) -> None:  # dlib objects (no stubs)
        self.detector = detector
        self.predictor = predictor


@lru_cache(maxsize=1)
def _models() -> _Models:
    try:
        import dlib
    except ImportError as exc:
        raise EngineError(
            "The independent mouth meter needs dlib-bin and face-recognition-models; "
            "reinstall talkingface (make demo or pip install -e .).",
            stage=Stage.EVALUATE,
        ) from exc
    path = _predictor_path()
    return _Models(dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path)))


def _predictor_path() -> Path:
    """The 68-point model file inside the face-recognition-models wheel.

    Found without importing the package: its __init__ imports pkg_resources, which setuptools
    81 and later no longer ship (installing torch upgrades setuptools past it).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "models" / "shape_predictor_68_face_landmarks.dat"
        if path.is_file():
            return path
    raise EngineError(
        "The independent mouth meter needs the face-recognition-models package (it carries "
        "dlib's 68-point model); reinstall talkingface (make demo or pip install -e .).",
        stage=Stage.EVALUATE,
    )


class MouthMeter:
    """Reads the mouth on consecutive frames of one video (keeps the last face box)."""

    def __init__(self) -> None:
        self._models = _models()
        self._box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 pixels

    def read(self, frame_rgb: np.ndarray) -> MouthReading | None:
        """The mouth on this frame, or None when no face is found."""
        gray = cv2.cvtColor(np.ascontiguousarray(frame_rgb), cv2.COLOR_RGB2GRAY)
        box = self._find_near_previous(gray) if self._box is not None else None
        if box is None:
            box = self._find_anywhere(gray)
        self._box = box
        if box is None:
            return None
        return _reading(self._predict(gray, box))

    def _find_anywhere(self, gray: np.ndarray) -> tuple[float, float, float, float] | None:
        scale = min(1.0, DETECT_SIDE_PX / max(gray.shape))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = self._detect(small, upsample=1)
        if found is None:
            return None
        return (found[0] / scale, found[1] / scale, found[2] / scale, found[3] / scale)

    def _find_near_previous(self, gray: np.ndarray) -> tuple[float, float, float, float] | None:
        assert self._box is not None
        x0, y0, x1, y1 = self._box
        size = max(x1 - x0, y1 - y0)
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        left, top = max(0, int(cx - size)), max(0, int(cy - size))
        right, bottom = min(gray.shape[1], int(cx + size)), min(gray.shape[0], int(cy + size))
        if right - left < 16 or bottom - top < 16:
            return None
        scale = CROP_FACE_PX / max(size, 1.0)
        crop = cv2.resize(
            gray[top:bottom, left:right], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
        )
        found = self._detect(crop, upsample=0)
        if found is None:
            return None
        return (
            left + found[0] / scale,
            top + found[1] / scale,
            left + found[2] / scale,
            top + found[3] / scale,
        )

    def _detect(
        self, gray: np.ndarray, *, upsample: int
    ) -> tuple[float, float, float, float] | None:
        rects = self._models.detector(gray, upsample)
        if len(rects) == 0:
            return None
        best = max(rects, key=lambda r: r.width() * r.height())
        return (float(best.left()), float(best.top()), float(best.right()), float(best.bottom()))

    def _predict(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        import dlib

        rect = dlib.rectangle(*(round(v) for v in box))
        shape = self._models.predictor(gray, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # (68, 2)


def _reading(points: np.ndarray) -> MouthReading:
    jaw = max(float(np.hypot(*(points[JAW_RIGHT] - points[JAW_LEFT]))), 1e-6)
    gaps = np.hypot(*(points[list(INNER_LOWER)] - points[list(INNER_UPPER)]).T)
    width = float(np.hypot(*(points[64] - points[60])))
    return MouthReading(float(gaps.mean()) / jaw, width / jaw, points)
