"""Sync figures for `evaluate` from per-frame arrays: correlation, margin over a foil, speech vs
silence opening, and amplitude against the person's own talking.

Everything here is arithmetic on arrays that are already measured (the independent mouth
opening per frame, envelopes and speech flags per frame), so tests can drive it with
synthetic data and the media passes in quality.py stay free of figure definitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from talkingface.sync_signal import MAX_SYNC_LAG_FRAMES, lagged_correlation

SILENCE_OPENING_FLOOR = 0.005  # a closed mouth reads 0.000-0.01; keeps the ratio finite
OWN_SPEECH_MIN_FRACTION = 0.2  # the template must talk this much to be a yardstick
MIN_OWN_OPENING = 1e-3  # an own figure below this cannot be divided by
MIN_SYNC_FRAMES = 25  # fewer frames with a face give a correlation that says nothing


@dataclass(frozen=True, slots=True)
class SyncFigures:
    """How the mouth follows the driving speech; None where a figure cannot be measured."""

    correlation: float | None = None  # peak Pearson r against the drive envelope, lags ±5
    lag_frames: int | None = None  # lag of that peak; positive = the mouth after the sound
    correlation_at_zero: float | None = None
    foil_correlation: float | None = None  # peak r against the foil envelope, same lags
    margin: float | None = None  # correlation - foil_correlation
    open_speech_mean: float | None = None  # mean opening on speech frames
    open_silence_mean: float | None = None  # … on silent frames (pauses of 200 ms or more)
    speech_silence_ratio: float | None = None
    open_speech_p50: float | None = None  # median opening on speech frames
    open_speech_p90: float | None = None


@dataclass(frozen=True, slots=True)
class OwnTalking:
    """The template person's own mouth while they talk (their own audio's speech frames)."""

    speech_fraction: float  # share of template frames that are speech
    open_speech_p50: float | None  # None where too few frames had both speech and a face
    open_speech_p90: float | None


def sync_figures(
    opening: np.ndarray,
    envelope: np.ndarray,
    speech: np.ndarray,
    foil_envelope: np.ndarray,
    *,
    max_lag: int = MAX_SYNC_LAG_FRAMES,
) -> SyncFigures:
    """All drive-dependent figures for one video (`opening` NaN where no face); the
    correlations need MIN_SYNC_FRAMES frames with a face."""
    peak, lag, at_zero = lagged_correlation(opening, envelope, max_lag)
    foil_peak, _, _ = lagged_correlation(opening, foil_envelope, max_lag)
    if np.isfinite(opening).sum() < MIN_SYNC_FRAMES:
        peak = foil_peak = at_zero = math.nan
    speech_mean = _nanmean_or_none(opening[speech])
    silence_mean = _nanmean_or_none(opening[~speech])
    p50, p90 = opening_percentiles(opening, speech)
    return SyncFigures(
        correlation=_finite_or_none(peak),
        lag_frames=lag if math.isfinite(peak) else None,
        correlation_at_zero=_finite_or_none(at_zero),
        foil_correlation=_finite_or_none(foil_peak),
        margin=sync_margin(peak, foil_peak),
        open_speech_mean=speech_mean,
        open_silence_mean=silence_mean,
        speech_silence_ratio=speech_silence_ratio(speech_mean, silence_mean),
        open_speech_p50=p50,
        open_speech_p90=p90,
    )


def sync_margin(correlation: float | None, foil_correlation: float | None) -> float | None:
    """Correlation with the drive minus correlation with the foil (None if either is)."""
    if correlation is None or foil_correlation is None:
        return None
    if not (math.isfinite(correlation) and math.isfinite(foil_correlation)):
        return None
    return correlation - foil_correlation


def speech_silence_ratio(speech_mean: float | None, silence_mean: float | None) -> float | None:
    """Mean opening in speech over mean opening in silence (silence floored at 0.005)."""
    if speech_mean is None or silence_mean is None:
        return None
    return speech_mean / max(silence_mean, SILENCE_OPENING_FLOOR)


def opening_percentiles(
    opening: np.ndarray, speech: np.ndarray
) -> tuple[float | None, float | None]:
    """(p50, p90) of the opening over speech frames with a face; (None, None) if none."""
    values = opening[speech]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    p50, p90 = np.percentile(values, [50, 90])
    return float(p50), float(p90)


def own_talking(opening: np.ndarray, speech: np.ndarray) -> OwnTalking | None:
    """The person's own figures, or None when they talk on under 20 % of their frames."""
    fraction = float(speech.mean()) if speech.size else 0.0
    if fraction < OWN_SPEECH_MIN_FRACTION:
        return None
    p50, p90 = opening_percentiles(opening, speech)
    return OwnTalking(fraction, p50, p90)


def amplitude_ratios(
    output: SyncFigures, own: OwnTalking | None
) -> tuple[float | None, float | None]:
    """(p50, p90) of the output's speech opening over the person's own (None where unknown)."""
    if own is None:
        return None, None
    return (
        _ratio(output.open_speech_p50, own.open_speech_p50),
        _ratio(output.open_speech_p90, own.open_speech_p90),
    )


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference < MIN_OWN_OPENING:
        return None
    return value / reference


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _nanmean_or_none(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None
