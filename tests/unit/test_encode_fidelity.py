"""A grainy template is encoded at a lower CRF so the output keeps its look; a clean one is not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from talkingface.media.encode_fidelity import crf_for_fidelity, reencode_psnr_db


def _frames(grain: float, count: int = 15) -> list[np.ndarray]:
    """A soft gradient, 128×96, with film-like grain: fresh grey noise per frame, blurred to
    about a pixel, `grain` (std before the blur) in 8-bit levels."""
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:96, 0:128]
    base = np.stack([60 + x, 80 + y, 120 + 0 * x], axis=-1).astype(np.float64)
    frames = []
    for _ in range(count):
        noise = cv2.GaussianBlur(rng.normal(0, grain, (96, 128)), (0, 0), 0.5)[..., None]
        frames.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return frames


def test_grain_costs_psnr_at_the_default_crf_and_gets_a_lower_one() -> None:
    clean = reencode_psnr_db(_frames(0.0), 25.0)
    grainy = reencode_psnr_db(_frames(8.0), 25.0)
    assert clean[23] >= 42.0  # stops at the first CRF that is good enough
    assert 18 not in clean
    assert grainy[18] < 40.0 < grainy[12]  # the grain is what the default CRF smooths away
    assert list(grainy)[:4] == [23, 18, 15, 12]
    chosen = crf_for_fidelity(grainy, max_crf=18, min_crf=10, min_psnr_db=40.0)
    assert 10 <= chosen < 18
    assert crf_for_fidelity(clean, max_crf=18, min_crf=10, min_psnr_db=40.0) == 18


@pytest.mark.parametrize(
    "curve, kwargs, expected",
    [
        ({23: 35.0, 18: 37.4, 15: 38.9, 12: 40.2}, {"min_psnr_db": 40.5}, 11),  # extrapolated
        ({23: 35.0, 18: 37.4, 15: 38.9, 12: 40.2}, {"min_psnr_db": 45.0}, 10),  # floor: min_crf
        ({23: 35.0, 18: 37.4, 15: 38.9, 12: 40.2}, {"min_psnr_db": 0.0}, 18),  # off
        ({23: 40.6, 18: 42.3}, {"min_psnr_db": 40.5}, 18),  # never above engines.crf
        ({}, {"min_psnr_db": 40.5}, 18),  # not measured (a probe that failed)
    ],
)
def test_the_chosen_crf(curve: dict[int, float], kwargs: dict[str, float], expected: int) -> None:
    assert crf_for_fidelity(curve, max_crf=18, min_crf=10, **kwargs) == expected
