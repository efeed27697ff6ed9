"""Inputs real users send that once went wrong: anamorphic templates, MP3s with cover art."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from talkingface.cli import app
from talkingface.media.audio import load_audio
from talkingface.media.probe import probe
from tests.media import template_frames

ANAMORPHIC_SAR = Fraction(3, 2)
COVER_SECONDS = 2.0


def _write_anamorphic_clip(path: Path, sample_aspect_ratio: Fraction) -> Path:
    """The 256 px astronaut squeezed to 2/3 of its width, tagged to be shown 3:2 wide again."""
    frames = template_frames(25, 256)
    height, width = frames[0].shape[:2]
    stored_width = round(width / sample_aspect_ratio) // 2 * 2
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = stored_width, height, "yuv420p"
        stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
        for frame in frames:
            squeezed = cv2.resize(frame, (stored_width, height), interpolation=cv2.INTER_AREA)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(squeezed, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def _stored_aspect(path: Path) -> tuple[int, int, Fraction]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        sar = video.sample_aspect_ratio or video.codec_context.sample_aspect_ratio
        return video.codec_context.width, video.codec_context.height, Fraction(sar or 1)


def test_an_anamorphic_template_keeps_its_display_aspect(tmp_path: Path, speech_wav: Path) -> None:
    # Given a template stored 172x256 with square-ish content shown 3:2 wide (SAR 3:2)
    template = _write_anamorphic_clip(tmp_path / "anamorphic.mp4", ANAMORPHIC_SAR)
    width, height, sar = _stored_aspect(template)
    assert sar == ANAMORPHIC_SAR  # the input really is anamorphic

    # When a video is made from it
    output = tmp_path / "out.mp4"
    result = CliRunner().invoke(
        app, ["generate", "-a", str(speech_wav), "-v", str(template), "-o", str(output)]
    )

    # Then the output shows the same picture shape: same stored size, same pixel shape
    assert result.exit_code == 0, result.stderr
    out_width, out_height, out_sar = _stored_aspect(output)
    assert (out_width, out_height) == (width, height)
    assert out_sar == ANAMORPHIC_SAR
    assert out_width * out_sar / out_height == width * sar / height  # display aspect
    assert probe(output).sample_aspect_ratio == ANAMORPHIC_SAR


def _write_mp3_with_cover(path: Path, cover_size: tuple[int, int]) -> Path:
    """Speech-like tone as MP3 with an ID3 cover picture (an `attached_pic` JPEG stream)."""
    cover_width, cover_height = cover_size
    y, x = np.mgrid[0:cover_height, 0:cover_width]
    cover = np.stack([x * 255 // cover_width, y * 255 // cover_height, (x ^ y) & 255], axis=-1)
    ok, jpeg = cv2.imencode(".jpg", cover.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    rate = 16000
    with av.open(str(path), "w", format="mp3") as container:
        audio = container.add_stream("libmp3lame", rate=rate)
        audio.layout = "mono"
        picture = container.add_stream("mjpeg")
        picture.width, picture.height, picture.pix_fmt = cover_width, cover_height, "yuvj420p"
        picture.disposition = av.stream.Disposition.attached_pic
        packet = av.Packet(jpeg.tobytes())
        packet.stream, packet.pts, packet.dts = picture, 0, 0
        packet.time_base = Fraction(1, 90000)
        container.mux(packet)
        t = np.arange(int(rate * COVER_SECONDS)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(
            np.float32
        )
        for start in range(0, tone.size, 1152):
            block = np.ascontiguousarray(tone[None, start : start + 1152])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


@pytest.mark.parametrize(
    "cover_size",
    [
        pytest.param((4800, 4800), id="high-resolution-cover"),
        pytest.param((5000, 600), id="wide-cover"),
        pytest.param((600, 600), id="small-cover"),
    ],
)
def test_an_mp3_with_cover_art_is_speech_and_its_picture_is_ignored(
    tmp_path: Path, template_clip: Path, cover_size: tuple[int, int]
) -> None:
    # Given an MP3 whose ID3 tag carries cover art, larger than the picture limits or not
    speech = _write_mp3_with_cover(tmp_path / "speech.mp3", cover_size)
    with av.open(str(speech)) as container:
        assert [s.disposition for s in container.streams.video] == [
            av.stream.Disposition.attached_pic
        ]

    # When it is probed and used as the speech of a video
    info = probe(speech)
    output = tmp_path / "out.mp4"
    result = CliRunner().invoke(
        app, ["generate", "-a", str(speech), "-v", str(template_clip), "-o", str(output)]
    )

    # Then it is audio only (the cover is no picture to render), and the video is made
    assert (info.has_audio, info.has_video) == (True, False)
    assert info.duration_s == pytest.approx(COVER_SECONDS, abs=0.1)
    assert load_audio(speech).duration_s == pytest.approx(COVER_SECONDS, abs=0.1)
    assert result.exit_code == 0, result.stderr
    assert output.is_file()


def test_an_mp3_with_cover_art_as_template_says_it_has_no_picture(
    tmp_path: Path, speech_wav: Path
) -> None:
    speech = _write_mp3_with_cover(tmp_path / "song.mp3", (600, 600))

    result = CliRunner().invoke(
        app, ["generate", "-a", str(speech_wav), "-v", str(speech), "-o", str(tmp_path / "o.mp4")]
    )

    assert result.exit_code == 2
    assert "INPUT_INVALID_MEDIA" in result.stderr and "has no picture" in result.stderr
