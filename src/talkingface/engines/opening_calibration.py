"""How far this template's renders really open, measured once when the template is prepared.

The targets (mouth_targets) ask for the person's own speech-time openings plus margins for
what a render loses. How much it loses depends on the person: on the six talking clips of
the shared media the renderer's own tracker read the rendered median 0.92-1.22x the target's
wish and the 90th percentile 0.91-1.16x, in both directions, so no one margin fits. Here the
template is dubbed with its own speech, half its length out of step (the first
CALIBRATION_FRAMES frames through the job's own render path: the voice under a frame is
not the one it was filmed with, as in a real job, so the real mouths laid come from other
frames), the renderer's tracker reads the output back, and the ratio of the person's
own median and 90th-percentile opening to what was rendered becomes a gain on the targets.

It is the renderer checking itself against its own tracker, so it is a calibration, never
a quality figure: `evaluate` judges the output with a landmark model of another family.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from talkingface.blend import blend_region
from talkingface.engines.mouth_frame import mouth_frame
from talkingface.engines.mouth_targets import MIN_OWN_SPEECH_FRAMES
from talkingface.face.track import FaceTracker
from talkingface.vocabulary import Articulation, JobId, JobTag, TrackedFrame

if TYPE_CHECKING:
    from talkingface.engines.classic import ClassicRenderer
    from talkingface.engines.prepared_template import PreparedTemplate

logger = logging.getLogger(__name__)

CALIBRATION_FRAMES = 250  # 10 s at 25 fps: about 2 s of decoding, rendering and tracking
GAIN_LIMITS = (0.7, 1.4)  # beyond these the measurement is more likely wrong than the render
CALIBRATION_TAG = JobTag(JobId("opening-calibration"))


def opening_gain(
    template: PreparedTemplate,
    frames: Iterable[np.ndarray],
    renderer_for: type[ClassicRenderer],
) -> np.ndarray | None:
    """(2,) float32 gains on the median and 90th-percentile targets that make this template's
    renders open as far as the person does, or None: no speech of its own to match, too few
    speech frames read back, or a person range that is not their own."""
    own = template.own_drive
    if own is None:
        return None
    count = min(CALIBRATION_FRAMES, own.frame_count, template.frame_count)
    drive = _rolled(own, count, count // 2)
    renderer = renderer_for(template, drive)
    if renderer.opening.source != "own":
        return None
    tracker = FaceTracker(fps=template.fps)
    read = np.full(count, np.nan)
    for index, image in enumerate(frames):
        if index >= count:
            break
        present = bool(template.track.present[index])
        landmarks = template.track.landmarks_f32[index] if present else None
        item = TrackedFrame(CALIBRATION_TAG, index, index, image, landmarks)
        seen = tracker.process(blend_region(renderer.render(item)).image)
        if seen is not None:
            read[index] = mouth_frame(seen.landmarks_f32).gap_at_center()
    spoken = read[drive.speech & np.isfinite(read)]
    if spoken.size < MIN_OWN_SPEECH_FRAMES:
        return None
    rendered50, rendered90 = (float(v) for v in np.percentile(spoken, [50, 90]))
    if rendered50 <= 1e-3:
        return None
    gain = np.clip(
        [renderer.opening.p50 / rendered50, renderer.opening.p90 / rendered90], *GAIN_LIMITS
    ).astype(np.float32)
    logger.info(
        "opening calibrated: own p50 %.3f p90 %.3f, rendered %.3f %.3f, gain %.2f %.2f",
        renderer.opening.p50,
        renderer.opening.p90,
        rendered50,
        rendered90,
        gain[0],
        gain[1],
        extra={"event": "opening_calibrated", "gain": [float(g) for g in gain]},
    )
    return gain


def _rolled(drive: Articulation, count: int, shift: int) -> Articulation:
    """The drive's first `count` frames, rotated by `shift` frames."""

    def first(values: np.ndarray) -> np.ndarray:
        return np.roll(values[:count], shift, axis=0)

    return replace(
        drive,
        speech=first(drive.speech),
        loudness_f32=first(drive.loudness_f32),
        open_f32=first(drive.open_f32),
        width_f32=first(drive.width_f32),
        closure_f32=first(drive.closure_f32),
        spectral_f32=first(drive.spectral_f32),
    )
