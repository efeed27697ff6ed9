"""One attempt at a job: probe inputs, build the drive, prepare the template, stream s1–s6.

`run_attempt` is what `talkingface generate` calls in process and what a warm worker will call
per job: the engine is loaded by the caller and passed in, so it stays loaded between jobs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import av

from talkingface.audio.features import articulation_track
from talkingface.blend import blend_region
from talkingface.config import Settings
from talkingface.engines.base import BatchFrameRenderer, FrameRenderer, LipSyncEngine
from talkingface.engines.prepared_template import PreparedTemplate
from talkingface.errors import JobCanceledError, Stage, translate_errors
from talkingface.logs import bind_job
from talkingface.media.audio import load_audio
from talkingface.media.decode import iter_template_frames
from talkingface.media.encode import VideoWriter
from talkingface.media.encode_fidelity import crf_for_fidelity
from talkingface.media.input_checks import check_inputs, check_output_path
from talkingface.media.probe import MediaInfo, choose_output_fps
from talkingface.photo_life import PhotoLife
from talkingface.pipeline.graph import StageSpec, run_chain
from talkingface.results import JobResult
from talkingface.templates import TemplateCache, attach_landmarks, prepare_template
from talkingface.vocabulary import (
    FacePolicy,
    JobTag,
    LoopMode,
    MouthRender,
    Progress,
    RenderedFrame,
    TemplateFrame,
)

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    tag: JobTag
    audio_path: Path
    video_path: Path
    output_path: Path
    loop: LoopMode = LoopMode.PINGPONG
    face_policy: FacePolicy = FacePolicy.LARGEST


@dataclass(frozen=True, slots=True)
class GenerateResult(JobResult):
    """The job's result plus what only the rendering process cares about."""

    template_from_cache: bool
    stage_s: dict[str, float] = field(default_factory=dict)
    articulation: dict[str, object] = field(default_factory=dict)  # person model or generic

    @property
    def output_path(self) -> Path:
        return Path(self.path)

    def to_dict(self) -> dict[str, object]:
        return {
            "output": str(self.output_path),
            "duration_s": round(self.duration_s, 3),
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frame_count": self.frame_count,
            "frames_without_face": self.frames_without_face,
            "template_from_cache": self.template_from_cache,
            "processing_s": round(self.processing_s, 3),
            "realtime_factor": round(self.processing_s / max(self.duration_s, 1e-6), 3),
            "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()},
            "articulation": self.articulation,
        }


@dataclass(frozen=True, slots=True)
class _EncodableFrame:
    """A rendered frame already converted for the encoder (conversion runs on its own thread)."""

    tag: JobTag
    index: int
    frame_yuv: av.VideoFrame
    face_rendered: bool


class _Reporter:
    """Turns frame counts into Progress reports, at most a few per second per stage."""

    def __init__(self, tag: JobTag, callback: ProgressCallback | None) -> None:
        self.tag, self.callback = tag, callback
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, stage: Stage, done: int, total: int) -> None:
        now = time.monotonic()
        if self.callback is None or (done < total and now - self._last < 0.1):
            return
        self._last = now
        self.callback(Progress(self.tag, stage.value, done, total, now - self.started))


def run_attempt(
    request: GenerateRequest,
    engine: LipSyncEngine,
    settings: Settings,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> GenerateResult:
    """Generate the lip-synced video; raises a TalkingFaceError with its stage on failure."""
    with bind_job(request.tag.job_id, request.tag.attempt):
        started = time.monotonic()
        report = _Reporter(request.tag, progress)
        timings: dict[str, float] = {}
        check_output_path(request.output_path, (request.audio_path, request.video_path))
        _, video_info = check_inputs(request.audio_path, request.video_path, settings.limits)
        fps = choose_output_fps(video_info)
        t0 = time.monotonic()
        audio = load_audio(request.audio_path, max_duration_s=settings.limits.max_duration_s)
        frame_count = max(1, round(audio.duration_s * fps))
        with translate_errors(Stage.FEATURES):
            drive = articulation_track(audio, fps=fps, frame_count=frame_count)
        timings["features"] = time.monotonic() - t0
        t0 = time.monotonic()
        template = prepare_template(
            request.video_path,
            video_info,
            fps=fps,
            frames_needed=frame_count,
            engine=engine,
            policy=request.face_policy,
            cache=TemplateCache(settings.cache.dir if settings.cache.enabled else None),
            on_frame=partial(_track_progress, report, cancel),
        )
        timings["track"] = time.monotonic() - t0
        t0 = time.monotonic()
        with translate_errors(Stage.SETUP, context=f"starting engine {engine.info.name}"):
            renderer = engine.start_job(template, drive, audio)
        passthrough = _stream(
            request, settings, template, video_info, renderer, frame_count, report, cancel
        )
        timings["render"] = time.monotonic() - t0
        result = GenerateResult(
            path=str(request.output_path),
            duration_s=frame_count / fps,
            width=template.width + template.width % 2,
            height=template.height + template.height % 2,
            fps=fps,
            frame_count=frame_count,
            frames_without_face=passthrough,
            template_from_cache=template.from_cache,
            processing_s=time.monotonic() - started,
            stage_s=timings,
            articulation=template.articulation_summary(),
        )
        _log_result(result)
        return result


def _stream(
    request: GenerateRequest,
    settings: Settings,
    template: PreparedTemplate,
    video_info: MediaInfo,
    renderer: FrameRenderer,
    frame_count: int,
    report: _Reporter,
    cancel: threading.Event | None,
) -> int:
    """Decode → track → render → blend → encode, each on its own thread; returns how many
    frames had no face."""
    tag = request.tag

    def frames() -> Iterator[TemplateFrame]:
        source = iter_template_frames(
            request.video_path,
            fps=template.fps,
            output_frame_count=frame_count,
            loop=request.loop,
            info=video_info,
            memory_budget_bytes=settings.limits.template_memory_mb * 2**20,
        )
        for index, (template_index, image) in enumerate(source):
            yield TemplateFrame(tag, index, template_index, image)

    passthrough = 0
    with VideoWriter(
        request.output_path,
        width=template.width,
        height=template.height,
        fps=template.fps,
        audio_path=request.audio_path,
        crf=encode_crf(template, settings),
        preset=settings.engines.preset,
        sample_aspect_ratio=video_info.sample_aspect_ratio,
    ) as writer:

        def convert(item: RenderedFrame) -> _EncodableFrame:
            return _EncodableFrame(
                item.tag, item.index, writer.convert(item.image), item.face_rendered
            )

        def encode(item: _EncodableFrame) -> None:
            nonlocal passthrough
            writer.write_converted(item.frame_yuv)
            passthrough += 0 if item.face_rendered else 1
            report(Stage.RENDER, item.index + 1, frame_count)

        run_chain(
            tag,
            Stage.DECODE,
            frames(),
            [
                StageSpec(Stage.TRACK, partial(attach_landmarks, template.track)),
                _render_stage(renderer),
                StageSpec(Stage.BLEND, _blend(template, frame_count, settings)),
                StageSpec(Stage.ENCODE, convert),
            ],
            Stage.ENCODE,
            encode,
            queue_size=settings.limits.queue_frames,
            timeout_s=settings.limits.stage_timeout_s,
            cancel=cancel,
        )
        _check_canceled(tag, Stage.ENCODE, cancel)  # a cancel after the last frame: no publish
    return passthrough


def _blend(
    template: PreparedTemplate, frame_count: int, settings: Settings
) -> Callable[[MouthRender], RenderedFrame]:
    """blend_region, followed for a photo with engines.photo_life by its blinks and drift."""
    track = template.track
    if not (settings.engines.photo_life and template.is_still_image and track.present[0]):
        return blend_region
    life = PhotoLife(track.landmarks_f32[0], template.fps, frame_count)
    return lambda item: life.apply(blend_region(item))


def _render_stage(renderer: FrameRenderer) -> StageSpec:
    """Frame by frame, or in batches for a renderer that is faster that way."""
    if isinstance(renderer, BatchFrameRenderer) and renderer.batch_size > 1:
        return StageSpec(Stage.RENDER, renderer.render_batch, batch_size=renderer.batch_size)
    return StageSpec(Stage.RENDER, renderer.render)


def encode_crf(template: PreparedTemplate, settings: Settings) -> int:
    """engines.crf, or lower for a template whose own grain it would smooth away."""
    crf = crf_for_fidelity(
        template.reencode_psnr_db,
        max_crf=settings.engines.crf,
        min_crf=settings.engines.min_crf,
        min_psnr_db=settings.engines.min_psnr_db,
    )
    if crf != settings.engines.crf:
        logger.info(
            "encoding at CRF %d instead of %d to keep the template's detail",
            crf,
            settings.engines.crf,
            extra={"event": "encode_crf_lowered", "crf": crf},
        )
    return crf


def _track_progress(
    report: _Reporter, cancel: threading.Event | None, done: int, total: int
) -> None:
    _check_canceled(report.tag, Stage.TRACK, cancel)
    report(Stage.TRACK, done, total)


def _check_canceled(tag: JobTag, stage: Stage, cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise JobCanceledError(f"Job {tag.job_id} was canceled.", stage=stage)


def _log_result(result: GenerateResult) -> None:
    if result.frames_without_face:
        logger.warning(
            "%d of %d frames had no face and were passed through unchanged",
            result.frames_without_face,
            result.frame_count,
            extra={"event": "frames_passed_through", "frames": result.frames_without_face},
        )
    logger.info(
        "generated %s",
        result.output_path,
        extra={"event": "attempt_succeeded", "processing_s": round(result.processing_s, 3)},
    )
