"""Wav2Lip's mel front-end matches librosa run with the reference's parameters."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from talkingface.audio.wav2lip_mel import MEL_STEPS, mel_windows, melspectrogram
from talkingface.errors import InvalidMediaError
from talkingface.vocabulary import AudioClip

librosa = pytest.importorskip("librosa")


def _speechlike(duration_s: float, seed: int = 0) -> np.ndarray:
    """A voiced buzz with a moving formant and noise bursts, non-silent at both edges."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * duration_s)) / 16000
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    buzz = np.sign(np.sin(2 * np.pi * np.cumsum(pitch) / 16000)) * 0.2
    formant = np.sin(2 * np.pi * (700 + 500 * np.sin(2 * np.pi * 2 * t)) * t) * 0.2
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    noise = 0.05 * rng.standard_normal(t.size)
    return ((buzz + formant) * envelope + noise).astype(np.float32)


def _reference_mel(samples: np.ndarray) -> np.ndarray:
    """Wav2Lip's audio.melspectrogram, spelled out with librosa (pad_mode as librosa 0.7)."""
    emphasised = lfilter([1, -0.97], [1], samples)
    spectrum = librosa.stft(
        y=emphasised, n_fft=800, hop_length=200, win_length=800, pad_mode="reflect"
    )
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    level_db = 20 * np.log10(np.maximum(1e-5, basis @ np.abs(spectrum))) - 20
    return np.clip((2 * 4) * ((level_db + 100) / 100) - 4, -4, 4)


@pytest.mark.parametrize("duration_s", [0.5, 2.3])
def test_melspectrogram_matches_librosa_with_the_reference_parameters(duration_s: float) -> None:
    samples = _speechlike(duration_s)
    ours = melspectrogram(samples)
    reference = _reference_mel(samples)
    assert ours.shape == reference.shape == (80, 1 + samples.shape[0] // 200)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    assert ours.min() < 0 < ours.max() <= 4  # a real range, not a constant


def test_windows_follow_the_reference_chunking_and_pad_past_the_end_with_silence() -> None:
    samples = _speechlike(1.0, seed=1)
    mel = _reference_mel(samples)  # (80, 81)
    fps = 25.0
    windows = mel_windows(AudioClip(samples, 16000), fps=fps, frame_count=25)
    assert windows.shape == (25, 80, MEL_STEPS)
    for i in range(25):
        start = int(i * 80 / fps)
        inside = mel[:, start : start + MEL_STEPS]
        np.testing.assert_allclose(windows[i, :, : inside.shape[1]], inside, atol=1e-4)
        assert (windows[i, :, inside.shape[1] :] == -4).all()
    assert windows[-1, :, -1].max() == -4  # the last frame's window runs past the audio


def test_windows_at_another_frame_rate_start_where_the_reference_does() -> None:
    samples = _speechlike(0.8, seed=2)
    windows = mel_windows(AudioClip(samples, 16000), fps=30.0, frame_count=10)
    mel = _reference_mel(samples)
    np.testing.assert_allclose(windows[7], mel[:, int(7 * 80 / 30) :][:, :16], atol=1e-4)


def test_audio_not_at_16_khz_is_refused() -> None:
    with pytest.raises(InvalidMediaError, match="16000 Hz"):
        mel_windows(AudioClip(np.zeros(22050, np.float32), 22050), fps=25.0, frame_count=5)
