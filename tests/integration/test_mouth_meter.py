"""The independent mouth meter on a real talking clip: it sees the face and hears the speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from talkingface.foil import default_foil, foil_envelope
from talkingface.media.audio import load_audio
from talkingface.media.decode import iter_frames
from talkingface.media.probe import choose_output_fps, probe
from talkingface.mouth_meter import MouthMeter
from talkingface.sync_signal import lagged_correlation, speech_envelope

SUIT_MAN = "video_en_male_asian_suit_700x700_talking.mp4"  # variable frame rate, own speech


@pytest.mark.slow
def test_meter_reads_every_frame_and_follows_the_clips_own_speech_not_a_foil(
    shared_media: Path,
) -> None:
    # Given a real talking clip, read frame by frame at the rate the pipeline would use
    video = shared_media / SUIT_MAN
    info = probe(video)
    fps = choose_output_fps(info)
    meter = MouthMeter()
    readings = [meter.read(frame) for frame in iter_frames(video, fps=fps, info=info)]

    # When its opening is correlated with its own speech and with the foil
    opening = np.array([np.nan if r is None else r.opening for r in readings])
    own, speech = speech_envelope(load_audio(video), fps=fps, frame_count=opening.shape[0])
    foil = foil_envelope(default_foil(), fps=fps, frame_count=opening.shape[0])
    own_peak, own_lag, _ = lagged_correlation(opening, own)
    foil_peak, _, _ = lagged_correlation(opening, foil)

    # Then the face is found on every frame and the mouth follows the clip's own speech
    assert all(reading is not None for reading in readings)
    assert len(readings) > 120
    assert own_peak > 0.35 and abs(own_lag) <= 3
    assert own_peak > foil_peak + 0.25
    assert np.nanmean(opening[speech]) > 1.5 * np.nanmean(opening[~speech])
