"""Where the generated face replaces the template inside the Wav2Lip box: a feathered mask.

`mouth` keeps the template's skin, nose and cheeks and takes only the lips, the mouth interior
and the jaw below (room for an opened mouth), as Easy-Wav2Lip's "improved" mode does;
`lower_face` takes the whole lower half of the box, which is what the generator repaints
(Wav2Lip's own output, but feathered instead of a hard square). Sizes are in S, the
eye-corner distance (engines/mouth_frame), so the mask follows the face's scale and roll.
"""

from __future__ import annotations

import cv2
import numpy as np

from talkingface.config import Wav2LipMaskKind
from talkingface.engines.mouth_frame import MouthFrame, smoothstep

MOUTH_SIDE_S = 0.14  # beyond the inner mouth corners
MOUTH_ABOVE_S = 0.10  # above the upper inner lip
MOUTH_BELOW_S = 0.32  # below the lower inner lip: a dropping jaw stays inside
FEATHER_S = 0.07
LOWER_FACE_FEATHER = 0.12  # share of the box height / width
MASK_GRID_PX = 96  # the mouth mask is evaluated on at most this many rows and columns


def region_mask(
    kind: Wav2LipMaskKind, mouth: MouthFrame, box: tuple[int, int, int, int]
) -> np.ndarray:
    """(h, w) float32 0..1 over the box (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = box
    height, width = y2 - y1, x2 - x1
    if kind is Wav2LipMaskKind.LOWER_FACE:
        return _lower_face(height, width)
    # The mask is smooth (feathered over FEATHER_S), so it is evaluated on a coarse grid and
    # enlarged: a 1080p face box costs what a 96 px one does.
    rows, cols = min(height, MASK_GRID_PX), min(width, MASK_GRID_PX)
    gy, gx = np.meshgrid(
        np.linspace(y1, y2 - 1, rows), np.linspace(x1, x2 - 1, cols), indexing="ij"
    )
    local = mouth.to_mouth(np.stack([gx, gy], axis=-1))  # (rows, cols, 2) mouth coordinates
    mx, my = local[..., 0], local[..., 1]
    reach = mouth.half_width + MOUTH_SIDE_S
    side = 1.0 - smoothstep(reach - FEATHER_S, reach, np.abs(mx - mouth.center_x))
    top = mouth.upper_at(mx) - MOUTH_ABOVE_S
    bottom = mouth.lower_at(mx) + MOUTH_BELOW_S
    vertical = smoothstep(top - FEATHER_S, top, my) * (
        1.0 - smoothstep(bottom, bottom + FEATHER_S, my)
    )
    coarse = (side * vertical * _inside_box(rows, cols)).astype(np.float32)
    if (rows, cols) == (height, width):
        return coarse
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


def _lower_face(height: int, width: int) -> np.ndarray:
    rows = np.linspace(0.0, 1.0, height)[:, None]
    feather = LOWER_FACE_FEATHER
    vertical = smoothstep(0.5, 0.5 + feather, rows)
    return (vertical * _inside_box(height, width)).astype(np.float32)


def _inside_box(height: int, width: int) -> np.ndarray:
    """Fades to 0 at the box's edges, so no square seam shows where the crop ends."""
    feather = LOWER_FACE_FEATHER
    rows = np.linspace(0.0, 1.0, height)[:, None]
    cols = np.linspace(0.0, 1.0, width)[None, :]
    edge_x = smoothstep(0.0, feather, cols) * smoothstep(0.0, feather, 1.0 - cols)
    edge_y = smoothstep(0.0, feather / 2, 1.0 - rows)
    return np.asarray(edge_x * edge_y)
