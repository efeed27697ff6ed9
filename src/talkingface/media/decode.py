"""Stage s1: decode a template video or photo into upright RGB frames at a constant rate, looped.

Resampling rule (one definition, shared by every function here so counts always agree): a
decoded frame presented at `t` seconds after the first packet takes output slot
`floor((t - t0) * fps + 1/2)`; output frame k shows the latest frame whose slot is <= k
(frames are repeated across gaps and dropped when several share a slot). The output ends at
`floor((t_last + d_last - t0) * fps + 1/2)` frames, and always includes the last frame's slot.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.container
import av.error
import numpy as np

from talkingface.errors import InvalidMediaError, Stage
from talkingface.media.probe import (
    PIXEL_SLACK_PX,
    MediaInfo,
    invalid_media,
    open_input,
    picture_stream,
    probe,
)
from talkingface.vocabulary import LoopMode

logger = logging.getLogger(__name__)

SLOT_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class _Timeline:
    """Where the resampled output starts (t0_s) and how many frames it has at `fps`."""

    fps: float
    t0_s: float
    frame_count: int


def iter_frames(
    path: str | Path,
    *,
    fps: float,
    info: MediaInfo | None = None,
    max_frames: int | None = None,
) -> Iterator[np.ndarray]:
    """Stream upright RGB frames resampled to a constant `fps`; a still image yields one frame."""
    media = info or probe(path)
    timeline = _scan_timeline(media, fps)
    stop = timeline.frame_count if max_frames is None else min(max_frames, timeline.frame_count)
    for _, frame in _iter_range(media, timeline, 0, stop):
        yield frame


def count_frames(path: str | Path, *, fps: float, info: MediaInfo | None = None) -> int:
    """Exactly how many frames iter_frames yields at `fps` (reads packet timestamps only)."""
    media = info or probe(path)
    return _scan_timeline(media, fps).frame_count


def template_index_schedule(
    template_frame_count: int, output_frame_count: int, loop: LoopMode
) -> np.ndarray:
    """(output_frame_count,) int64: the template frame each output frame shows."""
    if template_frame_count < 1:
        raise ValueError(f"a template needs at least one frame, got {template_frame_count}")
    out = np.arange(max(0, output_frame_count), dtype=np.int64)
    n = template_frame_count
    if n >= output_frame_count:
        return out
    if n == 1:
        return np.zeros_like(out)
    if loop is LoopMode.RESTART:
        return out % n
    period = 2 * n - 2  # 0..n-1 then n-2..1: the end frames are not shown twice
    phase = out % period
    return np.where(phase < n, phase, period - phase)


def iter_template_frames(
    path: str | Path,
    *,
    fps: float,
    output_frame_count: int,
    loop: LoopMode,
    info: MediaInfo | None = None,
    memory_budget_bytes: int = 512 * 2**20,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (template_index, frame) for each output frame, looping within a memory budget.

    If the template frames that loops reuse fit in `memory_budget_bytes` they are kept after the
    first pass; otherwise every pass decodes again: forward runs stream, backward (ping-pong)
    runs decode chunks that fit the budget forward from a seek and emit them reversed.
    """
    media = info or probe(path)
    timeline = _scan_timeline(media, fps)
    schedule = template_index_schedule(timeline.frame_count, output_frame_count, loop)
    if schedule.size == 0:
        return
    frame_bytes = max(1, media.width * media.height * 3)
    reused = int(schedule.max()) + 1
    if output_frame_count <= timeline.frame_count:  # cut: one forward pass, nothing reused
        yield from _iter_range(media, timeline, 0, output_frame_count)
        return
    if reused * frame_bytes <= memory_budget_bytes:
        yield from _iter_cached(media, timeline, schedule)
        return
    chunk_frames = max(1, memory_budget_bytes // frame_bytes)
    logger.info(
        "template %s does not fit the frame budget; re-decoding each loop pass",
        media.path.name,
        extra={"event": "template_redecoded", "frame_count": timeline.frame_count},
    )
    for start, stop, step in _runs(schedule):
        if step > 0:
            yield from _iter_range(media, timeline, start, stop + 1)
        else:
            yield from _iter_backward(media, timeline, start, stop, chunk_frames)


def _iter_cached(
    media: MediaInfo, timeline: _Timeline, schedule: np.ndarray
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode each needed frame once and keep it; every yield is a copy the caller may modify."""
    kept: list[np.ndarray] = []
    decoded = _iter_range(media, timeline, 0, int(schedule.max()) + 1)
    for raw_index in schedule:
        index = int(raw_index)
        while len(kept) <= index:
            kept.append(next(decoded)[1])
        yield index, kept[index].copy()


def _iter_backward(
    media: MediaInfo, timeline: _Timeline, start: int, stop: int, chunk_frames: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Template frames start, start-1 … stop (start >= stop), in chunks of `chunk_frames`."""
    high = start
    while high >= stop:
        low = max(stop, high - chunk_frames + 1)
        chunk = list(_iter_range(media, timeline, low, high + 1))
        yield from reversed(chunk)
        high = low - 1


def _runs(schedule: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """Split a schedule into (first, last, step) runs of consecutive indices stepping by ±1."""
    begin = 0
    total = int(schedule.size)
    while begin < total:
        step = int(schedule[begin + 1] - schedule[begin]) if begin + 1 < total else 1
        step = step if step in (1, -1) else 1
        end = begin
        while end + 1 < total and int(schedule[end + 1] - schedule[end]) == step:
            end += 1
        yield int(schedule[begin]), int(schedule[end]), step
        begin = end + 1


def _scan_timeline(media: MediaInfo, fps: float) -> _Timeline:
    """Read packet timestamps (no decoding) to fix t0 and the output frame count at `fps`."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not media.has_video:
        raise InvalidMediaError(
            f"{media.path.name} has no video stream; use a video or photo as the template.",
            stage=Stage.DECODE,
            details={"path": str(media.path)},
        )
    if media.is_still_image:
        return _Timeline(fps=fps, t0_s=0.0, frame_count=1)
    with open_input(media.path, stage=Stage.DECODE) as container:
        stream = _picture(container, media)
        times: list[tuple[float, float]] = []
        untimed = 0
        try:
            for packet in container.demux(stream):
                if packet.pts is None or packet.is_discard or packet.time_base is None:
                    untimed += packet.size > 0
                    continue
                duration = float(packet.duration * packet.time_base) if packet.duration else 0.0
                times.append((float(packet.pts * packet.time_base), duration))
        except av.error.FFmpegError as exc:
            raise invalid_media(
                media.path, "its packets cannot be read", stage=Stage.DECODE, ffmpeg_text=str(exc)
            ) from exc
    if not times:
        problem = "its frames carry no timestamps" if untimed else "its video holds no frames"
        raise invalid_media(media.path, problem, stage=Stage.DECODE)
    return _timeline_from_times(times, fps, media.fps)


def _timeline_from_times(
    times: list[tuple[float, float]], fps: float, average_fps: float
) -> _Timeline:
    t0_s = min(t for t, _ in times)
    t_last, d_last = max(times)
    if d_last <= 0:
        d_last = 1.0 / average_fps if average_fps > 0 else 1.0 / fps
    last_slot = _round_half_up((t_last - t0_s) * fps)
    frame_count = max(_round_half_up((t_last + d_last - t0_s) * fps), last_slot + 1, 1)
    return _Timeline(fps=fps, t0_s=t0_s, frame_count=frame_count)


def _iter_range(
    media: MediaInfo, timeline: _Timeline, start: int, stop: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (k, frame) for output frames start <= k < stop, seeking near `start` when > 0."""
    if start >= stop:
        return
    with open_input(media.path, stage=Stage.DECODE, max_pixels=_max_pixels(media)) as container:
        stream = _picture(container, media)
        stream.thread_type = "AUTO"
        seeked = start > 0 and _seek(container, stream, timeline.t0_s + start / timeline.fps)
        frames = _iter_resampled(container, media, timeline, start, stop, from_top=not seeked)
        first = next(frames, None)
        if first is not None and first[0] == start:
            yield first
            yield from frames
            return
        frames.close()
    # The seek landed after `start` (or the input cannot seek): decode from the top instead.
    with open_input(media.path, stage=Stage.DECODE, max_pixels=_max_pixels(media)) as container:
        _picture(container, media).thread_type = "AUTO"
        yield from _iter_resampled(container, media, timeline, start, stop, from_top=True)


def _seek(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, time_s: float
) -> bool:
    if stream.time_base is None:
        return False
    try:
        container.seek(int(time_s / stream.time_base), backward=True, stream=stream)
    except av.error.FFmpegError:
        return False  # unseekable input: _iter_range decodes from the top instead
    return True


def _iter_resampled(
    container: av.container.InputContainer,
    media: MediaInfo,
    timeline: _Timeline,
    start: int,
    stop: int,
    *,
    from_top: bool,
) -> Generator[tuple[int, np.ndarray], None, None]:
    """Apply the resampling rule to decoded frames, yielding output frames start <= k < stop.

    From the top, the first frame also covers any slots before its own; after a seek it covers
    only from its own slot, so a caller can tell that the seek landed too late.
    """
    held: av.VideoFrame | None = None
    held_slot = cover_from = 0
    for frame in _decode(container, media):
        slot = _slot(frame, timeline)
        if held is None:
            held, held_slot = frame, slot
            cover_from = min(slot, start) if from_top else slot
        elif slot <= held_slot:
            held = frame  # same slot (or out of order): the later frame wins
        else:
            yield from _emit(held, media, max(cover_from, start), min(slot, stop))
            cover_from = slot
            if cover_from >= stop:
                return
            held, held_slot = frame, slot
        if media.is_still_image:
            break
    if held is None:
        raise invalid_media(media.path, "no video frame could be decoded", stage=Stage.DECODE)
    yield from _emit(held, media, max(cover_from, start), stop)  # hold the last frame to the end


def _emit(
    frame: av.VideoFrame, media: MediaInfo, first: int, stop: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Output frames first..stop-1 all show `frame` (converted once, copies for repeats)."""
    if first >= stop:
        return
    image = _to_rgb(frame, media.rotation_deg)
    yield first, image
    for k in range(first + 1, stop):
        yield k, image.copy()


def _slot(frame: av.VideoFrame, timeline: _Timeline) -> int:
    if frame.pts is None or frame.time_base is None:
        return 0
    return _round_half_up((float(frame.pts * frame.time_base) - timeline.t0_s) * timeline.fps)


def _round_half_up(position: float) -> int:
    """Nearest integer, halves up; the epsilon absorbs float error in pts * time_base * fps."""
    return math.floor(position + 0.5 + SLOT_EPSILON)


def _max_pixels(media: MediaInfo) -> int:
    """The decoder refuses pictures over the probed size (plus alignment): no larger frame
    later in the stream is ever allocated."""
    return (media.width + PIXEL_SLACK_PX) * (media.height + PIXEL_SLACK_PX)


def _decode(container: av.container.InputContainer, media: MediaInfo) -> Iterator[av.VideoFrame]:
    """Decoded frames in presentation order, all of the probed size; a corrupt stream or one
    that changes its picture size raises InvalidMediaError."""
    stored = (
        (media.height, media.width)
        if media.rotation_deg in (90, 270)
        else (media.width, media.height)
    )
    count = 0
    try:
        for frame in container.decode(_picture(container, media)):
            count += 1
            if (frame.width, frame.height) != stored:
                raise InvalidMediaError(
                    f"{media.path.name} changes its picture size at frame {count} (from "
                    f"{stored[0]}x{stored[1]} to {frame.width}x{frame.height} px); re-export it "
                    "at one size as MP4 H.264/AAC.",
                    stage=Stage.DECODE,
                    details={"path": str(media.path), "frame": count},
                )
            yield frame
    except av.error.FFmpegError as exc:
        raise InvalidMediaError(
            f"{media.path.name} cannot be decoded after frame {count}; re-export it as MP4 "
            "H.264/AAC.",
            stage=Stage.DECODE,
            details={"path": str(media.path), "frame": count, "ffmpeg": str(exc)},
        ) from exc


def _picture(
    container: av.container.InputContainer, media: MediaInfo
) -> av.video.stream.VideoStream:
    stream = picture_stream(container)
    if stream is None:  # the probe found one: the file changed since
        raise invalid_media(media.path, "it has no video stream any more", stage=Stage.DECODE)
    return stream


def _to_rgb(frame: av.VideoFrame, rotation_deg: int) -> np.ndarray:
    """(H, W, 3) RGB uint8, rotated clockwise by `rotation_deg` so the picture is upright."""
    image: np.ndarray = frame.to_ndarray(format="rgb24")
    if rotation_deg:
        return np.ascontiguousarray(np.rot90(image, k=-(rotation_deg // 90)))
    return image
