"""A grainy template keeps its look: the output is encoded at the CRF that keeps its detail."""

from __future__ import annotations

import uuid
from pathlib import Path

from talkingface.config import load_settings
from talkingface.engines.base import get_engine
from talkingface.media.audio import load_audio
from talkingface.pipeline.attempt import GenerateRequest, run_attempt
from talkingface.quality import evaluate
from talkingface.samples import write_wav
from talkingface.vocabulary import JobId, JobTag

GRAINY_TEMPLATE = "video_en_female_512x512_mpeg4_talking.mp4"  # MPEG-4 Part 2, visible grain
SPEECH = "audio_en_male_radio_8s_16k_stereo.wav"


def test_a_grainy_template_keeps_its_detail_outside_the_mouth(
    shared_media: Path, tmp_path: Path
) -> None:
    # Given 3 s of speech and a template whose grain the default CRF 18 smooths (37 dB)
    speech = load_audio(shared_media / SPEECH)
    audio = write_wav(
        tmp_path / "speech.wav",
        speech.samples_f32[: 3 * speech.sample_rate_hz],
        speech.sample_rate_hz,
    )
    template = shared_media / GRAINY_TEMPLATE
    settings = load_settings(cache={"dir": tmp_path / "cache"})

    # When it is rendered, and rendered again from the cached template
    outputs = []
    for run in range(2):
        output = tmp_path / f"out{run}.mp4"
        request = GenerateRequest(JobTag(JobId(uuid.uuid4().hex[:12])), audio, template, output)
        result = run_attempt(request, get_engine("classic"), settings)
        assert result.template_from_cache == (run == 1)
        outputs.append(output)

    # Then everything outside the mouth keeps 40 dB against the template (the meter's mouth)
    for output in outputs:
        report = evaluate(output, audio_path=audio, template_path=template)
        assert report.outside_mouth_psnr_db is not None
        assert report.outside_mouth_psnr_db >= 40.0, report.outside_mouth_psnr_db
    # and the cached template remembered what it measured, so both runs encode alike
    assert (
        abs(outputs[0].stat().st_size - outputs[1].stat().st_size)
        < 0.02 * outputs[0].stat().st_size
    )
