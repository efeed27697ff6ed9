"""Sample inputs built in code: synthetic speech, WAV writing, the photo template, demo files."""

from __future__ import annotations

import itertools
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from talkingface.audio.spectrum import mel_spectrum
from talkingface.samples import (
    astronaut_photo,
    iter_template_frames_from_photo,
    make_demo_inputs,
    synth_speech,
    synth_syllables,
    write_wav,
)


def _rms(samples: np.ndarray, start_s: float, end_s: float, rate: int) -> float:
    piece = samples[round(start_s * rate) : round(end_s * rate)]
    return float(np.sqrt(np.mean(piece.astype(np.float64) ** 2)))


def test_synth_speech_is_deterministic_per_seed() -> None:
    first, again, other = synth_speech(3.0, seed=1), synth_speech(3.0, seed=1), synth_speech(3.0)

    assert np.array_equal(first.samples_f32, again.samples_f32)
    assert first.speech_intervals_s == again.speech_intervals_s
    assert not np.array_equal(first.samples_f32, other.samples_f32)


def test_synth_speech_has_phrases_separated_by_silent_pauses() -> None:
    sample = synth_speech(8.0)
    rate, samples = sample.sample_rate_hz, sample.samples_f32
    intervals = sample.speech_intervals_s

    assert samples.dtype == np.float32 and samples.shape == (8 * rate,)
    assert float(np.max(np.abs(samples))) <= 1.0
    assert len(intervals) >= 2
    assert intervals[0][0] >= 0.3 and intervals[-1][1] <= sample.duration_s - 0.3
    for start_s, end_s in intervals:
        assert _rms(samples, start_s, end_s, rate) > 0.03
    pauses = [(0.0, intervals[0][0])]
    pauses += [(a[1], b[0]) for a, b in itertools.pairwise(intervals)]
    pauses.append((intervals[-1][1], sample.duration_s))
    for start_s, end_s in pauses:
        assert end_s - start_s >= 0.3
        assert _rms(samples, start_s, end_s, rate) < 0.001


def test_synth_speech_syllables_are_about_180_ms_in_phrases_of_4_to_8() -> None:
    sample = synth_speech(10.0, seed=3)
    onsets = np.array(sample.syllable_onsets_s)
    for start_s, end_s in sample.speech_intervals_s:
        inside = onsets[(onsets >= start_s - 0.05) & (onsets < end_s)]
        assert 4 <= inside.shape[0] <= 8
        assert 0.14 <= float(np.median(np.diff(inside))) <= 0.23


def test_synth_vowels_carry_their_formants() -> None:
    # Given one phrase per vowel, when measuring the spectrum of the voiced part, then /a/
    # (F1 730 Hz) has a higher centroid than /u/ (F1 300, F2 870), and only /i/ (F2 2290 Hz)
    # carries real energy above 1.8 kHz.
    centroid_hz, high_share = {}, {}
    for vowel in "aiu":
        sample = synth_syllables([vowel] * 3, f0_hz=140.0, syllable_s=0.25)
        spectrum = mel_spectrum(sample.samples_f32, sample.sample_rate_hz)
        loud = spectrum.energy_db_f32 > spectrum.energy_db_f32.max() - 6.0
        power = spectrum.power_f32[loud].mean(axis=0)
        centroid_hz[vowel] = float(power @ spectrum.centres_hz / power.sum())
        high_share[vowel] = float(power[spectrum.centres_hz > 1800.0].sum() / power.sum())

    assert centroid_hz["a"] > 1.3 * centroid_hz["u"]
    assert high_share["i"] > 3.0 * max(high_share["a"], high_share["u"])


def test_synth_syllables_rejects_unknown_syllables() -> None:
    with pytest.raises(ValueError, match="unknown syllable"):
        synth_syllables(["ba", "xq"])


def test_write_wav_round_trips_16_bit_pcm(tmp_path: Path) -> None:
    sample = synth_speech(2.0)

    path = write_wav(tmp_path / "speech.wav", sample.samples_f32, sample.sample_rate_hz)

    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    decoded = pcm.astype(np.float32) / 32767.0
    assert decoded.shape == sample.samples_f32.shape
    assert float(np.max(np.abs(decoded - sample.samples_f32))) < 1.0 / 32767.0


def test_template_frames_move_a_little_every_frame() -> None:
    frames = list(
        iter_template_frames_from_photo(astronaut_photo(), frame_count=20, size_px=256, seed=2)
    )

    assert len(frames) == 20
    assert all(f.shape == (256, 256, 3) and f.dtype == np.uint8 for f in frames)
    steps = [np.abs(b.astype(np.int16) - a).mean() for a, b in itertools.pairwise(frames)]
    assert min(steps) > 0.05  # never a frozen frame
    assert max(steps) < 8.0  # sub-pixel to ~1 px motion, not jumps


def test_template_frames_are_centred_on_the_astronauts_face() -> None:
    frame = next(iter_template_frames_from_photo(astronaut_photo(), frame_count=1, size_px=256))

    # Skin (R > G > B, bright) dominates the centre-upper region where the face must be.
    face = frame[70:150, 100:156].astype(np.int16)
    skin = (face[..., 0] > face[..., 1] + 15) & (face[..., 1] > face[..., 2]) & (face[..., 0] > 120)
    assert skin.mean() > 0.5


def test_make_demo_inputs_writes_playable_files(tmp_path: Path) -> None:
    inputs = make_demo_inputs(tmp_path / "demo", duration_s=2.0, fps=25.0, size_px=128)

    assert inputs.photo_path.stat().st_size > 10_000
    with wave.open(str(inputs.audio_path)) as wav:
        assert wav.getnframes() == 2 * 16000
    with av.open(str(inputs.video_path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 75
    assert frames[0].shape == (128, 128, 3)
