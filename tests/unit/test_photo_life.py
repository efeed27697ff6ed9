"""Photo templates' signs of life (engines.photo_life): blinks that close the eye, a fixed
schedule, and a drift that keeps the frame whole."""

from __future__ import annotations

import numpy as np

from talkingface.photo_life import (
    BLINK_INTERVAL_S,
    BLINK_S,
    EYES,
    FIRST_BLINK_S,
    PhotoLife,
    blink_closure,
)
from talkingface.vocabulary import JobId, JobTag, RenderedFrame

FPS = 25.0
SKIN, WHITE, IRIS = (190, 150, 130), (240, 240, 240), (40, 30, 25)


def _face() -> tuple[np.ndarray, np.ndarray]:
    """A 200x200 skin image with two almond eyes (white, dark iris) and their landmarks."""
    image = np.zeros((200, 200, 3), np.uint8)
    image[:] = SKIN
    landmarks = np.zeros((468, 2), np.float32)
    landmarks[:, 0], landmarks[:, 1] = 100.0, 140.0  # everything else: the lower face
    ys, xs = np.mgrid[0:200, 0:200]
    for (first, second, upper, lower), (left, right) in zip(
        EYES, ((40, 80), (120, 160)), strict=True
    ):
        centre, half = (left + right) / 2.0, (right - left) / 2.0
        inside = ((xs - centre) / half) ** 2 + ((ys - 80.0) / 8.0) ** 2 < 1.0
        image[inside] = WHITE
        image[inside & ((xs - centre) ** 2 + (ys - 80.0) ** 2 < 36)] = IRIS
        landmarks[first], landmarks[second] = (left, 80.0), (right, 80.0)
        along = np.linspace(left, right, len(upper) + 2)[1:-1]
        lid = 8.0 * np.sqrt(np.clip(1.0 - ((along - centre) / half) ** 2, 0.0, 1.0))
        landmarks[list(upper)] = np.stack([along, 80.0 - lid], axis=1)
        landmarks[list(lower)] = np.stack([along, 80.0 + lid], axis=1)
    return image, landmarks


def _frame(image: np.ndarray, index: int) -> RenderedFrame:
    return RenderedFrame(JobTag(JobId("life")), index, image, face_rendered=True)


def test_blinks_follow_a_fixed_schedule_of_natural_intervals() -> None:
    closure = blink_closure(round(30 * FPS), FPS)
    np.testing.assert_array_equal(closure, blink_closure(round(30 * FPS), FPS))
    shut = np.flatnonzero(closure >= 1.0)
    starts = shut[np.concatenate([[True], np.diff(shut) > 1])] / FPS
    assert abs(starts[0] - FIRST_BLINK_S - BLINK_S[0]) < 2.0 / FPS
    gaps = np.diff(starts)
    assert len(starts) >= 5
    assert np.all((gaps > BLINK_INTERVAL_S[0] - 0.1) & (gaps < BLINK_INTERVAL_S[1] + 0.1))
    assert np.all(closure[: round(FIRST_BLINK_S * FPS)] == 0.0)  # open until the first blink


def test_a_blink_covers_the_eye_with_the_lids_skin_and_opens_it_again() -> None:
    image, landmarks = _face()
    closure = blink_closure(100, FPS)
    life = PhotoLife(landmarks, FPS, 100)
    shut = int(np.flatnonzero(closure >= 1.0)[0])
    opened = life.apply(_frame(image, 0)).image
    closed = life.apply(_frame(image, shut)).image
    eyes = (slice(74, 87), slice(45, 75))  # inside the left eye, around its iris
    assert np.abs(opened[eyes].astype(int) - IRIS).sum(axis=2).min() < 60  # the iris shows
    skin_distance = np.abs(closed[eyes].astype(int) - SKIN).sum(axis=2)
    assert np.median(skin_distance) < 40  # shut: mostly the lid's skin
    assert (np.abs(closed[eyes].astype(int) - IRIS).sum(axis=2) < 60).mean() < 0.05
    below = (slice(120, 200), slice(0, 200))  # nothing under the eyes moves but the drift
    assert np.abs(closed[below].astype(int) - opened[below]).mean() < 3.0


def test_the_drift_moves_the_picture_slightly_and_leaves_no_border() -> None:
    image, landmarks = _face()
    life = PhotoLife(landmarks, FPS, 400)
    frames = [life.apply(_frame(image, index)).image for index in range(0, 400, 20)]
    assert all(frame.shape == image.shape for frame in frames)
    assert any(np.abs(frame.astype(int) - frames[0]).max() > 30 for frame in frames[1:])
    for frame in frames:  # reflected, not black, at the edges
        assert frame[0].min() > 100 and frame[-1].min() > 100
