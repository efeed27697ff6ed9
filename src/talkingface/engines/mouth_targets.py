"""Per-output-frame mouth targets for the classic engine: how far to open, in this person's range.

The audio drive says *when* and *how much* relative to the speech (0..1); the person's own
talking frames say how far *this* person opens. The drive's speech-time distribution is mapped
onto the person's (median → median, 90th percentile → 90th percentile, and below the median
the person's own quantiles, tapered towards closed), so the output opens as wide and as often
as the person really does. Photos and templates without their own speech get the range of
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
# What a tracker sees on the output falls short of the target opening by a near-constant
# margin, not a proportion: the warp's lips meet with a margin that hides the teeth sliver,
# and a real mouth laid narrower than its own loses the middle of its interior. Measured with
# the renderer's tracker on the quality matrix's outputs (six people, English and Mandarin),
# the shortfall was 0.022 ± 0.005 S at the median opening for every person, from the smallest
# mouth (p50 0.067 S) to the widest (0.121 S); a proportional gain over-opened wide mouths and
# under-opened small ones. The independent meter reads rendered mouths about 5 % narrower at
# the median than the renderer's tracker, hence the small gain on top.
RENDER_GAIN_P50 = 1.08
RENDER_MARGIN_P50 = 0.022  # S units
RENDER_MARGIN_P90 = 0.017
SPEECH_FLOOR = 0.3  # of the person's median opening, kept between syllables
QUANTILE_LEVELS = tuple(np.linspace(5.0, 95.0, 19))  # percent
# Matching the lower half of a person's distribution exactly made the suit man's syllables run
# together (independent sync 0.69 -> 0.54 on the English clip); tapering it to 0 under the 40th
# percentile restored 0.71 and kept his median opening at 0.93x his own.
VALLEY_LEVEL = 40.0


@dataclass(frozen=True, slots=True)
class OpeningRange:
    """How far a person opens while talking (inner-lip gap, S units)."""

    p50: float
    p90: float
    source: str  # "own" (the template's talking frames) or "generic" (real speakers)
    # The whole speech-time distribution at QUANTILE_LEVELS, for a person measured talking:
    # people differ in shape, not only in scale (one keeps the lips parted through a sentence,
    # another closes between syllables), and a viewer sees the shape.
    quantiles: tuple[float, ...] | None = None
    # Gains on the median and 90th-percentile targets measured for this template
    # (opening_calibration): how much more, or less, its renders must be asked to open.
    render_gain: tuple[float, float] = (1.0, 1.0)


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
    quantiles = np.percentile(gaps, QUANTILE_LEVELS)
    kept50 = float(np.clip(p50, 0.04, 0.16))
    kept90 = float(np.clip(p90, kept50 + 0.02, 0.26))
    if kept50 != p50 or kept90 != p90:  # an odd measurement: keep the shape, not the scale
        quantiles = np.interp(quantiles, [0.0, p50, p90], [0.0, kept50, kept90])
    return OpeningRange(kept50, kept90, "own", tuple(float(q) for q in quantiles))


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
    want50, want90 = rendered_levels(opening)
    levels = [0.0, want50, want90, want90 * top / opening.p90]
    gaps = np.interp(open_, [0.0, q50, q90, 1.0], levels)
    # Between syllables of running speech real lips rarely meet (only closures press them);
    # silences longer than the voice-activity bridge (150 ms) still close fully.
    gaps = np.where(drive.speech, np.maximum(gaps, SPEECH_FLOOR * opening.p50), gaps)
    gaps *= 1.0 - np.clip(drive.closure_f32, 0.0, 1.0)
    if opening.quantiles is not None:
        return _on_distribution(gaps, drive.speech, opening).astype(np.float32)
    return _on_levels(gaps, drive.speech, want50, want90).astype(np.float32)


def rendered_levels(opening: OpeningRange) -> tuple[float, float]:
    """Target median and 90th-percentile openings during speech that render as `opening`."""
    gain50, gain90 = opening.render_gain
    want50 = gain50 * (RENDER_GAIN_P50 * opening.p50 + RENDER_MARGIN_P50)
    want90 = max(gain90 * (opening.p90 + RENDER_MARGIN_P90), want50 + 0.02)
    return want50, want90


def rendered_quantiles(opening: OpeningRange) -> np.ndarray:
    """Targets at QUANTILE_LEVELS that render as the person's own quantiles: the median and
    90th-percentile margins of rendered_levels, blended by level; openings under half the
    median get a proportionally smaller margin, so lips that nearly meet still nearly meet."""
    assert opening.quantiles is not None
    own = np.asarray(opening.quantiles, dtype=np.float64)
    levels = np.asarray(QUANTILE_LEVELS)
    weight = np.clip((levels - 50.0) / 40.0, 0.0, 1.0)  # 0 up to the median, 1 from p90
    gain = (1.0 - weight) * RENDER_GAIN_P50 + weight * 1.0
    margin = (1.0 - weight) * RENDER_MARGIN_P50 + weight * RENDER_MARGIN_P90
    margin = margin * np.clip(own / (0.5 * opening.p50), 0.0, 1.0)
    calibrated = (1.0 - weight) * opening.render_gain[0] + weight * opening.render_gain[1]
    want = calibrated * (gain * own + margin)
    # Above the median the spacing stays even (median to p90): a person whose openings bunch
    # up there would otherwise get loud syllables that all look alike, and the rhythm is lost.
    want50, want90 = rendered_levels(opening)
    upper = levels >= 50.0
    want[upper] = want50 + (levels[upper] - 50.0) / 40.0 * (want90 - want50)
    # Below VALLEY_LEVEL the valleys between syllables are deepened in proportion to the level:
    # a person who barely closes between syllables, copied exactly, shows no rhythm.
    want = want * np.clip(levels / VALLEY_LEVEL, 0.0, 1.0)
    return np.maximum.accumulate(want)


def _on_distribution(gaps: np.ndarray, speech: np.ndarray, opening: OpeningRange) -> np.ndarray:
    """`gaps` remapped (monotone, 0 stays 0) so that its speech-time distribution is the
    person's own at every QUANTILE_LEVELS, plus the render margins.

    Frames the drive holds at one value (the speech floor, say) all take the lowest level
    they span: they are the valleys between syllables.
    """
    spoken = gaps[speech]
    if spoken.size < MIN_DRIVE_SPEECH_FRAMES:
        want50, want90 = rendered_levels(opening)
        return _on_levels(gaps, speech, want50, want90)
    have = np.percentile(spoken, QUANTILE_LEVELS)
    want = rendered_quantiles(opening)
    keep = np.concatenate([[True], np.diff(have) > 1e-5]) & (have > 1e-4)
    have, want = have[keep], want[keep]
    if have.size < 2:
        return gaps
    top = max(float(gaps.max()), have[-1] + 1e-4)
    slope = (want[-1] - want[max(0, have.size - 3)]) / max(
        have[-1] - have[max(0, have.size - 3)], 1e-4
    )
    ceiling = min(want[-1] + slope * (top - have[-1]), OVERSHOOT * max(want[-1], opening.p90))
    ceiling = max(ceiling, want[-1])
    return np.interp(gaps, [0.0, *have, top], [0.0, *want, ceiling])


def _on_levels(gaps: np.ndarray, speech: np.ndarray, want50: float, want90: float) -> np.ndarray:
    """`gaps` remapped (monotone, 0 stays 0) so that its speech-time median and 90th percentile
    are exactly `want50` and `want90`.

    The drive-to-opening map above hits them only when the drive's quantiles sit inside their
    bounds; the speech floor and the closures move them again, by 5-20 % with real clips,
    differently per language. This pins what a viewer sees to the person's range.
    """
    spoken = gaps[speech]
    if spoken.size < MIN_DRIVE_SPEECH_FRAMES:
        return gaps
    g50, g90 = (float(v) for v in np.percentile(spoken, [50, 90]))
    if g50 <= 1e-4 or g90 <= g50 + 1e-4:
        return gaps
    top = max(float(gaps.max()), g90 + 1e-4)
    ceiling = max(want90 * top / g90, want90) if top > g90 else want90
    ceiling = min(ceiling, OVERSHOOT * want90)
    return np.interp(gaps, [0.0, g50, g90, top], [0.0, want50, want90, ceiling])
