"""Head-aligned mouth coordinates for the classic engine: lip curves measured in eye-distance units.

Mouth frame: origin at the mid-point of the outer mouth corners, x along the eye line (towards
image right), y perpendicular to it (down), unit S = distance between the outer eye corners.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# MediaPipe FaceMesh (468) indices, ordered from the image-left inner corner to the right one.
UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CORNERS = (61, 291)
EYE_OUTER = (33, 263)
CHIN = 152


@dataclass(frozen=True, slots=True)
class MouthFrame:
    """One face's mouth geometry: the transform and the inner-lip curves (S units)."""

    origin_px: np.ndarray  # (2,)
    axis_x: np.ndarray  # (2,) unit vector along the eye line
    axis_y: np.ndarray  # (2,) unit vector, face-down
    scale_px: float  # S: eye-corner distance in pixels
    upper_x: np.ndarray  # (11,) upper inner lip, x sorted
    upper_y: np.ndarray  # (11,)
    lower_x: np.ndarray  # (11,) lower inner lip, x sorted
    lower_y: np.ndarray  # (11,)
    corner_left_x: float  # inner corners (S units)
    corner_right_x: float
    chin_y: float

    @property
    def center_x(self) -> float:
        return 0.5 * (self.corner_left_x + self.corner_right_x)

    @property
    def half_width(self) -> float:
        return max(0.5 * (self.corner_right_x - self.corner_left_x), 0.05)

    def to_mouth(self, points_px: np.ndarray) -> np.ndarray:
        """(…, 2) pixel coordinates → (…, 2) mouth coordinates."""
        return _to_mouth(points_px, self.origin_px, self.axis_x, self.axis_y, self.scale_px)

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mouth coordinates → pixel x and y arrays (float32, for cv2.remap)."""
        s = self.scale_px
        px = self.origin_px[0] + s * (x * self.axis_x[0] + y * self.axis_y[0])
        py = self.origin_px[1] + s * (x * self.axis_x[1] + y * self.axis_y[1])
        return px.astype(np.float32), py.astype(np.float32)

    def upper_at(self, x: np.ndarray) -> np.ndarray:
        return np.interp(x, self.upper_x, self.upper_y)

    def lower_at(self, x: np.ndarray) -> np.ndarray:
        return np.interp(x, self.lower_x, self.lower_y)

    def gap_at_center(self) -> float:
        c = np.array([self.center_x])
        return float(max(0.0, (self.lower_at(c) - self.upper_at(c))[0]))


def smoothstep(edge0: float | np.ndarray, edge1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    """0 below edge0, 1 above edge1, a smooth cubic between (the engine's every fade)."""
    t = np.clip((x - edge0) / np.maximum(np.asarray(edge1) - edge0, 1e-6), 0.0, 1.0)
    return np.asarray(t * t * (3.0 - 2.0 * t))


def _to_mouth(
    points_px: np.ndarray, origin: np.ndarray, axis_x: np.ndarray, axis_y: np.ndarray, scale: float
) -> np.ndarray:
    rel = (points_px - origin) / scale
    return np.stack([rel @ axis_x, rel @ axis_y], axis=-1)


def _sorted_curve(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points[:, 0], kind="stable")
    xs = np.maximum.accumulate(points[order, 0])  # np.interp needs non-decreasing x
    return xs, points[order, 1]


def mouth_frame(landmarks: np.ndarray) -> MouthFrame:
    """Build the mouth frame from (468, 2) landmarks in pixels."""
    pts = landmarks[:, :2].astype(np.float64)
    eye_l, eye_r = pts[EYE_OUTER[0]], pts[EYE_OUTER[1]]
    eye_vec = eye_r - eye_l
    scale = float(np.hypot(*eye_vec))
    axis_x = eye_vec / max(scale, 1e-6)
    axis_y = np.array([-axis_x[1], axis_x[0]])
    origin = 0.5 * (pts[MOUTH_CORNERS[0]] + pts[MOUTH_CORNERS[1]])
    scale = max(scale, 1e-6)
    upper = _to_mouth(pts[list(UPPER_INNER)], origin, axis_x, axis_y, scale)
    lower = _to_mouth(pts[list(LOWER_INNER)], origin, axis_x, axis_y, scale)
    # The lower inner lip can never sit above the upper one (landmark noise on closed mouths).
    ux, uy = _sorted_curve(upper)
    lx, ly = _sorted_curve(lower)
    ly = np.maximum(ly, np.interp(lx, ux, uy))
    chin = _to_mouth(pts[CHIN][None, :], origin, axis_x, axis_y, scale)[0]
    return MouthFrame(
        origin_px=origin,
        axis_x=axis_x,
        axis_y=axis_y,
        scale_px=scale,
        upper_x=ux,
        upper_y=uy,
        lower_x=lx,
        lower_y=ly,
        corner_left_x=float(min(upper[0, 0], lower[0, 0])),
        corner_right_x=float(max(upper[-1, 0], lower[-1, 0])),
        chin_y=float(max(chin[1], 0.3)),
    )


def lip_colour(frame_rgb: np.ndarray, mouth: MouthFrame) -> np.ndarray:
    """Mean RGB of the upper lip just above the mouth opening (for colour matching)."""
    x = mouth.center_x + mouth.half_width * np.linspace(-0.6, 0.6, 9)
    y = mouth.upper_at(x) - 0.025
    map_x, map_y = mouth.to_pixels(x[None, :], y[None, :])
    samples = cv2.remap(frame_rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return samples.reshape(-1, 3).astype(np.float32).mean(axis=0)
