"""Mouth interiors for the classic engine: real ones cut from the template's open frames.

An interior patch is stored column-normalised: column u runs between the inner mouth corners
(0 → 1), row v from the upper inner lip (0) to the lower inner lip (1). With each patch goes
its source gap per column in S units, so a smaller opening shows the upper teeth riding the
upper lip and the lower teeth riding the lower lip, with the dark middle cut out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from talkingface.engines.mouth_frame import MouthFrame

PATCH_ROWS = 32
PATCH_COLS = 64
MIN_SOURCE_GAP = 0.045  # S units: below this a frame shows no usable interior


@dataclass(frozen=True, slots=True)
class InteriorPatch:
    image_f32: np.ndarray  # (PATCH_ROWS, PATCH_COLS, 3) float32 RGB 0..255
    gap_f32: np.ndarray  # (PATCH_COLS,) source gap per column, S units


def extract_interior(frame_rgb: np.ndarray, mouth: MouthFrame) -> InteriorPatch:
    """Cut the mouth interior of an open-mouthed frame into a column-normalised patch."""
    u = np.linspace(0.0, 1.0, PATCH_COLS)
    x = mouth.corner_left_x + u * (mouth.corner_right_x - mouth.corner_left_x)
    top, bottom = mouth.upper_at(x), mouth.lower_at(x)
    v = np.linspace(0.0, 1.0, PATCH_ROWS)[:, None]
    ys = top[None, :] + v * (bottom - top)[None, :]  # (R, C)
    xs = np.broadcast_to(x[None, :], ys.shape)
    map_x, map_y = mouth.to_pixels(xs, ys)
    patch = cv2.remap(frame_rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    gap = np.maximum(bottom - top, 1e-3).astype(np.float32)
    return InteriorPatch(patch.astype(np.float32), gap)


def interior_sample_maps(
    u: np.ndarray, depth_top: np.ndarray, depth_bottom: np.ndarray, gap_f32: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Patch coordinates for output pixels in the opened gap.

    `u` is the column (0..1 between inner corners), `depth_top`/`depth_bottom` the distances
    (S units) below the upper lip and above the lower lip. Returns float32 maps for cv2.remap.
    """
    col = np.clip(u, 0.0, 1.0) * (PATCH_COLS - 1)
    source_gap = np.interp(col, np.arange(PATCH_COLS), gap_f32)
    upper_half = depth_top <= depth_bottom
    v_top = np.minimum(depth_top / source_gap, 0.5)
    v_bottom = np.maximum(1.0 - depth_bottom / source_gap, 0.5)
    v = np.where(upper_half, v_top, v_bottom)
    return col.astype(np.float32), (v * (PATCH_ROWS - 1)).astype(np.float32)


def lip_colour(frame_rgb: np.ndarray, mouth: MouthFrame) -> np.ndarray:
    """Mean RGB of the upper lip just above the mouth opening (for colour matching)."""
    x = mouth.center_x + mouth.half_width * np.linspace(-0.6, 0.6, 9)
    y = mouth.upper_at(x) - 0.025
    map_x, map_y = mouth.to_pixels(x[None, :], y[None, :])
    samples = cv2.remap(frame_rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return samples.reshape(-1, 3).astype(np.float32).mean(axis=0)
