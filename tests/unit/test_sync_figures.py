"""Sync figures on synthetic arrays: margin over a foil, speech/silence ratio, amplitude ratio,
and the built-in foil itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from talkingface.foil import default_foil, foil_envelope, looped
from talkingface.samples import synth_speech
from talkingface.sync_figures import (
    OwnTalking,
    SyncFigures,
    amplitude_ratios,
    own_talking,
    speech_silence_ratio,
    sync_figures,
    sync_margin,
)
from talkingface.sync_signal import lagged_correlation, speech_envelope
from talkingface.vocabulary import AudioClip

FPS = 25.0


def _envelope(seed: int, frame_count: int = 200) -> tuple[np.ndarray, np.ndarray]:
    speech = synth_speech(frame_count / FPS, seed=seed)
    clip = AudioClip(speech.samples_f32, speech.sample_rate_hz)
    return speech_envelope(clip, fps=FPS, frame_count=frame_count)


def _mouth_following(envelope: np.ndarray, seed: int = 0) -> np.ndarray:
    """An opening (gap / jaw width) that follows `envelope`, with a little measurement noise."""
    noise = np.random.default_rng(seed).normal(0.0, 0.004, envelope.shape)
    return 0.005 + 0.08 * envelope + noise


def test_a_mouth_that_follows_the_drive_has_a_high_margin_over_the_foil() -> None:
    drive, speech = _envelope(seed=0)
    foil = foil_envelope(default_foil(), fps=FPS, frame_count=200, drive_envelope=drive)

    figures = sync_figures(_mouth_following(drive), drive, speech, foil)

    assert figures.correlation is not None and figures.correlation > 0.9
    assert figures.lag_frames == 0
    assert figures.foil_correlation is not None and figures.foil_correlation < 0.2
    assert figures.margin is not None and figures.margin > 0.7
    assert figures.margin == pytest.approx(figures.correlation - figures.foil_correlation)


def test_a_mouth_that_follows_the_foil_has_a_negative_margin() -> None:
    drive, speech = _envelope(seed=0)
    foil = foil_envelope(default_foil(), fps=FPS, frame_count=200, drive_envelope=drive)

    figures = sync_figures(_mouth_following(foil), drive, speech, foil)

    assert figures.foil_correlation is not None and figures.foil_correlation > 0.9
    assert figures.margin is not None and figures.margin < -0.6


def test_a_correlation_over_fewer_than_25_frames_with_a_face_is_not_reported() -> None:
    drive, speech = _envelope(seed=0, frame_count=60)
    opening = _mouth_following(drive)
    opening[24:] = np.nan  # the face left after 24 frames

    figures = sync_figures(opening, drive, speech, np.zeros(60))

    assert figures.correlation is None and figures.lag_frames is None
    assert figures.margin is None
    assert figures.open_speech_mean is not None  # the means do not need a correlation


def test_the_margin_is_undefined_when_either_correlation_is() -> None:
    assert sync_margin(None, 0.1) is None
    assert sync_margin(0.5, math.nan) is None
    assert sync_margin(0.7, 0.1) == pytest.approx(0.6)


def test_speech_silence_ratio_divides_the_means_with_a_floor_for_a_shut_mouth() -> None:
    opening = np.array([0.06, 0.06, 0.06, 0.02, 0.02, np.nan])
    speech = np.array([True, True, True, False, False, False])

    figures = sync_figures(opening, np.linspace(0, 1, 6), speech, np.zeros(6))

    assert figures.open_speech_mean == pytest.approx(0.06)
    assert figures.open_silence_mean == pytest.approx(0.02)
    assert figures.speech_silence_ratio == pytest.approx(3.0)
    assert speech_silence_ratio(0.05, 0.0) == pytest.approx(10.0)  # floored at 0.005
    assert speech_silence_ratio(0.05, None) is None


def test_an_output_opening_half_the_persons_own_gives_half_amplitude() -> None:
    # Given the person's own talking, and an output whose mouth opens half as wide
    rng = np.random.default_rng(3)
    own_opening = rng.uniform(0.02, 0.12, 300)
    own_speech = rng.random(300) < 0.7
    output_opening = 0.5 * rng.uniform(0.02, 0.12, 200)
    output_speech = rng.random(200) < 0.7

    own = own_talking(own_opening, own_speech)
    output = sync_figures(output_opening, rng.random(200), output_speech, rng.random(200))
    p50, p90 = amplitude_ratios(output, own)

    assert own is not None
    assert p50 == pytest.approx(0.5, abs=0.08)
    assert p90 == pytest.approx(0.5, abs=0.05)


def test_a_person_who_hardly_talks_is_no_yardstick() -> None:
    opening = np.full(100, 0.05)
    speech = np.zeros(100, bool)
    speech[:19] = True  # 19 % of the frames

    assert own_talking(opening, speech) is None
    assert amplitude_ratios(SyncFigures(open_speech_p50=0.05, open_speech_p90=0.08), None) == (
        None,
        None,
    )


def test_an_own_figure_of_zero_gives_no_ratio() -> None:
    output = SyncFigures(open_speech_p50=0.05, open_speech_p90=0.08)

    assert amplitude_ratios(output, OwnTalking(0.5, 0.0, 0.06)) == (None, pytest.approx(4 / 3))


# --- the built-in foil ----------------------------------------------------------------------


def test_the_default_foil_is_deterministic_speech_with_pauses() -> None:
    foil = default_foil()
    frame_count = round(foil.duration_s * FPS)

    _, speech = speech_envelope(foil, fps=FPS, frame_count=frame_count)

    assert foil.duration_s > 20.0
    assert 0.3 < speech.mean() < 0.8  # talking, with pauses
    pauses = np.diff(np.concatenate([[0], (~speech).astype(np.int8), [0]]))
    assert (pauses == 1).sum() >= 10  # many separate pauses, not one long one
    default_foil.cache_clear()
    assert np.array_equal(default_foil().samples_f32, foil.samples_f32)


def test_the_foil_is_looped_to_cover_a_longer_video() -> None:
    foil = default_foil()
    frame_count = round(2.5 * foil.duration_s * FPS)

    envelope = foil_envelope(foil, fps=FPS, frame_count=frame_count)

    assert looped(foil, 2.5 * foil.duration_s).duration_s >= 2.5 * foil.duration_s
    assert envelope.shape == (frame_count,)
    assert envelope[-round(foil.duration_s * FPS) :].max() > 0.5  # still talking at the end


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_foil_is_not_correlated_with_the_drive_even_when_both_are_synthetic(
    seed: int,
) -> None:
    drive, _ = _envelope(seed=seed, frame_count=150)  # seed 0: the demo's own speech

    foil = foil_envelope(default_foil(), fps=FPS, frame_count=150, drive_envelope=drive)
    peak, _, _ = lagged_correlation(foil, drive)
    trough, _, _ = lagged_correlation(-foil, drive)

    assert max(abs(peak), abs(trough)) < 0.15
