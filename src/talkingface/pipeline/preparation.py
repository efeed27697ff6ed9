"""⑤ One attempt of a prepare_template job, in a worker: the thumbnail, then the face track and
engine data into the template cache (so jobs naming the template skip that work), with progress."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2

from talkingface.config import Settings
from talkingface.engines.base import LipSyncEngine
from talkingface.errors import JobCanceledError, Stage, translate_errors
from talkingface.jobs.records import TemplateOutcome
from talkingface.logs import bind_job
from talkingface.media.decode import iter_frames
from talkingface.media.probe import choose_output_fps, probe
from talkingface.results import JobResult
from talkingface.template_files import TEMPLATE_PREVIEW_NAME
from talkingface.template_preview import write_preview
from talkingface.templates import TemplateCache, prepare_template
from talkingface.vocabulary import FacePolicy, JobTag, Progress

THUMBNAIL_PX = 256


@dataclass(frozen=True, slots=True)
class PreparationResult:
    result: JobResult  # the job's result: the template video, its size, rate and frames
    outcome: TemplateOutcome


def run_preparation(
    tag: JobTag,
    video: Path,
    thumbnail: Path,
    engine: LipSyncEngine,
    settings: Settings,
    *,
    face_policy: FacePolicy,
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> PreparationResult:
    """Prepare the template at `video` for `engine`; raises a TalkingFaceError on failure."""
    with bind_job(tag.job_id, tag.attempt):
        started = time.monotonic()
        with translate_errors(Stage.PROBE, context=f"reading {video.name}"):
            info = probe(video)
        fps = choose_output_fps(info)
        write_thumbnail(video, thumbnail, fps)
        frames = 1 if info.is_still_image else max(1, round(info.duration_s * fps) + 1)

        def on_frame(done: int, total: int) -> None:
            if cancel is not None and cancel.is_set():
                raise JobCanceledError(f"Job {tag.job_id} was canceled.", stage=Stage.TRACK)
            if progress is not None:
                elapsed_s = time.monotonic() - started
                progress(Progress(tag, Stage.TRACK.value, done, total, elapsed_s))

        prepared = prepare_template(
            video,
            info,
            fps=fps,
            frames_needed=frames,
            engine=engine,
            policy=face_policy,
            cache=TemplateCache(settings.cache.dir if settings.cache.enabled else None),
            on_frame=on_frame,
        )
        write_preview(video, thumbnail.with_name(TEMPLATE_PREVIEW_NAME), fps, prepared.track)
    result = JobResult(
        path=str(video),
        duration_s=info.duration_s,
        width=prepared.width,
        height=prepared.height,
        fps=fps,
        frame_count=prepared.frame_count,
        frames_without_face=prepared.track.missing_count,
        processing_s=time.monotonic() - started,
    )
    outcome = TemplateOutcome(
        face_count=prepared.track.faces_seen_max,
        frames_without_face=prepared.track.missing_count,
        articulation=prepared.articulation_summary(),
    )
    return PreparationResult(result, outcome)


def write_thumbnail(video: Path, target: Path, fps: float) -> None:
    """A JPEG of the first frame, at most THUMBNAIL_PX on its long side (renamed into place)."""
    with translate_errors(Stage.DECODE, context=f"reading the first frame of {video.name}"):
        frame = next(iter(iter_frames(video, fps=fps, max_frames=1)))
    height, width = frame.shape[:2]
    scale = THUMBNAIL_PX / max(height, width)
    small = cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))))
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    if not ok:
        return  # the thumbnail is a convenience; the template is prepared without it
    with translate_errors(Stage.CACHE, context=f"writing {target.name}"):
        staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        staging.write_bytes(encoded.tobytes())
        os.replace(staging, target)
