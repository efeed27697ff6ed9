"""Articulation from speech: voice activity, opening, width, closure, spectral matching features."""

from __future__ import annotations

import wave
from math import gcd
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, signal

from talkingface.audio.features import SPECTRAL_DIM, articulation_track
from talkingface.errors import InvalidMediaError
from talkingface.samples import SpeechSample, synth_speech, synth_syllables
from talkingface.vocabulary import Articulation, AudioClip

FPS = 25.0


def _clip(sample: SpeechSample, gain: float = 1.0) -> AudioClip:
    samples = np.clip(sample.samples_f32 * gain, -1.0, 1.0).astype(np.float32)
    return AudioClip(samples_f32=samples, sample_rate_hz=sample.sample_rate_hz)


def _truth(sample: SpeechSample, frame_count: int, fps: float, lookahead_s: float) -> np.ndarray:
    """(N,) bool: at least half of each (shifted) frame span lies inside a speech interval."""
    step_s = 0.001
    times = np.arange(0.0, frame_count / fps + 1.0, step_s)
    inside = np.zeros(times.shape[0], dtype=bool)
    for start_s, end_s in sample.speech_intervals_s:
        inside |= (times >= start_s) & (times < end_s)
    per_frame = round(1.0 / fps / step_s)
    first = np.round((np.arange(frame_count) / fps + lookahead_s) / step_s).astype(int)
    return np.array([inside[i : i + per_frame].mean() >= 0.5 for i in first])


def _load_wav_16k(path: Path) -> AudioClip:
    with wave.open(str(path)) as wav:
        channels, rate = wav.getnchannels(), wav.getframerate()
        assert wav.getsampwidth() == 2, "test helper reads 16-bit PCM only"
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    mono = pcm.reshape(-1, channels).astype(np.float32).mean(axis=1) / 32768.0
    if rate != 16000:
        common = gcd(rate, 16000)
        mono = signal.resample_poly(mono, 16000 // common, rate // common).astype(np.float32)
    return AudioClip(samples_f32=mono, sample_rate_hz=16000)


def _first_open_frame(track: Articulation, level: float = 0.1) -> int:
    return int(np.argmax(track.open_f32 > level))


def test_tracks_have_one_value_per_frame_in_range() -> None:
    track = articulation_track(_clip(synth_speech(4.0)), fps=FPS)

    assert track.frame_count == 100 and track.fps == FPS
    assert track.speech.dtype == np.bool_ and track.speech.shape == (100,)
    for values in (track.loudness_f32, track.open_f32, track.closure_f32):
        assert values.dtype == np.float32 and values.shape == (100,)
        assert float(values.min()) >= 0.0 and float(values.max()) <= 1.0
    assert float(track.width_f32.min()) >= -1.0 and float(track.width_f32.max()) <= 1.0
    assert track.spectral_f32.shape == (100, SPECTRAL_DIM) and 12 <= SPECTRAL_DIM <= 20
    assert np.isfinite(track.spectral_f32).all()


def test_speech_flag_agrees_with_the_known_speech_intervals() -> None:
    for seed in (0, 1):
        sample = synth_speech(8.0, seed=seed)
        track = articulation_track(_clip(sample), fps=FPS)

        agreement = (track.speech == _truth(sample, track.frame_count, FPS, 0.03)).mean()
        assert agreement >= 0.9


def test_mouth_opens_in_speech_and_stays_shut_in_pauses() -> None:
    sample = synth_speech(8.0)
    track = articulation_track(_clip(sample), fps=FPS)
    truth = _truth(sample, track.frame_count, FPS, 0.03)
    pauses = ndimage.binary_erosion(~truth, np.ones(5), border_value=1)

    assert float(track.open_f32[truth].mean()) > 0.2
    assert float(track.open_f32[pauses].max()) < 0.02
    assert float(track.loudness_f32[pauses].max()) < 0.02


def test_mouth_opens_and_closes_once_per_syllable_without_flicker() -> None:
    sample = synth_speech(8.0, seed=2)
    track = articulation_track(_clip(sample), fps=FPS)

    peaks, _ = signal.find_peaks(track.open_f32, prominence=0.05)
    syllables = len(sample.syllable_onsets_s)
    assert 0.6 * syllables <= peaks.shape[0] <= 1.3 * syllables


def test_lookahead_opens_the_mouth_earlier() -> None:
    clip = _clip(synth_speech(3.0))

    early = articulation_track(clip, fps=50.0, lookahead_s=0.03)
    on_time = articulation_track(clip, fps=50.0, lookahead_s=0.0)

    # 30 ms at 50 fps is 1.5 frames.
    assert _first_open_frame(on_time) - _first_open_frame(early) in (1, 2)


def test_open_vowels_open_wider_than_close_vowels() -> None:
    opening = {}
    for vowel in "ai":
        track = articulation_track(_clip(synth_syllables([f"t{vowel}"] * 6)), fps=FPS)
        opening[vowel] = float(np.percentile(track.open_f32[track.speech], 90))

    assert opening["a"] > 1.25 * opening["i"]


def test_width_is_spread_for_i_and_rounded_for_u() -> None:
    width = {}
    for vowel in "iu":
        sample = synth_syllables([vowel] * 4, f0_hz=150.0, syllable_s=0.3)
        track = articulation_track(_clip(sample), fps=FPS)
        width[vowel] = float(track.width_f32[track.speech].mean())

    assert width["i"] > 0.2
    assert width["u"] < -0.1


def test_closure_marks_nasal_murmur_but_not_fricatives() -> None:
    nasal = articulation_track(_clip(synth_syllables(["ma"] * 5, syllable_s=0.25)), fps=100.0)
    fricative = articulation_track(_clip(synth_syllables(["sa"] * 5, syllable_s=0.25)), fps=100.0)

    assert float(nasal.closure_f32.max()) > 0.5
    assert float(fricative.closure_f32.max()) < 0.3


def test_spectral_features_match_vowels_across_pitch() -> None:
    # Given the same vowel sequence spoken at 110 Hz and at 220 Hz, the spectral features of a
    # vowel at one pitch are nearer the same vowel at the other pitch than any other vowel.
    vowels = "aeiouaeiouaeiou"
    means = {}
    for f0_hz in (110.0, 220.0):
        sample = synth_syllables(list(vowels), f0_hz=f0_hz, syllable_s=0.2)
        track = articulation_track(_clip(sample), fps=100.0, lookahead_s=0.0)
        for vowel in "aeiou":
            centres = [
                round((onset + 0.1) * 100.0)
                for onset, v in zip(sample.syllable_onsets_s, vowels, strict=True)
                if v == vowel
            ]
            means[vowel, f0_hz] = track.spectral_f32[centres].mean(axis=0)

    for vowel in "aeiou":
        same = np.linalg.norm(means[vowel, 110.0] - means[vowel, 220.0])
        others = [
            np.linalg.norm(means[vowel, 110.0] - means[o, 220.0]) for o in "aeiou" if o != vowel
        ]
        assert same < min(others)


def test_quiet_and_clipping_recordings_drive_the_mouth_alike() -> None:
    sample = synth_speech(6.0)
    speech_rms = float(np.sqrt(np.mean(sample.samples_f32[np.abs(sample.samples_f32) > 1e-3] ** 2)))
    quiet_gain = 10.0 ** (-36.0 / 20.0) / speech_rms

    quiet = articulation_track(_clip(sample, quiet_gain), fps=FPS)
    clipping = articulation_track(_clip(sample, 6.0), fps=FPS)

    assert (quiet.speech == clipping.speech).mean() > 0.95
    assert np.corrcoef(quiet.open_f32, clipping.open_f32)[0, 1] > 0.9
    assert float(np.abs(quiet.loudness_f32 - clipping.loudness_f32).mean()) < 0.1


def test_frames_past_the_end_of_the_audio_are_silent() -> None:
    sample = synth_syllables(["ba", "ta"])
    track = articulation_track(_clip(sample), fps=FPS, frame_count=200)

    assert track.frame_count == 200
    tail = slice(round(sample.duration_s * FPS) + 2, None)
    assert not track.speech[tail].any()
    assert float(track.open_f32[tail].max()) == 0.0


def test_silent_audio_gives_a_shut_mouth() -> None:
    silence = AudioClip(samples_f32=np.zeros(32000, dtype=np.float32), sample_rate_hz=16000)

    track = articulation_track(silence, fps=FPS)

    assert track.frame_count == 50
    assert not track.speech.any()
    assert float(track.open_f32.max()) == 0.0 and float(track.closure_f32.max()) == 0.0


@pytest.mark.parametrize(
    ("samples", "rate_hz", "message"),
    [
        (np.zeros((100, 2), dtype=np.float32), 16000, "mono"),
        (np.zeros(8000, dtype=np.float32), 8000, "16000 Hz"),
        (np.full(16000, np.nan, dtype=np.float32), 16000, "NaN"),
    ],
)
def test_unusable_audio_is_rejected_with_a_clear_message(
    samples: np.ndarray, rate_hz: int, message: str
) -> None:
    with pytest.raises(InvalidMediaError, match=message):
        articulation_track(AudioClip(samples_f32=samples, sample_rate_hz=rate_hz), fps=FPS)


@pytest.mark.parametrize(
    ("name", "speech_range"),
    [
        ("audio_en_female_ad_10s_16k.wav", (0.6, 0.97)),
        ("audio_en_male_radio_8s_16k_stereo.wav", (0.55, 0.95)),
        ("audio_zh_female_5s_24k.wav", (0.55, 0.95)),
        ("audio_zh_female_news_8s_48k_stereo.wav", (0.85, 1.0)),
    ],
)
def test_real_speech_in_english_and_mandarin(
    shared_media: Path, name: str, speech_range: tuple[float, float]
) -> None:
    clip = _load_wav_16k(shared_media / name)

    track = articulation_track(clip, fps=FPS)

    low, high = speech_range
    assert low <= float(track.speech.mean()) <= high
    hop = round(clip.sample_rate_hz / FPS)
    frames = clip.samples_f32[: track.frame_count * hop].reshape(-1, hop)
    envelope = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    assert np.corrcoef(track.open_f32[: envelope.shape[0]], envelope)[0, 1] > 0.6
    level_db = 20.0 * np.log10(envelope + 1e-6)
    pauses = ndimage.binary_erosion(level_db < np.percentile(level_db, 95) - 35.0, np.ones(5))
    if pauses.any():
        assert float(track.open_f32[: envelope.shape[0]][pauses].max()) < 0.05


def _vowel(f0_hz: float, formants_hz: tuple[float, ...], seconds: float = 1.0) -> AudioClip:
    """A source-filter vowel: a glottal pulse train at f0 through formant resonators."""
    rate = 16000
    pulses = np.zeros(int(rate * seconds))
    pulses[:: round(rate / f0_hz)] = 1.0
    sound = pulses
    for formant in formants_hz:
        b, a = signal.iirpeak(formant, Q=formant / 90.0, fs=rate)
        sound = signal.lfilter(b, a, sound)
    sound = 0.3 * sound / np.abs(sound).max()
    return AudioClip(samples_f32=sound.astype(np.float32), sample_rate_hz=rate)


def test_opening_follows_the_vowel_not_the_voice_pitch() -> None:
    # /a/ (F1 750 Hz) then /i/ (F1 300 Hz), from a low voice and from a high one (a woman's,
    # or a rising Mandarin tone), whose harmonics fall far apart.
    def i_over_a(f0_hz: float) -> float:
        a = _vowel(f0_hz, (750.0, 1200.0)).samples_f32
        i = _vowel(f0_hz, (300.0, 2300.0)).samples_f32
        pause = np.zeros(4000, np.float32)
        clip = AudioClip(np.concatenate([pause, a, pause, i, pause]), 16000)
        drive = articulation_track(clip, fps=FPS)
        open_a = np.median(drive.open_f32[round(0.4 * FPS) : round(1.1 * FPS)])
        open_i = np.median(drive.open_f32[round(1.9 * FPS) : round(2.6 * FPS)])
        return float(open_i / open_a)

    low, high = i_over_a(110.0), i_over_a(260.0)
    assert low < 0.85 and high < 0.85  # the vowel decides...
    assert abs(low - high) < 0.06  # ...the pitch hardly moves it
