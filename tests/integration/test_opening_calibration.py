"""The classic engine's opening calibration: measured once per talking template, cached, used.

Whether the calibrated renders open as far as the person does is judged by the independent
meter in bench/quality_matrix.py; here, the mechanics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from talkingface.engines.classic import ClassicRenderer
from talkingface.engines.opening_calibration import GAIN_LIMITS
from tests.integration.template_fixtures import prepare_whole

TALKING_TEMPLATE = "video_en_female_older_512x512_talking.mp4"  # she speaks English
SILENT_TEMPLATE = "video_male_asian_glasses_720x1280_noaudio_talking.mp4"  # no audio track


def test_a_talking_template_is_calibrated_once_and_the_gain_is_cached(
    shared_media: Path, tmp_path: Path
) -> None:
    fresh = prepare_whole(shared_media / TALKING_TEMPLATE, tmp_path)
    gain = fresh.engine_data["opening_gain"]
    assert gain.shape == (2,)
    assert np.all((gain >= GAIN_LIMITS[0]) & (gain <= GAIN_LIMITS[1]))
    assert not np.any(np.isin(gain, GAIN_LIMITS))  # measured, not clipped to a limit
    cached = prepare_whole(shared_media / TALKING_TEMPLATE, tmp_path)
    assert cached.from_cache
    np.testing.assert_array_equal(cached.engine_data["opening_gain"], gain)
    # and a job on it asks for openings scaled by it
    assert fresh.own_drive is not None
    opening = ClassicRenderer(fresh, fresh.own_drive).opening
    assert opening.render_gain == (float(gain[0]), float(gain[1]))


def test_a_template_without_speech_of_its_own_has_no_person_to_match(
    shared_media: Path, photo_png: Path, tmp_path: Path
) -> None:
    for template in (
        prepare_whole(photo_png, tmp_path),
        prepare_whole(shared_media / SILENT_TEMPLATE, tmp_path),
    ):
        assert "opening_gain" not in template.engine_data, template.source_name
