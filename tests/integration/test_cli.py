"""The `talkingface` command line end to end: generate (text, JSON, errors), demo, evaluate."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from talkingface.cli import app
from tests.media import FPS, SPEECH_DURATION_S, read_stream_facts

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULT_KEYS = {
    "output",
    "duration_s",
    "width",
    "height",
    "fps",
    "frame_count",
    "frames_without_face",
    "template_from_cache",
    "processing_s",
}
REPORT_KEYS = {
    "frame_count",
    "fps",
    "duration_s",
    "faces_found",
    "sync_correlation",
    "sync_lag_frames",
    "sync_correlation_at_zero",
    "foil_correlation",
    "sync_margin",
    "open_speech_mean",
    "open_silence_mean",
    "open_speech_silence_ratio",
    "open_speech_p50",
    "open_speech_p90",
    "own_speech_fraction",
    "own_open_speech_p50",
    "own_open_speech_p90",
    "amplitude_p50_ratio",
    "amplitude_p90_ratio",
    "outside_mouth_psnr_db",
    "outside_mouth_ssim",
    "mouth_jitter",
    "tracker_faces_found",
    "tracker_sync_correlation",
    "tracker_sync_lag_frames",
    "lse_d",
    "lse_c",
    "lse_av_offset_frames",
    "lse_window_count",
}  # the documented `evaluate --json` contract (README): add keys here, never rename


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A per-test template cache, and the talkingface logger restored after the CLI set it up."""
    monkeypatch.setenv("TALKINGFACE_CACHE__DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TALKINGFACE_CONFIG", raising=False)
    logger = logging.getLogger("talkingface")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def _invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def _generate(audio: Path, video: Path, output: Path, *extra: str) -> Result:
    return _invoke("generate", "--audio", audio, "--video", video, "-o", output, *extra)


def test_generate_writes_the_video_and_says_where(
    speech_wav: Path, template_clip: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.mp4"
    result = _generate(speech_wav, template_clip, output)

    assert result.exit_code == 0, result.stderr
    assert str(output) in result.stdout.replace("\n", "")
    facts = read_stream_facts(output)
    assert (facts.video_codec, facts.audio_codec) == ("h264", "aac")
    assert facts.frame_count == round(SPEECH_DURATION_S * FPS)


def test_generate_json_prints_the_result_summary(
    speech_wav: Path, template_clip: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.mp4"
    first = _generate(speech_wav, template_clip, output, "--json")
    second = _generate(speech_wav, template_clip, tmp_path / "again.mp4", "--json")

    assert first.exit_code == 0, first.stderr
    summary = json.loads(first.stdout)
    assert set(summary) >= RESULT_KEYS
    assert Path(summary["output"]) == output and output.is_file()
    assert summary["duration_s"] == pytest.approx(SPEECH_DURATION_S, abs=1 / FPS)
    assert (summary["width"], summary["height"], summary["fps"]) == (512, 512, 25.0)
    assert summary["frame_count"] == round(SPEECH_DURATION_S * FPS)
    assert summary["frames_without_face"] == 0
    assert summary["template_from_cache"] is False
    assert summary["processing_s"] > 0
    assert json.loads(second.stdout)["template_from_cache"] is True


def test_generate_reports_frames_without_a_face(half_face_clip: Path, tmp_path: Path) -> None:
    from talkingface.samples import synth_speech, write_wav

    audio = write_wav(tmp_path / "speech.wav", synth_speech(2.0, seed=3).samples_f32, 16000)
    result = _generate(audio, half_face_clip, tmp_path / "out.mp4")

    assert result.exit_code == 0, result.stderr
    assert "had no face" in result.stdout


@pytest.mark.parametrize(
    ("case", "code", "extra"),
    [
        ("missing_audio", "INPUT_NOT_FOUND", ()),
        ("empty_template", "INPUT_INVALID_MEDIA", ()),
        ("garbage_audio", "INPUT_INVALID_MEDIA", ()),
        ("video_as_audio", "INPUT_INVALID_MEDIA", ()),
        ("faceless_template", "NO_FACE", ()),
        ("two_faces_strict", "MULTIPLE_FACES", ("--face-policy", "strict")),
        ("unknown_engine", "UNKNOWN_ENGINE", ("--engine", "no-such-engine")),
    ],
)
def test_generate_errors_are_one_line_exit_2_and_leave_no_file(
    request: pytest.FixtureRequest, tmp_path: Path, case: str, code: str, extra: tuple[str, ...]
) -> None:
    speech_wav: Path = request.getfixturevalue("speech_wav")
    template_clip: Path = request.getfixturevalue("template_clip")
    audio, video = {
        "missing_audio": lambda: (tmp_path / "nowhere.wav", template_clip),
        "empty_template": lambda: (speech_wav, request.getfixturevalue("empty_mp4")),
        "garbage_audio": lambda: (request.getfixturevalue("garbage_wav"), template_clip),
        "video_as_audio": lambda: (request.getfixturevalue("video_without_audio"), template_clip),
        "faceless_template": lambda: (speech_wav, request.getfixturevalue("faceless_clip")),
        "two_faces_strict": lambda: (speech_wav, request.getfixturevalue("two_face_clip")),
        "unknown_engine": lambda: (speech_wav, template_clip),
    }[case]()
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    result = _generate(audio, video, out_dir / "result.mp4", *extra)

    lines = [line for line in result.stderr.splitlines() if line.strip() and "━" not in line]
    assert result.exit_code == 2, result.stderr  # (progress bars before the failure are fine)
    assert len(lines) == 1, result.stderr
    assert code in lines[0] and lines[0].startswith("error")
    assert "Traceback" not in result.stderr + result.stdout
    assert list(out_dir.iterdir()) == []


def test_demo_writes_the_result_and_prints_a_sync_score(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    result = _invoke("demo", "--dir", directory)

    assert result.exit_code == 0, result.stderr
    output = (directory / "result.mp4").resolve()
    assert output.is_file() and read_stream_facts(output).frame_count > 0
    assert str(output) in result.stdout.replace("\n", "")
    assert "sync score" in result.stdout and "sync margin" in result.stdout
    score = float(result.stdout.split("sync score")[1].split()[0])
    margin = float(result.stdout.split("sync margin")[1].split()[0])
    assert score >= 0.5 and margin >= 0.2


def test_evaluate_prints_every_figure_as_json_and_thresholds_as_text(
    speech_wav: Path, template_clip: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.mp4"
    assert _generate(speech_wav, template_clip, output).exit_code == 0
    sheet = tmp_path / "sheet.png"
    evaluate = ("evaluate", "--video", output, "--audio", speech_wav, "--template", template_clip)

    as_json = _invoke(*evaluate, "--contact-sheet", sheet, "--json")
    as_text = _invoke(*evaluate, "--max-frames", 40)

    assert as_json.exit_code == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert set(report) == REPORT_KEYS
    assert report["frame_count"] == round(SPEECH_DURATION_S * FPS)
    assert report["sync_correlation"] >= 0.5 and report["sync_margin"] >= 0.2
    assert report["amplitude_p50_ratio"] is None  # the template has no speech of its own
    assert sheet.is_file() and sheet.stat().st_size > 0
    assert str(sheet.resolve()) in as_json.stderr.replace("\n", "")
    assert as_text.exit_code == 0, as_text.stderr
    text = as_text.stdout
    for needs in (
        "≥ 0.60 r at |lag| ≤ 1 frame",
        "≥ 0.20 r",
        "≥ 1.50 x",
        "0.80–1.25 x",
        "≥ 40.0 dB",
    ):
        assert needs in text
    assert "PASS  sync correlation" in text
    assert "n/a   amplitude p50 vs own" in text


def test_evaluate_with_a_syncnet_adds_lse_to_json_and_text(
    speech_wav: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    import torch  # the neural extra (dev installs it)

    from talkingface.neural.syncnet import SyncNet

    checkpoint = tmp_path / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), checkpoint)  # the public file's form: a bare state dict
    evaluate = ("evaluate", "--video", short_template_clip, "--audio", speech_wav)

    as_json = _invoke(*evaluate, "--syncnet", checkpoint, "--json")
    as_text = _invoke(*evaluate, "--syncnet", checkpoint, "--max-frames", 10)

    assert as_json.exit_code == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert set(report) == REPORT_KEYS
    assert report["lse_window_count"] == FPS - 5  # the 1 s clip: 25 frames
    assert report["lse_c"] >= 0.0 and -15 <= report["lse_av_offset_frames"] <= 15
    assert as_text.exit_code == 0, as_text.stderr
    for label in ("SyncNet LSE-D", "SyncNet LSE-C", "SyncNet AV offset"):
        assert label in as_text.stdout


def test_evaluate_without_the_syncnet_file_says_what_it_needs_and_where_to_get_it(
    speech_wav: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "syncnet_v2.model"

    result = _invoke(
        "evaluate", "--video", short_template_clip, "--audio", speech_wav, "--syncnet", missing
    )

    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "CONFIG_INVALID" in message and f"{missing} does not exist" in message
    assert "joonson/syncnet_python" in message and "syncnet_v2.model" in message


def test_python_dash_m_talkingface_generate_runs(
    speech_wav: Path, template_clip: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.mp4"
    env = {**os.environ, "TALKINGFACE_CACHE__DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "talkingface", "generate", "--audio", str(speech_wav)]
    command += ["--video", str(template_clip), "-o", str(output), "--json"]

    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["frame_count"] == round(SPEECH_DURATION_S * FPS)
    assert read_stream_facts(output).frame_count == round(SPEECH_DURATION_S * FPS)


def test_python_dash_m_talkingface_error_is_one_line(tmp_path: Path, template_clip: Path) -> None:
    env = {**os.environ, "TALKINGFACE_CACHE__DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "talkingface", "generate", "--audio", "missing.wav"]
    command += ["--video", str(template_clip), "-o", str(tmp_path / "out.mp4")]

    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False
    )

    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert completed.returncode == 2
    assert len(lines) == 1 and "INPUT_NOT_FOUND" in lines[0], completed.stderr


@pytest.mark.parametrize(
    ("output_name", "code"),
    [
        ("result.avi", "OUTPUT_INVALID"),
        ("template", "OUTPUT_INVALID"),  # the template itself
        ("/proc/no-such-dir/result.mp4", "OUTPUT_INVALID"),
    ],
)
def test_unusable_output_paths_are_refused_before_any_work(
    tmp_path: Path, speech_wav: Path, template_clip: Path, output_name: str, code: str
) -> None:
    template = tmp_path / "template.mp4"
    template.write_bytes(template_clip.read_bytes())
    output = template if output_name == "template" else tmp_path / output_name

    result = _generate(speech_wav, template, output)

    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().startswith(f"error {code}")
    assert template.read_bytes() == template_clip.read_bytes()  # the input is untouched


def test_inputs_over_the_size_limit_are_refused(
    tmp_path: Path, speech_wav: Path, template_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALKINGFACE_LIMITS__MAX_INPUT_BYTES", "1000")

    result = _generate(speech_wav, template_clip, tmp_path / "out.mp4")

    assert result.exit_code == 2, result.stderr
    assert "INPUT_TOO_LARGE" in result.stderr and "limits.max_input_bytes" in result.stderr
