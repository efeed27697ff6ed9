"""Classic-engine mouth geometry: the mouth frame, the backward warp, interiors and blending."""

from __future__ import annotations

import numpy as np
import pytest

from talkingface.blend import alpha_blend, paste_region
from talkingface.engines import mouth_warp
from talkingface.engines.mouth_frame import (
    CHIN,
    EYE_OUTER,
    LOWER_INNER,
    MOUTH_CORNERS,
    UPPER_INNER,
    MouthFrame,
    mouth_frame,
)
from talkingface.engines.mouth_warp import (
    UPPER_FADE,
    UPPER_SHARE_OPENING,
    WARP_STEP,
    MouthPose,
    WarpPlan,
    plan_warp,
)

SIZE_PX = 400
EYE_DISTANCE_PX = 100.0
MOUTH_Y_PX = 170.0


def _landmarks(half_gap_px: float) -> np.ndarray:
    """(468, 2) upright face: eyes 100 px apart, inner lips ±half_gap_px at the centre."""
    points = np.full((468, 2), 128.0)
    points[EYE_OUTER[0]] = (78.0, 100.0)
    points[EYE_OUTER[1]] = (178.0, 100.0)
    points[MOUTH_CORNERS[0]] = (98.0, MOUTH_Y_PX)
    points[MOUTH_CORNERS[1]] = (158.0, MOUTH_Y_PX)
    points[CHIN] = (128.0, 225.0)
    xs = np.linspace(103.0, 153.0, len(UPPER_INNER))
    bump = np.sin(np.linspace(0.0, np.pi, len(UPPER_INNER)))
    points[list(UPPER_INNER)] = np.stack([xs, MOUTH_Y_PX - half_gap_px * bump], axis=1)
    points[list(LOWER_INNER)] = np.stack([xs, MOUTH_Y_PX + half_gap_px * bump], axis=1)
    return points


def _plan(mouth: MouthFrame, gap: float, spread: float = 0.0, press: float = 0.0) -> WarpPlan:
    plan = plan_warp(mouth, MouthPose(gap=gap, spread=spread, press=press), SIZE_PX, SIZE_PX)
    assert plan is not None
    return plan


def _identity(plan: WarpPlan) -> tuple[np.ndarray, np.ndarray]:
    h, w = plan.map_x.shape
    gy, gx = np.mgrid[plan.y0 : plan.y0 + h, plan.x0 : plan.x0 + w].astype(np.float32)
    return gx, gy


def _border(values: np.ndarray) -> np.ndarray:
    return np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]])


def test_mouth_frame_measures_lips_in_eye_distance_units() -> None:
    mouth = mouth_frame(_landmarks(half_gap_px=2.0))
    assert mouth.scale_px == pytest.approx(EYE_DISTANCE_PX)
    np.testing.assert_allclose(mouth.origin_px, [128.0, MOUTH_Y_PX])
    np.testing.assert_allclose(mouth.axis_x, [1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(mouth.axis_y, [0.0, 1.0], atol=1e-9)
    assert mouth.upper_at(np.array([0.0]))[0] == pytest.approx(-0.02)
    assert mouth.lower_at(np.array([0.0]))[0] == pytest.approx(0.02)
    assert mouth.gap_at_center() == pytest.approx(0.04)
    assert mouth.corner_left_x == pytest.approx(-0.25)
    assert mouth.corner_right_x == pytest.approx(0.25)
    assert mouth.chin_y == pytest.approx(0.55)
    assert np.all(np.diff(mouth.upper_x) >= 0) and np.all(np.diff(mouth.lower_x) >= 0)


def test_lower_lip_never_sits_above_upper_lip() -> None:
    crossed = _landmarks(half_gap_px=-1.5)  # landmark noise: lower curve above the upper one
    mouth = mouth_frame(crossed)
    xs = np.linspace(mouth.corner_left_x, mouth.corner_right_x, 41)
    assert np.all(mouth.lower_at(xs) >= mouth.upper_at(xs) - 1e-12)
    assert mouth.gap_at_center() == 0.0


def test_to_pixels_inverts_to_mouth() -> None:
    mouth = mouth_frame(_landmarks(half_gap_px=2.0))
    points = np.array([[100.0, 150.0], [140.5, 201.25]])
    m = mouth.to_mouth(points)
    px, py = mouth.to_pixels(m[:, 0], m[:, 1])
    np.testing.assert_allclose(np.stack([px, py], axis=1), points, atol=1e-3)


def test_closed_mouth_kept_closed_is_the_identity_map() -> None:
    mouth = mouth_frame(_landmarks(half_gap_px=0.0))
    plan = _plan(mouth, gap=0.0)
    gx, gy = _identity(plan)
    np.testing.assert_allclose(plan.map_x, gx, atol=1e-3)
    np.testing.assert_allclose(plan.map_y, gy, atol=1e-3)
    assert float(plan.alpha_f32.max()) == 0.0


def test_open_mouth_kept_at_its_own_gap_is_nearly_the_identity_away_from_the_gap() -> None:
    mouth = mouth_frame(_landmarks(half_gap_px=2.0))
    plan = _plan(mouth, gap=mouth.gap_at_center())
    gx, gy = _identity(plan)
    outside = plan.alpha_f32 == 0.0
    assert outside.mean() > 0.9
    tolerance_px = 0.02 * EYE_DISTANCE_PX
    assert np.abs(plan.map_x - gx)[outside].max() <= 1e-3
    assert np.abs(plan.map_y - gy)[outside].max() <= tolerance_px


@pytest.mark.parametrize(
    ("gap", "spread"), [(0.0, 0.0), (0.12, 0.0), (0.2, 1.0), (0.2, -1.0), (0.3, 0.0)]
)
def test_maps_equal_the_identity_on_the_region_border(gap: float, spread: float) -> None:
    mouth = mouth_frame(_landmarks(half_gap_px=2.0))
    plan = _plan(mouth, gap=gap, spread=spread)
    gx, gy = _identity(plan)
    h, w = plan.map_x.shape
    assert plan.x0 > 0 and plan.y0 > 0 and plan.x0 + w < SIZE_PX and plan.y0 + h < SIZE_PX
    np.testing.assert_allclose(_border(plan.map_x), _border(gx), atol=1e-2)
    np.testing.assert_allclose(_border(plan.map_y), _border(gy), atol=1e-2)
    assert float(_border(plan.alpha_f32).max()) == 0.0


def test_wider_gap_moves_the_lower_lip_down_and_the_upper_lip_up_a_little() -> None:
    mouth = mouth_frame(_landmarks(half_gap_px=2.0))
    target_gap = 0.2
    plan = _plan(mouth, gap=target_gap)
    gx, gy = _identity(plan)
    col = round(float(mouth.origin_px[0])) - plan.x0  # the centre column
    old_upper_px = MOUTH_Y_PX - 2.0
    old_lower_px = MOUTH_Y_PX + 2.0
    extra_px = target_gap * EYE_DISTANCE_PX - 4.0
    upper_px = old_upper_px - UPPER_SHARE_OPENING * extra_px  # the upper lip's share, upwards
    new_lower_px = upper_px + target_gap * EYE_DISTANCE_PX
    # The row at the new lower-lip position samples the old lower lip.
    row = int(np.ceil(new_lower_px)) + 1 - plan.y0
    assert plan.map_y[row, col] == pytest.approx(
        old_lower_px + (row + plan.y0 - new_lower_px), abs=2.0
    )
    # The new upper-lip row samples the old upper lip; far above it nothing moves.
    row = round(upper_px) - plan.y0
    assert plan.map_y[row, col] == pytest.approx(old_upper_px + (row + plan.y0 - upper_px), abs=0.5)
    far_above = gy[:, col] < upper_px - (UPPER_FADE * EYE_DISTANCE_PX + 1.0)
    assert far_above.sum() > 5
    np.testing.assert_allclose(plan.map_y[far_above, col], gy[far_above, col], atol=1e-3)
    np.testing.assert_allclose(plan.map_x[:, col], gx[:, col], atol=1e-3)


def test_alpha_is_zero_outside_the_opened_gap_and_one_inside() -> None:
    mouth = mouth_frame(_landmarks(half_gap_px=2.0))
    plan = _plan(mouth, gap=0.2)
    edge_px = np.minimum(plan.depth_top, plan.depth_bottom) * EYE_DISTANCE_PX
    assert np.all(plan.alpha_f32[edge_px <= -0.5] == 0.0)
    inside = edge_px >= 0.5
    assert inside.sum() > 100
    np.testing.assert_allclose(plan.alpha_f32[inside], 1.0)
    assert plan.alpha_f32.min() >= 0.0 and plan.alpha_f32.max() <= 1.0


def test_a_narrower_real_mouth_keeps_the_corners_beyond_it_closed() -> None:
    # A smiling frame's mouth (corners at ±0.25 S) under a real mouth open only to ±0.15 S:
    # opened past the real mouth, the corners could only show a synthesised cavity.
    mouth = mouth_frame(_landmarks(half_gap_px=2.0))
    xs = np.linspace(-0.5, 0.5, 101)
    share = np.clip((0.15 - np.abs(xs)) / 0.05, 0.0, 1.0)
    free = _plan(mouth, gap=0.2)
    shaped = plan_warp(
        mouth, MouthPose(gap=0.2, spread=0.0, opening_shape=(xs, share)), SIZE_PX, SIZE_PX
    )
    assert shaped is not None
    # one coarse warp step past the real mouth's corner (the warp interpolates between steps)
    beyond = np.abs(free.mouth_x) >= 0.15 + WARP_STEP / EYE_DISTANCE_PX
    assert free.alpha_f32[beyond].max() > 0.9  # the default taper opens out there
    assert shaped.alpha_f32[beyond].max() == 0.0
    centre = np.abs(free.mouth_x) < 0.02
    np.testing.assert_allclose(shaped.alpha_f32[centre], free.alpha_f32[centre])


def _column_source_y(plan: WarpPlan, x_px: float) -> tuple[np.ndarray, np.ndarray]:
    col = round(x_px) - plan.x0
    rows = np.arange(plan.y0, plan.y0 + plan.map_y.shape[0], dtype=np.float64)
    return rows, plan.map_y[:, col].astype(np.float64)


def test_pressed_lips_are_drawn_thinner_and_the_face_around_them_is_untouched() -> None:
    mouth = mouth_frame(_landmarks(half_gap_px=0.0))
    rows, relaxed = _column_source_y(_plan(mouth, gap=0.0), 128.0)
    _, pressed = _column_source_y(_plan(mouth, gap=0.0, press=1.0), 128.0)
    lip_row = np.flatnonzero(rows == MOUTH_Y_PX - 6.0)[0]  # inside the upper lip
    # A pixel 6 px above the lip line shows what was farther up: the lip is thinner.
    assert pressed[lip_row] < relaxed[lip_row] - 1.0
    far = np.abs(rows - MOUTH_Y_PX) > 0.16 * EYE_DISTANCE_PX + 2
    np.testing.assert_allclose(pressed[far], relaxed[far], atol=1e-6)


def test_rounded_lips_draw_the_corners_in_and_spread_lips_push_them_out() -> None:
    mouth = mouth_frame(_landmarks(half_gap_px=0.0))
    row = round(MOUTH_Y_PX) - _plan(mouth, 0.0).y0
    col = 156 - _plan(mouth, 0.0).x0  # near the right corner
    neutral = _plan(mouth, 0.1).map_x[row, col]
    rounded = _plan(mouth, 0.1, spread=-1.0).map_x[row, col]
    spread = _plan(mouth, 0.1, spread=1.0).map_x[row, col]
    assert rounded > neutral + 1.0  # the output corner shows what was farther out: narrower
    assert spread < neutral - 1.0


def test_alpha_blend_mixes_and_rounds() -> None:
    base = np.full((2, 3, 3), 100, dtype=np.uint8)
    top = np.full((2, 3, 3), 201, dtype=np.uint8)
    alpha = np.array([[0.0, 1.0, 0.5], [0.25, 0.0, 1.0]], dtype=np.float32)
    out = alpha_blend(base, top, alpha)
    assert out.dtype == np.uint8 and out.shape == base.shape
    np.testing.assert_array_equal(out[..., 0], [[100, 201, 151], [125, 100, 201]])


def test_paste_region_places_a_copy_and_never_modifies_its_input() -> None:
    frame = np.zeros((6, 8, 3), dtype=np.uint8)
    before = frame.copy()
    region = np.full((2, 3, 3), 9, dtype=np.uint8)
    out = paste_region(frame, region, x0=4, y0=1)
    np.testing.assert_array_equal(frame, before)
    np.testing.assert_array_equal(out[1:3, 4:7], region)
    out[1:3, 4:7] = 0
    np.testing.assert_array_equal(out, before)


@pytest.mark.parametrize(
    ("half_gap_px", "gap", "spread", "press"),
    [(2.0, 0.0, 0.0, 0.0), (6.0, 0.0, 0.0, 1.0), (2.0, 0.2, 0.8, 0.0), (6.0, 0.12, -0.8, 0.0)],
)
def test_the_coarse_warp_grid_moves_no_pixel_off_the_full_resolution_warp(
    monkeypatch: pytest.MonkeyPatch, half_gap_px: float, gap: float, spread: float, press: float
) -> None:
    # The warp is computed on every other pixel and interpolated (a third of the render's
    # time); where the lips part or meet, the source row is assembled per pixel.
    mouth = mouth_frame(_landmarks(half_gap_px=half_gap_px))
    coarse = _plan(mouth, gap=gap, spread=spread, press=press)
    monkeypatch.setattr(mouth_warp, "WARP_STEP", 1)
    full = _plan(mouth, gap=gap, spread=spread, press=press)
    assert coarse.map_y.shape == full.map_y.shape and (coarse.x0, coarse.y0) == (full.x0, full.y0)
    for name in ("map_x", "map_y"):
        error = np.abs(getattr(coarse, name) - getattr(full, name))
        assert np.percentile(error, 99.5) < 0.25, name
        assert (error > 1.0).sum() <= 2, name  # a pixel right on a fold of a closing lip
    edge = np.abs(coarse.alpha_f32 - full.alpha_f32)
    assert np.percentile(edge, 99.5) < 0.25
