"""The hostile corpus at the media level: every broken file gets its one specific error."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from talkingface.config import LimitSettings, Settings
from talkingface.errors import InputTooLargeError, Stage, TalkingFaceError
from talkingface.media.audio import load_audio
from talkingface.media.decode import count_frames, iter_template_frames
from talkingface.media.input_checks import check_inputs
from talkingface.media.probe import choose_output_fps, probe
from talkingface.media.probe_process import IsolatedProbe
from talkingface.vocabulary import LoopMode
from tests.hostile.corpus import HostileCase, write_flat_h264, write_png_declaring
from tests.media import ROTATED_UPRIGHT_HW

REMEDIES = ("re-export", "send", "give", "shorten", "downscale")  # what the user is told to do


def _outcome(call: Callable[[], object]) -> TalkingFaceError | None:
    try:
        call()
    except TalkingFaceError as exc:
        return exc
    return None


def _inputs(case: HostileCase, speech: Path, template: Path) -> tuple[Path, Path]:
    return (case.path, template) if case.role == "audio" else (speech, case.path)


def test_every_file_refused_at_submit_gets_its_code_status_and_a_message_saying_why(
    hostile_cases: dict[str, HostileCase], good_speech: Path, short_template_clip: Path
) -> None:
    # Given each broken file beside a good other input
    refused_at_submit = [c for c in hostile_cases.values() if c.http_status is not None]
    assert len(refused_at_submit) >= 15
    prober = IsolatedProbe.from_settings(Settings())  # the API probes in a child process
    wrong = []
    for case in refused_at_submit:
        audio, video = _inputs(case, good_speech, short_template_clip)
        # When the inputs are checked as POST /v1/jobs checks them
        error = _outcome(lambda a=audio, v=video: check_inputs(a, v, LimitSettings(), prober))
        # Then the error is the case's own, with its status and a message naming the file,
        # the problem and, after the semicolon, what to do
        if (
            error is None
            or error.code is not case.code
            or error.http_status != case.http_status
            or case.says not in error.message
            or case.path.name not in error.message
            or not any(word in error.message.split(";")[-1] for word in REMEDIES)
        ):
            wrong.append((case.name, error and (error.code, error.http_status, error.message)))
    assert wrong == []


def test_files_that_pass_the_probe_fail_in_their_stage_with_a_specific_error(
    hostile_cases: dict[str, HostileCase],
) -> None:
    accepted = [c for c in hostile_cases.values() if c.http_status is None]
    assert {c.name for c in accepted} == {
        "wav_without_samples",
        "wav_with_nan",
        "wav_with_inf",
        "size_change_mid_stream",
        "raw_stream_without_timestamps",
    }
    for case in accepted:
        if case.role == "audio":
            error = _outcome(lambda p=case.path: load_audio(p))
            stage = Stage.FEATURES
        else:
            info = probe(case.path)
            frames = lambda p=case.path, i=info: list(  # noqa: E731
                iter_template_frames(
                    p, fps=25.0, output_frame_count=25, loop=LoopMode.PINGPONG, info=i
                )
            )
            error = _outcome(frames)
            stage = Stage.DECODE
        assert error is not None, case.name
        assert (error.code, error.stage) == (case.code, stage), (case.name, error.message)
        assert case.says in error.message and case.path.name in error.message, error.message
        assert any(word in error.message.split(";")[-1] for word in REMEDIES), error.message


def test_a_bomb_is_refused_from_its_header_and_the_limits_are_the_configured_ones(
    hostile_dir: Path,
) -> None:
    bomb = write_flat_h264(hostile_dir / "bomb_640.mp4", width=640, height=480)
    png = write_png_declaring(hostile_dir / "declares_640.png", width=640, height=480)
    for path in (bomb, png):
        with pytest.raises(InputTooLargeError) as raised:
            probe(path, max_width_px=320, max_height_px=240)
        # refused from what the header declares, before any frame is decoded
        assert raised.value.details["declared"] is True
        assert "640x480" in raised.value.message and "320x240" in raised.value.message
        assert raised.value.http_status == 413
    assert probe(bomb).width == 640  # within the default limits it is an ordinary video


def test_the_header_size_check_allows_a_rotated_video_that_fits_upright(
    rotated_clip: Path,
) -> None:
    height, width = ROTATED_UPRIGHT_HW  # stored 320 wide, shown 256 wide and 320 high
    info = probe(rotated_clip, max_width_px=width, max_height_px=height)
    assert (info.width, info.height) == (width, height)


def test_a_wav_whose_header_leaves_the_size_open_is_read_whole(
    good_speech: Path, tmp_path: Path
) -> None:
    # Given a WAV as a streaming writer leaves it: data size 0xFFFFFFFF
    data = bytearray(good_speech.read_bytes())
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(bytes(data))

    probe(streamed)  # not "cut short": the size is open, not a promise
    clip = load_audio(streamed)

    assert clip.samples_f32.shape[0] == pytest.approx(16000, abs=16)


def test_zero_and_variable_frame_rate_templates_are_read_at_25_fps(
    zero_fps_clip: Path, vfr_clip: Path
) -> None:
    zero = probe(zero_fps_clip)
    assert zero.fps == 0.0 and choose_output_fps(zero) == 25.0
    # all frames share one instant: the template is its last frame, held
    assert count_frames(zero_fps_clip, fps=25.0, info=zero) == 1
    frames = list(
        iter_template_frames(
            zero_fps_clip, fps=25.0, output_frame_count=5, loop=LoopMode.PINGPONG, info=zero
        )
    )
    assert [index for index, _ in frames] == [0] * 5
    assert frames[0][1].shape == (256, 256, 3)

    vfr = probe(vfr_clip)
    assert vfr.is_variable_frame_rate and choose_output_fps(vfr) == 25.0
    assert count_frames(vfr_clip, fps=25.0, info=vfr) == 25  # 0–0.96 s + the last frame's time
