"""Whole-mouth units: lips aligned lip to lip, only the gap stretches, a feathered mask."""

from __future__ import annotations

import numpy as np
import pytest

from talkingface.engines.mouth_units import (
    BAND_SHADE,
    MouthUnit,
    OutputLips,
    UnitGrid,
    grid_box,
    interior_split,
    lay_unit,
    middle_band,
    skin_weight,
    unit_maps,
    unit_mask,
)

GRID = UnitGrid(100.0)


def _unit(gap: float) -> MouthUnit:
    cols = GRID.xs.shape[0]
    rows = GRID.ys.shape[0]
    return MouthUnit(
        np.zeros((rows, cols, 3), np.uint8),
        np.full(cols, -0.01, np.float32),
        np.full(cols, -0.01 + gap, np.float32),
    )


def _lips(my: np.ndarray, gap: float, upper: float = 0.0) -> OutputLips:
    mx = np.zeros_like(my)
    return OutputLips(
        mx, my, np.full_like(my, upper), np.full_like(my, upper + gap), mx + 0.5, 0.0, 0.25, 100.0
    )


def _source_y(row: np.ndarray) -> np.ndarray:
    ys = GRID.ys
    return ys[0] + row * (ys[-1] - ys[0]) / (ys.shape[0] - 1)


@pytest.mark.parametrize("target_gap", [0.05, 0.15])
def test_unit_lips_land_on_the_output_lips_whatever_the_opening(target_gap: float) -> None:
    # Given a unit opened 0.08 S with its upper lip at -0.01
    unit = _unit(0.08)
    above = np.array([-0.05, -0.001])  # output pixels in the upper lip
    below = target_gap + np.array([0.001, 0.06])  # output pixels in the lower lip and chin
    _, row = unit_maps(_lips(np.concatenate([above, below]), target_gap), unit, GRID)[:2]
    source = _source_y(row)
    # Then the upper lip is read from the unit's upper lip, at the same distance...
    np.testing.assert_allclose(source[:2], -0.01 + above, atol=1e-4)
    # ...and the lower lip from the unit's lower lip, whatever the target opening.
    np.testing.assert_allclose(source[2:], -0.01 + 0.08 + (below - target_gap), atol=1e-4)


def test_a_closed_output_reads_the_lips_from_outside_the_teeth_sliver() -> None:
    unit = _unit(0.05)
    below = np.array([0.001])  # just under the closed output's lip line
    _, row, _ = unit_maps(_lips(below, 0.0), unit, GRID)
    assert _source_y(row)[0] > -0.01 + 0.05 + 0.001 + 0.01  # 0.015 S below the landmark line


def test_a_wider_opening_keeps_the_teeth_at_size_and_leaves_a_middle_to_fill() -> None:
    unit = _unit(0.08)  # interior 0.04 deep from each lip
    my = np.array([0.02, 0.025, 0.08, 0.135, 0.14])  # in a 0.16 opening
    _, row, shortfall = unit_maps(_lips(my, 0.16), unit, GRID)
    source = _source_y(row)
    # Just under the upper lip and just over the lower lip: the unit at real size...
    np.testing.assert_allclose(source[[0, 1]], -0.01 + my[[0, 1]], atol=1e-4)
    np.testing.assert_allclose(source[[3, 4]], -0.01 + 0.08 - (0.16 - my[[3, 4]]), atol=1e-4)
    # ...and the middle, deeper than the unit's half-gap from both lips, is left to fill.
    np.testing.assert_allclose(shortfall, [0.0, 0.0, 1.0, 0.0, 0.0])


def test_a_smaller_opening_cuts_out_the_middle_of_the_unit() -> None:
    unit = _unit(0.12)
    my = np.array([0.01, 0.035, 0.05])  # in a 0.06 opening
    _, row, shortfall = unit_maps(_lips(my, 0.06), unit, GRID)
    np.testing.assert_allclose(
        _source_y(row), -0.01 + np.array([0.01, 0.12 - 0.025, 0.12 - 0.01]), atol=1e-4
    )
    assert shortfall.max() == 0.0


def test_teeth_past_the_middle_of_the_unit_stay_whole_when_the_output_opens_wider() -> None:
    # A unit opened 0.08 S (upper lip -0.01, lower 0.07) whose upper teeth reach 0.06 S down,
    # past the middle (0.03): dark cavity under them, then the tongue.
    unit = _unit(0.08)
    ys = GRID.ys
    image = np.full_like(unit.image_u8, 150)
    image[(ys > -0.01) & (ys < 0.05)] = 230  # teeth
    image[(ys >= 0.05) & (ys < 0.06)] = 20  # cavity
    split = interior_split(MouthUnit(image, unit.upper_f32, unit.lower_f32), GRID)
    assert np.all(np.abs(split - 0.055) < 0.01)
    with_split = MouthUnit(image, unit.upper_f32, unit.lower_f32, split)
    my = np.linspace(0.001, 0.05, 30)  # the teeth rows of a 0.16 output opening
    _, row, shortfall = unit_maps(_lips(my, 0.16), with_split, GRID)
    # The teeth ride the upper lip at real size: nothing of them is cut or filled over.
    np.testing.assert_allclose(_source_y(row), -0.01 + my, atol=1e-4)
    assert shortfall.max() == 0.0
    # Split at the middle (no split known), the same pixels below 0.04 would be cavity.
    _, _, middle_shortfall = unit_maps(_lips(my, 0.16), unit, GRID)
    assert middle_shortfall[my > 0.045].min() > 0.8  # (teeth 0.04-0.06 deep lost)
    # Opened narrower than the unit, the middle is cut out as before: a split this low would
    # cut out the dark band and leave lips over teeth, which reads as closed.
    narrow = np.linspace(0.001, 0.049, 20)
    _, split_rows, _ = unit_maps(_lips(narrow, 0.05), with_split, GRID)
    _, middle_rows, _ = unit_maps(_lips(narrow, 0.05), unit, GRID)
    np.testing.assert_allclose(split_rows, middle_rows, atol=1e-3)


def test_the_middle_left_by_a_wider_opening_takes_the_units_own_darkest_row() -> None:
    # Upper teeth, a dark red-brown cavity row (the split), then the tongue: opened twice as
    # wide as the unit, the band between its parts is that cavity, not a generic black.
    unit = _unit(0.08)
    ys = GRID.ys
    image = np.full_like(unit.image_u8, 150)
    image[(ys > -0.01) & (ys < 0.015)] = 230  # teeth
    image[(ys >= 0.015) & (ys < 0.05)] = (70, 30, 25)  # cavity
    image[(ys >= 0.05) & (ys < 0.07)] = (190, 110, 110)  # tongue
    split = interior_split(MouthUnit(image, unit.upper_f32, unit.lower_f32), GRID)
    with_split = MouthUnit(image, unit.upper_f32, unit.lower_f32, split)
    my = np.linspace(0.001, 0.159, 60)[:, None] * np.ones((1, 5))  # a 0.16 opening
    lips = _lips(my, 0.16)
    col, _, shortfall = unit_maps(lips, with_split, GRID)
    band = middle_band(lips, with_split, GRID, col)
    filled = band[shortfall >= 1.0]
    assert filled.shape[0] > 0
    cavity = BAND_SHADE * np.array([70.0, 30.0, 25.0])
    np.testing.assert_allclose(filled, np.broadcast_to(cavity, filled.shape), atol=8)


def test_where_the_unit_is_shut_no_cavity_is_painted_over_the_lips_or_chin() -> None:
    # Mouth corners: the unit's lips meet there (gap 0). Pixels on the output's lower lip and
    # chin below them read the unit's lower lip; only inside the output's opening is there
    # anything to fill (a dark "fang" hung from both corners of smiling templates before).
    unit = _unit(0.0)
    for gap in (0.0, 0.05):
        below = gap + np.array([0.02, 0.05, 0.15])  # over a pixel (0.01 S) from the line
        above = np.array([-0.1, -0.02])
        _, row, shortfall = unit_maps(_lips(np.concatenate([above, below]), gap), unit, GRID)
        assert shortfall.max() == 0.0
        np.testing.assert_allclose(_source_y(row)[2:], -0.01 + (below - gap), atol=2e-3)
    _, _, inside = unit_maps(_lips(np.array([0.025]), 0.05), unit, GRID)
    assert inside[0] == 1.0  # the opening itself, wider than the shut unit: cavity


def test_mask_covers_the_mouth_and_fades_to_nothing_around_it() -> None:
    mx, my = np.meshgrid(np.linspace(-0.49, 0.49, 99), np.linspace(-0.3, 0.5, 81))
    lips = OutputLips(mx, my, np.zeros_like(my), np.full_like(my, 0.1), mx + 0.5, 0.0, 0.25, 100.0)
    mask = unit_mask(lips)
    assert mask[(np.abs(mx) < 0.2) & (my > -0.05) & (my < 0.15)].min() == pytest.approx(1.0)
    assert mask[my < -0.17].max() == 0.0  # well above the upper lip: the template
    assert mask[my > 0.29].max() == 0.0  # the chin: the warp's jaw, not the unit's
    assert mask[np.abs(mx) > 0.35].max() == 0.0  # the cheeks


def test_colour_gain_moves_smoothly_from_frame_to_frame() -> None:
    warped = np.full((40, 40, 3), 120, np.uint8)
    mask = np.zeros((40, 40), np.float32)
    mask[5:35, 5:35] = 0.5
    darker_unit = np.full((40, 40, 3), 108.0, np.float32)  # wants a gain of about 1.11
    _, gain = lay_unit(warped, darker_unit, mask, previous_gain=np.ones(3, np.float32))
    assert gain is not None
    np.testing.assert_allclose(gain, 0.6 + 0.4 * 120 / 108, rtol=1e-5)


def test_laid_unit_takes_the_lighting_of_the_frame_it_is_laid_on() -> None:
    warped = np.full((40, 40, 3), 120, np.uint8)
    unit = np.full((40, 40, 3), 100.0, np.float32)
    unit[15:25, 15:25] = 40.0  # the mouth's dark interior
    mask = np.zeros((40, 40), np.float32)
    mask[5:35, 5:35] = 0.5  # the feather ring
    mask[10:30, 10:30] = 1.0
    out, gain = lay_unit(warped, unit, mask)
    assert gain is not None
    assert out[0, 0, 0] == 120  # outside the mask: untouched
    assert out[12, 12, 0] == 118  # skin brightened by the ring's gain (clipped at 1.18)
    assert out[20, 20, 0] < 60  # the interior stays dark


def test_a_unit_lit_differently_leaves_no_box_around_the_mouth() -> None:
    # The frame is lit from the right (a turned head); the unit's skin is flat and darker, its
    # lips red, its opening dark. One colour gain left a box: the skin inside the mask kept the
    # unit's flat light and stepped against the frame's gradient at the mask's edge.
    mx, my = np.meshgrid(np.linspace(-0.49, 0.49, 99), np.linspace(-0.27, 0.49, 77))
    lips = OutputLips(mx, my, np.zeros_like(my), np.full_like(my, 0.06), mx + 0.5, 0.0, 0.25, 100.0)
    frame = np.repeat((100.0 + 120.0 * (mx + 0.49))[..., None], 3, axis=2)  # 100 .. 218
    unit = np.full((*mx.shape, 3), 120.0, np.float32)
    on_lips = (np.abs(mx) < 0.25) & (my > -0.08) & (my < 0.14)
    unit[on_lips] = (170.0, 60.0, 70.0)
    opening = (np.abs(mx) < 0.2) & (my > 0.0) & (my < 0.06)
    unit[opening] = 25.0
    mask = unit_mask(lips)
    shading = (skin_weight(lips), 6.0)

    flat, _ = lay_unit(frame.astype(np.uint8), unit, mask)
    shaded, _ = lay_unit(frame.astype(np.uint8), unit, mask, shading=shading)

    skin = (mask > 0.5) & ~on_lips & (my < -0.1)  # skin inside the mask, above the lips
    step_flat = np.abs(flat[skin].astype(float) - frame[skin]).max()
    step_shaded = np.abs(shaded[skin].astype(float) - frame[skin]).max()
    assert step_flat > 40  # the box
    assert step_shaded < 12
    assert shaded[opening].mean() < 60  # the opening stays dark, the lips red
    assert (shaded[on_lips & ~opening & (np.abs(mx) < 0.1)][:, 0] > 140).all()


def test_the_unit_is_laid_only_on_the_box_that_holds_its_grid() -> None:
    # a region twice as wide and tall as the grid: the unit's box is the grid's, no more
    mx, my = np.meshgrid(np.linspace(-1.0, 1.0, 201), np.linspace(-0.6, 0.9, 151))
    box = grid_box(mx, my)
    assert box is not None
    on_grid = (np.abs(mx) < 0.5) & (my > -0.28) & (my < 0.5)
    inside = np.zeros_like(on_grid)
    inside[box] = True
    assert np.all(inside[on_grid])  # every grid pixel is in the box
    assert inside.sum() == on_grid.sum()  # and the box is no bigger (the grid is a rectangle)
    assert grid_box(mx + 3.0, my) is None  # the mouth beside the region: nothing to lay
