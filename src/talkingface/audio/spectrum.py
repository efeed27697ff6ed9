"""Short-time mel spectrum of analysis audio, the DSP under audio/features.py (stage s3)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft

HOP_S = 0.010  # analysis frames at 100 Hz
WINDOW_S = 0.025
MEL_BAND_COUNT = 40
MEL_LOW_HZ = 80.0
MEL_HIGH_HZ = 7600.0
POWER_FLOOR = 1e-10  # -100 dBFS: digital silence
_CHUNK_FRAMES = 4096  # bounds memory on long clips


@dataclass(frozen=True, slots=True)
class MelSpectrum:
    """Mel band power per 10 ms analysis frame; frame j is centred at j * hop_s."""

    power_f32: np.ndarray  # (T, B) mean-square power per band (sums to the frame's power)
    centres_hz: np.ndarray  # (B,) band centre frequencies
    energy_db_f32: np.ndarray  # (T,) frame level in dBFS over MEL_LOW_HZ..MEL_HIGH_HZ
    hop_s: float

    @property
    def frame_count(self) -> int:
        return int(self.power_f32.shape[0])

    def band_power(self, low_hz: float, high_hz: float) -> np.ndarray:
        """(T,) summed power of the bands centred in [low_hz, high_hz)."""
        chosen = (self.centres_hz >= low_hz) & (self.centres_hz < high_hz)
        return np.asarray(self.power_f32[:, chosen].sum(axis=1), dtype=np.float32)


def mel_spectrum(samples_f32: np.ndarray, sample_rate_hz: int) -> MelSpectrum:
    """Hann-windowed 25 ms frames every 10 ms, power mapped onto 40 mel bands (80–7600 Hz)."""
    hop = round(HOP_S * sample_rate_hz)
    window = round(WINDOW_S * sample_rate_hz)
    n_fft = 1 << (window - 1).bit_length()
    padded = np.pad(samples_f32.astype(np.float32, copy=False), (window // 2, window // 2))
    frame_count = max(1, (padded.shape[0] - window) // hop + 1)
    padded = np.pad(padded, (0, max(0, (frame_count - 1) * hop + window - padded.shape[0])))
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:frame_count]
    taper = np.hanning(window + 2)[1:-1].astype(np.float32)
    # Scale so a bin-power sum equals the frame's mean-square level (Parseval with the window).
    scale = 2.0 / (float(np.sum(taper * taper)) * n_fft)
    filters = _mel_filters(sample_rate_hz, n_fft)
    power = np.empty((frame_count, MEL_BAND_COUNT), dtype=np.float32)
    for start in range(0, frame_count, _CHUNK_FRAMES):
        block = frames[start : start + _CHUNK_FRAMES] * taper
        spectrum = fft.rfft(block, n=n_fft, axis=1)
        bins = (spectrum.real**2 + spectrum.imag**2) * scale
        power[start : start + _CHUNK_FRAMES] = bins @ filters
    energy_db = 10.0 * np.log10(power.sum(axis=1) + POWER_FLOOR)
    return MelSpectrum(
        power_f32=power,
        centres_hz=_mel_centres_hz(),
        energy_db_f32=energy_db.astype(np.float32),
        hop_s=hop / sample_rate_hz,
    )


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return np.asarray(2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0))


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return np.asarray(700.0 * (10.0 ** (mel / 2595.0) - 1.0))


def _mel_edges_hz() -> np.ndarray:
    low, high = _hz_to_mel(MEL_LOW_HZ), _hz_to_mel(MEL_HIGH_HZ)
    return _mel_to_hz(np.linspace(low, high, MEL_BAND_COUNT + 2))


def _mel_centres_hz() -> np.ndarray:
    return _mel_edges_hz()[1:-1].astype(np.float32)


@lru_cache(maxsize=8)
def _mel_filters(sample_rate_hz: int, n_fft: int) -> np.ndarray:
    """(n_fft/2+1, B) triangular filters that partition power (they sum to 1 inside the range)."""
    bin_hz = np.arange(n_fft // 2 + 1) * sample_rate_hz / n_fft
    edges = _mel_edges_hz()
    filters = np.zeros((bin_hz.shape[0], MEL_BAND_COUNT), dtype=np.float32)
    for band in range(MEL_BAND_COUNT):
        low, centre, high = edges[band], edges[band + 1], edges[band + 2]
        rising = (bin_hz - low) / (centre - low)
        falling = (high - bin_hz) / (high - centre)
        filters[:, band] = np.clip(np.minimum(rising, falling), 0.0, 1.0)
    # The first half of the lowest band and last half of the highest are not covered by a
    # neighbour; keep them whole so the band sum equals the in-range power.
    filters[(bin_hz >= edges[0]) & (bin_hz < edges[1]), 0] = 1.0
    filters[(bin_hz > edges[-2]) & (bin_hz <= edges[-1]), -1] = 1.0
    filters.setflags(write=False)  # shared through the cache
    return filters
