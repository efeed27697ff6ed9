"""The foil for `evaluate`: unrelated speech whose envelope a well-synced mouth must not follow.

A mouth that opens and closes at a speech-like rhythm correlates a little with *any* speech.
The margin (correlation with the driving speech minus correlation with a foil) tells lip sync
from mere talking motion. The default foil is built in code, deterministically: short phrases
of synthetic syllables from talkingface.samples at a slower rhythm than the demo speech
(0.24-0.30 s syllables against 0.15-0.21 s, pauses of 0.8-1.3 s against 0.35-0.6 s), looped
to cover the video. Before use it is rotated so that its envelope is as uncorrelated with
the driving envelope as it can be (lags ±5 frames included): a foil that happened to share
the drive's rhythm, e.g. when the drive is itself synthetic, would hide a real margin.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from talkingface.samples import synth_syllables
from talkingface.sync_signal import lagged_correlation, speech_envelope
from talkingface.vocabulary import AudioClip

FOIL_SEED = 8101  # any fixed value; changing it changes every reported margin slightly
FOIL_PHRASE_COUNT = 14  # about 37 s of foil before it loops
FOIL_SYLLABLE_S = (0.24, 0.27, 0.30)
FOIL_SAMPLE_RATE_HZ = 16000
FOIL_OFFSET_CANDIDATES = 120  # rotations tried when decorrelating from the drive
_SYLLABLES = ("ba", "po", "ma", "ti", "ke", "su", "fa", "no", "he", "bu", "a", "o", "mi", "ta")


@lru_cache(maxsize=1)
def default_foil() -> AudioClip:
    """About 37 s of slow synthetic speech with long pauses (the same samples every call)."""
    rng = np.random.default_rng(FOIL_SEED)
    pieces: list[np.ndarray] = []
    for number in range(FOIL_PHRASE_COUNT):
        count = int(rng.integers(3, 8))
        syllables = [str(rng.choice(_SYLLABLES)) for _ in range(count)]
        phrase = synth_syllables(
            syllables,
            syllable_s=FOIL_SYLLABLE_S[number % len(FOIL_SYLLABLE_S)],
            sample_rate_hz=FOIL_SAMPLE_RATE_HZ,
            seed=FOIL_SEED + number,
        )  # 0.4 s of silence either side: pauses of 0.8 s at least
        pieces.append(phrase.samples_f32)
        extra_pause = round(float(rng.uniform(0.0, 0.5)) * FOIL_SAMPLE_RATE_HZ)
        pieces.append(np.zeros(extra_pause, np.float32))
    return AudioClip(np.concatenate(pieces).astype(np.float32), FOIL_SAMPLE_RATE_HZ)


def looped(audio: AudioClip, duration_s: float) -> AudioClip:
    """`audio` repeated end to end until it lasts at least `duration_s`."""
    needed = math.ceil(duration_s * audio.sample_rate_hz)
    length = max(1, audio.samples_f32.shape[0])
    repeats = max(1, math.ceil(needed / length))
    return AudioClip(np.tile(audio.samples_f32, repeats), audio.sample_rate_hz)


def foil_envelope(
    foil: AudioClip,
    *,
    fps: float,
    frame_count: int,
    drive_envelope: np.ndarray | None = None,
) -> np.ndarray:
    """(frame_count,) speech envelope of the foil, looped to cover the video.

    With `drive_envelope`, the looped foil is started at the rotation (one of
    FOIL_OFFSET_CANDIDATES evenly spaced over one foil period) whose peak |r| against the
    drive over lags ±5 is smallest; without it, the foil starts at its beginning.
    """
    period_frames = max(1, math.floor(foil.duration_s * fps))
    search = drive_envelope is not None and frame_count > 0
    span_frames = frame_count + (period_frames if search else 0)
    envelope, _ = speech_envelope(
        looped(foil, (span_frames + 1) / fps), fps=fps, frame_count=span_frames
    )
    if drive_envelope is None or not search:
        return envelope[:frame_count]
    offsets = np.unique(
        np.linspace(0, period_frames - 1, min(period_frames, FOIL_OFFSET_CANDIDATES)).round()
    ).astype(int)
    best = min(
        offsets,
        key=lambda offset: _peak_abs_correlation(
            envelope[offset : offset + frame_count], drive_envelope
        ),
    )
    return envelope[best : best + frame_count]


def _peak_abs_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |r| of `a` against `b` over lags ±MAX_SYNC_LAG_FRAMES (0 when undefined)."""
    peak, _, _ = lagged_correlation(a, b)
    trough, _, _ = lagged_correlation(-a, b)
    values = [abs(v) for v in (peak, trough) if math.isfinite(v)]
    return max(values, default=0.0)
