"""The person's own articulation model: learned from a talking template, cached, reported, used.

Quality is read with the independent mouth meter (dlib), not the tracker that drives the render.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from talkingface.config import load_settings
from talkingface.engines.base import get_engine
from talkingface.media.audio import load_audio
from talkingface.media.decode import iter_frames
from talkingface.media.probe import choose_output_fps, probe
from talkingface.mouth_meter import MouthMeter
from talkingface.pipeline.attempt import GenerateRequest, GenerateResult, run_attempt
from talkingface.quality import lagged_correlation, speech_envelope
from talkingface.vocabulary import JobId, JobTag
from tests.integration.template_fixtures import prepare_whole

ENGLISH_TEMPLATE = "video_en_female_older_512x512_talking.mp4"  # she speaks English
MANDARIN_AUDIO = "audio_zh_female_5s_24k.wav"
FOIL_AUDIO = "audio_en_male_radio_8s_16k_stereo.wav"


def _generate(audio: Path, video: Path, tmp_path: Path) -> GenerateResult:
    request = GenerateRequest(
        JobTag(JobId(uuid.uuid4().hex[:12])), audio, video, tmp_path / "out.mp4"
    )
    settings = load_settings(cache={"dir": tmp_path / "cache"})
    return run_attempt(request, get_engine("classic"), settings)


def test_model_is_learned_cached_and_read_back_identically(
    shared_media: Path, tmp_path: Path
) -> None:
    fresh = prepare_whole(shared_media / ENGLISH_TEMPLATE, tmp_path)
    cached = prepare_whole(shared_media / ENGLISH_TEMPLATE, tmp_path)

    assert fresh.person_model is not None and not fresh.from_cache
    assert cached.from_cache and cached.person_model is not None
    for name, array in fresh.person_model.to_arrays().items():
        np.testing.assert_array_equal(cached.person_model.to_arrays()[name], array, err_msg=name)
    assert cached.articulation_summary() == fresh.articulation_summary()
    meta = (tmp_path / fresh.key / "meta.json").read_text(encoding="utf-8")
    assert '"articulation"' in meta and '"held_out_r"' in meta


def test_fit_is_reported_with_its_held_out_figures(shared_media: Path, tmp_path: Path) -> None:
    result = _generate(shared_media / MANDARIN_AUDIO, shared_media / ENGLISH_TEMPLATE, tmp_path)
    summary = result.to_dict()["articulation"]
    assert isinstance(summary, dict)
    fit = summary["person_fit"]
    assert set(fit["held_out_r"]) == {"gap", "width", "upper_lip", "lower_lip"}
    assert fit["held_out_frames"] >= 25 and fit["training_frames"] > fit["held_out_frames"]
    assert summary["model"] == (
        "person" if fit["held_out_r"]["gap"] >= fit["threshold_r"] else "generic"
    )


def test_a_photo_falls_back_to_the_generic_articulation(photo_png: Path, tmp_path: Path) -> None:
    template = prepare_whole(photo_png, tmp_path)
    assert template.person_model is None
    summary = template.articulation_summary()
    assert summary == {"model": "generic", "reason": "still image", "person_fit": None}


@pytest.mark.slow
def test_english_fitted_model_drives_mandarin_with_lips_in_sync(
    shared_media: Path, tmp_path: Path
) -> None:
    # Given a template whose own speech is English and whose model fits well
    template = prepare_whole(shared_media / ENGLISH_TEMPLATE, tmp_path / "prep")
    assert template.person_model is not None and template.person_model.is_good
    # When Mandarin drives it
    audio = shared_media / MANDARIN_AUDIO
    result = _generate(audio, shared_media / ENGLISH_TEMPLATE, tmp_path)
    assert result.articulation["model"] == "person"
    # Then an independent eye sees the lips follow the Mandarin, not an unrelated clip...
    opening = _independent_opening(result.output_path)
    envelope, speech = speech_envelope(load_audio(audio), fps=result.fps, frame_count=len(opening))
    foil, _ = speech_envelope(
        load_audio(shared_media / FOIL_AUDIO), fps=result.fps, frame_count=len(opening)
    )
    r, lag, _ = lagged_correlation(opening, envelope)
    r_foil, _, _ = lagged_correlation(opening, foil)
    assert r >= 0.5 and abs(lag) <= 1
    assert r - r_foil >= 0.2
    # ...and opens about as wide as she does in her own footage.
    own_opening = _independent_opening(shared_media / ENGLISH_TEMPLATE)
    _, own_speech = speech_envelope(
        load_audio(shared_media / ENGLISH_TEMPLATE), fps=result.fps, frame_count=len(own_opening)
    )
    ratio = np.nanpercentile(opening[speech], 50) / np.nanpercentile(own_opening[own_speech], 50)
    assert 0.7 <= ratio <= 1.4


def _independent_opening(video: Path) -> np.ndarray:
    info = probe(video)
    meter = MouthMeter()
    readings = [meter.read(f) for f in iter_frames(video, fps=choose_output_fps(info), info=info)]
    return np.array([np.nan if r is None else r.opening for r in readings])
