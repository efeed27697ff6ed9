"""Per-output-frame mouth targets for the classic engine: how far to open, in this person's range.

The audio drive says *when* and *how much* relative to the speech (0..1); the person's own
talking frames say how far *this* person opens. The drive's speech-time distribution is mapped
onto the person's (median → median, 90th percentile → 90th percentile), so the output opens as
wide as the person really does. Photos and templates without their own speech get the range of
real speakers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talkingface.vocabulary import Articulation

# Inner-lip gap in S units (eye-corner distance) over the speech frames of the six talking
# clips in shared/media, measured with the renderer's tracker: p50 0.067-0.121, p90 0.086-0.196.
GENERIC_P50 = 0.095
GENERIC_P90 = 0.16
MIN_OWN_SPEECH_FRAMES = 25  # one second of the person talking
MIN_TALKING_SPREAD = 0.03  # S units between p10 and p90: less is a mouth that never moved
# The drive's own quantiles over speech; typical clips in every language sit near these.
DRIVE_Q50_BOUNDS = (0.2, 0.5)
DRIVE_Q90_BOUNDS = (0.45, 0.9)
DRIVE_Q_DEFAULT = (0.35, 0.7)  # for drives with too little speech to measure (0.2 s clips)
MIN_DRIVE_SPEECH_FRAMES = 12
OVERSHOOT = 1.3  # the widest opening may exceed the person's p90 by this much
# What a tracker sees on the output is less than the target opening: the warp's lips meet
# with a margin that hides the teeth sliver, and a real mouth laid at a smaller opening than
# its own loses the middle of its interior. Measured with the independent meter over the
# quality matrix (own-range templates, English and Mandarin drives), the targets are scaled
# so the output's median and 90th-percentile openings land on the person's own.
RENDER_GAIN_P50 = 1.35
RENDER_GAIN_P90 = 1.2
SPEECH_FLOOR = 0.3  # of the person's median opening, kept between syllables


@dataclass(frozen=True, slots=True)
class OpeningRange:
    """How far a person opens while talking (inner-lip gap, S units)."""

    p50: float
    p90: float
    source: str  # "own" (the template's talking frames) or "generic" (real speakers)


GENERIC_RANGE = OpeningRange(GENERIC_P50, GENERIC_P90, "generic")


def speaking_range(frame_gaps: np.ndarray, own_speech: np.ndarray | None) -> OpeningRange:
    """The person's opening range from their own talking frames, else the generic range."""
    if own_speech is None:
        return GENERIC_RANGE
    count = min(frame_gaps.shape[0], own_speech.shape[0])
    gaps = frame_gaps[:count][own_speech[:count]]
    gaps = gaps[np.isfinite(gaps)]
    if gaps.size < MIN_OWN_SPEECH_FRAMES:
        return GENERIC_RANGE
    p10, p50, p90 = (float(v) for v in np.percentile(gaps, [10, 50, 90]))
    if p90 - p10 < MIN_TALKING_SPREAD:
        return GENERIC_RANGE
    p50 = float(np.clip(p50, 0.04, 0.16))
    return OpeningRange(p50, float(np.clip(p90, p50 + 0.02, 0.26)), "own")


def gap_targets(drive: Articulation, opening: OpeningRange) -> np.ndarray:
    """(N,) float32 target inner-lip gap per output frame, S units (0 = lips together).

    The drive's opening (already gated to silence and cut by lip closures) is mapped through
    (0, 0) → (q50, p50) → (q90, p90), continuing with the same slope up to OVERSHOOT × p90,
    where q50/q90 are the drive's own speech-time percentiles. Closures press the lips shut.
    """
    open_ = drive.open_f32.astype(np.float64)
    spoken = open_[drive.speech]
    if spoken.size >= MIN_DRIVE_SPEECH_FRAMES:
        q50 = float(np.clip(np.percentile(spoken, 50), *DRIVE_Q50_BOUNDS))
        q90 = float(np.clip(np.percentile(spoken, 90), *DRIVE_Q90_BOUNDS))
    else:
        q50, q90 = DRIVE_Q_DEFAULT
    q90 = max(q90, q50 + 0.1)
    slope = (opening.p90 - opening.p50) / (q90 - q50)
    top = min(opening.p90 + slope * (1.0 - q90), OVERSHOOT * opening.p90)
    p50 = min(RENDER_GAIN_P50 * opening.p50, 0.9 * RENDER_GAIN_P90 * opening.p90)
    levels = [0.0, p50, RENDER_GAIN_P90 * opening.p90, RENDER_GAIN_P90 * top]
    gaps = np.interp(open_, [0.0, q50, q90, 1.0], levels)
    # Between syllables of running speech real lips rarely meet (only closures press them);
    # silences longer than the voice-activity bridge (150 ms) still close fully.
    gaps = np.where(drive.speech, np.maximum(gaps, SPEECH_FLOOR * opening.p50), gaps)
    gaps *= 1.0 - np.clip(drive.closure_f32, 0.0, 1.0)
    return gaps.astype(np.float32)
