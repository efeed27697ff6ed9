"""The weights-free `classic` engine (stage s4): landmark-driven mouth warp with real interiors.

Per output frame: take the template frame's smoothed landmarks, close its own mouth and open
it to the target gap from the audio (mouth_warp), and fill the opening with a mouth interior.
Interiors come from the template's own open-mouthed frames, chosen per frame by unit
selection against the target audio (spectral match when the template has speech of its own,
opening match otherwise) with a smoothness cost; a painted interior serves photos.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from talkingface.engines.base import EngineInfo
from talkingface.engines.mouth_frame import mouth_frame
from talkingface.engines.mouth_interior import (
    MIN_SOURCE_GAP,
    PATCH_COLS,
    PATCH_ROWS,
    InteriorPatch,
    extract_interior,
    interior_sample_maps,
    lip_colour,
)
from talkingface.engines.mouth_targets import gap_targets, speaking_range
from talkingface.engines.mouth_warp import MouthPose, plan_warp
from talkingface.engines.synthetic_interior import synthesised_interior
from talkingface.engines.unit_selection import select_units
from talkingface.pipeline.items import Articulation, MouthRender, TrackedFrame

if TYPE_CHECKING:
    from talkingface.templates import PreparedTemplate

logger = logging.getLogger(__name__)

MAX_INTERIOR_UNITS = 320
INTERIOR_SMOOTHING = 0.45  # weight of the previous frame's interior (no flicker between units)


class ClassicCollector:
    """Collects, while a template is tracked, each frame's opening and open-mouth interiors."""

    def __init__(self) -> None:
        self._gaps: list[float] = []
        self._patches: list[np.ndarray] = []
        self._patch_gaps: list[np.ndarray] = []
        self._patch_frames: list[int] = []
        self._patch_lips: list[np.ndarray] = []
        self._lip_rgb: np.ndarray | None = None
        self._stride = 1

    def add(self, index: int, frame_rgb: np.ndarray, landmarks: np.ndarray | None) -> None:
        if landmarks is None:
            self._gaps.append(float("nan"))
            return
        mouth = mouth_frame(landmarks)
        gap = mouth.gap_at_center()
        self._gaps.append(gap)
        lips = lip_colour(frame_rgb, mouth)
        if self._lip_rgb is None or gap < 0.02:
            self._lip_rgb = lips
        if gap < MIN_SOURCE_GAP or index % self._stride:
            return
        patch = extract_interior(frame_rgb, mouth)
        self._patches.append(np.clip(patch.image_f32, 0, 255).astype(np.uint8))
        self._patch_gaps.append(patch.gap_f32)
        self._patch_frames.append(index)
        self._patch_lips.append(lips)
        if len(self._patches) > MAX_INTERIOR_UNITS:  # keep every other unit: bounded memory
            for items in (self._patches, self._patch_gaps, self._patch_frames, self._patch_lips):
                del items[1::2]
            self._stride *= 2

    def finish(self) -> dict[str, np.ndarray]:
        count = len(self._patches)
        return {
            "frame_gaps": np.asarray(self._gaps, dtype=np.float32),
            # A template that never opens its mouth has no interiors: (0, rows, cols, 3).
            "patches": np.asarray(self._patches, dtype=np.uint8).reshape(
                count, PATCH_ROWS, PATCH_COLS, 3
            ),
            "patch_gaps": np.asarray(self._patch_gaps, dtype=np.float32).reshape(count, PATCH_COLS),
            "patch_frames": np.asarray(self._patch_frames, dtype=np.int64),
            "patch_lips": np.asarray(self._patch_lips, dtype=np.float32).reshape(count, 3),
            "lip_rgb": np.asarray(
                self._lip_rgb if self._lip_rgb is not None else (150, 80, 80), dtype=np.float32
            ),
        }


@dataclass(frozen=True, slots=True)
class _Interiors:
    patches: list[InteriorPatch]
    lips: np.ndarray  # (M, 3) source lip colour per patch
    choice: np.ndarray  # (N,) patch per output frame


class ClassicRenderer:
    """Renders one job's frames in order; keeps the previous interior for smoothing."""

    def __init__(self, template: PreparedTemplate, drive: Articulation) -> None:
        self._drive = drive
        data = template.engine_data
        own_speech = None if template.own_drive is None else template.own_drive.speech
        self.opening = speaking_range(data["frame_gaps"], own_speech)
        self._gaps = gap_targets(drive, self.opening)
        self._interiors = _choose_interiors(template, drive, self._gaps)
        self._previous: np.ndarray | None = None

    def render(self, item: TrackedFrame) -> MouthRender:
        index = min(item.index, self._drive.frame_count - 1)
        if item.landmarks_f32 is None:
            return MouthRender(item.tag, item.index, item.image, 0, 0, None, None, None)
        mouth = mouth_frame(item.landmarks_f32)
        pose = MouthPose(gap=float(self._gaps[index]), spread=float(self._drive.width_f32[index]))
        height, width = item.image.shape[:2]
        plan = plan_warp(mouth, pose, width, height)
        if plan is None:
            return MouthRender(item.tag, item.index, item.image, 0, 0, None, None, None)
        warped = cv2.remap(item.image, plan.map_x, plan.map_y, cv2.INTER_LINEAR)
        if float(plan.alpha_f32.max()) <= 0.0:
            return MouthRender(
                item.tag, item.index, item.image, plan.x0, plan.y0, warped, None, None
            )
        lips = lip_colour(item.image, mouth)
        if self._interiors is None:
            inside = synthesised_interior(
                plan.depth_top, plan.depth_bottom, plan.patch_u, lips, mouth.scale_px
            )
        else:
            patch = self._interior(index, lips)
            col, row = interior_sample_maps(
                plan.patch_u, plan.depth_top, plan.depth_bottom, patch.gap_f32
            )
            inside = cv2.remap(patch.image_f32, col, row, cv2.INTER_LINEAR)
        return MouthRender(
            item.tag, item.index, item.image, plan.x0, plan.y0, warped, inside, plan.alpha_f32
        )

    def _interior(self, index: int, current_lips: np.ndarray) -> InteriorPatch:
        assert self._interiors is not None
        unit = int(self._interiors.choice[min(index, len(self._interiors.choice) - 1)])
        patch = self._interiors.patches[unit]
        gain = np.clip(current_lips / np.maximum(self._interiors.lips[unit], 1.0), 0.8, 1.25)
        image = patch.image_f32 * gain.astype(np.float32)
        if self._previous is not None:
            image = (1 - INTERIOR_SMOOTHING) * image + INTERIOR_SMOOTHING * self._previous
        self._previous = image
        return InteriorPatch(image, patch.gap_f32)


def _choose_interiors(
    template: PreparedTemplate, drive: Articulation, gaps: np.ndarray
) -> _Interiors | None:
    """Real interiors per output frame, or None when the template never opens its mouth
    (the interior is then synthesised)."""
    data = template.engine_data
    patches_u8, patch_gaps = data["patches"], data["patch_gaps"]
    if patches_u8.shape[0] == 0:
        return None
    patches = [
        InteriorPatch(p.astype(np.float32), g) for p, g in zip(patches_u8, patch_gaps, strict=True)
    ]
    centre_gap = patch_gaps[:, PATCH_COLS // 2]  # (M,)
    shortfall = np.maximum(gaps[:, None] - centre_gap[None, :], 0.0)  # (N, M)
    cost = ((gaps[:, None] - centre_gap[None, :]) / 0.04) ** 2 + 4.0 * (shortfall / 0.04) ** 2
    own = template.own_drive
    frames = data["patch_frames"]
    if own is not None and own.spectral_f32.shape[1] == drive.spectral_f32.shape[1]:
        source = own.spectral_f32[np.minimum(frames, own.frame_count - 1)]  # (M, D)
        target = drive.spectral_f32  # (N, D)
        sq = (target**2).sum(1)[:, None] + (source**2).sum(1)[None, :] - 2.0 * target @ source.T
        cost = cost + 1.5 * np.maximum(sq, 0.0) / target.shape[1]  # mean squared distance
    choice = select_units(cost, frames, jump_cost=2.0)
    logger.debug(
        "interiors selected",
        extra={"event": "interiors_selected", "units": len(patches), "spectral": own is not None},
    )
    return _Interiors(patches, data["patch_lips"], choice)


class ClassicEngine:
    """Weights-free mouth re-synthesis; runs on any CPU, nothing to load."""

    info = EngineInfo(
        name="classic",
        version="1",
        needs_gpu=False,
        description="landmark mouth warp + template mouth interiors by unit selection",
    )

    def load(self, device: str = "cpu") -> None:
        """Nothing to load: the engine has no weights."""

    def template_collector(self) -> ClassicCollector:
        return ClassicCollector()

    def start_job(self, template: PreparedTemplate, drive: Articulation) -> ClassicRenderer:
        return ClassicRenderer(template, drive)

    def close(self) -> None:
        """Nothing to release."""
