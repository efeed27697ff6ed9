"""Fidelity figures for `evaluate`: PSNR and SSIM against the template outside the mouth.

An engine may change the lips, chin and jaw; everything else should be the template's pixels.
The region left out is the convex hull of the face tracker's lips, chin and jaw landmarks,
grown by MASK_MARGIN_EYE eye distances.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from talkingface.errors import InvalidMediaError, Stage
from talkingface.face import mesh
from talkingface.face.track import FaceTracker

PSNR_CAP_DB = 100.0  # identical pixels give +inf; reported as this
MASK_MARGIN_EYE = 0.25  # mouth/jaw region dilation, in eye distances
_MOUTH_REGION = tuple(sorted(set(mesh.LOWER_FACE) | set(mesh.LIPS_OUTER)))  # jaw, chin, lips
SSIM_MAX_FRAMES = 12  # SSIM costs 25 ms (512 px) to 225 ms (1080p) a frame: evenly spaced


def masked_psnr(a: np.ndarray, b: np.ndarray, mask_bool: np.ndarray) -> float:
    """PSNR in dB of two uint8 images over the pixels where the mask is True (capped at 100)."""
    if not mask_bool.any():
        return math.nan
    difference = cv2.absdiff(np.ascontiguousarray(a), np.ascontiguousarray(b))
    squared = cv2.multiply(difference, difference, dtype=cv2.CV_32F)
    channel_means = cv2.mean(squared, mask=mask_bool.astype(np.uint8))
    mse = float(np.mean(channel_means[: squared.shape[2] if squared.ndim == 3 else 1]))
    if mse <= 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(255.0**2 / mse))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask_bool: np.ndarray) -> float:
    """Mean SSIM (grayscale, 7 px window) over the pixels where the mask is True."""
    if not mask_bool.any():
        return math.nan
    _, ssim_map = structural_similarity(_gray(a), _gray(b), data_range=255.0, full=True)
    return float(np.asarray(ssim_map)[mask_bool].mean())


def _gray(image: np.ndarray) -> np.ndarray:
    """Grayscale float32 (skimage then computes SSIM in float32: half the time of float64)."""
    gray = (
        image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    )
    return np.asarray(gray, dtype=np.float32)


def outside_mouth_mask(landmarks_f32: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """True for the pixels to compare: all but the lips/chin/jaw hull, grown by 0.25 eye dist."""
    points = np.round(landmarks_f32[list(_MOUTH_REGION)]).astype(np.int32)
    hull = cv2.convexHull(points)
    region = np.zeros(shape_hw, np.uint8)
    cv2.fillConvexPoly(region, hull, 1)
    margin_px = max(1, round(MASK_MARGIN_EYE * float(mesh.eye_distance_px(landmarks_f32))))
    cv2.polylines(region, [hull], isClosed=True, color=1, thickness=2 * margin_px)
    return region == 0


class OutsideMouthComparison:
    """Compares output frames with the template frames they were made from, outside the mouth.

    The template is tracked once per template frame (ping-pong loops reuse the landmarks);
    PSNR is taken on every frame, SSIM on up to SSIM_MAX_FRAMES evenly spaced ones. Each
    template frame is also handed once to `on_new_frame(template_index, frame)`, so other
    template measurements ride on this decode instead of making their own.
    """

    def __init__(
        self,
        templates: Iterator[tuple[int, np.ndarray]],
        names: tuple[str, str],
        fps: float,
        frame_count: int,
        *,
        on_new_frame: Callable[[int, np.ndarray], None] | None = None,
    ) -> None:
        self._templates = templates
        self._on_new_frame = on_new_frame
        self._names = names  # (video, template) file names, for messages
        self._tracker = FaceTracker(fps=fps)
        self._landmarks: dict[int, np.ndarray | None] = {}
        spaced = np.linspace(0, frame_count - 1, min(frame_count, SSIM_MAX_FRAMES)).round()
        self._ssim_at = {int(i) for i in spaced}
        self._psnrs: list[float] = []
        self._ssims: list[float] = []

    def add(self, index: int, output: np.ndarray) -> None:
        """Compare output frame `index` with the template frame it was made from (the next)."""
        template_index, template = next(self._templates)
        if output.shape != template.shape:
            raise InvalidMediaError(
                f"{self._names[0]} is {output.shape[1]}x{output.shape[0]} but the template "
                f"{self._names[1]} is {template.shape[1]}x{template.shape[0]}; evaluate a video "
                "against the template it was made from.",
                stage=Stage.EVALUATE,
            )
        if template_index not in self._landmarks:
            if self._on_new_frame is not None:
                self._on_new_frame(template_index, template)
            found = self._tracker.process(template)
            self._landmarks[template_index] = None if found is None else found.landmarks_f32
        landmarks = self._landmarks[template_index]
        if landmarks is None:
            return
        mask = outside_mouth_mask(landmarks, output.shape[:2])
        self._psnrs.append(masked_psnr(output, template, mask))
        if index in self._ssim_at:
            self._ssims.append(masked_ssim(output, template, mask))

    def figures(self) -> tuple[float | None, float | None]:
        """(mean PSNR dB, mean SSIM), None where no template frame showed a face."""
        return _nanmean_or_none(np.asarray(self._psnrs)), _nanmean_or_none(np.asarray(self._ssims))


def _nanmean_or_none(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None
