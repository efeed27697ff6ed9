"""Whole-mouth units for talking templates: real lips, teeth and interior cut from template frames.

A unit is one template frame's mouth resampled on a grid in mouth coordinates (see
mouth_frame: origin between the mouth corners, x along the eye line, S = eye-corner distance),
with that frame's inner-lip curves. To render, a unit is laid over the current frame in the
current frame's mouth coordinates, so head position, size and roll follow the current frame.
Its upper lip is aligned with the output's upper lip and its lower lip with the output's lower
lip, and each half of its interior rides its lip at real size (unit_maps), which absorbs the
residual between the unit's opening and the target. A feathered mask keeps it to lips and
interior, and a colour gain measured on the feather ring matches the current frame's lighting.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from talkingface.engines.mouth_frame import MouthFrame, smoothstep

HALF_WIDTH_S = 0.5  # grid: x in [-0.5, 0.5] S around the corner mid-point
TOP_S = -0.28  # y from above the upper lip...
BOTTOM_S = 0.5  # ...to below the lower lip of a wide-open mouth
MAX_PX_PER_S = 200.0  # resolution cap (a 1080p close-up would need 4× the memory for no gain)
MIN_PX_PER_S = 40.0
MASK_ABOVE_S = 0.11  # the mask reaches this far above the upper inner lip
MASK_BELOW_S = 0.13  # ...and below the lower inner lip
MASK_SIDE_S = 0.04  # ...and a little past the inner corners
FEATHER_S = 0.045
GAIN_LIMITS = (0.85, 1.18)
GAIN_SMOOTHING = 0.6  # weight of the previous frame's colour gain
# The unit's skin comes from another frame, lit and turned differently: a single colour gain
# left a lighter or darker box around the mouth on heads that turn (the mpeg4 woman). Its
# shading (detail coarser than this) is taken from the frame it is laid on, measured on skin
# only: this far above the upper inner lip, below the lower one, or beside the corners.
SHADING_SIGMA_S = 0.06
SKIN_ABOVE_S = 0.13
SKIN_BELOW_S = 0.15
SKIN_BESIDE_S = 0.05
CLOSED_GAP_S = 0.03  # output openings below this hide the unit's teeth sliver
SPLIT_LIP_MARGIN_S = 0.01  # the split is sought this far inside the inner lips
MIDDLE_SMOOTHING_S = 0.03  # the band filled between a unit's parts is smoothed along x
# The band lies deeper in the mouth than the row it is drawn from, so it is darker. At full
# brightness the renders of the bluebg woman read 1.28x her own median opening to the
# independent meter (1.05 with the synthesised cavity, 1.20 at this shade).
BAND_SHADE = 0.7


@dataclass(frozen=True, slots=True)
class UnitGrid:
    """The sampling grid shared by every unit of one template."""

    px_per_s: float

    @property
    def xs(self) -> np.ndarray:
        count = max(8, round(2 * HALF_WIDTH_S * self.px_per_s))
        return np.linspace(-HALF_WIDTH_S, HALF_WIDTH_S, count)

    @property
    def ys(self) -> np.ndarray:
        count = max(8, round((BOTTOM_S - TOP_S) * self.px_per_s))
        return np.linspace(TOP_S, BOTTOM_S, count)


def grid_for(mouth: MouthFrame) -> UnitGrid:
    return UnitGrid(float(np.clip(mouth.scale_px, MIN_PX_PER_S, MAX_PX_PER_S)))


@dataclass(frozen=True, slots=True)
class MouthUnit:
    image_u8: np.ndarray  # (R, C, 3) RGB on the grid
    upper_f32: np.ndarray  # (C,) upper inner lip y at each grid column, S units
    lower_f32: np.ndarray  # (C,) lower inner lip y
    # (C,) where the interior divides into what rides the upper lip and what rides the lower
    # (the darkest row: between upper teeth and tongue or lower teeth); None = the middle.
    split_f32: np.ndarray | None = None


def extract_unit(frame_rgb: np.ndarray, mouth: MouthFrame, grid: UnitGrid) -> MouthUnit:
    xs = grid.xs
    gx, gy = np.meshgrid(xs, grid.ys)
    map_x, map_y = mouth.to_pixels(gx, gy)
    image = cv2.remap(frame_rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    upper = mouth.upper_at(xs)
    lower = mouth.lower_at(xs)
    return MouthUnit(image, upper.astype(np.float32), lower.astype(np.float32))


@dataclass(frozen=True, slots=True)
class OutputLips:
    """Where the output's lips are, per region pixel (S units, current mouth coordinates)."""

    mx: np.ndarray  # (h, w)
    my: np.ndarray  # (h, w)
    upper: np.ndarray  # (h, w) output upper inner lip at mx
    lower: np.ndarray  # (h, w) output lower inner lip at mx
    u: np.ndarray  # (h, w) 0..1 between the inner corners
    center_x: float
    half_width: float
    scale_px: float  # pixels per S unit


def unit_maps(
    lips: OutputLips, unit: MouthUnit, grid: UnitGrid
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cv2.remap maps (grid columns, rows) that lay `unit` over the output lips, and the
    (h, w) float32 share of each pixel that the unit cannot supply.

    Above the upper inner lip the unit's upper lip is read at the same distance, below the
    lower inner lip its lower lip. Between them the upper half of the unit's interior rides
    the upper lip and the lower half the lower lip, at their real size: a smaller opening cuts
    out the middle, a larger one leaves a middle band the unit has no pixels for (returned as
    the shortfall, to be filled by middle_band).
    """
    xs = grid.xs
    unit_upper = np.interp(lips.mx, xs, unit.upper_f32)
    unit_lower = np.interp(lips.mx, xs, unit.lower_f32)
    # Landmarks put the inner lip a little inside the real lip edge, over a sliver of teeth:
    # as the output closes, the lips are read from a margin further out to keep it hidden.
    unit_gap = np.maximum(unit_lower - unit_upper, 0.0)
    closing = 1.0 - np.clip((lips.lower - lips.upper) / CLOSED_GAP_S, 0.0, 1.0)
    unit_upper = unit_upper - closing * np.minimum(0.15 * unit_gap, 0.008)
    unit_lower = unit_lower + closing * np.minimum(0.3 * unit_gap, 0.015)
    half = 0.5 * np.maximum(unit_lower - unit_upper, 0.0)
    depth_top = lips.my - lips.upper
    depth_bottom = lips.lower - lips.my
    if unit.split_f32 is None:
        top_part = bottom_part = half
    else:
        # The unit's own split, kept off the lips, where the output opens wider than the unit
        # (cavity goes in between: it must not cut the teeth). Narrower, the middle is cut out
        # as before: a split near the lower lip would cut out the dark band instead and leave
        # lips over teeth, which reads as a closed mouth.
        split = np.interp(lips.mx, xs, unit.split_f32)
        split = np.clip(split, unit_upper + 0.25 * half, unit_lower - 0.25 * half)
        wider = smoothstep(1.0, 1.2, (depth_top + depth_bottom) / np.maximum(2.0 * half, 1e-6))
        top_part = half + wider * (np.maximum(split - unit_upper, 0.0) - half)
        bottom_part = half + wider * (np.maximum(unit_lower - split, 0.0) - half)
    # A pixel belongs to the upper lip's part when it sits above the output's split, which
    # divides the output opening in the unit's proportion (halves where the unit is shut).
    share = np.where(
        top_part + bottom_part > 1e-9, top_part / np.maximum(top_part + bottom_part, 1e-9), 0.5
    )
    upper_side = depth_top <= share * (depth_top + depth_bottom)
    between = np.where(
        upper_side,
        unit_upper + np.minimum(depth_top, top_part),
        unit_lower - np.minimum(depth_bottom, bottom_part),
    )
    source_y = np.where(
        depth_top <= 0.0,
        unit_upper + depth_top,
        np.where(depth_bottom <= 0.0, unit_lower - depth_bottom, between),
    )
    beyond = np.where(upper_side, depth_top - top_part, depth_bottom - bottom_part)
    px = 1.0 / grid.px_per_s
    shortfall = np.clip((beyond + px) / (2.0 * px), 0.0, 1.0).astype(np.float32)
    step_x = (xs[-1] - xs[0]) / (xs.shape[0] - 1)
    ys = grid.ys
    step_y = (ys[-1] - ys[0]) / (ys.shape[0] - 1)
    col = (lips.mx - xs[0]) / step_x
    row = (source_y - ys[0]) / step_y
    return col.astype(np.float32), row.astype(np.float32), shortfall


def interior_split(unit: MouthUnit, grid: UnitGrid) -> np.ndarray:
    """(C,) S units: the darkest row of each column's interior, smoothed across columns.

    A real mouth opened wider than its unit gets a band (middle_band) where its two parts
    part; split at the middle, a unit whose upper teeth reach past the middle had them cut in
    two, a grey line through the teeth. The darkest row is where the mouth is cavity anyway.
    """
    ys = grid.ys
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    # 3 rows, 5 columns: one dark pixel is not the cavity
    luma = np.asarray(cv2.blur(unit.image_u8.astype(np.float32) @ weights, (5, 3)))
    inside = (ys[:, None] > unit.upper_f32[None, :] + SPLIT_LIP_MARGIN_S) & (
        ys[:, None] < unit.lower_f32[None, :] - SPLIT_LIP_MARGIN_S
    )
    darkest = ys[np.argmin(np.where(inside, luma, np.inf), axis=0)]
    middle = 0.5 * (unit.upper_f32 + unit.lower_f32)
    split = np.where(inside.any(axis=0), darkest, middle)
    width = max(3, int(0.08 * grid.px_per_s) | 1)  # ~0.08 S of columns
    # the median drops stray columns; the mean then smooths its row-sized steps, which showed
    # as a staircase along the top of the cavity
    split = median_filter(split, size=width, mode="nearest")
    return np.asarray(uniform_filter1d(split, size=width, mode="nearest"), dtype=np.float32)


def middle_band(lips: OutputLips, unit: MouthUnit, grid: UnitGrid, col: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 RGB for the band a wider opening leaves between the unit's two parts
    (unit_maps' shortfall): the unit's own split row (its darkest interior row, or the middle
    of its gap) drawn down the band, smoothed along it and shaded, so the band joins the teeth
    above and the tongue below in their own colours. `col`: unit_maps' column map for `lips`."""
    split = 0.5 * (unit.upper_f32 + unit.lower_f32) if unit.split_f32 is None else unit.split_f32
    ys = grid.ys
    step_y = (ys[-1] - ys[0]) / (ys.shape[0] - 1)
    rows = ((np.interp(lips.mx, grid.xs, split) - ys[0]) / step_y).astype(np.float32)
    band = cv2.remap(
        unit.image_u8, col, rows, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    ).astype(np.float32)
    width = max(3, int(MIDDLE_SMOOTHING_S * lips.scale_px) | 1)
    return np.asarray(cv2.blur(band, (width, 1))) * BAND_SHADE


def grid_box(mx: np.ndarray, my: np.ndarray) -> tuple[slice, slice] | None:
    """The (rows, cols) slices of a region holding every pixel whose mouth coordinates fall on
    the unit grid, or None when none does. A unit, its mask and the skin its shading is
    measured on all lie on the grid: the rest of the warp region (the jaw, the cheeks beside
    it) is never touched by the unit, and laying the unit there only cost time (about half
    of a 512x512 frame's render)."""
    on_grid = (np.abs(mx) < HALF_WIDTH_S) & (my > TOP_S) & (my < BOTTOM_S)
    rows = np.flatnonzero(on_grid.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(on_grid.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def unit_mask(lips: OutputLips) -> np.ndarray:
    """(h, w) float32 0..1: lips and interior, feathered into the skin around them."""
    reach = lips.half_width + MASK_SIDE_S
    dx = np.abs(lips.mx - lips.center_x)
    side = 1.0 - smoothstep(reach - FEATHER_S, reach, dx)
    top = lips.upper - MASK_ABOVE_S
    bottom = lips.lower + MASK_BELOW_S
    vertical = smoothstep(top - FEATHER_S, top, lips.my) * (
        1.0 - smoothstep(bottom, bottom + FEATHER_S, lips.my)
    )
    # only where the grid has pixels, fading in (a wide mouth's reach passes the grid's edge)
    edge = HALF_WIDTH_S - 0.01
    inside = 1.0 - smoothstep(edge - FEATHER_S, edge, np.abs(lips.mx))
    return (side * vertical * inside).astype(np.float32)


def skin_weight(lips: OutputLips) -> np.ndarray:
    """(h, w) float32: 1 where the unit and the frame both show skin (on the unit's grid, off
    the lips and the opening), else 0."""
    beside = np.abs(lips.mx - lips.center_x) > lips.half_width + SKIN_BESIDE_S
    off_lips = (lips.my < lips.upper - SKIN_ABOVE_S) | (lips.my > lips.lower + SKIN_BELOW_S)
    on_grid = (np.abs(lips.mx) < HALF_WIDTH_S - 0.01) & (lips.my > TOP_S + 0.01)
    on_grid &= lips.my < BOTTOM_S - 0.01
    return ((off_lips | beside) & on_grid).astype(np.float32)


def shading_correction(
    base_f32: np.ndarray, top_f32: np.ndarray, skin_f32: np.ndarray, sigma_px: float
) -> np.ndarray:
    """(h, w, 3) float32 to add to `top` so its shading matches `base`'s: their difference on
    skin, blurred by `sigma_px` and spread over the lips and opening by normalised
    convolution (the lips and teeth keep their own detail and colour, lit like the skin
    around them). None far from any skin. Shading is smooth, so it is computed at a scale
    where the blur is about 2 pixels wide, and brought back up."""
    height, width = skin_f32.shape
    step = max(1, int(sigma_px / 2.0))
    size = (max(1, width // step), max(1, height // step))
    skin = cv2.resize(skin_f32, size, interpolation=cv2.INTER_AREA)
    difference = cv2.resize(
        (base_f32 - top_f32) * skin_f32[..., None], size, interpolation=cv2.INTER_AREA
    )
    sigma = sigma_px * size[0] / width
    weight = cv2.GaussianBlur(skin, (0, 0), sigma)
    spread = cv2.GaussianBlur(difference, (0, 0), sigma)
    reach = np.clip(weight / 0.05, 0.0, 1.0)  # under 5 % skin around: fade the correction out
    small = spread / np.maximum(weight, 1e-3)[..., None] * reach[..., None]
    return np.asarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR))


def lay_unit(
    warped_rgb: np.ndarray,
    unit_rgb_f32: np.ndarray,
    mask_f32: np.ndarray,
    previous_gain: np.ndarray | None = None,
    shading: tuple[np.ndarray, float] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The unit, colour-matched on the feather ring, blended over the warped region (uint8),
    and the gain used. The gain is averaged with the previous frame's, so a jump between
    units does not step the skin's brightness. With `shading` (skin weight, blur sigma in
    pixels), the unit also takes the frame's shading (shading_correction)."""
    base = warped_rgb.astype(np.float32)
    gain = ring_gain(base, unit_rgb_f32, mask_f32, previous_gain)
    if gain is not None:
        unit_rgb_f32 = unit_rgb_f32 * gain
    if shading is not None:
        skin, sigma_px = shading
        unit_rgb_f32 = unit_rgb_f32 + shading_correction(base, unit_rgb_f32, skin, sigma_px)
    a = mask_f32[..., None]
    region = np.clip(base * (1.0 - a) + unit_rgb_f32 * a + 0.5, 0, 255).astype(np.uint8)
    return region, gain


def ring_gain(
    base_f32: np.ndarray,
    top_f32: np.ndarray,
    mask_f32: np.ndarray,
    previous_gain: np.ndarray | None = None,
) -> np.ndarray | None:
    """(3,) per-channel gain that matches `top` to `base` on the mask's feather ring, averaged
    with the previous frame's; the previous gain when the ring is too small to measure."""
    ring = (mask_f32 > 0.1) & (mask_f32 < 0.9)
    if int(ring.sum()) < 16:
        return previous_gain
    measured = base_f32[ring].mean(axis=0) / np.maximum(top_f32[ring].mean(axis=0), 1.0)
    gain = np.clip(measured, *GAIN_LIMITS).astype(np.float32)
    if previous_gain is not None:
        gain = GAIN_SMOOTHING * previous_gain + (1.0 - GAIN_SMOOTHING) * gain
    return gain


def cavity_heights(
    images_u8: np.ndarray, upper: np.ndarray, lower: np.ndarray, grid: UnitGrid
) -> np.ndarray:
    """(M,) how much dark mouth cavity each unit shows between its lips mid-mouth, S units.

    Lips apart over clenched teeth (a smile) have as wide an inner-lip gap as an open jaw,
    but read, to a viewer and to any landmark model, as a closed mouth: what reads as open is
    the dark cavity. Dark = under half the unit's median brightness (mostly skin).
    """
    if images_u8.shape[0] == 0:
        return np.zeros(0)
    cols = images_u8.shape[2]
    middle = slice(cols * 2 // 5, cols * 3 // 5)
    luma = images_u8[:, :, middle].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    dark = luma < 0.5 * np.median(luma.reshape(luma.shape[0], -1), axis=1)[:, None, None]
    ys = grid.ys[None, :, None]  # (1, R, 1)
    between = (ys > upper[:, None, middle]) & (ys < lower[:, None, middle])  # (M, R, c)
    step = (grid.ys[-1] - grid.ys[0]) / (grid.ys.shape[0] - 1)
    return np.asarray((dark & between).sum(axis=1).mean(axis=1) * step)
