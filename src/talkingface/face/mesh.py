"""Stage s2 vocabulary: MediaPipe 468-point face-mesh indices and mouth measures read from them.

"Left" and "right" are as seen in the image of a frontal face (index 33 is the outer corner of
the eye on the image's left). Loops are ordered so that they can be drawn as closed polygons.
"""

from __future__ import annotations

import numpy as np

UPPER_LIP_INNER_MID = 13
LOWER_LIP_INNER_MID = 14
MOUTH_CORNER_LEFT = 61
MOUTH_CORNER_RIGHT = 291
INNER_CORNER_LEFT = 78
INNER_CORNER_RIGHT = 308
EYE_OUTER_LEFT = 33
EYE_OUTER_RIGHT = 263
NOSE_TIP = 1
CHIN = 152

# Outer lip contour: left corner, along the lower lip to the right corner, back along the upper.
LIPS_OUTER: tuple[int, ...] = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375,
    291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
)  # fmt: skip

# Inner lip contour (the mouth opening): left inner corner, lower lip, right corner, upper lip.
LIPS_INNER: tuple[int, ...] = (
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324,
    308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
)  # fmt: skip

# Face silhouette, clockwise in the image from the top of the forehead (10) through the chin.
FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288,
    397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136,
    172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip

# Jaw line from the left ear (234) under the mouth and round the chin (152) to the right ear
# (454). Closed as a polygon (ear to ear) it covers the cheeks, mouth and chin.
LOWER_FACE: tuple[int, ...] = (
    234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152,
    377, 400, 378, 379, 365, 397, 288, 361, 323, 454,
)  # fmt: skip


def _distance_px(landmarks: np.ndarray, first: int, second: int) -> float:
    delta = landmarks[second, :2].astype(np.float64) - landmarks[first, :2].astype(np.float64)
    return float(np.hypot(delta[0], delta[1]))


def eye_distance_px(landmarks: np.ndarray) -> float:
    """Distance between the outer eye corners, the face's unit of length; (468, 2+) input."""
    return _distance_px(landmarks, EYE_OUTER_LEFT, EYE_OUTER_RIGHT)


def mouth_opening_ratio(landmarks: np.ndarray) -> float:
    """Inner-lip gap (points 13-14) divided by the eye distance: ~0 closed, ~0.3 wide open."""
    eyes_px = eye_distance_px(landmarks)
    if eyes_px <= 0.0:
        return 0.0
    return _distance_px(landmarks, UPPER_LIP_INNER_MID, LOWER_LIP_INNER_MID) / eyes_px


def mouth_width_ratio(landmarks: np.ndarray) -> float:
    """Distance between the outer mouth corners divided by the eye distance."""
    eyes_px = eye_distance_px(landmarks)
    if eyes_px <= 0.0:
        return 0.0
    return _distance_px(landmarks, MOUTH_CORNER_LEFT, MOUTH_CORNER_RIGHT) / eyes_px
