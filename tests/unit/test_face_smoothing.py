"""The One Euro filter removes still-face jitter but follows real (speech) motion."""

from __future__ import annotations

import numpy as np
import pytest

from talkingface.face.smoothing import OneEuroFilter, landmark_filter

FPS = 25.0


def _run(smoother: OneEuroFilter, values: list[np.ndarray]) -> np.ndarray:
    return np.stack([smoother(value, index / FPS) for index, value in enumerate(values)])


def test_constant_plus_noise_gets_quieter() -> None:
    # Given a still face: constant landmarks (eye-distance units) plus model jitter
    rng = np.random.default_rng(7)
    base = rng.uniform(-1.0, 1.0, size=(468, 2))
    noisy = [base + rng.normal(0.0, 0.005, size=base.shape) for _ in range(100)]
    # When filtered
    smoothed = _run(landmark_filter(), noisy)
    # Then the jitter around the true position is at most about half
    raw_error = np.abs(np.stack(noisy)[20:] - base).mean()
    smoothed_error = np.abs(smoothed[20:] - base).mean()
    assert smoothed_error < 0.6 * raw_error


def test_step_is_followed_within_two_samples() -> None:
    # Given a lip that jumps by 0.1 eye distances (a mouth opening between two frames)
    values = [np.zeros(4)] * 10 + [np.full(4, 0.1)] * 5
    smoothed = _run(landmark_filter(), values)
    # Then most of the step shows on its first frame, and nearly all of it one frame later
    assert smoothed[10].min() > 0.07
    assert smoothed[11].min() > 0.09
    assert np.allclose(smoothed[:10], 0.0)


def test_first_value_and_value_after_reset_pass_through_unchanged() -> None:
    smoother = OneEuroFilter()
    first = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    assert np.array_equal(smoother(first, 0.0), first)
    smoother(first + 5.0, 0.04)
    smoother.reset()
    assert np.array_equal(smoother(first, 0.08), first)


def test_output_keeps_float_dtype_and_shape() -> None:
    smoother = OneEuroFilter()
    values = np.zeros((3, 468, 2), dtype=np.float32)
    smoother(values, 0.0)
    out = smoother(values + 1.0, 0.04)
    assert out.dtype == np.float32
    assert out.shape == (3, 468, 2)
    assert 0.0 < float(out.mean()) < 1.0


def test_time_going_backwards_is_refused() -> None:
    smoother = OneEuroFilter()
    smoother(np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="time must increase"):
        smoother(np.zeros(2), 1.0)
