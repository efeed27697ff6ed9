"""Wav2Lip face boxes from the shared tracker's landmarks: a box per template frame, padded and
smoothed the way Wav2Lip's options (`--pads`, `--nosmooth`) shape its S3FD boxes.

The raw box spans the face oval across and from mid-forehead to the chin, which is where S3FD
puts its box on a frontal face; the mouth then lies in the crop's lower half, the half the
generator repaints. Boxes are (x1, y1, x2, y2) in frame pixels, x2/y2 exclusive.
"""

from __future__ import annotations

import numpy as np

# MediaPipe FaceMesh (468) indices.
FACE_OVAL_SIDES = (234, 454, 93, 323, 132, 361, 58, 288)
FOREHEAD = 10
CHIN = 152
BROWS = (105, 334, 66, 296, 107, 336)
MIN_BOX_PX = 16


def raw_box(landmarks: np.ndarray) -> np.ndarray:
    """(4,) float32 box around one face's (468, 2) landmarks."""
    xs = landmarks[list(FACE_OVAL_SIDES), 0]
    brow_y = float(landmarks[list(BROWS), 1].mean())
    top = 0.5 * (float(landmarks[FOREHEAD, 1]) + brow_y)
    return np.array([xs.min(), top, xs.max(), landmarks[CHIN, 1]], dtype=np.float32)


def smooth_boxes(boxes: np.ndarray, window: int) -> np.ndarray:
    """(N, 4): each box averaged with the next `window - 1` present ones (Wav2Lip's
    get_smoothened_boxes); rows of NaN (no face) stay NaN and are not averaged in."""
    if window <= 1 or boxes.shape[0] == 0:
        return boxes.copy()
    present = ~np.isnan(boxes[:, 0])
    out = np.full_like(boxes, np.nan)
    rows = np.flatnonzero(present)
    kept = boxes[rows]
    for k, row in enumerate(rows):
        out[row] = kept[k : k + window].mean(axis=0)
    return out


def padded_boxes(
    boxes: np.ndarray, pads_px: tuple[int, int, int, int], width: int, height: int
) -> np.ndarray:
    """(N, 4) int64 boxes grown by (top, bottom, left, right) pixels and clipped to the frame;
    rows without a face are -1."""
    top, bottom, left, right = pads_px
    out = np.full(boxes.shape, -1, dtype=np.int64)
    present = ~np.isnan(boxes[:, 0])
    grown = boxes[present] + np.array([-left, -top, right, bottom], dtype=np.float32)
    x1 = np.clip(np.floor(grown[:, 0]), 0, width - 1)
    y1 = np.clip(np.floor(grown[:, 1]), 0, height - 1)
    x2 = np.clip(np.ceil(grown[:, 2]), x1 + 1, width)
    y2 = np.clip(np.ceil(grown[:, 3]), y1 + 1, height)
    out[present] = np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)
    too_small = present & (
        (out[:, 2] - out[:, 0] < MIN_BOX_PX) | (out[:, 3] - out[:, 1] < MIN_BOX_PX)
    )
    out[too_small] = -1  # a face this small cannot be re-rendered; passed through
    return out
