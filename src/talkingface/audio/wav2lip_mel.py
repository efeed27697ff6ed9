"""Wav2Lip's audio front-end (stage s3 for the wav2lip engine): mel windows, one per video frame.

Faithful to the reference (hparams.py + audio.py, librosa 0.7 era), in numpy/scipy only:
16 kHz mono; pre-emphasis 0.97; STFT with n_fft 800, hop 200 (80 mel frames/s), a periodic
Hann window of 800 and centred frames with reflect padding; magnitude; Slaney mel (80 bins,
55–7600 Hz, Slaney area norm); 20·log10(max(1e-5, x)) − 20 dB; symmetric normalisation to
±4 (min level −100 dB). Output frame i reads mel[:, int(i·80/fps) : +16]. Where that window
runs past the end of the audio it is padded with silence (−4) rather than shifted back as the
reference's last chunk is: the reference then stops, we keep every frame the audio covers,
each still aligned with its own 0.2 s of speech.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from talkingface.errors import InvalidMediaError, Stage
from talkingface.vocabulary import AudioClip

SAMPLE_RATE_HZ = 16000
N_FFT = 800
HOP = 200
WINDOW = 800
MEL_BINS = 80
FMIN_HZ = 55.0
FMAX_HZ = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_STEPS = 16  # mel frames per video frame's window (0.2 s)
MEL_FRAMES_PER_S = SAMPLE_RATE_HZ / HOP  # 80
_CHUNK_FRAMES = 4096  # STFT frames per chunk: bounds memory on long clips


def melspectrogram(samples_f32: np.ndarray) -> np.ndarray:
    """(M, T) float32 normalised log-mel of 16 kHz mono samples; T = 1 + S // 200."""
    emphasised = _preemphasis(samples_f32.astype(np.float64))
    mel = _mel_magnitude(emphasised)  # (M, T)
    level_db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    scaled = 2 * MAX_ABS_VALUE * ((level_db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(scaled, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def mel_windows(audio: AudioClip, *, fps: float, frame_count: int) -> np.ndarray:
    """(N, M, 16) float32: output frame i's window, mel[:, int(i·80/fps) : +16]."""
    if audio.sample_rate_hz != SAMPLE_RATE_HZ:
        raise InvalidMediaError(
            f"Wav2Lip features need {SAMPLE_RATE_HZ} Hz audio, got {audio.sample_rate_hz} Hz; "
            "decode the audio at 16 kHz.",
            stage=Stage.FEATURES,
            details={"sample_rate_hz": audio.sample_rate_hz},
        )
    mel = melspectrogram(audio.samples_f32)
    starts = (np.arange(frame_count) * (MEL_FRAMES_PER_S / fps)).astype(np.int64)
    overrun = max(0, int(starts[-1]) + MEL_STEPS - mel.shape[1]) if frame_count else 0
    padded = np.pad(mel, ((0, 0), (0, overrun)), constant_values=-MAX_ABS_VALUE)
    offsets = starts[:, None] + np.arange(MEL_STEPS)[None, :]  # (N, 16)
    return np.ascontiguousarray(padded[:, offsets].transpose(1, 0, 2))  # (N, M, 16)


def _mel_magnitude(samples: np.ndarray) -> np.ndarray:
    """(M, T) mel filters over the STFT magnitude: centred frames, reflect padding (librosa
    ≤ 0.8's default), computed in chunks of frames to bound memory on long audio."""
    half = N_FFT // 2
    count = 1 + samples.shape[0] // HOP
    if samples.shape[0] <= half:  # reflect padding needs more samples than the pad
        samples = np.pad(samples, (0, half + 1 - samples.shape[0]))
    padded = np.pad(samples, half, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:count]  # (T, N_FFT)
    out = np.empty((MEL_BINS, count), np.float64)
    for start in range(0, count, _CHUNK_FRAMES):
        chunk = frames[start : start + _CHUNK_FRAMES] * _window()
        out[:, start : start + _CHUNK_FRAMES] = mel_basis() @ np.abs(np.fft.rfft(chunk, axis=1)).T
    return out


def _preemphasis(samples: np.ndarray) -> np.ndarray:
    """y[n] = x[n] − 0.97·x[n−1] (scipy.signal.lfilter([1, −0.97], [1], x), without scipy's
    import cost in a worker)."""
    out = samples.copy()
    out[1:] -= PREEMPHASIS * samples[:-1]
    return out


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """The periodic Hann window, as librosa's stft uses (scipy's get_window(fftbins=True))."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WINDOW) / WINDOW)


@lru_cache(maxsize=1)
def mel_basis() -> np.ndarray:
    """(M, F) Slaney-scale, Slaney-normalised triangular filters (librosa.filters.mel's)."""
    fft_hz = np.linspace(0.0, SAMPLE_RATE_HZ / 2, 1 + N_FFT // 2)
    edges_mel = np.linspace(_hz_to_mel(FMIN_HZ), _hz_to_mel(FMAX_HZ), MEL_BINS + 2)
    edges_hz = _mel_to_hz(edges_mel)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]


# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP = 200.0 / 3.0
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float | np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _BREAK_MEL + np.log(np.maximum(hz, 1e-10) / _BREAK_HZ) / _LOG_STEP
    return np.where(hz >= _BREAK_HZ, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = _F_SP * mel
    log = _BREAK_HZ * np.exp(_LOG_STEP * (mel - _BREAK_MEL))
    return np.where(mel >= _BREAK_MEL, log, linear)
