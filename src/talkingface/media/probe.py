"""Input checks before s1 decode: open a media file with PyAV and describe it as a MediaInfo."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.error

from talkingface.errors import (
    InputNotFoundError,
    InputTooLargeError,
    InvalidMediaError,
    PermissionDeniedError,
    Stage,
)
from talkingface.media.headers import declared_image_size, wav_layout

STILL_FPS = 25.0  # output rate for photos and variable-frame-rate templates
MAX_OUTPUT_FPS = 60.0
VFR_TOLERANCE = 0.01  # relative gap between average and nominal rate that marks VFR
STILL_IMAGE_DEMUXERS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe")
REEXPORT_HINT = "re-export it as MP4 H.264/AAC or WAV"
WAV_SLACK_BYTES = 1024  # writers that miscount their data chunk by a few bytes are fine
MIN_SAMPLE_ASPECT = Fraction(1, 8)  # pixel shapes beyond 1:8 / 8:1 are broken tags, not art
PIXEL_SLACK_PX = 256  # decoders allocate aligned sizes (4112 -> 4160): margin over the limits


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a media file holds; sizes are of the upright picture (rotation applied), in stored
    pixels: a player stretches them by `sample_aspect_ratio`."""

    path: Path
    container: str
    size_bytes: int
    duration_s: float
    has_video: bool
    has_audio: bool
    is_still_image: bool  # png/jpg/webp/bmp or a single-frame video
    width: int  # upright size, AFTER applying rotation
    height: int
    rotation_deg: int  # 0/90/180/270 clockwise, applied when decoding so frames are upright
    sample_aspect_ratio: Fraction  # of a decoded (upright) pixel: 3/2 for anamorphic, else 1
    fps: float  # average frame rate (0.0 for stills)
    frame_count: int  # frames at `fps` (1 for stills)
    is_variable_frame_rate: bool
    video_codec: str | None
    audio_codec: str | None
    audio_sample_rate_hz: int | None
    audio_channels: int | None


def invalid_media(
    path: Path, problem: str, *, stage: Stage, ffmpeg_text: str = ""
) -> InvalidMediaError:
    """The one wording for an unreadable file: what is wrong and how to fix it."""
    details = {"path": str(path), "ffmpeg": ffmpeg_text} if ffmpeg_text else {"path": str(path)}
    return InvalidMediaError(
        f"{path.name} is not a readable video or audio file ({problem}); {REEXPORT_HINT}.",
        stage=stage,
        details=details,
    )


def check_readable_file(path: Path, *, stage: Stage) -> int:
    """Fail with a clear error unless `path` is a non-empty readable file; return its size."""
    if not path.exists():
        raise InputNotFoundError(
            f"File not found: {path}; check the path.", stage=stage, details={"path": str(path)}
        )
    if path.is_dir():
        raise InvalidMediaError(
            f"{path} is a directory, not a media file; give the path of a video, photo or audio "
            "file.",
            stage=stage,
            details={"path": str(path)},
        )
    if not os.access(path, os.R_OK):
        raise PermissionDeniedError(
            f"Permission denied reading {path}; make the file readable by the service.",
            stage=stage,
            details={"path": str(path)},
        )
    size_bytes = path.stat().st_size
    if size_bytes == 0:
        raise invalid_media(path, "it is empty: 0 bytes", stage=stage)
    return size_bytes


def open_input(
    path: str | Path, *, stage: Stage, max_pixels: int | None = None
) -> av.container.InputContainer:
    """Open a media file for reading, translating every failure into one of our errors.

    With `max_pixels`, FFmpeg's decoders refuse any picture larger than that (width x height)
    before allocating it, while the streams are probed and when PyAV decodes the first video
    stream: a few-kB file declaring a huge picture cannot make this process allocate it.
    """
    file_path = Path(path)
    check_readable_file(file_path, stage=stage)
    options = {"max_pixels": str(max_pixels)} if max_pixels else None
    try:
        container = av.open(str(file_path), mode="r", options=options)
    except av.error.PermissionError as exc:
        raise PermissionDeniedError(
            f"Permission denied reading {file_path}; make the file readable by the service.",
            stage=stage,
            details={"path": str(file_path)},
            cause=exc,
        ) from exc
    except av.error.FFmpegError as exc:
        raise invalid_media(
            file_path, "FFmpeg cannot open it", stage=stage, ffmpeg_text=str(exc)
        ) from exc
    video = picture_stream(container)
    if options and video is not None and video.codec_context:
        video.codec_context.options = dict(options)
    return container


def picture_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first video stream that is moving picture, not attached art: an MP3's or M4A's
    cover (an `attached_pic` stream, often a multi-MB high-resolution JPEG) is no picture to
    render and is never decoded."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def probe(
    path: str | Path,
    *,
    max_width_px: int = 4096,
    max_height_px: int = 4096,
    max_duration_s: float = 3600.0,
) -> MediaInfo:
    """Describe a media file, or raise an error (stage probe) saying why it is unusable."""
    file_path = Path(path)
    size_bytes = check_readable_file(file_path, stage=Stage.PROBE)
    max_pixels = (max_width_px + PIXEL_SLACK_PX) * (max_height_px + PIXEL_SLACK_PX)
    declared = declared_image_size(file_path)  # a photo's header, read before FFmpeg decodes
    if declared is not None:
        _check_declared_size(file_path, declared, max_width_px, max_height_px)
    with open_input(file_path, stage=Stage.PROBE, max_pixels=max_pixels) as container:
        video = picture_stream(container)
        if video is not None:
            context = video.codec_context
            declared = (context.width, context.height) if context is not None else (0, 0)
            _check_declared_size(file_path, declared, max_width_px, max_height_px)
        info = _describe(container, file_path, size_bytes)
    _check_limits(info, max_width_px, max_height_px, max_duration_s)
    if info.container == "wav":
        _check_wav_complete(file_path)
    return info


def choose_output_fps(info: MediaInfo) -> float:
    """The constant output rate: the template's own rate when it has a usable one, else 25."""
    if info.is_still_image or info.is_variable_frame_rate or info.fps <= 0:
        return STILL_FPS
    return min(info.fps, MAX_OUTPUT_FPS)


def rate_fraction(fps: float) -> Fraction:
    """`fps` as an exact fraction (29.97 -> 30000/1001), the basis of every time base we use."""
    return Fraction(fps).limit_denominator(1001)


def _describe(container: av.container.InputContainer, path: Path, size_bytes: int) -> MediaInfo:
    video = picture_stream(container)
    audio = container.streams.audio[0] if container.streams.audio else None
    if video is None and audio is None:
        raise invalid_media(path, "it has no video or audio stream", stage=Stage.PROBE)
    duration_s = _duration_s(container)
    if video is None and audio is not None:
        duration_s = _audio_duration_s(audio) or duration_s
    width = height = rotation_deg = frame_count = 0
    fps = 0.0
    sample_aspect_ratio = Fraction(1)
    is_still = is_vfr = False
    if video is not None:
        first = _first_video_frame(container, video, path)
        rotation_deg = (-round(first.rotation / 90.0) * 90) % 360
        rotation_deg = rotation_deg or _rotate_tag_deg(video.metadata.get("rotate"))
        width, height = first.width, first.height
        sample_aspect_ratio = _sample_aspect_ratio(video)
        if rotation_deg in (90, 270):
            width, height = height, width
            sample_aspect_ratio = 1 / sample_aspect_ratio  # a pixel turned on its side
        is_still = container.format.name in STILL_IMAGE_DEMUXERS or video.frames == 1
        if is_still:
            duration_s, frame_count = (duration_s if audio is not None else 0.0), 1
        else:
            fps, is_vfr = _rates(video)
            duration_s = duration_s or _stream_duration_s(video)
            frame_count = video.frames if video.frames > 0 and not is_vfr else 0
            frame_count = frame_count or max(1, round(duration_s * fps))
    return MediaInfo(
        path=path,
        container=container.format.name,
        size_bytes=size_bytes,
        duration_s=duration_s,
        has_video=video is not None,
        has_audio=audio is not None,
        is_still_image=is_still,
        width=width,
        height=height,
        rotation_deg=rotation_deg,
        sample_aspect_ratio=sample_aspect_ratio,
        fps=fps,
        frame_count=frame_count,
        is_variable_frame_rate=is_vfr,
        video_codec=video.codec_context.name if video is not None else None,
        audio_codec=audio.codec_context.name if audio is not None else None,
        audio_sample_rate_hz=audio.codec_context.sample_rate if audio is not None else None,
        audio_channels=audio.codec_context.channels if audio is not None else None,
    )


def _first_video_frame(
    container: av.container.InputContainer, video: av.video.stream.VideoStream, path: Path
) -> av.VideoFrame:
    """Decode one frame: proves the video is readable and carries the display rotation."""
    try:
        for frame in container.decode(video):
            return frame
    except av.error.FFmpegError as exc:
        raise invalid_media(
            path, "its first video frame cannot be decoded", stage=Stage.PROBE, ffmpeg_text=str(exc)
        ) from exc
    raise invalid_media(path, "its video stream holds no decodable frames", stage=Stage.PROBE)


def _sample_aspect_ratio(video: av.video.stream.VideoStream) -> Fraction:
    """Width:height of one stored pixel (container's, else codec's); 1 when unset or absurd."""
    context = video.codec_context
    for ratio in (video.sample_aspect_ratio, context.sample_aspect_ratio if context else None):
        if ratio is not None and ratio.numerator > 0 and ratio.denominator > 0:
            value = Fraction(ratio.numerator, ratio.denominator)
            if MIN_SAMPLE_ASPECT <= value <= 1 / MIN_SAMPLE_ASPECT:
                return value
    return Fraction(1)


def _rotate_tag_deg(tag: str | None) -> int:
    """The legacy `rotate` metadata tag (clockwise degrees), normalised to 0/90/180/270."""
    try:
        return (round(float(tag or 0) / 90.0) * 90) % 360
    except ValueError:
        return 0


def _rates(video: av.video.stream.VideoStream) -> tuple[float, bool]:
    """(average fps, is variable frame rate) from the stream's average and nominal rates."""
    average = float(video.average_rate or 0) or float(video.guessed_rate or 0)
    nominal = float(video.base_rate or 0) or average
    if average <= 0 or not math.isfinite(average):
        return 0.0, False
    is_vfr = abs(average - nominal) > VFR_TOLERANCE * nominal
    return average, is_vfr


def _duration_s(container: av.container.InputContainer) -> float:
    if container.duration is None or container.duration <= 0:
        return 0.0
    return float(container.duration) / av.time_base


def _audio_duration_s(audio: av.audio.stream.AudioStream) -> float:
    """Audible length: AAC in MP4 counts its priming samples (start_time) inside the duration."""
    if audio.duration is None or audio.time_base is None:
        return 0.0
    start = audio.start_time if audio.start_time is not None and audio.start_time > 0 else 0
    return float((audio.duration - start) * audio.time_base)


def _stream_duration_s(stream: av.stream.Stream) -> float:
    if stream.duration is None or stream.time_base is None:
        return 0.0
    return float(stream.duration * stream.time_base)


def _check_declared_size(
    path: Path, size: tuple[int, int], max_width_px: int, max_height_px: int
) -> None:
    """Refuse, before decoding anything, a picture whose header declares a size over the
    limits in both orientations (the display rotation is not known yet)."""
    width, height = size
    fits = (width <= max_width_px and height <= max_height_px) or (
        height <= max_width_px and width <= max_height_px
    )
    if not fits:
        raise InputTooLargeError(
            f"{path.name} declares a {width}x{height} px picture, larger than the limit of "
            f"{max_width_px}x{max_height_px} px (limits.max_width_px, limits.max_height_px); "
            "downscale it.",
            stage=Stage.PROBE,
            details={"width": width, "height": height, "declared": True},
        )


def _check_wav_complete(path: Path) -> None:
    """Refuse a WAV cut short: FFmpeg would quietly read the part that is there."""
    layout = wav_layout(path)
    if layout is None:
        return
    missing_bytes = layout.declared_bytes - layout.present_bytes
    if missing_bytes > max(WAV_SLACK_BYTES, layout.declared_bytes // 100):
        declared_s = layout.declared_bytes / layout.byte_rate
        present_s = max(0, layout.present_bytes) / layout.byte_rate
        raise InvalidMediaError(
            f"{path.name} is cut short: its header declares {declared_s:.1f} s of audio but the "
            f"file holds {present_s:.1f} s; send the complete file.",
            stage=Stage.PROBE,
            details={"path": str(path), "declared_s": declared_s, "present_s": present_s},
        )


def _check_limits(
    info: MediaInfo, max_width_px: int, max_height_px: int, max_duration_s: float
) -> None:
    name = info.path.name
    if info.width > max_width_px or info.height > max_height_px:
        raise InputTooLargeError(
            f"{name} is {info.width}x{info.height} px, larger than the limit of "
            f"{max_width_px}x{max_height_px} px (limits.max_width_px, limits.max_height_px); "
            "downscale it.",
            stage=Stage.PROBE,
            details={"width": info.width, "height": info.height},
        )
    if info.duration_s > max_duration_s:
        raise InputTooLargeError(
            f"{name} lasts {info.duration_s:.1f} s, longer than the limit of "
            f"{max_duration_s:.0f} s (limits.max_duration_s); shorten it.",
            stage=Stage.PROBE,
            details={"duration_s": info.duration_s},
        )
