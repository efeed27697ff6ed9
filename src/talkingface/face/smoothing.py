"""Stage s2, over time: the One Euro filter that removes landmark jitter but keeps speech motion.

Casiez, Roussel and Vogel, "1€ Filter: A Simple Speed-based Low-pass Filter for Noisy Input in
Interactive Systems" (CHI 2012). A low-pass filter whose cut-off rises with the signal's speed:
still landmarks are smoothed hard, moving ones (a mouth opening) pass with little lag.

The tracker feeds landmarks divided by the eye distance, so the `LANDMARK_*` tuning below is in
eye distances (and eye distances per second) and does not depend on the face's size in pixels.
"""

from __future__ import annotations

import math

import numpy as np

# Tuning for landmarks in eye-distance units at 25-30 fps: a still face's jitter (about 0.005
# eye distances) is cut to about half, while a lip step of 0.1 is followed to ~80 % on the
# first frame and ~95 % on the second.
LANDMARK_MIN_CUTOFF_HZ = 1.5
LANDMARK_BETA = 10.0
LANDMARK_D_CUTOFF_HZ = 5.0


def _smoothing_factor(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    """Exponential smoothing weight of a first-order low-pass at `cutoff_hz` for step `dt_s`."""
    tau_s = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau_s / dt_s)


class OneEuroFilter:
    """One Euro filter, element-wise over an array of any (fixed) shape."""

    def __init__(
        self, *, min_cutoff_hz: float = 1.0, beta: float = 0.05, d_cutoff_hz: float = 1.0
    ) -> None:
        if min_cutoff_hz <= 0.0 or d_cutoff_hz <= 0.0 or beta < 0.0:
            raise ValueError("cut-offs must be positive and beta non-negative")
        self._min_cutoff_hz = min_cutoff_hz
        self._beta = beta
        self._d_cutoff_hz = d_cutoff_hz
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None
        self._t_s = 0.0

    def __call__(self, value: np.ndarray, t_s: float) -> np.ndarray:
        """The filtered value at time `t_s` (seconds, strictly increasing between calls)."""
        current = np.asarray(value, dtype=np.float64)
        out_dtype = value.dtype if np.issubdtype(value.dtype, np.floating) else np.float64
        if self._value is None or self._speed is None:
            self._value, self._speed, self._t_s = current.copy(), np.zeros_like(current), t_s
            return current.astype(out_dtype)
        if current.shape != self._value.shape:
            raise ValueError(f"shape changed from {self._value.shape} to {current.shape}")
        dt_s = t_s - self._t_s
        if dt_s <= 0.0:
            raise ValueError(f"time must increase: got {t_s} after {self._t_s}")
        speed = (current - self._value) / dt_s
        self._speed = self._speed + _smoothing_factor(self._d_cutoff_hz, dt_s) * (
            speed - self._speed
        )
        cutoff_hz = self._min_cutoff_hz + self._beta * np.abs(self._speed)
        self._value = self._value + _smoothing_factor(cutoff_hz, dt_s) * (current - self._value)
        self._t_s = t_s
        return self._value.astype(out_dtype)

    def reset(self) -> None:
        """Forget the past: the next value passes through unchanged."""
        self._value = None
        self._speed = None
        self._t_s = 0.0


def landmark_filter() -> OneEuroFilter:
    """A filter tuned for landmarks in eye-distance units (what FaceTracker uses)."""
    return OneEuroFilter(
        min_cutoff_hz=LANDMARK_MIN_CUTOFF_HZ, beta=LANDMARK_BETA, d_cutoff_hz=LANDMARK_D_CUTOFF_HZ
    )
