"""Hostile and broken media built in code: empty, cut, garbage, lying headers, bombs, odd rates.

Every generator writes one small file (a few kB at most, apart from the short clips) and
returns its path. Files that lie about themselves are real files with one header field
rewritten, so FFmpeg reads them the way it would read the same lie found in the wild.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from talkingface.errors import ErrorCode
from talkingface.samples import synth_speech, write_wav

# --- empty, cut and random bytes -------------------------------------------------------------


def write_zero_byte(path: Path) -> Path:
    """A file of 0 bytes."""
    path.write_bytes(b"")
    return path


def write_truncated(source: Path, path: Path, *, keep_bytes: int) -> Path:
    """The first `keep_bytes` of `source`: a download or copy cut short."""
    path.write_bytes(source.read_bytes()[:keep_bytes])
    return path


def write_garbage(path: Path, *, size_bytes: int = 4096, seed: int = 7) -> Path:
    """Random bytes (no container header at all)."""
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size_bytes, np.uint8).tobytes())
    return path


# --- audio that lies or holds nothing usable ----------------------------------------------------


def wav_header(
    *, sample_rate_hz: int, channels: int, bits: int, data_bytes: int, float_samples: bool = False
) -> bytes:
    """A canonical 44-byte RIFF/WAVE header declaring `data_bytes` of sample data."""
    block_align = channels * bits // 8
    audio_format = 3 if float_samples else 1  # WAVE_FORMAT_IEEE_FLOAT / WAVE_FORMAT_PCM
    riff_bytes = min(0xFFFFFFFF, 36 + data_bytes)
    return (
        b"RIFF"
        + struct.pack("<I", riff_bytes)
        + b"WAVEfmt "
        + struct.pack(
            "<IHHIIHH",
            16,
            audio_format,
            channels,
            sample_rate_hz,
            sample_rate_hz * block_align,
            block_align,
            bits,
        )
        + b"data"
        + struct.pack("<I", min(0xFFFFFFFF, data_bytes))
    )


def write_wav_without_samples(path: Path) -> Path:
    """A valid 16 kHz WAV header whose data chunk is empty."""
    path.write_bytes(wav_header(sample_rate_hz=16000, channels=1, bits=16, data_bytes=0))
    return path


def write_wav_with_one_sample(path: Path) -> Path:
    """A 16 kHz WAV holding exactly one 16-bit sample (62.5 µs of sound)."""
    header = wav_header(sample_rate_hz=16000, channels=1, bits=16, data_bytes=2)
    path.write_bytes(header + struct.pack("<h", 1000))
    return path


def write_float_wav(path: Path, samples_f32: np.ndarray, sample_rate_hz: int = 16000) -> Path:
    """A 32-bit IEEE-float mono WAV of `samples_f32` exactly as given (NaN and Inf kept)."""
    data = np.asarray(samples_f32, dtype="<f4").tobytes()
    header = wav_header(
        sample_rate_hz=sample_rate_hz,
        channels=1,
        bits=32,
        data_bytes=len(data),
        float_samples=True,
    )
    path.write_bytes(header + data)
    return path


def write_non_finite_wav(path: Path, *, duration_s: float = 1.0, bad: float = np.nan) -> Path:
    """Speech-like float WAV with a run of `bad` (NaN or ±Inf) samples in its middle."""
    samples = synth_speech(duration_s, seed=5).samples_f32.astype(np.float32)
    middle = samples.shape[0] // 2
    samples[middle : middle + 160] = bad
    return write_float_wav(path, samples)


def write_wav_claiming_hours(path: Path, *, hours: float = 48.0, real_s: float = 1.0) -> Path:
    """An 8 kHz 8-bit WAV whose header declares `hours` of sound but holds `real_s` of it."""
    rate = 8000
    declared = int(hours * 3600 * rate)  # one byte per sample: 48 h fits the 32-bit field
    tone = 128 + 60 * np.sin(2 * np.pi * 220 * np.arange(int(real_s * rate)) / rate)
    header = wav_header(sample_rate_hz=rate, channels=1, bits=8, data_bytes=declared)
    path.write_bytes(header + tone.astype(np.uint8).tobytes())
    return path


def write_short_speech(path: Path, *, duration_s: float = 1.0, seed: int = 3) -> Path:
    """An ordinary 16 kHz 16-bit speech WAV (the good input beside the hostile ones)."""
    return write_wav(path, synth_speech(duration_s, seed=seed).samples_f32, 16000)


def write_audio_only_mp4(path: Path, *, duration_s: float = 1.0) -> Path:
    """An .mp4 holding one AAC track and no video stream."""
    rate = 16000
    samples = synth_speech(duration_s, seed=4).samples_f32.astype(np.float32)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate)
        assert isinstance(stream, av.audio.stream.AudioStream)
        stream.layout = "mono"
        for start in range(0, samples.shape[0], 1024):
            block = np.ascontiguousarray(samples[None, start : start + 1024])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


# --- video: clips, rates and lying containers ----------------------------------------------------


def write_h264(
    path: Path,
    frames: list[np.ndarray],
    *,
    fps: int = 25,
    pts_ms: list[int] | None = None,
    container_format: str | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """RGB frames as H.264 (an MP4 unless `container_format` says otherwise, e.g. raw "h264");
    `pts_ms` gives irregular (variable-rate) timestamps."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = options or {"preset": "ultrafast", "crf": "23"}
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[index], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_flat_h264(path: Path, *, width: int, height: int) -> Path:
    """A decompression bomb in miniature: 5 kB of H.264 that decode to one huge flat frame."""
    flat = np.full((height, width, 3), (90, 140, 200), dtype=np.uint8)
    return write_h264(path, [flat], options={"preset": "veryfast", "crf": "30"})


def write_raw_h264(path: Path, frames: list[np.ndarray]) -> Path:
    """An Annex B H.264 elementary stream (no container, no timestamps), named as given."""
    return write_h264(path, frames, container_format="h264")


def write_size_change(path: Path, first: list[np.ndarray], then: list[np.ndarray]) -> Path:
    """An MP4 whose H.264 picture size changes mid-stream (two encodes back to back, the
    second's parameter sets in band), with timestamps at 25 fps."""
    raw = path.with_suffix(".h264")
    raw.write_bytes(
        write_raw_h264(raw, first).read_bytes()
        + write_raw_h264(path.with_suffix(".2.h264"), then).read_bytes()
    )
    with av.open(str(raw)) as source, av.open(str(path), mode="w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        index = 0
        for packet in source.demux(source.streams.video[0]):
            if packet.size == 0:
                continue
            packet.pts = packet.dts = index
            packet.time_base, packet.duration, packet.stream = Fraction(1, 25), 1, stream
            target.mux(packet)
            index += 1
    for part in (raw, path.with_suffix(".2.h264")):
        part.unlink()
    return path


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, box start, box end) of the MP4 boxes laid end to end in data[start:end]."""
    found = []
    while start + 8 <= end:
        size = int.from_bytes(data[start : start + 4], "big")
        kind = data[start + 4 : start + 8]
        if size == 1:
            size = int.from_bytes(data[start + 8 : start + 16], "big")
        if size < 8 or start + size > end:
            break
        found.append((kind, start, start + size))
        start += size
    return found


def _find_box(data: bytes, path: list[bytes]) -> tuple[int, int]:
    """(start, end) of the box at `path` (e.g. [b"moov", b"mvhd"]), first match at each level."""
    start, end = 0, len(data)
    for depth, kind in enumerate(path):
        for found, box_start, box_end in _boxes(data, start, end):
            if found == kind:
                start, end = box_start, box_end
                break
        else:
            raise ValueError(f"no {b'/'.join(path[: depth + 1])!r} box")
        if depth < len(path) - 1:
            start += 8
    return start, end


def _set_header_duration(data: bytearray, path: list[bytes], duration_s: float) -> None:
    """Rewrite the duration of an mvhd/mdhd/tkhd box (version 0 or 1) to `duration_s`."""
    start, _ = _find_box(bytes(data), path)
    version = data[start + 8]
    kind = path[-1]
    if kind == b"tkhd":  # tkhd has track_ID and a reserved field where the others have a scale
        movie_start, _ = _find_box(bytes(data), [b"moov", b"mvhd"])
        scale_offset = movie_start + (28 if data[movie_start + 8] == 1 else 20)
        timescale = int.from_bytes(data[scale_offset : scale_offset + 4], "big")
        offset = start + (36 if version == 1 else 28)
    else:
        scale_offset = start + (28 if version == 1 else 20)
        timescale = int.from_bytes(data[scale_offset : scale_offset + 4], "big")
        offset = scale_offset + 4
    width = 8 if version == 1 else 4
    value = min(int(duration_s * timescale), 2 ** (8 * width) - 1)
    data[offset : offset + width] = value.to_bytes(width, "big")


def _set_sample_durations(data: bytearray, total_s: float | None) -> None:
    """Rewrite the first track's time-to-sample table so its samples last `total_s` in all
    (None: every sample lasts 0, all at one instant)."""
    scale_start, _ = _find_box(bytes(data), [b"moov", b"trak", b"mdia", b"mdhd"])
    scale_offset = scale_start + (28 if data[scale_start + 8] == 1 else 20)
    timescale = int.from_bytes(data[scale_offset : scale_offset + 4], "big")
    start, _ = _find_box(bytes(data), [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"])
    entry_count = int.from_bytes(data[start + 12 : start + 16], "big")
    entries = [start + 16 + entry * 8 for entry in range(entry_count)]
    sample_count = sum(int.from_bytes(data[e : e + 4], "big") for e in entries)
    delta = 0 if total_s is None else int(total_s * timescale / sample_count)
    for entry in entries:
        data[entry + 4 : entry + 8] = delta.to_bytes(4, "big")
    for header in ([b"moov", b"mvhd"], [b"moov", b"trak", b"tkhd"]):
        _set_header_duration(data, header, total_s or 0.0)
    _set_header_duration(data, [b"moov", b"trak", b"mdia", b"mdhd"], total_s or 0.0)
    try:  # an edit list would still cut the presentation to the old length: blank it out
        edits, _ = _find_box(bytes(data), [b"moov", b"trak", b"edts"])
    except ValueError:
        return
    data[edits + 4 : edits + 8] = b"free"


def write_mp4_claiming_duration(source: Path, path: Path, *, duration_s: float) -> Path:
    """A copy of a one-track MP4 whose samples are stretched to last `duration_s` in all: the
    headers and the sample table agree, so FFmpeg believes it (a few kB claiming 48 h)."""
    data = bytearray(source.read_bytes())
    _set_sample_durations(data, duration_s)
    path.write_bytes(bytes(data))
    return path


def write_mp4_with_zero_frame_durations(source: Path, path: Path) -> Path:
    """A copy of a one-track MP4 whose frames all last 0 and share one instant (0 fps)."""
    data = bytearray(source.read_bytes())
    _set_sample_durations(data, None)
    path.write_bytes(bytes(data))
    return path


def write_mjpeg(path: Path, frames: list[np.ndarray], *, fps: int = 25) -> Path:
    """RGB frames as Motion JPEG in MP4: no codec-level frame rate to fall back on."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mjpeg", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


# --- images declaring enormous sizes ------------------------------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def write_png_declaring(path: Path, *, width: int, height: int) -> Path:
    """A PNG of under 100 bytes whose header declares width x height RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\x80" * 3 * 16)  # one short row: the rest is missing
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )
    return path


def write_jpeg_declaring(path: Path, *, width: int, height: int) -> Path:
    """A 16x16 JPEG whose frame header (SOF0) is rewritten to declare width x height."""
    ok, encoded = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    data = bytearray(encoded.tobytes())
    sof = data.find(b"\xff\xc0")
    if sof < 0:
        raise ValueError("no baseline SOF0 marker in the encoded JPEG")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


# --- the corpus: each broken file, where it goes and how it must be refused -----------------


@dataclass(frozen=True, slots=True)
class HostileCase:
    """One broken input, given as `role` beside a good other input, and its one right outcome:
    refused at submit with `http_status`, or a job that fails; both with `code` and a message
    containing `says`."""

    name: str
    path: Path
    role: str  # "audio" or "video"
    code: ErrorCode
    says: str
    http_status: int | None  # None: accepted at submit, the job fails


def build_corpus(directory: Path, speech: Path, template: Path) -> list[HostileCase]:
    """Write every hostile file under `directory`; `speech` and `template` are good inputs
    (an ordinary WAV and a faststart H.264 MP4) that some cases are cut from."""
    directory.mkdir(parents=True, exist_ok=True)
    small = [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(1, 6)]
    bigger = [np.full((128, 128, 3), 30 * i, np.uint8) for i in range(1, 6)]
    audio_only = write_audio_only_mp4(directory / "sound_only.mp4")
    media = ErrorCode.INPUT_INVALID_MEDIA
    too_large = ErrorCode.INPUT_TOO_LARGE
    week = 48 * 3600.0

    def case(
        name: str, path: Path, role: str, code: ErrorCode, says: str, status: int | None
    ) -> HostileCase:
        return HostileCase(name, path, role, code, says, status)

    return [
        case("empty_wav", write_zero_byte(directory / "empty.wav"), "audio", media, "0 bytes", 422),
        case("empty_mp4", write_zero_byte(directory / "empty.mp4"), "video", media, "0 bytes", 422),
        case(
            "garbage_wav",
            write_garbage(directory / "noise.wav", seed=1),
            "audio",
            media,
            "FFmpeg cannot open it",
            422,
        ),
        case(
            "garbage_mp4",
            write_garbage(directory / "noise.mp4", seed=2),
            "video",
            media,
            "FFmpeg cannot open it",
            422,
        ),
        case(
            "wav_cut_in_header",
            write_truncated(speech, directory / "header_cut.wav", keep_bytes=30),
            "audio",
            media,
            "FFmpeg cannot open it",
            422,
        ),
        case(
            "wav_cut_in_data",
            write_truncated(speech, directory / "half.wav", keep_bytes=speech.stat().st_size // 2),
            "audio",
            media,
            "cut short",
            422,
        ),
        case(
            "mp4_cut",
            write_truncated(
                template, directory / "cut.mp4", keep_bytes=template.stat().st_size // 3
            ),
            "video",
            media,
            "not a readable video",
            422,
        ),
        case("mp4_without_video", audio_only, "video", media, "has no picture", 422),
        case(
            "wav_without_samples",
            write_wav_without_samples(directory / "silent_header.wav"),
            "audio",
            media,
            "holds no samples",
            None,
        ),
        case(
            "wav_of_one_sample",
            write_wav_with_one_sample(directory / "one_sample.wav"),
            "audio",
            media,
            "less than one video frame",
            422,
        ),
        case(
            "wav_with_nan",
            write_non_finite_wav(directory / "nan.wav", bad=np.nan),
            "audio",
            media,
            "NaN or infinite",
            None,
        ),
        case(
            "wav_with_inf",
            write_non_finite_wav(directory / "inf.wav", bad=-np.inf),
            "audio",
            media,
            "NaN or infinite",
            None,
        ),
        case(
            "wav_claiming_48h",
            write_wav_claiming_hours(directory / "claims_48h.wav"),
            "audio",
            media,
            "declares 172800.0 s",
            422,
        ),
        case(
            "m4a_claiming_48h",
            write_mp4_claiming_duration(audio_only, directory / "claims_48h.m4a", duration_s=week),
            "audio",
            too_large,
            "lasts 172800.0 s",
            413,
        ),
        case(
            "mp4_claiming_48h",
            write_mp4_claiming_duration(
                write_h264(directory / "plain.mp4", small),
                directory / "claims_48h.mp4",
                duration_s=week,
            ),
            "video",
            too_large,
            "lasts 172800.0 s",
            413,
        ),
        case(
            "png_30000_square",
            write_png_declaring(directory / "huge.png", width=30000, height=30000),
            "video",
            too_large,
            "30000x30000",
            413,
        ),
        case(
            "jpeg_65535_square",
            write_jpeg_declaring(directory / "huge.jpg", width=65535, height=65535),
            "video",
            too_large,
            "65535x65535",
            413,
        ),
        case(
            "h264_bomb",
            write_flat_h264(directory / "bomb.mp4", width=4112, height=4112),
            "video",
            too_large,
            "4112x4112",
            413,
        ),
        case(
            "size_change_mid_stream",
            write_size_change(directory / "size_change.mp4", small, bigger),
            "video",
            media,
            "changes its picture size at frame 6",
            None,
        ),
        case(
            "raw_stream_without_timestamps",
            write_raw_h264(directory / "raw_stream.mp4", small),
            "video",
            media,
            "carry no timestamps",
            None,
        ),
    ]
