"""Which real mouth the classic engine lays on a wide opening: one that shows an opening."""

from __future__ import annotations

import numpy as np

from talkingface.engines.classic import _choose_units
from talkingface.engines.mouth_units import UnitGrid
from talkingface.engines.prepared_template import PreparedTemplate
from talkingface.vocabulary import Articulation, FaceTrack

GRID = UnitGrid(60.0)
SKIN, CAVITY, TEETH = 180, 25, 235
DARK_GAPS = (0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.11, 0.12, 0.13, 0.14)  # S units
GRIN_GAP = 0.2  # lips far apart, over clenched teeth
GRIN_DARK = 0.02  # only a thin dark line between the teeth rows


def _unit(gap: float, dark: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grey face whose lips part by `gap`, the middle `dark` of it dark, the rest teeth."""
    ys, cols = GRID.ys, GRID.xs.shape[0]
    image = np.full((ys.shape[0], cols, 3), SKIN, np.uint8)
    image[(ys > -gap / 2) & (ys < gap / 2)] = TEETH
    image[(ys > -dark / 2) & (ys < dark / 2)] = CAVITY
    return image, np.full(cols, -gap / 2, np.float32), np.full(cols, gap / 2, np.float32)


def _template(units: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> PreparedTemplate:
    images, upper, lower = (np.stack(parts) for parts in zip(*units, strict=True))
    count = images.shape[0]
    return PreparedTemplate(
        key="k",
        source_name="silent.mp4",
        fps=25.0,
        frame_count=count,
        complete=True,
        width=256,
        height=256,
        is_still_image=False,
        track=FaceTrack(
            np.zeros((count, 478, 2), np.float32),
            np.ones(count, bool),
            np.ones(count, np.float32),
            256,
            256,
            1,
        ),
        own_drive=None,  # no sound of its own: nothing says which mouths were loud vowels
        engine_name="classic",
        engine_data={
            "unit_px_per_s": np.array([GRID.px_per_s], np.float32),
            "unit_images": images,
            "unit_upper": upper,
            "unit_lower": lower,
            "unit_frames": np.arange(count) * 10,  # far apart: no run of neighbours to favour
        },
        prepare_s=0.0,
    )


def _drive(frames: int) -> Articulation:
    return Articulation(
        fps=25.0,
        speech=np.ones(frames, bool),
        loudness_f32=np.ones(frames, np.float32),
        open_f32=np.ones(frames, np.float32),
        width_f32=np.zeros(frames, np.float32),
        closure_f32=np.zeros(frames, np.float32),
        spectral_f32=np.zeros((frames, 4), np.float32),
    )


def test_without_its_own_sound_a_wide_opening_gets_a_mouth_that_shows_cavity_not_a_grin() -> None:
    units = [_unit(gap, gap) for gap in DARK_GAPS] + [_unit(GRIN_GAP, GRIN_DARK)]
    grin = len(units) - 1
    widest_dark = len(DARK_GAPS) - 1
    wide = np.full(20, GRIN_GAP, np.float32)  # the loudest syllables ask for the grin's gap

    chosen = _choose_units(_template(units), _drive(wide.shape[0]), wide)

    assert chosen is not None
    assert grin not in chosen.choice  # its lips match the gap, but it reads as a closed mouth
    assert set(chosen.choice.tolist()) == {widest_dark}


def test_teeth_with_a_real_cavity_between_them_still_count_as_wide_open() -> None:
    units = [_unit(gap, gap) for gap in DARK_GAPS] + [_unit(GRIN_GAP, 0.14)]
    open_with_teeth = len(units) - 1
    wide = np.full(20, GRIN_GAP, np.float32)

    chosen = _choose_units(_template(units), _drive(wide.shape[0]), wide)

    assert chosen is not None
    assert set(chosen.choice.tolist()) == {open_with_teeth}
