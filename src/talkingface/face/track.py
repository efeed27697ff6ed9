"""Stage s2: follow one face through the template frames and build its smoothed `FaceTrack`.

Detection (BlazeFace, verified by the landmark model's presence score) runs on the first frame
and whenever the track is lost; while no face is tracked it is retried on every
`DETECT_EVERY_N_LOST`-th frame, so faceless stretches stay fast. Every tracked frame gets
landmarks from a crop placed by the previous frame's landmarks, smoothed over time with a One
Euro filter in eye-distance units. Frames without a face are simply not present in the track.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from talkingface.errors import MultipleFacesError, NoFaceError, Stage
from talkingface.face.detect import FaceBox, FaceDetector
from talkingface.face.landmarks import LandmarkModel, Roi, roi_from_box, roi_from_landmarks
from talkingface.face.mesh import LIPS_OUTER, eye_distance_px
from talkingface.face.smoothing import landmark_filter
from talkingface.vocabulary import LANDMARK_COUNT, FacePolicy, FaceTrack

logger = logging.getLogger(__name__)

DETECT_EVERY_N_LOST = 5  # while no face is tracked, try detection on every 5th frame
MAX_CANDIDATES = 8  # detection boxes verified with the landmark model per pass
SAME_FACE_FRACTION = 0.3  # verified crops closer than this (x crop side) are one face
MIN_EYE_DISTANCE_PX = 4.0  # below this the landmarks are not a usable face


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """The tracked face on one frame."""

    landmarks_f32: np.ndarray  # (L, 2) smoothed x, y in frame pixels
    score: float  # landmark presence 0..1
    faces_detected: int  # faces found by the detection pass that started this track


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A detection confirmed by the landmark model."""

    landmarks: np.ndarray  # (L, 3) frame pixels
    score: float
    roi: Roi


class FaceTracker:
    """Streaming tracker: `process` one RGB frame at a time, in order."""

    def __init__(
        self,
        *,
        policy: FacePolicy = FacePolicy.LARGEST,
        fps: float = 25.0,
        min_presence: float = 0.5,
        num_threads: int = 1,
    ) -> None:
        if fps <= 0.0:
            raise ValueError(f"fps must be positive, got {fps}")
        self._policy = policy
        self._fps = fps
        self._min_presence = min_presence
        self._detector = FaceDetector()
        self._landmarks = LandmarkModel(num_threads=num_threads)
        self._filter = landmark_filter()
        self._frame_index = 0
        self._roi: Roi | None = None
        self._scale_px = 1.0
        self._frames_until_detect = 0
        self._faces_detected = 0
        self._faces_seen_max = 0

    @property
    def faces_seen_max(self) -> int:
        """Most faces confirmed on any one detection pass so far."""
        return self._faces_seen_max

    def reset(self) -> None:
        """Forget the track (for a new clip): the next frame runs detection."""
        self._filter.reset()
        self._frame_index = 0
        self._roi = None
        self._scale_px = 1.0
        self._frames_until_detect = 0
        self._faces_detected = 0
        self._faces_seen_max = 0

    def process(self, frame_rgb: np.ndarray) -> FaceObservation | None:
        """The face on this frame, or None when there is none (or detection was throttled)."""
        if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB frame (H, W, 3), got shape {frame_rgb.shape}")
        index = self._frame_index
        self._frame_index += 1
        found = self._follow(frame_rgb, self._roi) if self._roi is not None else None
        if found is None:
            found = self._acquire(frame_rgb, index)
        if found is None:
            return None
        landmarks, score = found
        self._roi = roi_from_landmarks(landmarks)
        normalised = landmarks[:, :2] / self._scale_px  # eye-distance units
        smoothed = self._filter(normalised, index / self._fps) * self._scale_px
        return FaceObservation(
            landmarks_f32=smoothed.astype(np.float32),
            score=score,
            faces_detected=self._faces_detected,
        )

    def _follow(self, frame_rgb: np.ndarray, roi: Roi) -> tuple[np.ndarray, float] | None:
        """Landmarks in the crop placed by the previous frame, or None when the face is lost."""
        landmarks, score = self._landmarks.predict(frame_rgb, roi)
        if score >= self._min_presence and _is_usable(landmarks, frame_rgb.shape):
            return landmarks, score
        logger.debug("face track lost (presence %.2f)", score, extra={"event": "face_track_lost"})
        self._roi = None
        self._frames_until_detect = 0  # look again on this very frame
        return None

    def _acquire(self, frame_rgb: np.ndarray, index: int) -> tuple[np.ndarray, float] | None:
        """Detect and verify faces (throttled while lost); start a track on the chosen one."""
        if self._frames_until_detect > 0:
            self._frames_until_detect -= 1
            return None
        candidates = self._verified_faces(frame_rgb, self._detector.detect(frame_rgb))
        self._faces_detected = len(candidates)
        self._faces_seen_max = max(self._faces_seen_max, len(candidates))
        if not candidates:
            self._frames_until_detect = DETECT_EVERY_N_LOST - 1
            return None
        if len(candidates) > 1 and self._policy is FacePolicy.STRICT:
            raise MultipleFacesError(
                f"Found {len(candidates)} faces on frame {index} of the template; use one "
                "with a single face or the 'largest' face policy.",
                stage=Stage.TRACK,
                details={"faces": len(candidates), "frame_index": index},
            )
        chosen = max(candidates, key=lambda item: _preference(item.roi, frame_rgb.shape))
        self._filter.reset()
        self._scale_px = max(eye_distance_px(chosen.landmarks), MIN_EYE_DISTANCE_PX)
        logger.debug(
            "face track started on frame %d (%d faces)",
            index,
            len(candidates),
            extra={"event": "face_track_started", "frame_index": index},
        )
        return chosen.landmarks, chosen.score

    def _verified_faces(self, frame_rgb: np.ndarray, boxes: list[FaceBox]) -> list[_Candidate]:
        """Boxes the landmark model confirms as faces (twice: box crop, then refined crop)."""
        accepted: list[_Candidate] = []
        for box in boxes[:MAX_CANDIDATES]:
            landmarks, score = self._landmarks.predict(frame_rgb, roi_from_box(box))
            if score < self._min_presence:
                continue
            roi = roi_from_landmarks(landmarks)
            landmarks, score = self._landmarks.predict(frame_rgb, roi)
            if score < self._min_presence or not _is_usable(landmarks, frame_rgb.shape):
                continue
            roi = roi_from_landmarks(landmarks)
            if not any(_same_face(roi, other.roi) for other in accepted):
                accepted.append(_Candidate(landmarks=landmarks, score=score, roi=roi))
        return accepted


def _is_usable(landmarks: np.ndarray, frame_shape: tuple[int, ...]) -> bool:
    """Finite landmarks, a face of at least a few pixels, its whole mouth inside the frame.

    The landmark model keeps reporting a face that is mostly out of the picture; a face whose
    mouth is cut by the frame edge cannot be lip-synced, so it counts as not present.
    """
    if not np.isfinite(landmarks).all() or eye_distance_px(landmarks) < MIN_EYE_DISTANCE_PX:
        return False
    lips = landmarks[list(LIPS_OUTER), :2]  # (20, 2)
    inside_x = (lips[:, 0] >= 0.0) & (lips[:, 0] <= frame_shape[1] - 1)
    inside_y = (lips[:, 1] >= 0.0) & (lips[:, 1] <= frame_shape[0] - 1)
    return bool((inside_x & inside_y).all())


def _same_face(first: Roi, second: Roi) -> bool:
    distance = math.hypot(first.center_x - second.center_x, first.center_y - second.center_y)
    return distance < SAME_FACE_FRACTION * max(first.size_px, second.size_px)


def _preference(roi: Roi, frame_shape: tuple[int, ...]) -> float:
    """LARGEST policy: crop area, discounted by up to half for a face far from the centre."""
    height, width = frame_shape[0], frame_shape[1]
    offset = math.hypot(roi.center_x - width / 2.0, roi.center_y - height / 2.0)
    centrality = 1.0 - 0.5 * min(1.0, offset / (0.5 * math.hypot(width, height)))
    return roi.size_px**2 * centrality


def track_frames(
    frames: Iterable[np.ndarray],
    *,
    policy: FacePolicy = FacePolicy.LARGEST,
    fps: float = 25.0,
    on_frame: Callable[[int], None] | None = None,
    source_name: str = "template",
    observer: Callable[[int, np.ndarray, np.ndarray | None], None] | None = None,
) -> FaceTrack:
    """Track the face through all `frames`; `on_frame(frames_done)` is called after each one,
    and `observer(index, frame, landmarks or None)` sees every frame with its result.

    Raises NoFaceError when no frame has a face, and MultipleFacesError (STRICT policy) when a
    detection pass confirms several faces.
    """
    tracker = FaceTracker(policy=policy, fps=fps)
    rows: list[np.ndarray] = []
    scores: list[float] = []
    width = height = 0
    missing = np.full((LANDMARK_COUNT, 2), np.nan, dtype=np.float32)
    try:
        for frame in frames:
            if not rows:
                height, width = frame.shape[:2]
            observation = tracker.process(frame)
            rows.append(missing if observation is None else observation.landmarks_f32)
            scores.append(0.0 if observation is None else observation.score)
            if observer is not None:
                landmarks = None if observation is None else observation.landmarks_f32
                observer(len(rows) - 1, frame, landmarks)
            if on_frame is not None:
                on_frame(len(rows))
    except MultipleFacesError as exc:
        faces = exc.details.get("faces", 2)
        raise MultipleFacesError(
            f"{source_name} shows {faces} faces (frame {exc.details.get('frame_index', 0)}); "
            "use a video or photo with a single face, or the 'largest' face policy.",
            stage=Stage.TRACK,
            details={**exc.details, "source": source_name},
        ) from exc
    return _build_track(rows, scores, width, height, tracker.faces_seen_max, source_name)


def _build_track(
    rows: list[np.ndarray],
    scores: list[float],
    width: int,
    height: int,
    faces_seen_max: int,
    source_name: str,
) -> FaceTrack:
    landmarks = (
        np.stack(rows) if rows else np.zeros((0, LANDMARK_COUNT, 2), dtype=np.float32)
    )  # (N, L, 2)
    present = ~np.isnan(landmarks[:, 0, 0]) if rows else np.zeros(0, dtype=bool)  # (N,)
    if not present.any():
        raise NoFaceError(
            f"No face found in {source_name} ({len(rows)} frames checked); use a video or "
            "photo with one clearly visible frontal face.",
            stage=Stage.TRACK,
            details={"frames_checked": len(rows), "source": source_name},
        )
    track = FaceTrack(
        landmarks_f32=landmarks.astype(np.float32),
        present=present,
        scores_f32=np.asarray(scores, dtype=np.float32),
        frame_width=int(width),
        frame_height=int(height),
        faces_seen_max=faces_seen_max,
    )
    logger.info(
        "face tracked on %d of %d frames of %s",
        int(present.sum()),
        len(rows),
        source_name,
        extra={"event": "face_tracked", "frame_count": len(rows), "missing": track.missing_count},
    )
    return track
