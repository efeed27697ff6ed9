"""Mouth targets: the drive mapped onto this person's own opening range."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from talkingface.engines.mouth_targets import (
    GENERIC_RANGE,
    OVERSHOOT,
    OpeningRange,
    gap_targets,
    rendered_levels,
    speaking_range,
)
from talkingface.vocabulary import Articulation


def _drive(open_: np.ndarray, closure: np.ndarray | None = None) -> Articulation:
    count = open_.shape[0]
    zeros = np.zeros(count, np.float32)
    return Articulation(
        fps=25.0,
        speech=open_ > 0.02,
        loudness_f32=open_.astype(np.float32),
        open_f32=open_.astype(np.float32),
        width_f32=zeros,
        closure_f32=zeros if closure is None else closure.astype(np.float32),
        spectral_f32=np.zeros((count, 14), np.float32),
    )


def test_speech_opens_as_wide_as_the_person_does() -> None:
    rng = np.random.default_rng(1)
    drive = _drive(rng.uniform(0.05, 1.0, 500))
    person = OpeningRange(0.07, 0.12, "own")
    gaps = gap_targets(drive, person)
    want50, want90 = rendered_levels(person)
    assert 0.07 < want50 < 0.12 and want90 > 0.12  # the render's shortfall is made up
    p50, p90 = np.percentile(gaps[drive.speech], [50, 90])
    assert p50 == pytest.approx(want50, rel=0.02)
    assert p90 == pytest.approx(want90, rel=0.02)
    assert gaps.max() <= OVERSHOOT * want90 + 1e-6


@pytest.mark.parametrize("low, high", [(0.6, 1.0), (0.02, 0.3)])
def test_the_persons_range_holds_for_drives_of_any_loudness_distribution(
    low: float, high: float
) -> None:
    # A drive that is loud nearly all the time (or faint nearly all the time) sits outside
    # the bounds the drive-to-opening map assumes; the output's range must not follow it.
    rng = np.random.default_rng(3)
    open_ = rng.uniform(low, high, 400)
    closure = (rng.uniform(0, 1, 400) > 0.9).astype(np.float64)  # lip closures shut 10 %
    drive = _drive(open_, closure)
    person = OpeningRange(0.11, 0.17, "own")
    p50, p90 = np.percentile(gap_targets(drive, person)[drive.speech], [50, 90])
    want50, want90 = rendered_levels(person)
    assert p50 == pytest.approx(want50, rel=0.02)
    assert p90 == pytest.approx(want90, rel=0.02)


def test_a_small_mouth_gets_the_same_absolute_margin_as_a_wide_one() -> None:
    small = rendered_levels(OpeningRange(0.06, 0.09, "own"))
    wide = rendered_levels(OpeningRange(0.12, 0.17, "own"))
    assert small[0] - 0.06 == pytest.approx(wide[0] - 0.12, abs=0.01)


def test_silence_and_lip_closures_shut_the_mouth() -> None:
    open_ = np.array([0.0, 0.0, 0.6, 0.6, 0.6] * 10)
    closure = np.array([0.0, 0.0, 0.0, 1.0, 0.0] * 10)
    gaps = gap_targets(_drive(open_, closure), GENERIC_RANGE)
    assert gaps[0] == 0.0 and gaps[3] == 0.0 and gaps[2] > 0.08


def test_a_fifth_of_a_second_of_drive_still_opens() -> None:
    gaps = gap_targets(_drive(np.array([0.0, 0.5, 0.8, 0.4, 0.0])), GENERIC_RANGE)
    assert gaps.max() > GENERIC_RANGE.p50


def test_range_comes_from_the_persons_talking_frames() -> None:
    rng = np.random.default_rng(2)
    gaps = rng.uniform(0.02, 0.15, 200).astype(np.float32)
    speech = np.ones(200, bool)
    own = speaking_range(gaps, speech)
    assert own.source == "own"
    assert own.p50 == pytest.approx(np.percentile(gaps, 50), rel=1e-3)


def test_photo_silent_or_still_templates_get_the_generic_range() -> None:
    still = np.full(200, 0.01, np.float32)
    assert speaking_range(still, None) is GENERIC_RANGE  # no speech of its own
    assert speaking_range(still, np.ones(200, bool)) is GENERIC_RANGE  # a mouth that never moved
    assert speaking_range(still[:1], np.ones(1, bool)) is GENERIC_RANGE  # a photo


def _measured_person(rng: np.random.Generator, talking: np.ndarray) -> OpeningRange:
    """A person measured over 400 frames: silent quarter closed, the rest `talking`."""
    gaps = np.concatenate([rng.uniform(0.0, 0.01, 100), talking])
    speech = np.concatenate([np.zeros(100, bool), np.ones(talking.shape[0], bool)])
    return speaking_range(gaps, speech)


def test_a_person_who_keeps_the_lips_parted_gets_shallower_valleys_than_one_who_closes() -> None:
    rng = np.random.default_rng(5)
    parted = _measured_person(rng, rng.uniform(0.05, 0.09, 300))  # the suit man's habit
    closing = _measured_person(
        rng, np.concatenate([rng.uniform(0.0, 0.02, 120), rng.uniform(0.06, 0.10, 180)])
    )
    assert parted.quantiles is not None and closing.quantiles is not None
    drive = _drive(rng.uniform(0.05, 1.0, 500))
    parted_gaps = gap_targets(drive, parted)[drive.speech]
    closing_gaps = gap_targets(drive, closing)[drive.speech]
    # Both are pinned at their own median and 90th percentile...
    for person, gaps in ((parted, parted_gaps), (closing, closing_gaps)):
        want50, want90 = rendered_levels(person)
        assert np.percentile(gaps, 50) == pytest.approx(want50, rel=0.03)
        assert np.percentile(gaps, 90) == pytest.approx(want90, rel=0.03)
    # ...but below the median each follows its own habit; the valleys still reach towards 0.
    assert np.percentile(parted_gaps, 30) > 1.5 * np.percentile(closing_gaps, 30)
    assert np.percentile(parted_gaps, 3) < 0.5 * np.percentile(parted_gaps, 50)
    assert np.all(np.diff(gap_targets(_drive(np.linspace(0, 1, 50)), parted)) >= 0)  # monotone


@pytest.mark.parametrize("measured", [False, True])
@pytest.mark.parametrize("gain", [(1.2, 1.1), (0.85, 0.9)])
def test_a_templates_calibration_gain_scales_its_targets(
    measured: bool, gain: tuple[float, float]
) -> None:
    # The template's renders opened short (or past) the person's median and 90th percentile
    # by these factors: the targets ask for that much more (or less).
    rng = np.random.default_rng(7)
    person = (
        _measured_person(rng, rng.uniform(0.04, 0.16, 300))
        if measured
        else OpeningRange(0.09, 0.14, "own")
    )
    calibrated = replace(person, render_gain=gain)
    drive = _drive(rng.uniform(0.05, 1.0, 500))
    plain = np.percentile(gap_targets(drive, person)[drive.speech], [50, 90])
    gained = np.percentile(gap_targets(drive, calibrated)[drive.speech], [50, 90])
    assert gained[0] == pytest.approx(gain[0] * plain[0], rel=0.03)
    assert gained[1] == pytest.approx(gain[1] * plain[1], rel=0.03)
