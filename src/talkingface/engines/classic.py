"""The weights-free `classic` engine (stage s4): landmark-driven mouth warp with real mouths.

Per output frame: a target opening from the audio in this person's own range (mouth_targets);
the template frame's lower lip and jaw are moved to it (mouth_warp). A talking template then
gets a whole real mouth (lips, teeth, tongue) from one of its own frames, chosen per frame by
unit selection against the target opening and audio with a smoothness cost (mouth_units); a
template that never opens its mouth gets a synthesised interior (synthetic_interior).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from talkingface.engines.base import EngineInfo
from talkingface.engines.mouth_frame import MouthFrame, lip_colour, mouth_frame
from talkingface.engines.mouth_targets import OpeningRange, gap_targets, speaking_range
from talkingface.engines.mouth_units import (
    SHADING_SIGMA_S,
    MouthUnit,
    OutputLips,
    UnitGrid,
    cavity_heights,
    extract_unit,
    grid_box,
    grid_for,
    interior_split,
    lay_unit,
    middle_band,
    skin_weight,
    unit_maps,
    unit_mask,
)
from talkingface.engines.mouth_warp import MouthPose, WarpPlan, plan_warp
from talkingface.engines.opening_calibration import CALIBRATION_FRAMES, opening_gain
from talkingface.engines.person_model import with_person_model
from talkingface.engines.synthetic_interior import synthesised_interior
from talkingface.engines.unit_selection import select_units
from talkingface.vocabulary import Articulation, AudioClip, MouthRender, TrackedFrame

if TYPE_CHECKING:
    from talkingface.engines.prepared_template import PreparedTemplate

logger = logging.getLogger(__name__)

MAX_MOUTH_UNITS = 320
MIN_OPEN_UNITS = 8  # a template with fewer frames this open gets a synthesised interior
OPEN_UNIT_GAP = 0.05  # S units
UNIT_CROSSFADE = 0.4  # weight of the previous unit on the frame where the unit jumps
GAP_COST_S = 0.02  # an opening this far off costs as much as an average spectral mismatch
MIN_SHAPED_UNIT_GAP_S = 0.02  # a unit opened less than this leaves the default opening shape
CAVITY_SHARE = 0.65  # an open target wants at least this share of its gap as dark cavity


class ClassicCollector:
    """Collects, while a template is tracked, each frame's opening and its whole mouth."""

    def __init__(self) -> None:
        self._gaps: list[float] = []
        self._grid: UnitGrid | None = None
        self._units: list[MouthUnit] = []
        self._unit_frames: list[int] = []
        self._stride = 1

    def add(self, index: int, frame_rgb: np.ndarray, landmarks: np.ndarray | None) -> None:
        if landmarks is None:
            self._gaps.append(float("nan"))
            return
        mouth = mouth_frame(landmarks)
        self._gaps.append(mouth.gap_at_center())
        if index % self._stride:
            return
        if self._grid is None:
            self._grid = grid_for(mouth)
        self._units.append(extract_unit(frame_rgb, mouth, self._grid))
        self._unit_frames.append(index)
        if len(self._units) > MAX_MOUTH_UNITS:  # keep every other unit: bounded memory
            for items in (self._units, self._unit_frames):
                del items[1::2]
            self._stride *= 2

    def finish(self) -> dict[str, np.ndarray]:
        grid = self._grid or UnitGrid(0.0)
        rows = grid.ys.shape[0] if self._grid else 0
        cols = grid.xs.shape[0] if self._grid else 0
        count = len(self._units)
        return {
            "frame_gaps": np.asarray(self._gaps, dtype=np.float32),
            "unit_px_per_s": np.asarray([grid.px_per_s], dtype=np.float32),
            # A template without a face has no units: (0, 0, 0, 3).
            "unit_images": np.asarray([u.image_u8 for u in self._units], dtype=np.uint8).reshape(
                count, rows, cols, 3
            ),
            "unit_upper": np.asarray([u.upper_f32 for u in self._units], np.float32).reshape(
                count, cols
            ),
            "unit_lower": np.asarray([u.lower_f32 for u in self._units], np.float32).reshape(
                count, cols
            ),
            "unit_frames": np.asarray(self._unit_frames, dtype=np.int64),
        }


@dataclass(frozen=True, slots=True)
class _Units:
    grid: UnitGrid
    images_u8: np.ndarray  # (M, R, C, 3)
    upper: np.ndarray  # (M, C)
    lower: np.ndarray  # (M, C)
    frames: np.ndarray  # (M,) template frame of each unit
    choice: np.ndarray  # (N,) unit per output frame


class ClassicRenderer:
    """Renders one job's frames in order; remembers the previous unit for cross-fades."""

    def __init__(self, template: PreparedTemplate, drive: Articulation) -> None:
        data = template.engine_data
        model = template.person_model
        if model is not None and model.is_good:
            drive = with_person_model(model, drive)
        self._drive = drive
        own_speech = None if template.own_drive is None else template.own_drive.speech
        self.opening: OpeningRange = speaking_range(data["frame_gaps"], own_speech)
        gain = data.get("opening_gain")
        if gain is not None and self.opening.source == "own":
            self.opening = replace(self.opening, render_gain=(float(gain[0]), float(gain[1])))
        self._gaps = gap_targets(drive, self.opening)
        self._units = _choose_units(template, drive, self._gaps)
        self._previous_unit = -1
        self._gain: np.ndarray | None = None  # colour gain of the last laid unit
        self._splits: dict[int, np.ndarray] = {}  # interior split per unit, as they are used
        self._shapes: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}  # opening per unit

    def render(self, item: TrackedFrame) -> MouthRender:
        index = min(item.index, self._drive.frame_count - 1)
        if item.landmarks_f32 is None:
            return MouthRender(item.tag, item.index, item.image, 0, 0, None, None, None)
        mouth = mouth_frame(item.landmarks_f32)
        pose = MouthPose(
            gap=float(self._gaps[index]),
            spread=float(self._drive.width_f32[index]),
            press=float(self._drive.closure_f32[index]),
            opening_shape=self._opening_shape(index),
        )
        height, width = item.image.shape[:2]
        plan = plan_warp(mouth, pose, width, height)
        if plan is None:
            return MouthRender(item.tag, item.index, item.image, 0, 0, None, None, None)
        warped = cv2.remap(item.image, plan.map_x, plan.map_y, cv2.INTER_LINEAR)
        if self._units is not None:
            region = self._lay_real_mouth(index, mouth, plan, warped)
            return MouthRender(
                item.tag, item.index, item.image, plan.x0, plan.y0, region, None, None
            )
        if float(plan.alpha_f32.max()) <= 0.0:
            return MouthRender(
                item.tag, item.index, item.image, plan.x0, plan.y0, warped, None, None
            )
        inside = np.zeros((*plan.alpha_f32.shape, 3), np.float32)
        box = _bounding_box(plan.alpha_f32 > 0.0)  # the interior is drawn only where it shows
        inside[box] = synthesised_interior(
            plan.depth_top[box],
            plan.depth_bottom[box],
            plan.patch_u[box],
            lip_colour(item.image, mouth),
            mouth.scale_px,
        )
        return MouthRender(
            item.tag, item.index, item.image, plan.x0, plan.y0, warped, inside, plan.alpha_f32
        )

    def _opening_shape(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The opening of the unit laid on output frame `index` along x, as a share of its
        centre gap (0..1), or None without units or when that unit is (nearly) closed."""
        units = self._units
        if units is None:
            return None
        unit = _unit_at(units, index)
        if unit not in self._shapes:
            gaps = np.maximum(units.lower[unit] - units.upper[unit], 0.0).astype(np.float64)
            centre = float(gaps[gaps.shape[0] // 2])
            self._shapes[unit] = (
                None
                if centre < MIN_SHAPED_UNIT_GAP_S
                else (units.grid.xs, np.clip(gaps / centre, 0.0, 1.0))
            )
        return self._shapes[unit]

    def _lay_real_mouth(
        self, index: int, mouth: MouthFrame, plan: WarpPlan, warped: np.ndarray
    ) -> np.ndarray:
        units = self._units
        assert units is not None
        box = grid_box(plan.mouth_x, plan.mouth_y)
        if box is None:  # the mouth lies outside the region (a face at the frame's edge)
            return warped
        my = plan.mouth_y[box]
        lips = OutputLips(
            mx=plan.mouth_x[box],
            my=my,
            upper=my - plan.depth_top[box],
            lower=my + plan.depth_bottom[box],
            u=plan.patch_u[box],
            center_x=mouth.center_x,
            half_width=mouth.half_width,
            scale_px=mouth.scale_px,
        )
        unit = _unit_at(units, index)
        sample = self._sample(unit, lips)
        previous = self._previous_unit
        jumped = previous >= 0 and units.frames[unit] - units.frames[previous] not in (0, 1, 2)
        if jumped:
            sample = (1.0 - UNIT_CROSSFADE) * sample + UNIT_CROSSFADE * self._sample(previous, lips)
        self._previous_unit = unit
        shading = (skin_weight(lips), SHADING_SIGMA_S * mouth.scale_px)
        warped[box], self._gain = lay_unit(
            warped[box], sample, unit_mask(lips), self._gain, shading
        )
        return warped

    def _sample(self, unit: int, lips: OutputLips) -> np.ndarray:
        units = self._units
        assert units is not None
        shape = MouthUnit(units.images_u8[unit], units.upper[unit], units.lower[unit])
        split = self._splits.get(unit)
        if split is None:
            split = self._splits[unit] = interior_split(shape, units.grid)
        shape = MouthUnit(shape.image_u8, shape.upper_f32, shape.lower_f32, split)
        col, row, shortfall = unit_maps(lips, shape, units.grid)
        sample = cv2.remap(
            units.images_u8[unit], col, row, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        ).astype(np.float32)
        if float(shortfall.max()) > 0.0:  # opened wider than the unit: a band in the middle
            box = _bounding_box(shortfall > 0.0)
            # a synthesised cavity there read as a flat black slot under the teeth
            band = middle_band(lips, shape, units.grid, col)[box]
            sample[box] += shortfall[box][..., None] * (band - sample[box])
        return sample


def _unit_at(units: _Units, index: int) -> int:
    """The unit chosen for output frame `index` (the last one past the end)."""
    return int(units.choice[min(index, units.choice.shape[0] - 1)])


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """The smallest (rows, cols) slices holding every True pixel of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _choose_units(
    template: PreparedTemplate, drive: Articulation, gaps: np.ndarray
) -> _Units | None:
    """A real mouth per output frame, or None when the template hardly opens its mouth."""
    data = template.engine_data
    images = data["unit_images"]
    centre = images.shape[2] // 2
    unit_gaps = (data["unit_lower"][:, centre] - data["unit_upper"][:, centre]).astype(np.float64)
    # A photo whose mouth is open lends its own teeth; a video needs a range of real mouths.
    needed = 1 if template.is_still_image else MIN_OPEN_UNITS
    if int((unit_gaps >= OPEN_UNIT_GAP).sum()) < needed:
        return None
    grid = UnitGrid(float(data["unit_px_per_s"][0]))
    cavity = cavity_heights(images, data["unit_upper"], data["unit_lower"], grid)
    own = template.own_drive
    own_spectra = (
        own.spectral_f32
        if own is not None and own.spectral_f32.shape[1] == drive.spectral_f32.shape[1]
        else None
    )
    # With the template's own sound, the spectral match below finds the frames where the
    # person said a like vowel, and how much cavity those show is the person's own style.
    # Without it, lips apart over teeth would be taken for the widest openings: a unit then
    # counts only as open as the cavity it shows (the glasses clip: the loudest syllables got
    # a grin, and the independent meter read them less open than the quiet ones).
    opens_to = (
        unit_gaps if own_spectra is not None else np.minimum(unit_gaps, cavity / CAVITY_SHARE)
    )
    difference = gaps[:, None] - unit_gaps[None, :]  # (N, M)
    shortfall = np.maximum(gaps[:, None] - opens_to[None, :], 0.0)
    # A unit opened past its own gap shows a middle drawn from its darkest row; one laid
    # narrower only loses the middle of its interior, so a shortfall costs five times as much.
    cost = (difference / GAP_COST_S) ** 2 + 4.0 * (shortfall / GAP_COST_S) ** 2
    missing_cavity = np.maximum(CAVITY_SHARE * gaps[:, None] - cavity[None, :], 0.0)
    cost = cost + (missing_cavity / GAP_COST_S) ** 2
    frames = data["unit_frames"]
    if own_spectra is not None:
        source = own_spectra[np.minimum(frames, own_spectra.shape[0] - 1)]  # (M, D)
        target = drive.spectral_f32  # (N, D)
        sq = (target**2).sum(1)[:, None] + (source**2).sum(1)[None, :] - 2.0 * target @ source.T
        cost = cost + np.maximum(sq, 0.0) / target.shape[1]  # mean squared distance
    choice = select_units(cost, frames, jump_cost=3.0)
    logger.debug(
        "mouth units selected",
        extra={
            "event": "mouth_units_selected",
            "units": len(images),
            "spectral": own_spectra is not None,
        },
    )
    return _Units(
        grid,
        images,
        data["unit_upper"],
        data["unit_lower"],
        frames,
        choice,
    )


class ClassicEngine:
    """Weights-free mouth re-synthesis; runs on any CPU, nothing to load."""

    info = EngineInfo(
        name="classic",
        version="2",
        needs_gpu=False,
        description="person-range mouth warp + whole template mouths by unit selection",
    )

    def load(self, device: str | None = None) -> None:
        """Nothing to load: the engine has no weights."""

    def template_collector(self) -> ClassicCollector:
        return ClassicCollector()

    calibration_frames = CALIBRATION_FRAMES

    def calibrate(
        self, template: PreparedTemplate, frames: Iterable[np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Engine data measured by rendering the prepared template: the opening gain."""
        gain = opening_gain(template, frames, ClassicRenderer)
        return {} if gain is None else {"opening_gain": gain}

    def start_job(
        self, template: PreparedTemplate, drive: Articulation, audio: AudioClip
    ) -> ClassicRenderer:
        """The renderer for one job; the drive already holds all it needs from the audio."""
        return ClassicRenderer(template, drive)

    def close(self) -> None:
        """Nothing to release."""
