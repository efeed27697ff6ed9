"""PreparedTemplate: a template video's face track and engine data, the input engines render from.

It lives with the engines, not in templates.py, because `LipSyncEngine.start_job` takes one
while templates.py (which builds and caches them) calls the engines: keeping the value here
lets both import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from talkingface.engines.person_model import PersonModel
from talkingface.vocabulary import Articulation, FaceTrack


@dataclass(frozen=True, slots=True)
class PreparedTemplate:
    """One template video, tracked and prepared for one engine (or loaded from the cache)."""

    key: str
    source_name: str
    fps: float
    frame_count: int  # frames tracked (a prefix of the template when it is longer than needed)
    complete: bool  # True when every template frame was tracked
    width: int
    height: int
    is_still_image: bool
    track: FaceTrack
    own_drive: Articulation | None  # the template's own speech, when it has some
    engine_name: str
    engine_data: dict[str, np.ndarray]
    prepare_s: float
    person_model: PersonModel | None = None  # this person's audio → mouth model (talking only)
    # PSNR (dB) of the template's first second re-encoded at each probed CRF (encode_fidelity)
    reencode_psnr_db: dict[int, float] = field(default_factory=dict)
    from_cache: bool = False

    def covers(self, frame_count: int) -> bool:
        return self.complete or self.frame_count >= frame_count

    def articulation_summary(self) -> dict[str, object]:
        """How the mouth is driven for this template (metadata, generate --json)."""
        if self.person_model is None:
            reason = (
                "still image"
                if self.is_still_image
                else "no speech of its own"
                if self.own_drive is None
                else "too few frames with a face to learn from"
            )
            return {"model": "generic", "reason": reason, "person_fit": None}
        fit = self.person_model.summary()
        if fit["used"]:
            return {"model": "person", "reason": "good held-out fit", "person_fit": fit}
        return {"model": "generic", "reason": "poor held-out fit", "person_fit": fit}
