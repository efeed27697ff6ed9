"""The synthesised interior for closed-mouth templates: teeth, cavity, lip edges at real sizes."""

from __future__ import annotations

import numpy as np

from talkingface.engines.synthetic_interior import synthesised_interior

LIPS = np.array([170.0, 95.0, 95.0], dtype=np.float32)
SCALE_PX = 200.0  # pixels per S unit: a 700 px portrait


def _column(gap_s: float, rows: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Depths of `rows` pixels spanning an opening of gap_s at the mouth's centre column."""
    depth_top = np.linspace(0.0, gap_s, rows)[:, None]
    return depth_top, gap_s - depth_top


def _luma(image: np.ndarray) -> np.ndarray:
    return np.asarray(image @ np.array([0.299, 0.587, 0.114], dtype=np.float32))


def test_wide_opening_shows_upper_teeth_below_the_lip_edge_over_a_darker_cavity() -> None:
    top, bottom = _column(0.15)
    image = synthesised_interior(top, bottom, np.full_like(top, 0.5), LIPS, SCALE_PX)
    luma = _luma(image)[:, 0]
    depth = top[:, 0]
    lip_edge = luma[depth < 0.004].mean()
    teeth = luma[(depth > 0.015) & (depth < 0.045)].mean()
    cavity = luma[(depth > 0.08) & (depth < 0.10)].mean()
    assert teeth > lip_edge + 30.0  # teeth are brighter than the lip's inner edge
    assert cavity < 0.5 * teeth  # and the cavity behind is dark
    assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 255.0


def test_teeth_row_keeps_its_size_and_does_not_stretch_with_the_opening() -> None:
    rows = []
    for gap in (0.10, 0.20):
        top, bottom = _column(gap, rows=400)
        luma = _luma(synthesised_interior(top, bottom, np.full_like(top, 0.5), LIPS, SCALE_PX))
        bright = top[:, 0][luma[:, 0] > 120.0]
        rows.append(float(bright.max() - bright.min()))
    assert abs(rows[0] - rows[1]) < 0.01  # the teeth are as tall in S units at both openings


def test_a_slit_shows_lip_colour_not_a_white_band() -> None:
    top, bottom = _column(0.015)
    luma = _luma(synthesised_interior(top, bottom, np.full_like(top, 0.5), LIPS, SCALE_PX))
    assert luma.max() < _luma(LIPS[None, :])[0]  # no teeth in a barely parted mouth


def test_teeth_fade_towards_the_corners() -> None:
    top, bottom = _column(0.15)
    centre = _luma(synthesised_interior(top, bottom, np.full_like(top, 0.5), LIPS, SCALE_PX))
    corner = _luma(synthesised_interior(top, bottom, np.full_like(top, 0.02), LIPS, SCALE_PX))
    assert corner.max() < centre.max() - 40.0
