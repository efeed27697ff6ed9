"""How *this* person's mouth moves with their voice, learned from a talking template's own frames.

A template with speech of its own pairs, on every frame, the audio around that moment with the
mouth shape the tracker saw. A ridge regression maps the audio features over a ±160 ms context
window (the language-independent, per-clip normalised spectral features of audio/features.py
plus the generic drive) to four mouth-shape parameters in S units: inner-lip gap, inner width,
upper-lip height and lower-lip height. It is fitted on the first 75 % of the template and
validated on the held-out last 25 %; the engine drives with it only when the held-out fit of
the opening is good (a photo, a silent template or a poor fit keep the generic articulation).
Because the features are normalised per clip, a model fitted on English drives Mandarin.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from talkingface.engines.mouth_frame import mouth_frame
from talkingface.vocabulary import Articulation, FaceTrack

SHAPE_NAMES = ("gap", "width", "upper_lip", "lower_lip")
CONTEXT_S = (-0.16, -0.08, -0.04, 0.0, 0.04, 0.08, 0.16)
RIDGE_LAMBDA = 100.0  # on standardised features; chosen on the five talking shared clips
HELD_OUT_FRACTION = 0.25
MIN_FRAMES = 75  # three seconds at 25 fps: less is too little to learn from and to check
GOOD_FIT_R = 0.6  # held-out r of the predicted opening needed to drive with it (see below)
# At 0.5 the mpeg4 woman's model (held-out r 0.59) drove her: her targets then followed the
# speech envelope at r 0.72 instead of the generic drive's 0.84 (English), so the fit is not good
# enough to trust below 0.6. The older woman (0.61-0.70) and the seated one (0.75) keep theirs.
PERSON_WEIGHT = 0.5  # share of the drive taken from the person's model (the rest: generic)


@dataclass(frozen=True, slots=True)
class PersonModel:
    """A fitted audio → mouth-shape model and its held-out fit."""

    weights_f32: np.ndarray  # (F, P) on standardised features and shapes
    feature_mean_f32: np.ndarray  # (F,)
    feature_scale_f32: np.ndarray  # (F,)
    shape_mean_f32: np.ndarray  # (P,) S units
    shape_scale_f32: np.ndarray  # (P,)
    held_out_r_f32: np.ndarray  # (P,) Pearson r on the held-out stretch
    frame_counts: np.ndarray  # (2,) training and held-out frames

    @property
    def is_good(self) -> bool:
        return bool(self.held_out_r_f32[0] >= GOOD_FIT_R)

    def predict(self, drive: Articulation) -> np.ndarray:
        """(N, P) mouth shapes in S units for each frame of the drive."""
        features = (context_features(drive) - self.feature_mean_f32) / self.feature_scale_f32
        return np.asarray(features @ self.weights_f32 * self.shape_scale_f32 + self.shape_mean_f32)

    def summary(self) -> dict[str, object]:
        """JSON-safe fit report (template metadata, generate --json)."""
        return {
            "used": self.is_good,
            "held_out_r": {
                name: round(float(r), 3)
                for name, r in zip(SHAPE_NAMES, self.held_out_r_f32, strict=True)
            },
            "threshold_r": GOOD_FIT_R,
            "training_frames": int(self.frame_counts[0]),
            "held_out_frames": int(self.frame_counts[1]),
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "weights": self.weights_f32,
            "feature_mean": self.feature_mean_f32,
            "feature_scale": self.feature_scale_f32,
            "shape_mean": self.shape_mean_f32,
            "shape_scale": self.shape_scale_f32,
            "held_out_r": self.held_out_r_f32,
            "frame_counts": self.frame_counts,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PersonModel:
        return cls(
            arrays["weights"],
            arrays["feature_mean"],
            arrays["feature_scale"],
            arrays["shape_mean"],
            arrays["shape_scale"],
            arrays["held_out_r"],
            arrays["frame_counts"],
        )


def with_person_model(model: PersonModel, drive: Articulation) -> Articulation:
    """The drive with its opening and spread half taken from the person's model.

    The predicted opening is ranked within the drive's speech (5th → 0, 95th percentile → 1)
    and gated by loudness, so pauses still close; the predicted width becomes spread/rounding.
    """
    shapes = model.predict(drive)  # (N, P)
    gap = shapes[:, 0]
    spoken = gap[drive.speech]
    mean, scale = float(model.shape_mean_f32[0]), float(model.shape_scale_f32[0])
    low, high = (
        (float(np.percentile(spoken, 5)), float(np.percentile(spoken, 95)))
        if spoken.size >= 12
        else (mean - 1.5 * scale, mean + 1.5 * scale)
    )
    gate = np.minimum(1.0, 3.0 * drive.loudness_f32)
    learned_open = np.clip((gap - low) / max(high - low, 1e-6), 0.0, 1.0) * gate
    width_z = (shapes[:, 1] - model.shape_mean_f32[1]) / model.shape_scale_f32[1]
    learned_spread = np.clip(width_z / 2.0, -1.0, 1.0)
    w = PERSON_WEIGHT
    return replace(
        drive,
        open_f32=((1 - w) * drive.open_f32 + w * learned_open).astype(np.float32),
        width_f32=((1 - w) * drive.width_f32 + w * learned_spread).astype(np.float32),
    )


def context_features(drive: Articulation) -> np.ndarray:
    """(N, F) each frame's audio features and its neighbours' within ±160 ms."""
    base = np.hstack(
        [
            drive.spectral_f32,
            drive.open_f32[:, None],
            drive.closure_f32[:, None],
            drive.width_f32[:, None],
        ]
    ).astype(np.float64)  # (N, D)
    count = base.shape[0]
    offsets = np.round(np.asarray(CONTEXT_S) * drive.fps).astype(np.int64)
    index = np.clip(np.arange(count)[:, None] + offsets[None, :], 0, max(count - 1, 0))
    return base[index].reshape(count, -1)  # (N, len(CONTEXT_S) * D)


def mouth_shapes(track: FaceTrack) -> np.ndarray:
    """(N, P) mouth-shape parameters per template frame, S units; NaN where no face."""
    shapes = np.full((track.frame_count, len(SHAPE_NAMES)), np.nan)
    for index in np.flatnonzero(track.present):
        mouth = mouth_frame(track.landmarks_f32[index])
        centre = np.array([mouth.center_x])
        shapes[index] = (
            mouth.gap_at_center(),
            mouth.corner_right_x - mouth.corner_left_x,
            float(mouth.upper_at(centre)[0]),
            float(mouth.lower_at(centre)[0]),
        )
    return shapes


def fit_person_model(track: FaceTrack, own_drive: Articulation) -> PersonModel | None:
    """The person's model, or None when the template has too few usable frames."""
    count = min(track.frame_count, own_drive.frame_count)
    shapes = mouth_shapes(track)[:count]
    features = context_features(own_drive)[:count]
    usable = np.flatnonzero(np.isfinite(shapes).all(axis=1))
    if usable.shape[0] < MIN_FRAMES:
        return None
    cut = usable[round(usable.shape[0] * (1.0 - HELD_OUT_FRACTION))]
    train, held = usable[usable < cut], usable[usable >= cut]
    check = _fit(features[train], shapes[train])
    predicted = check.predict_raw(features[held])
    held_r = np.array(
        [_pearson(predicted[:, k], shapes[held, k]) for k in range(len(SHAPE_NAMES))],
        dtype=np.float32,
    )
    final = _fit(features[usable], shapes[usable])  # the model driven with uses every frame
    return PersonModel(
        final.weights.astype(np.float32),
        final.feature_mean.astype(np.float32),
        final.feature_scale.astype(np.float32),
        final.shape_mean.astype(np.float32),
        final.shape_scale.astype(np.float32),
        held_r,
        np.array([train.shape[0], held.shape[0]], dtype=np.int64),
    )


@dataclass(frozen=True, slots=True)
class _Ridge:
    weights: np.ndarray
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    shape_mean: np.ndarray
    shape_scale: np.ndarray

    def predict_raw(self, features: np.ndarray) -> np.ndarray:
        standard = (features - self.feature_mean) / self.feature_scale
        return np.asarray(standard @ self.weights * self.shape_scale + self.shape_mean)


def _fit(features: np.ndarray, shapes: np.ndarray) -> _Ridge:
    feature_mean, feature_scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    shape_mean, shape_scale = shapes.mean(axis=0), shapes.std(axis=0) + 1e-6
    x = (features - feature_mean) / feature_scale  # (T, F)
    y = (shapes - shape_mean) / shape_scale  # (T, P)
    gram = x.T @ x + RIDGE_LAMBDA * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, x.T @ y)  # (F, P)
    return _Ridge(weights, feature_mean, feature_scale, shape_mean, shape_scale)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / denominator if denominator > 1e-12 else 0.0
