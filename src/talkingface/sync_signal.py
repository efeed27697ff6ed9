"""Signal maths behind the sync figures: a per-frame speech envelope and lagged correlation.

Both work on audio and arrays alone (no face tracking, no engine code), so `evaluate`, the
foil and tests share one definition of "the sound" and "follows".
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import butter, sosfilt

from talkingface.vocabulary import AudioClip

MAX_SYNC_LAG_FRAMES = 5
MIN_PAUSE_S = 0.2  # quieter stretches shorter than this still count as speech
MIN_BURST_S = 0.06  # louder blips shorter than this inside a pause are clicks, not speech
ENVELOPE_BAND_HZ = (700.0, 2500.0)  # open-vowel formants (F1 high, F2); not nasals or hiss
SILENCE_DBFS = -70.0  # audio whose loud level is below this is treated as all silence


def speech_envelope(
    audio: AudioClip, *, fps: float, frame_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-video-frame speech envelope 0..1 and a speech flag.

    Frame i covers audio [i/fps, (i+1)/fps); audio missing past the end counts as silence.
    The envelope is the loudness (power^(1/3), Stevens' law) of the 700-2500 Hz band, where
    open vowels put their energy and closed-lip nasals do not, smoothed over ~5 frames and
    scaled so its loud (95th percentile) level is 1. On four real talking clips in
    shared/media it follows mouth opening better than wideband log-RMS did (peak r 0.16-0.58,
    mean 0.36, against 0.05-0.69, mean 0.26).
    The flag uses the wideband log level: a frame is silent only inside a quiet stretch of at
    least MIN_PAUSE_S.
    """
    if frame_count == 0:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    level_db = _smooth(
        10.0 * np.log10(_frame_power(audio.samples_f32, audio, fps, frame_count) + 1e-10), 3
    )
    loud_db = float(np.percentile(level_db, 95))
    if loud_db < SILENCE_DBFS:
        return np.zeros(frame_count, np.float32), np.zeros(frame_count, bool)
    band = _band_pass(audio)
    loudness = _smooth(np.cbrt(_frame_power(band, audio, fps, frame_count)), 5)
    envelope = np.clip(loudness / max(float(np.percentile(loudness, 95)), 1e-9), 0.0, 1.0)
    floor_db = float(np.percentile(level_db, 5))
    threshold_db = max(loud_db - 30.0, floor_db + 0.4 * (loud_db - floor_db))
    active = _fill_short_runs(level_db > threshold_db, value=True, max_len=round(MIN_BURST_S * fps))
    silent = _fill_short_runs(~active, value=True, max_len=math.ceil(MIN_PAUSE_S * fps) - 1)
    return envelope.astype(np.float32), ~silent


def _frame_power(samples: np.ndarray, audio: AudioClip, fps: float, frame_count: int) -> np.ndarray:
    """Mean power of each video frame's slice of `samples` (zero past the end of the audio)."""
    power = samples.astype(np.float64) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    edges = np.round(np.arange(frame_count + 1) * audio.sample_rate_hz / fps).astype(np.int64)
    clipped = np.clip(edges, 0, power.shape[0])
    window = np.maximum(np.diff(edges), 1)
    return np.asarray((cumulative[clipped[1:]] - cumulative[clipped[:-1]]) / window)


def _band_pass(audio: AudioClip) -> np.ndarray:
    """The ENVELOPE_BAND_HZ part of the signal (4th-order Butterworth, causal: ~1 ms delay)."""
    nyquist_hz = audio.sample_rate_hz / 2.0
    low_hz, high_hz = ENVELOPE_BAND_HZ
    high_hz = min(high_hz, 0.9 * nyquist_hz)
    sos = butter(4, [low_hz, high_hz], btype="bandpass", fs=audio.sample_rate_hz, output="sos")
    return np.asarray(sosfilt(sos, audio.samples_f32.astype(np.float64)))


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Centred Hann-weighted moving average over `width` frames (odd), edges held."""
    weights = np.hanning(width + 2)[1:-1]
    padded = np.pad(values, width // 2, mode="edge")
    return np.convolve(padded, weights / weights.sum(), mode="valid")


def _fill_short_runs(flags: np.ndarray, *, value: bool, max_len: int) -> np.ndarray:
    """Set runs of `value` no longer than `max_len` to `not value`."""
    out = flags.copy()
    if max_len <= 0:
        return out
    padded = np.concatenate([[False], flags == value, [False]]).astype(np.int8)
    starts = np.flatnonzero(np.diff(padded) == 1)
    ends = np.flatnonzero(np.diff(padded) == -1)
    for start, end in zip(starts, ends, strict=True):
        if end - start <= max_len:
            out[start:end] = not value
    return out


def lagged_correlation(
    a: np.ndarray, b: np.ndarray, max_lag: int = MAX_SYNC_LAG_FRAMES
) -> tuple[float, int, float]:
    """(peak Pearson r, its lag, r at lag 0) of `a` against `b` over lags -max_lag..max_lag.

    At lag k, a[t + k] is paired with b[t]: a positive lag means `a` follows `b` (the mouth
    moves after the sound). NaN samples are left out; ties go to the smaller |lag|. Returns
    (nan, 0, nan) when no lag has enough varying samples.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    n = min(a.shape[0], b.shape[0])
    by_lag: dict[int, float] = {}
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            by_lag[lag] = _pearson(a[lag:n], b[: max(n - lag, 0)])
        else:
            by_lag[lag] = _pearson(a[: max(n + lag, 0)], b[-lag:n])
    finite = {lag: r for lag, r in by_lag.items() if math.isfinite(r)}
    if not finite:
        return math.nan, 0, math.nan
    best = max(finite, key=lambda lag: (finite[lag], -abs(lag)))
    return finite[best], best, by_lag[0]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    valid = np.isfinite(x) & np.isfinite(y)
    if valid.sum() < 3:
        return math.nan
    xv = x[valid] - x[valid].mean()
    yv = y[valid] - y[valid].mean()
    denominator = math.sqrt(float((xv * xv).sum()) * float((yv * yv).sum()))
    return float((xv * yv).sum()) / denominator if denominator > 1e-12 else math.nan
