"""Media I/O on real PyAV files: probe, decode (resample, rotate, loop), load_audio, VideoWriter."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from talkingface.errors import (
    InputNotFoundError,
    InputTooLargeError,
    InvalidMediaError,
    Stage,
    TalkingFaceError,
)
from talkingface.media.audio import load_audio
from talkingface.media.decode import (
    count_frames,
    iter_frames,
    iter_template_frames,
    template_index_schedule,
)
from talkingface.media.encode import VideoWriter
from talkingface.media.probe import choose_output_fps, probe
from talkingface.vocabulary import LoopMode

BITS = 8  # frame number drawn as 8 black/white blocks along the top edge
BLOCK_PX = 8


# --- media built in code ---------------------------------------------------------------------


def _pattern_frame(index: int, width: int = 128, height: int = 128) -> np.ndarray:
    """A colour ramp with the frame number as binary blocks in the top band."""
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = ramp[None, :].astype(np.uint8)
    image[..., 1] = np.linspace(0, 255, height, dtype=np.float32)[:, None].astype(np.uint8)
    image[..., 2] = 96
    for bit in range(BITS):
        value = 255 if (index >> bit) & 1 else 0
        image[:BLOCK_PX, bit * BLOCK_PX : (bit + 1) * BLOCK_PX] = value
    return image


def _read_pattern(frame: np.ndarray) -> int:
    centre = BLOCK_PX // 2
    bits = [int(frame[centre, bit * BLOCK_PX + centre].mean() > 127) for bit in range(BITS)]
    return sum(bit << position for position, bit in enumerate(bits))


def _write_clip(
    path: Path,
    *,
    frame_count: int = 25,
    fps: int = 25,
    width: int = 128,
    height: int = 128,
    pts_ms: list[int] | None = None,
    rotation_ccw_deg: float | None = None,
) -> Path:
    """H.264 MP4 with pattern frames; `pts_ms` gives irregular timestamps (variable rate)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "10", "g": "6"}  # keyframes to seek to
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        if rotation_ccw_deg is not None:
            stream.set_display_rotation(rotation_ccw_deg)
        for index in range(frame_count):
            frame = av.VideoFrame.from_ndarray(_pattern_frame(index, width, height), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[index], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _write_tone(
    path: Path, *, rate_hz: int, channels: int, duration_s: float, codec: str, fmt: str
) -> Path:
    layout = "mono" if channels == 1 else "stereo"
    sample_count = int(rate_hz * duration_s)
    time_s = np.arange(sample_count) / rate_hz
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * time_s)).astype(np.float32)
    planar = np.repeat(tone[None, :], channels, axis=0)
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate_hz)
        assert isinstance(stream, av.audio.stream.AudioStream)
        stream.layout = layout
        sample_format = "s16p" if codec == "pcm_s16le" else "fltp"
        for start in range(0, sample_count, 1024):
            block = planar[:, start : start + 1024]
            if sample_format == "s16p":
                block = (block * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(block), format=sample_format, layout=layout
            )
            frame.sample_rate, frame.pts = rate_hz, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def clip_25fps(media_dir: Path) -> Path:
    return _write_clip(media_dir / "ramp_25fps.mp4")


@pytest.fixture(scope="module")
def tone_16k_wav(media_dir: Path) -> Path:
    return _write_tone(
        media_dir / "tone_16k.wav",
        rate_hz=16000,
        channels=1,
        duration_s=1.5,
        codec="pcm_s16le",
        fmt="wav",
    )


@pytest.fixture(scope="module")
def stereo_44k_m4a(media_dir: Path) -> Path:
    return _write_tone(
        media_dir / "tone_44k_stereo.m4a",
        rate_hz=44100,
        channels=2,
        duration_s=0.7,
        codec="aac",
        fmt="mp4",
    )


VFR_PTS_MS = [0, 25, 90, 130, 240, 270, 295, 360, 400, 510, 540, 560, 700, 740, 760, 880]


@pytest.fixture(scope="module")
def vfr_clip(media_dir: Path) -> Path:
    return _write_clip(media_dir / "vfr.mp4", frame_count=len(VFR_PTS_MS), pts_ms=VFR_PTS_MS)


# --- probe -----------------------------------------------------------------------------------


def test_probe_describes_a_constant_rate_clip(clip_25fps: Path) -> None:
    info = probe(clip_25fps)
    assert (info.width, info.height, info.rotation_deg) == (128, 128, 0)
    assert info.fps == pytest.approx(25.0)
    assert info.frame_count == 25
    assert info.duration_s == pytest.approx(1.0, abs=0.05)
    assert info.has_video and not info.has_audio and not info.is_still_image
    assert not info.is_variable_frame_rate
    assert info.video_codec == "h264" and info.audio_codec is None
    assert info.size_bytes == clip_25fps.stat().st_size
    assert choose_output_fps(info) == pytest.approx(25.0)


def test_probe_describes_audio(stereo_44k_m4a: Path) -> None:
    info = probe(stereo_44k_m4a)
    assert not info.has_video and info.has_audio
    assert (info.audio_codec, info.audio_sample_rate_hz, info.audio_channels) == ("aac", 44100, 2)
    assert info.duration_s == pytest.approx(0.7, abs=0.03)


def test_probe_flags_variable_frame_rate_and_output_uses_25fps(vfr_clip: Path) -> None:
    info = probe(vfr_clip)
    assert info.is_variable_frame_rate
    assert choose_output_fps(info) == 25.0


def test_photo_is_a_still_image_at_25fps(media_dir: Path) -> None:
    photo = media_dir / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(_pattern_frame(5, 96, 64), cv2.COLOR_RGB2BGR))
    info = probe(photo)
    assert info.is_still_image and info.frame_count == 1 and info.fps == 0.0
    assert (info.width, info.height) == (96, 64)
    assert choose_output_fps(info) == 25.0
    frames = list(iter_frames(photo, fps=25.0))
    assert len(frames) == 1
    assert frames[0].shape == (64, 96, 3) and _read_pattern(frames[0]) == 5


@pytest.mark.parametrize(("rotation_ccw_deg", "rotation_deg"), [(90, 270), (-90, 90)])
def test_rotated_clip_is_decoded_upright(
    media_dir: Path, rotation_ccw_deg: int, rotation_deg: int
) -> None:
    clip = _write_clip(
        media_dir / f"rotated_{rotation_deg}.mp4",
        frame_count=5,
        width=160,
        height=128,
        rotation_ccw_deg=rotation_ccw_deg,
    )
    info = probe(clip)
    assert (info.width, info.height, info.rotation_deg) == (128, 160, rotation_deg)
    frame = next(iter_frames(clip, fps=25.0, info=info))
    assert frame.shape == (160, 128, 3)
    # Same picture as np.rot90 of the stored frame, turned as a player would show it.
    expected = np.rot90(_pattern_frame(0, 160, 128), k=-(rotation_deg // 90))
    assert np.abs(frame.astype(int) - expected.astype(int)).mean() < 4


def test_probe_refuses_oversized_input(clip_25fps: Path) -> None:
    with pytest.raises(InputTooLargeError, match=clip_25fps.name):
        probe(clip_25fps, max_width_px=100)
    with pytest.raises(InputTooLargeError, match=clip_25fps.name):
        probe(clip_25fps, max_duration_s=0.5)


# --- error paths -----------------------------------------------------------------------------


def _hostile_files(media_dir: Path, clip: Path) -> dict[str, Path]:
    empty = media_dir / "empty.mp4"
    empty.write_bytes(b"")
    garbage = media_dir / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    truncated = media_dir / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # moov is at the end
    return {"empty": empty, "garbage": garbage, "truncated": truncated}


def test_missing_file_is_input_not_found(media_dir: Path) -> None:
    missing = media_dir / "nope.mp4"
    with pytest.raises(InputNotFoundError, match=r"nope\.mp4") as caught:
        probe(missing)
    assert caught.value.stage is Stage.PROBE
    with pytest.raises(InputNotFoundError, match=r"nope\.mp4"):
        load_audio(missing)


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated"])
def test_unreadable_file_is_invalid_media_naming_it(
    media_dir: Path, clip_25fps: Path, kind: str
) -> None:
    path = _hostile_files(media_dir, clip_25fps)[kind]
    with pytest.raises(InvalidMediaError) as caught:
        probe(path)
    assert path.name in caught.value.message and "re-export" in caught.value.message
    assert caught.value.stage is Stage.PROBE
    with pytest.raises(InvalidMediaError, match=path.name) as from_audio:
        load_audio(path)
    assert from_audio.value.stage is Stage.FEATURES


def test_directory_is_refused_with_a_clear_message(media_dir: Path) -> None:
    with pytest.raises(TalkingFaceError, match="directory"):
        probe(media_dir)


def test_video_without_audio_given_to_load_audio(clip_25fps: Path) -> None:
    with pytest.raises(InvalidMediaError, match="has no audio track") as caught:
        load_audio(clip_25fps)
    assert clip_25fps.name in caught.value.message
    assert caught.value.stage is Stage.FEATURES


# --- decode ----------------------------------------------------------------------------------


def test_iter_frames_yields_every_frame_in_order(clip_25fps: Path) -> None:
    frames = list(iter_frames(clip_25fps, fps=25.0))
    assert len(frames) == 25 == count_frames(clip_25fps, fps=25.0)
    assert all(f.shape == (128, 128, 3) and f.dtype == np.uint8 for f in frames)
    assert [_read_pattern(f) for f in frames] == list(range(25))


def test_iter_frames_resamples_by_timestamps(clip_25fps: Path) -> None:
    up = [_read_pattern(f) for f in iter_frames(clip_25fps, fps=50.0)]
    assert len(up) == 50 == count_frames(clip_25fps, fps=50.0)
    assert up == [k // 2 for k in range(50)]  # each frame shown twice
    down = [_read_pattern(f) for f in iter_frames(clip_25fps, fps=12.5)]
    assert len(down) == count_frames(clip_25fps, fps=12.5)
    assert abs(len(down) - 12.5) <= 1
    assert down[:6] == [0, 2, 4, 6, 8, 10]


def test_iter_frames_stops_at_max_frames(clip_25fps: Path) -> None:
    assert len(list(iter_frames(clip_25fps, fps=25.0, max_frames=7))) == 7


def test_variable_rate_clip_becomes_constant_rate(vfr_clip: Path) -> None:
    fps = 25.0
    shown = [_read_pattern(f) for f in iter_frames(vfr_clip, fps=fps)]
    duration_s = (VFR_PTS_MS[-1] + 40) / 1000  # the last frame lasts about one nominal frame
    assert abs(len(shown) - duration_s * fps) <= 1
    assert len(shown) == count_frames(vfr_clip, fps=fps)
    slots = [math.floor(t / 1000 * fps + 0.5) for t in VFR_PTS_MS]  # halves round up
    expected = [max(i for i, s in enumerate(slots) if s <= k) for k in range(len(shown))]
    assert shown == expected
    assert shown == sorted(shown) and shown[-1] == len(VFR_PTS_MS) - 1


def test_count_frames_matches_decoding_on_a_real_vfr_clip(shared_media: Path) -> None:
    path = shared_media / "video_en_male_asian_suit_700x700_talking.mp4"
    info = probe(path)
    assert info.is_variable_frame_rate
    frames = sum(1 for _ in iter_frames(path, fps=25.0, info=info))
    assert frames == count_frames(path, fps=25.0, info=info)
    assert abs(frames - info.duration_s * 25.0) <= 1


@pytest.mark.parametrize("loop", list(LoopMode))
def test_template_frames_follow_the_schedule_in_memory_and_re_decoded(
    clip_25fps: Path, loop: LoopMode
) -> None:
    output_count = 70
    schedule = template_index_schedule(25, output_count, loop)
    kept = list(
        iter_template_frames(clip_25fps, fps=25.0, output_frame_count=output_count, loop=loop)
    )
    budget = 3 * 128 * 128 * 3  # three frames: forces re-decoding and 3-frame backward chunks
    redecoded = list(
        iter_template_frames(
            clip_25fps,
            fps=25.0,
            output_frame_count=output_count,
            loop=loop,
            memory_budget_bytes=budget,
        )
    )
    for frames in (kept, redecoded):
        assert [index for index, _ in frames] == schedule.tolist()
        assert [_read_pattern(frame) for _, frame in frames] == schedule.tolist()
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(kept, redecoded, strict=True))


def test_template_longer_than_output_is_cut(clip_25fps: Path) -> None:
    frames = list(
        iter_template_frames(clip_25fps, fps=25.0, output_frame_count=10, loop=LoopMode.PINGPONG)
    )
    assert [index for index, _ in frames] == list(range(10))


def test_template_frames_may_be_modified_by_the_caller(clip_25fps: Path) -> None:
    seen: dict[int, int] = {}
    for index, frame in iter_template_frames(
        clip_25fps, fps=25.0, output_frame_count=60, loop=LoopMode.RESTART
    ):
        assert seen.setdefault(index, _read_pattern(frame)) == _read_pattern(frame)
        frame[:] = 255  # a later loop must not see this


# --- load_audio ------------------------------------------------------------------------------


def test_load_audio_of_a_16k_wav(tone_16k_wav: Path) -> None:
    clip = load_audio(tone_16k_wav)
    assert clip.sample_rate_hz == 16000
    assert clip.samples_f32.dtype == np.float32 and clip.samples_f32.ndim == 1
    assert clip.samples_f32.shape[0] == 24000
    assert np.abs(clip.samples_f32).max() == pytest.approx(0.3, abs=0.01)


def test_load_audio_resamples_stereo_m4a_to_mono_16k(stereo_44k_m4a: Path) -> None:
    clip = load_audio(stereo_44k_m4a)
    assert clip.sample_rate_hz == 16000
    assert clip.duration_s == pytest.approx(probe(stereo_44k_m4a).duration_s, abs=0.02)


@pytest.mark.parametrize(
    "name",
    [
        "audio_en_female_ad_10s_16k.wav",
        "audio_en_male_acknowledgement_17s_aac.m4a",
        "audio_ja_9s_48k_s24le_stereo.wav",
        "audio_zh_female_news_8s_48k_stereo.wav",
    ],
)
def test_load_audio_of_real_speech_matches_probe(shared_media: Path, name: str) -> None:
    path = shared_media / name
    clip = load_audio(path)
    assert clip.sample_rate_hz == 16000 and clip.samples_f32.ndim == 1
    assert clip.duration_s == pytest.approx(probe(path).duration_s, abs=0.02)
    assert 0.05 < float(np.abs(clip.samples_f32).max()) <= 1.0


def test_load_audio_reads_a_video_files_own_track(shared_media: Path) -> None:
    path = shared_media / "video_en_female_older_512x512_talking.mp4"
    clip = load_audio(path)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.duration is not None and stream.time_base is not None
        track_s = float(stream.duration * stream.time_base)
    assert clip.duration_s == pytest.approx(track_s, abs=0.02)


def test_load_audio_refuses_audio_over_the_limit(tone_16k_wav: Path) -> None:
    with pytest.raises(InputTooLargeError, match=tone_16k_wav.name):
        load_audio(tone_16k_wav, max_duration_s=0.5)


# --- VideoWriter -----------------------------------------------------------------------------


def _written(path: Path) -> tuple[av.video.stream.VideoStream, list[np.ndarray], float | None]:
    """(video stream, decoded RGB frames, decoded audio seconds) of an output file."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
        audio_s = None
        if container.streams.audio:
            audio = container.streams.audio[0]
            assert audio.duration is not None and audio.time_base is not None
            audio_s = float(audio.duration * audio.time_base)
        return video, frames, audio_s


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001])
def test_writer_round_trip_with_audio(media_dir: Path, tone_16k_wav: Path, fps: float) -> None:
    out = media_dir / "out.mp4"
    with VideoWriter(out, width=128, height=128, fps=fps, audio_path=tone_16k_wav) as writer:
        for index in range(30):
            writer.write(_pattern_frame(index))
    assert writer.frames_written == 30
    video, frames, audio_s = _written(out)
    assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
    assert len(frames) == 30
    assert [_read_pattern(f) for f in frames] == list(range(30))
    assert np.abs(frames[3].astype(int) - _pattern_frame(3).astype(int)).mean() < 3
    assert video.average_rate == Fraction(fps).limit_denominator(1001)
    assert video.duration is not None and video.time_base is not None
    assert float(video.duration * video.time_base) == pytest.approx(30 / fps, abs=1e-3)
    assert audio_s is not None and abs(audio_s - 30 / fps) < 1 / fps
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart
    assert not list(media_dir.glob(".out.mp4.partial-*"))


def test_writer_keeps_stereo_and_rate_and_pads_odd_sizes(
    media_dir: Path, stereo_44k_m4a: Path
) -> None:
    out = media_dir / "odd.mp4"
    with VideoWriter(out, width=127, height=95, fps=25.0, audio_path=stereo_44k_m4a) as writer:
        for index in range(25):  # 1 s of video over 0.7 s of audio: padded with silence
            writer.write(_pattern_frame(index, 127, 95))
    assert (writer.output_width, writer.output_height) == (128, 96)
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.width, video.height) == (128, 96)
        assert (audio.codec_context.name, audio.sample_rate, audio.channels) == ("aac", 44100, 2)
        assert audio.duration is not None and audio.time_base is not None
        assert abs(float(audio.duration * audio.time_base) - 1.0) < 1 / 25
        frame = next(container.decode(video)).to_ndarray(format="rgb24")
    # The padded column and row repeat their neighbours.
    assert np.abs(frame[:, 127].astype(int) - frame[:, 126].astype(int)).mean() < 4
    assert np.abs(frame[95].astype(int) - frame[94].astype(int)).mean() < 4


def test_writer_muxes_a_video_files_audio_track(media_dir: Path, shared_media: Path) -> None:
    source = shared_media / "video_en_female_older_512x512_talking.mp4"  # AAC 48 kHz stereo
    out = media_dir / "from_video.mp4"
    with VideoWriter(out, width=64, height=64, fps=25.0, audio_path=source) as writer:
        for index in range(50):
            writer.write(_pattern_frame(index, 64, 64))
    _, frames, audio_s = _written(out)
    assert len(frames) == 50
    assert audio_s is not None and abs(audio_s - 2.0) < 1 / 25


def test_writer_leaves_no_output_when_the_block_fails(media_dir: Path) -> None:
    out = media_dir / "failed.mp4"
    with (
        pytest.raises(RuntimeError, match="render broke"),
        VideoWriter(out, width=64, height=64, fps=25.0) as writer,
    ):
        writer.write(_pattern_frame(0, 64, 64))
        raise RuntimeError("render broke")
    assert not out.exists()
    assert not list(media_dir.glob(".failed.mp4.partial-*"))


def test_writer_refuses_an_audio_source_without_audio(media_dir: Path, clip_25fps: Path) -> None:
    out = media_dir / "silent.mp4"
    with pytest.raises(InvalidMediaError, match=clip_25fps.name):
        VideoWriter(out, width=64, height=64, fps=25.0, audio_path=clip_25fps)
    assert not out.exists()
    assert not list(media_dir.glob(".silent.mp4.partial-*"))


def _write_mono_tone(path: Path, *, codec: str, fmt: str, rate_hz: int, duration_s: float) -> Path:
    """A 440 Hz mono tone in any encodable format (mono: packed and planar look alike)."""
    sample_format = av.Codec(codec, "w").audio_formats[0].name
    dtype, scale = {"s16": (np.int16, 32767.0), "s32": (np.int32, 2147483647.0)}.get(
        sample_format[:3], (np.float32, 1.0)
    )
    count = int(rate_hz * duration_s)
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(count) / rate_hz) * scale
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate_hz)
        assert isinstance(stream, av.audio.stream.AudioStream)
        stream.layout = "mono"
        step = stream.codec_context.frame_size or 1024
        for start in range(0, count, step):
            block = tone[None, start : start + step].astype(dtype)
            frame = av.AudioFrame.from_ndarray(block, format=sample_format, layout="mono")
            frame.sample_rate, frame.pts = rate_hz, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(
    ("suffix", "codec", "fmt", "rate_hz"),
    [
        ("mp3", "libmp3lame", "mp3", 44100),
        ("flac", "flac", "flac", 22050),
        ("ogg", "libopus", "ogg", 48000),
        ("aac", "aac", "adts", 32000),
    ],
)
def test_load_audio_reads_common_speech_formats(
    media_dir: Path, suffix: str, codec: str, fmt: str, rate_hz: int
) -> None:
    path = _write_mono_tone(
        media_dir / f"tone.{suffix}", codec=codec, fmt=fmt, rate_hz=rate_hz, duration_s=1.5
    )
    clip = load_audio(path)
    assert clip.sample_rate_hz == 16000
    assert clip.duration_s == pytest.approx(1.5, abs=0.06)  # codec priming/padding
    middle = clip.samples_f32[4000:20000]
    assert float(np.sqrt(np.mean(middle**2))) == pytest.approx(0.3 / np.sqrt(2), abs=0.03)
