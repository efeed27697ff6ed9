"""The classic engine's mouth warp: close the template's own mouth, open it to the target.

Backward maps (output pixel → source pixel) over a region of interest around mouth and chin.
The lower lip and jaw move by a displacement that fades to zero at the region's border, so the
output equals the template at the border: no seam is possible and nothing outside lips, chin
and jaw changes. The opened gap between the lips is filled from an interior patch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from talkingface.engines.mouth_frame import MouthFrame, smoothstep

CHIN_FADE = 0.4  # S units below the chin over which the jaw displacement fades out
JAW_BLEND = 0.22  # S units below the lower lip where the lip profile becomes the jaw profile
JAW_WIDTH = 2.6  # mouth half-widths: the jaw moves as a whole, well beyond the corners
SPREAD_GAIN = 0.12  # fraction of mouth half-width the corners move for spread = ±1
LIP_BAND = 0.16  # S units from the inner-lip line over which lip thickness changes fade out
ROUND_THICKEN = 0.15  # rounded lips (o/u) push forward: they look this much fuller
SPREAD_THIN = 0.08  # spread lips (i/e) stretch thinner
PRESS_THIN = 0.3  # pressed lips roll in: this much thinner at full press
UPPER_SHARE_CLOSING = 0.2  # of a closing the upper lip does: real lips meet part-way
UPPER_SHARE_OPENING = 0.15  # of an opening beyond the template's the upper lip does (upwards)
UPPER_FADE = 0.3  # S units above the upper lip over which its movement fades out
WARP_STEP = 2  # the maps are computed on every other pixel and interpolated between


@dataclass(frozen=True, slots=True)
class MouthPose:
    """Target mouth shape for one output frame."""

    gap: float  # inner-lip gap at the centre, S units (0 = closed)
    spread: float  # -1 rounded … +1 spread
    press: float = 0.0  # 0 … 1 lips pressed together (m, b, p): they thin as they roll in
    # (xs, share): the opening's share of `gap` along x (mouth coordinates, S units), from the
    # real mouth laid over this frame; None: the default taper towards the corners.
    opening_shape: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True, slots=True)
class WarpPlan:
    """Everything needed to render one frame's mouth region."""

    x0: int
    y0: int
    map_x: np.ndarray  # (h, w) float32 source x in frame pixels
    map_y: np.ndarray  # (h, w) float32
    alpha_f32: np.ndarray  # (h, w) interior coverage 0..1
    patch_u: np.ndarray  # (h, w) column 0..1 between inner corners
    depth_top: np.ndarray  # (h, w) S units below the upper lip
    depth_bottom: np.ndarray  # (h, w) S units above the moved lower lip
    mouth_x: np.ndarray  # (h, w) each output pixel in mouth coordinates (S units)
    mouth_y: np.ndarray  # (h, w)


def region_of_interest(
    mouth: MouthFrame, width: int, height: int, extra_y: float = 0.0
) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) holding every pixel the warp may change (`extra_y`: S units
    the jaw moves down, which moves the fade below the chin down too)."""
    half = max((JAW_WIDTH + 0.2) * mouth.half_width, 0.75)
    xs = np.array([mouth.center_x - half, mouth.center_x + half])
    top = float(mouth.upper_y.min()) - UPPER_FADE - 0.15
    ys = np.array([top, mouth.chin_y + CHIN_FADE + 0.3 + extra_y])
    gx, gy = np.meshgrid(xs, ys)
    px, py = mouth.to_pixels(gx, gy)
    x0, x1 = int(np.floor(px.min())), int(np.ceil(px.max())) + 1
    y0, y1 = int(np.floor(py.min())), int(np.ceil(py.max())) + 1
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


@dataclass(frozen=True, slots=True)
class _LipLines:
    """Inner-lip lines (S units) at some x: the template's and the output's."""

    upper: np.ndarray  # template upper inner lip
    upper_out: np.ndarray  # output upper inner lip (the lips meet part-way when closing)
    lower_src: np.ndarray  # template lower inner lip, plus a margin hiding the teeth sliver
    gap: np.ndarray  # output opening


def _lip_lines(
    mouth: MouthFrame,
    x: np.ndarray,
    target_gap: float,
    shape: tuple[np.ndarray, np.ndarray] | None = None,
) -> _LipLines:
    upper, lower = mouth.upper_at(x), mouth.lower_at(x)
    own_gap = lower - upper
    lower_src = lower + np.where(own_gap > 0.005, np.minimum(0.3 * own_gap, 0.015), 0.0)
    u_norm = (x - mouth.center_x) / mouth.half_width
    taper = np.clip(1.0 - u_norm**2, 0.0, 1.0) ** 0.6
    if shape is not None:
        # Never open wider along the lips than the real mouth laid here: a smiling frame's
        # corners reach past a narrower mouth, and opened there they could only be filled
        # with a synthesised cavity (dark wedges at both corners).
        taper = np.minimum(taper, np.interp(x, *shape))
    gap = target_gap * taper
    closing = own_gap - gap
    share = np.where(closing > 0, UPPER_SHARE_CLOSING, UPPER_SHARE_OPENING)
    return _LipLines(upper, upper + share * closing, lower_src, gap)


def plan_warp(mouth: MouthFrame, pose: MouthPose, width: int, height: int) -> WarpPlan | None:
    """Backward maps and the interior mask for one frame; None if the region is empty."""
    x0, y0, x1, y1 = region_of_interest(mouth, width, height, extra_y=max(pose.gap, 0.0))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    # The geometry is computed on every WARP_STEP-th pixel and interpolated: each field below
    # is continuous (the lip lines only bend it). What is not, the source row where the lips
    # part (a closed output folds the template's opening away), is assembled here per pixel.
    fields = cv2.resize(
        _coarse_fields(mouth, pose, x0, y0, x1, y1),
        None,
        fx=WARP_STEP,
        fy=WARP_STEP,
        interpolation=cv2.INTER_LINEAR,
    )[WARP_STEP : WARP_STEP + y1 - y0, WARP_STEP : WARP_STEP + x1 - x0]
    mx, my, above_src, below_src, depth_top, depth_bottom, upper, lower_src, patch_u = np.moveaxis(
        fields, -1, 0
    )
    gap = depth_top + depth_bottom
    stretch = (lower_src - upper) / np.maximum(gap, 1e-6)
    gap_src = upper + depth_top * stretch  # the template's own opening stretched over the gap
    src_y = np.where(depth_top < 0.0, above_src, np.where(depth_bottom > 0.0, gap_src, below_src))
    map_x, map_y = mouth.to_pixels(mx, src_y)
    edge_px = np.minimum(depth_top, depth_bottom) * mouth.scale_px
    coverage = np.clip(gap * mouth.scale_px, 0.0, 1.0)  # a sub-pixel gap only tints
    alpha = (np.clip(edge_px + 0.5, 0.0, 1.0) * coverage).astype(np.float32)
    return WarpPlan(x0, y0, map_x, map_y, alpha, patch_u, depth_top, depth_bottom, mx, my)


def _coarse_fields(
    mouth: MouthFrame, pose: MouthPose, x0: int, y0: int, x1: int, y1: int
) -> np.ndarray:
    """(h', w', 9) float32 on every WARP_STEP-th pixel of the region and one sample beyond
    each edge (so that no edge pixel is extrapolated), centred so that cv2.resize's
    pixel-centre convention puts each sample back where it was taken: mouth x
    and y after shaping, the source row above the lips and below them, depth below the output's
    upper lip and above its lower lip, the template's upper inner lip and lower source line,
    and the column between the inner corners."""
    offset = 0.5 * (WARP_STEP - 1) - WARP_STEP
    columns, rows = -(-(x1 - x0) // WARP_STEP) + 2, -(-(y1 - y0) // WARP_STEP) + 2
    gx, gy = np.meshgrid(
        x0 + offset + WARP_STEP * np.arange(columns, dtype=np.float64),
        y0 + offset + WARP_STEP * np.arange(rows, dtype=np.float64),
    )
    m = mouth.to_mouth(np.stack([gx, gy], axis=-1))
    # Shape first: each output pixel is moved to where it sits before spreading, rounding
    # or pressing; everything after (lines, jaw, interiors, units) works on those coordinates.
    mx = _spread_x(mouth, pose, m[..., 0], m[..., 1])
    lines = _lip_lines(mouth, mx, pose.gap, pose.opening_shape)
    u_norm = (mx - mouth.center_x) / mouth.half_width
    my = _lip_thickness_y(pose, m[..., 1], lines, u_norm)
    above_src, below_src = _source_rows(mouth, pose, my, lines, u_norm)
    depth_top, depth_bottom = my - lines.upper_out, lines.upper_out + lines.gap - my
    span = max(mouth.corner_right_x - mouth.corner_left_x, 1e-3)
    patch_u = (mx - mouth.corner_left_x) / span
    fields = (mx, my, above_src, below_src, depth_top, depth_bottom, lines.upper)
    return np.stack((*fields, lines.lower_src, patch_u), axis=-1).astype(np.float32)


def _source_rows(
    mouth: MouthFrame, pose: MouthPose, my: np.ndarray, lines: _LipLines, u_norm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Source rows for the pixels above the output's upper lip and below its lower lip: the
    upper lip eases towards the line where the lips meet, and the lower lip and jaw move as
    one, fading below the chin. (Between the lips the template's own opening is stretched.)"""
    centre = _lip_lines(mouth, np.array([mouth.center_x]), pose.gap, pose.opening_shape)
    centre_shift = float((centre.upper_out + centre.gap - centre.lower_src)[0])
    lip_shift = lines.upper_out + lines.gap - lines.lower_src
    jaw_profile = 1.0 - smoothstep(1.0, JAW_WIDTH, np.abs(u_norm))
    t = np.clip((my - (lines.upper_out + lines.gap)) / JAW_BLEND, 0.0, 1.0)
    shift = (1.0 - t) * lip_shift + t * centre_shift * jaw_profile
    chin_out = mouth.chin_y + centre_shift
    shift *= 1.0 - smoothstep(chin_out, chin_out + CHIN_FADE, my)
    descent = lines.upper_out - lines.upper
    lift = descent * smoothstep(lines.upper_out - UPPER_FADE, lines.upper_out, my)
    return my - lift, my - shift


def _spread_x(mouth: MouthFrame, pose: MouthPose, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Horizontal positions before shaping: corners move out (spread) or in (rounded)."""
    if abs(pose.spread) < 1e-3:
        return mx
    top = float(mouth.upper_y.min()) - 0.1
    bottom = float(mouth.lower_y.max()) + max(pose.gap, 0.0) + 0.12
    band_y = smoothstep(top - 0.15, top, my) * (1.0 - smoothstep(bottom, bottom + 0.15, my))
    band_x = 1.0 - smoothstep(1.1, 2.0, np.abs((mx - mouth.center_x) / mouth.half_width))
    r = SPREAD_GAIN * float(np.clip(pose.spread, -1.0, 1.0))
    return mx - r * (mx - mouth.center_x) * band_x * band_y


def lip_thickness_factor(pose: MouthPose) -> float:
    """How thick the lips look (1 = as in the template): fuller rounded, thinner spread or
    pressed."""
    spread = float(np.clip(pose.spread, -1.0, 1.0))
    press = float(np.clip(pose.press, 0.0, 1.0))
    return (
        1.0
        + ROUND_THICKEN * max(-spread, 0.0)
        - SPREAD_THIN * max(spread, 0.0)
        - PRESS_THIN * press
    )


def _lip_thickness_y(
    pose: MouthPose, my: np.ndarray, lines: _LipLines, u_norm: np.ndarray
) -> np.ndarray:
    """Vertical positions before shaping: distances from the inner-lip lines are scaled by the
    lip thickness near the lips, fading back to none LIP_BAND away and beyond the corners."""
    factor = lip_thickness_factor(pose)
    if abs(factor - 1.0) < 1e-3:
        return my
    band_x = 1.0 - smoothstep(1.0, 1.6, np.abs(u_norm))
    upper_line = lines.upper_out
    lower_line = lines.upper_out + lines.gap

    def unshaped(distance: np.ndarray) -> np.ndarray:
        d = np.maximum(distance, 0.0)
        near = 1.0 - smoothstep(0.5 * LIP_BAND, LIP_BAND, d)
        return d + (d / factor - d) * near * band_x

    above = upper_line - unshaped(upper_line - my)
    below = lower_line + unshaped(my - lower_line)
    return np.where(my < upper_line, above, np.where(my > lower_line, below, my))
