"""Objective quality figures for a generated video (evaluate, demo, bench): sync, fidelity, jitter.

Sync is judged by an independent eye: the mouth opening is read on every output frame with
mouth_meter.MouthMeter (dlib's 68-point model, not the MediaPipe tracker that drove the
render) and compared with the speech envelope of the driving audio (sync_signal), with a foil
(foil.py), and with the template person's own mouth while they talk (sync_figures). The
renderer's own tracker still runs on the output for mouth jitter and for the `tracker_*`
figures, which only show how far the renderer agrees with itself. Fidelity (fidelity.py):
PSNR and SSIM against the template frames, outside a generous lips/chin/jaw region.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from talkingface.contact_sheet import SheetFrame, sheet_indices, write_evaluation_sheet
from talkingface.errors import InvalidMediaError, Stage
from talkingface.face import mesh
from talkingface.face.track import FaceTracker
from talkingface.fidelity import OutsideMouthComparison
from talkingface.foil import default_foil, foil_envelope
from talkingface.media.audio import load_audio
from talkingface.media.decode import count_frames, iter_frames, iter_template_frames
from talkingface.media.probe import MediaInfo, choose_output_fps, probe
from talkingface.mouth_meter import MouthMeter
from talkingface.sync_figures import (
    OWN_SPEECH_MIN_FRACTION,
    OwnTalking,
    SyncFigures,
    amplitude_ratios,
    own_talking,
    sync_figures,
)
from talkingface.sync_signal import lagged_correlation, speech_envelope
from talkingface.vocabulary import AudioClip, LoopMode

if TYPE_CHECKING:
    from talkingface.syncnet_score import SyncNetScorer

FrameCallback = Callable[[int, int], None]  # (frames done, frames total) of the current pass

__all__ = ["Measurement", "QualityReport", "evaluate", "measure", "mouth_jitter", "with_lse"]
__all__ += ["lagged_correlation", "speech_envelope"]  # their home is sync_signal

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QualityReport:
    """Objective figures for one video; None where a figure cannot be measured.

    The field names are the keys of `evaluate --json`, a stable contract (add, never rename),
    documented in the README. "Opening" is the independent meter's inner-lip gap divided by
    the jaw width (0 closed, about 0.1 wide open).
    """

    frame_count: int
    fps: float
    duration_s: float
    faces_found: int  # frames where the independent meter found the face
    sync_correlation: float | None  # peak Pearson r, opening vs drive speech envelope, lags ±5
    sync_lag_frames: int | None  # lag of the peak; positive = the mouth moves after the sound
    sync_correlation_at_zero: float | None
    foil_correlation: float | None  # peak r, opening vs an unrelated speech clip, lags ±5
    sync_margin: float | None  # sync_correlation - foil_correlation
    open_speech_mean: float | None  # mean opening on speech frames
    open_silence_mean: float | None  # … on silent frames (pauses of 200 ms or more)
    open_speech_silence_ratio: float | None  # speech / silence (silence floored at 0.005)
    open_speech_p50: float | None  # median opening on speech frames
    open_speech_p90: float | None
    own_speech_fraction: float | None  # template frames that are its own speech (None: no audio)
    own_open_speech_p50: float | None  # the template person's median opening while talking
    own_open_speech_p90: float | None
    amplitude_p50_ratio: float | None  # open_speech_p50 / own_open_speech_p50
    amplitude_p90_ratio: float | None
    outside_mouth_psnr_db: float | None  # vs the template, outside the mouth/jaw region
    outside_mouth_ssim: float | None
    mouth_jitter: float | None  # RMS second difference of the mouth centre, eye distances
    tracker_faces_found: int  # the renderer's own tracker (MediaPipe): not independent
    tracker_sync_correlation: float | None
    tracker_sync_lag_frames: int | None
    # SyncNet (syncnet_v2.model, when one is given): the field's standard lip-sync metrics
    lse_d: float | None = None  # smallest mean embedding distance over ±15 frames; lower better
    lse_c: float | None = None  # median minus smallest mean distance; higher is better
    lse_av_offset_frames: int | None = None  # at the smallest distance; + = lips after sound
    lse_window_count: int | None = None  # 5-frame windows SyncNet scored

    def to_dict(self) -> dict[str, float | int | None]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


@dataclass(frozen=True, slots=True)
class Measurement:
    """A QualityReport with the per-frame independent opening it was computed from."""

    report: QualityReport
    opening: np.ndarray  # (N,) independent opening per output frame, NaN where no face


@dataclass(frozen=True, slots=True)
class _OutputMouth:
    """Per-output-frame measurements (NaN where no face)."""

    opening: np.ndarray  # (N,) independent meter
    tracker_opening: np.ndarray  # (N,) MediaPipe mouth opening ratio
    centre_px: np.ndarray  # (N, 2) centre of the MediaPipe outer-lip landmarks
    eye_px: np.ndarray  # (N,) MediaPipe eye distance
    kept: list[SheetFrame]  # the frames chosen for the contact sheet

    @property
    def frame_count(self) -> int:
        return int(self.opening.shape[0])


def evaluate(
    video_path: str | Path,
    *,
    audio_path: str | Path | None = None,
    template_path: str | Path | None = None,
    foil_path: str | Path | None = None,
    loop: LoopMode = LoopMode.PINGPONG,
    contact_sheet_path: str | Path | None = None,
    max_frames: int | None = None,
    syncnet: SyncNetScorer | None = None,
    on_frame: FrameCallback | None = None,
) -> QualityReport:
    """Measure a generated video: lip sync against the audio (`audio_path`, else its own
    track) and against a foil (`foil_path`, else a built-in one); amplitude against the
    person's own talking and fidelity outside the mouth (both need `template_path`); jitter;
    LSE-D / LSE-C with a loaded `syncnet`. `on_frame` hears each frame of each pass."""
    report = measure(
        video_path,
        audio_path=audio_path,
        template_path=template_path,
        foil_path=foil_path,
        loop=loop,
        contact_sheet_path=contact_sheet_path,
        max_frames=max_frames,
        on_frame=on_frame,
    ).report
    if syncnet is None:
        return report
    return with_lse(report, syncnet, video_path, audio_path=audio_path, on_frame=on_frame)


def with_lse(
    report: QualityReport,
    syncnet: SyncNetScorer,
    video_path: str | Path,
    *,
    audio_path: str | Path | None = None,
    on_frame: FrameCallback | None = None,
) -> QualityReport:
    """`report` with SyncNet's LSE-D, LSE-C and AV offset of the video filled in."""
    progress = None if on_frame is None else (lambda _step, done, total: on_frame(done, total))
    lse = syncnet.score(video_path, audio_path=audio_path, progress=progress)
    return dataclasses.replace(
        report,
        lse_d=lse.lse_d,
        lse_c=lse.lse_c,
        lse_av_offset_frames=lse.av_offset_frames,
        lse_window_count=lse.window_count,
    )


def measure(
    video_path: str | Path,
    *,
    audio_path: str | Path | None = None,
    template_path: str | Path | None = None,
    foil_path: str | Path | None = None,
    loop: LoopMode = LoopMode.PINGPONG,
    contact_sheet_path: str | Path | None = None,
    max_frames: int | None = None,
    on_frame: FrameCallback | None = None,
) -> Measurement:
    """`evaluate`, also returning the per-frame opening (for mouth sheets and benches)."""
    # Over 60 lines only because the report names each of its 25 figures.
    video = Path(video_path)
    info = probe(video)
    fps = choose_output_fps(info)  # the rate the pipeline rendered at (25 for VFR inputs)
    frame_count = count_frames(video, fps=fps, info=info)
    if max_frames is not None:
        frame_count = min(frame_count, max_frames)
    template = None if template_path is None else _TemplatePass(Path(template_path), fps)
    comparison = None if template is None else template.comparison(video.name, frame_count, loop)
    keep = sheet_indices(frame_count) if contact_sheet_path is not None else set()
    mouth = _measure_output(
        video,
        info,
        fps=fps,
        frame_count=frame_count,
        keep=keep,
        comparison=comparison,
        on_frame=on_frame,
    )
    sync, tracker = _sync_figures(
        _load_analysis_audio(video, info, audio_path), foil_path, mouth, fps
    )
    own = None if template is None else template.own_talking(on_frame)
    amplitude_p50, amplitude_p90 = amplitude_ratios(sync, own)
    psnr_db, ssim = (None, None) if comparison is None else comparison.figures()
    if contact_sheet_path is not None:
        write_evaluation_sheet(mouth.kept, fps, Path(contact_sheet_path))
    report = QualityReport(
        frame_count=mouth.frame_count,
        fps=fps,
        duration_s=mouth.frame_count / fps,
        faces_found=int(np.isfinite(mouth.opening).sum()),
        sync_correlation=sync.correlation,
        sync_lag_frames=sync.lag_frames,
        sync_correlation_at_zero=sync.correlation_at_zero,
        foil_correlation=sync.foil_correlation,
        sync_margin=sync.margin,
        open_speech_mean=sync.open_speech_mean,
        open_silence_mean=sync.open_silence_mean,
        open_speech_silence_ratio=sync.speech_silence_ratio,
        open_speech_p50=sync.open_speech_p50,
        open_speech_p90=sync.open_speech_p90,
        own_speech_fraction=None if template is None else template.speech_fraction,
        own_open_speech_p50=None if own is None else own.open_speech_p50,
        own_open_speech_p90=None if own is None else own.open_speech_p90,
        amplitude_p50_ratio=amplitude_p50,
        amplitude_p90_ratio=amplitude_p90,
        outside_mouth_psnr_db=psnr_db,
        outside_mouth_ssim=ssim,
        mouth_jitter=mouth_jitter(mouth.centre_px, mouth.eye_px),
        tracker_faces_found=int(np.isfinite(mouth.tracker_opening).sum()),
        tracker_sync_correlation=tracker.correlation,
        tracker_sync_lag_frames=tracker.lag_frames,
    )
    logger.info("evaluated %s", video, extra={"event": "quality_evaluated", **report.to_dict()})
    return Measurement(report, mouth.opening)


def mouth_jitter(centre_px: np.ndarray, eye_px: np.ndarray) -> float | None:
    """RMS length of the second difference of the mouth centre, in eye distances.

    Only triples of consecutive frames that all have a face count; None if there are none.
    """
    second = centre_px[2:] - 2.0 * centre_px[1:-1] + centre_px[:-2]  # (N-2, 2)
    scaled = np.linalg.norm(second, axis=1) / eye_px[1:-1] if second.size else second[:, 0]
    valid = np.isfinite(scaled)
    if not valid.any():
        return None
    return float(np.sqrt(np.mean(scaled[valid] ** 2)))


# --- passes over the media ---------------------------------------------------------------


class _TemplatePass:
    """The template's side of an evaluation: its own speech flags (from its own audio track),
    the outside-mouth comparison, and the independent opening of its frames.

    The meter reads each template frame at most once: while the comparison decodes it, and
    afterwards only the frames the output never showed. It runs only when the template talks
    on at least OWN_SPEECH_MIN_FRACTION of its frames (a photo or a silent clip has no
    talking of its own to compare with).
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self._fps = fps
        self._info = probe(path)
        self._speech: np.ndarray | None = None  # (T,) own speech flags; None without audio
        if self._info.has_audio:
            frame_count = count_frames(path, fps=fps, info=self._info)
            audio = load_audio(path)
            _, self._speech = speech_envelope(audio, fps=fps, frame_count=frame_count)
        self._meter = MouthMeter()
        self._opening: dict[int, float] = {}  # template frame -> independent opening

    @property
    def speech_fraction(self) -> float | None:
        """Share of the template's frames that are its own speech; None without audio."""
        if self._speech is None or self._speech.size == 0:
            return None
        return float(self._speech.mean())

    def comparison(
        self, video_name: str, frame_count: int, loop: LoopMode
    ) -> OutsideMouthComparison:
        templates = iter_template_frames(
            self.path, fps=self._fps, output_frame_count=frame_count, loop=loop, info=self._info
        )
        return OutsideMouthComparison(
            templates,
            (video_name, self.path.name),
            self._fps,
            frame_count,
            on_new_frame=self._read if self._talks_enough() else None,
        )

    def own_talking(self, on_frame: FrameCallback | None = None) -> OwnTalking | None:
        """The person's own figures; None without audio of their own or with too little speech."""
        if self._speech is None or not self._talks_enough():
            return None
        total = self._speech.shape[0]
        missing = {index for index in range(total) if index not in self._opening}
        if missing:
            self._meter = MouthMeter()  # a fresh pass: forget the comparison's last face box
            frames = iter_frames(self.path, fps=self._fps, info=self._info, max_frames=total)
            for index, frame in enumerate(frames):
                if index in missing:
                    self._read(index, frame)
                if on_frame is not None:
                    on_frame(index + 1, total)
        opening = np.array([self._opening.get(index, math.nan) for index in range(total)])
        return own_talking(opening, self._speech)

    def _talks_enough(self) -> bool:
        fraction = self.speech_fraction
        return fraction is not None and fraction >= OWN_SPEECH_MIN_FRACTION

    def _read(self, index: int, frame: np.ndarray) -> None:
        reading = self._meter.read(frame)
        self._opening[index] = math.nan if reading is None else reading.opening


def _measure_output(
    video: Path,
    info: MediaInfo,
    *,
    fps: float,
    frame_count: int,
    keep: set[int],
    comparison: OutsideMouthComparison | None,
    on_frame: FrameCallback | None = None,
) -> _OutputMouth:
    """Read the mouth on every output frame with the meter and the renderer's tracker (and
    feed the template comparison, if any)."""
    meter = MouthMeter()
    tracker = FaceTracker(fps=fps)
    opening = np.full(frame_count, np.nan)
    tracker_opening = np.full(frame_count, np.nan)
    centre_px = np.full((frame_count, 2), np.nan)
    eye_px = np.full(frame_count, np.nan)
    kept: list[SheetFrame] = []
    decoded = 0
    for index, frame in enumerate(iter_frames(video, fps=fps, info=info, max_frames=frame_count)):
        decoded = index + 1
        reading = meter.read(frame)
        if reading is not None:
            opening[index] = reading.opening
        observation = tracker.process(frame)
        landmarks = None if observation is None else observation.landmarks_f32
        if landmarks is not None:
            tracker_opening[index] = mesh.mouth_opening_ratio(landmarks)
            centre_px[index] = landmarks[list(mesh.LIPS_OUTER)].astype(np.float64).mean(axis=0)
            eye_px[index] = mesh.eye_distance_px(landmarks)
        if index in keep:
            kept.append(SheetFrame(index, frame, landmarks, float(opening[index])))
        if comparison is not None:
            comparison.add(index, frame)
        if on_frame is not None:
            on_frame(decoded, frame_count)
    if decoded == 0:
        raise InvalidMediaError(
            f"{video.name} has no video frames to evaluate.", stage=Stage.EVALUATE
        )
    return _OutputMouth(
        opening[:decoded], tracker_opening[:decoded], centre_px[:decoded], eye_px[:decoded], kept
    )


def _load_analysis_audio(
    video: Path, info: MediaInfo, audio_path: str | Path | None
) -> AudioClip | None:
    if audio_path is not None:
        return load_audio(Path(audio_path))
    return load_audio(video) if info.has_audio else None


def _sync_figures(
    drive: AudioClip | None, foil_path: str | Path | None, mouth: _OutputMouth, fps: float
) -> tuple[SyncFigures, SyncFigures]:
    """(independent figures, the renderer's tracker's figures); empty without audio.

    A given foil is used as it is (looped); the built-in one is rotated away from the drive.
    """
    if drive is None:
        return SyncFigures(), SyncFigures()
    envelope, speech = speech_envelope(drive, fps=fps, frame_count=mouth.frame_count)
    if foil_path is not None:
        foil = foil_envelope(load_audio(Path(foil_path)), fps=fps, frame_count=mouth.frame_count)
    else:
        foil = foil_envelope(
            default_foil(), fps=fps, frame_count=mouth.frame_count, drive_envelope=envelope
        )
    independent = sync_figures(mouth.opening, envelope, speech, foil)
    tracker = sync_figures(mouth.tracker_opening, envelope, speech, foil)
    return independent, tracker
