"""The shared vocabulary: ids, modes and the values stages pass, each tagged with its job (a leaf).

It sits on the ground floor so that config, the store, the stage packages (media, face, audio,
engines, blend) and the pipeline that wires them all import it without reaching up the flow.

Dimension letters used in shape comments: N frames, L landmarks (468), H/W pixels.
A pipeline frame is RGB uint8 (H, W, 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NewType

import numpy as np

JobId = NewType("JobId", str)

LANDMARK_COUNT = 468


@dataclass(frozen=True, slots=True)
class JobTag:
    """Which job and attempt an item belongs to; every queued item carries one."""

    job_id: JobId
    attempt: int = 1


class LoopMode(StrEnum):
    """How a template shorter than the audio is extended."""

    PINGPONG = "pingpong"  # forward, backward, forward… (HeyGem pn=1): no jump cut
    RESTART = "restart"  # forward, jump to the start, forward…


class FacePolicy(StrEnum):
    """What to do when a template shows several faces."""

    LARGEST = "largest"  # drive the largest, most central face
    STRICT = "strict"  # fail with MULTIPLE_FACES


@dataclass(frozen=True, slots=True)
class AudioClip:
    """Mono float32 samples in [-1, 1] at a known rate (analysis audio, never muxed)."""

    samples_f32: np.ndarray  # (S,)
    sample_rate_hz: int

    @property
    def duration_s(self) -> float:
        return float(self.samples_f32.shape[0]) / float(self.sample_rate_hz)


@dataclass(frozen=True, slots=True)
class FaceTrack:
    """Smoothed landmarks for every template frame; frames without a face are not present."""

    landmarks_f32: np.ndarray  # (N, L, 2) x, y in frame pixels; NaN where not present
    present: np.ndarray  # (N,) bool
    scores_f32: np.ndarray  # (N,) landmark confidence 0..1, 0 where not present
    frame_width: int
    frame_height: int
    faces_seen_max: int  # most faces detected on any one detection pass

    @property
    def frame_count(self) -> int:
        return int(self.present.shape[0])

    @property
    def missing_count(self) -> int:
        return int((~self.present).sum())


@dataclass(frozen=True, slots=True)
class Articulation:
    """Per-output-frame mouth drive derived from speech (look-ahead already applied)."""

    fps: float
    speech: np.ndarray  # (N,) bool, voice/speech activity
    loudness_f32: np.ndarray  # (N,) 0..1, smoothed, gated
    open_f32: np.ndarray  # (N,) 0..1 jaw/lip opening target
    width_f32: np.ndarray  # (N,) -1 (rounded, "o/u") .. +1 (spread, "i/e")
    closure_f32: np.ndarray  # (N,) 0..1, lips pressed (bilabial-like onsets)
    spectral_f32: np.ndarray  # (N, D) spectral-envelope features for appearance matching

    @property
    def frame_count(self) -> int:
        return int(self.open_f32.shape[0])


@dataclass(frozen=True, slots=True)
class TemplateFrame:
    """A decoded template frame, scheduled as output frame `index`."""

    tag: JobTag
    index: int  # output frame number
    template_index: int  # which template frame (after looping)
    image: np.ndarray  # (H, W, 3) RGB uint8


@dataclass(frozen=True, slots=True)
class TrackedFrame:
    """A template frame with its face landmarks (None: no face on this frame)."""

    tag: JobTag
    index: int
    template_index: int
    image: np.ndarray  # (H, W, 3) RGB uint8
    landmarks_f32: np.ndarray | None  # (L, 2) frame pixels


@dataclass(frozen=True, slots=True)
class MouthRender:
    """A re-synthesised mouth region, not yet composited into its frame (render → blend)."""

    tag: JobTag
    index: int
    image: np.ndarray  # (H, W, 3) the template frame, unmodified
    x0: int
    y0: int
    warped: np.ndarray | None  # (h, w, 3) uint8 region at (x0, y0); None: pass the frame through
    interior_f32: np.ndarray | None  # (h, w, 3) mouth interior to lay over the opened gap
    alpha_f32: np.ndarray | None  # (h, w) interior coverage 0..1


@dataclass(frozen=True, slots=True)
class RenderedFrame:
    """An output frame ready to encode."""

    tag: JobTag
    index: int
    image: np.ndarray  # (H, W, 3) RGB uint8
    face_rendered: bool  # False: passed through unchanged (no face on this frame)


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress report: what a job system shows and heartbeats carry."""

    tag: JobTag
    stage: str
    frames_done: int
    frames_total: int
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return 0.0 if self.frames_total <= 0 else min(1.0, self.frames_done / self.frames_total)

    @property
    def eta_s(self) -> float | None:
        if self.frames_done <= 0 or self.frames_total <= 0:
            return None
        rate = self.frames_done / max(self.elapsed_s, 1e-6)
        return max(0.0, (self.frames_total - self.frames_done) / rate)
