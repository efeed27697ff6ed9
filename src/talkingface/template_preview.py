"""⑤ The template preview, drawn in the worker that prepares a template: the face the engine
will drive (its tracked box) and the mouth region it redraws, on the first frame with a face.

The dashboard shows it before a job is submitted (GET /v1/templates/{id}/preview.jpg). It is
drawn here because only workers load face models and decode media.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from talkingface.errors import Stage, translate_errors
from talkingface.face import mesh
from talkingface.media.decode import iter_frames
from talkingface.vocabulary import FaceTrack

logger = logging.getLogger(__name__)

PREVIEW_PX = 512  # the long side, at most
FACE_RGB = (40, 200, 90)  # green: the tracked face
MOUTH_RGB = (255, 150, 30)  # orange: the mouth region the engine redraws
MOUTH_MARGIN = 0.35  # of the mouth's width, around the outer lip contour


def first_face_index(track: FaceTrack) -> int | None:
    present = np.flatnonzero(track.present)
    return int(present[0]) if present.size else None


def face_and_mouth_boxes(
    landmarks_f32: np.ndarray,  # (L, 2) one frame's landmarks, pixels
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of the face (its landmarks' extent) and of the mouth region."""
    fx0, fy0 = np.nanmin(landmarks_f32, axis=0)
    fx1, fy1 = np.nanmax(landmarks_f32, axis=0)
    lips = landmarks_f32[list(mesh.LIPS_OUTER)]  # (20, 2)
    mx0, my0 = np.nanmin(lips, axis=0)
    mx1, my1 = np.nanmax(lips, axis=0)
    margin = MOUTH_MARGIN * float(mx1 - mx0)
    face = (round(fx0), round(fy0), round(fx1), round(fy1))
    mouth = (round(mx0 - margin), round(my0 - margin), round(mx1 + margin), round(my1 + margin))
    return face, mouth


def write_preview(video: Path, target: Path, fps: float, track: FaceTrack) -> bool:
    """Draw the preview JPEG (renamed into place); False when no frame has a face."""
    index = first_face_index(track)
    if index is None:
        return False
    with translate_errors(Stage.DECODE, context=f"reading frame {index} of {video.name}"):
        last = deque(iter_frames(video, fps=fps, max_frames=index + 1), maxlen=1)
    if not last:
        return False
    frame = last[0]  # frame `index`
    face, mouth = face_and_mouth_boxes(track.landmarks_f32[index])
    scale = min(1.0, PREVIEW_PX / max(frame.shape[:2]))
    height, width = frame.shape[:2]
    drawn = cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))))
    thickness = max(2, round(max(drawn.shape[:2]) / 200))
    for (x0, y0, x1, y1), colour in ((face, FACE_RGB), (mouth, MOUTH_RGB)):
        corners = (round(x0 * scale), round(y0 * scale)), (round(x1 * scale), round(y1 * scale))
        cv2.rectangle(drawn, corners[0], corners[1], colour, thickness)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    if not ok:
        logger.warning(
            "could not encode the preview of %s", video.name, extra={"event": "preview_skipped"}
        )
        return False
    with translate_errors(Stage.CACHE, context=f"writing {target.name}"):
        staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        staging.write_bytes(encoded.tobytes())
        os.replace(staging, target)
    return True
