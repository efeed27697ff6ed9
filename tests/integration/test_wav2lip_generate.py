"""The wav2lip engine end to end with a random-weight checkpoint: `generate --engine wav2lip`
in process through the CLI and pipeline, and a job with `engine: wav2lip` through the service.

Random weights paint grey noise where the mouth is, which makes "what changed" easy to see:
the mouth region changes, everything above the nose and away from the face does not."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from talkingface.cli import app
from talkingface.face.track import FaceTracker
from talkingface.samples import synth_speech, write_wav
from tests.integration.service_fixtures import Service
from tests.media import FPS, read_frames, read_stream_facts

pytest.importorskip("torch")

GREY_LEVELS = 6  # codec noise allowed on pixels the engine must not touch
NOSE_TIP = 1  # MediaPipe FaceMesh index
SPEECH_S = 1.0
SERVICE_SETTINGS = {"TALKINGFACE_WORKERS__STALL_S": "60"}  # a cold model load is not a stall


@pytest.fixture(scope="module")
def one_second_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wav2lip-media") / "speech_1s.wav"
    return write_wav(path, synth_speech(SPEECH_S, seed=5).samples_f32, 16000)


def _assert_only_the_mouth_region_changed(output: Path, template: Path) -> None:
    """Rows above the nose tip and the frame's outer band keep the template's pixels; the
    mouth area below the nose changes (noise from random weights)."""
    rendered = read_frames(output)
    source = read_frames(template)
    tracker = FaceTracker(fps=FPS)
    changed_frames = 0
    for index, frame in enumerate(rendered):
        original = source[min(index, len(source) - 1)]  # 1 s of audio over a 1 s template
        found = tracker.process(original)
        assert found is not None, index
        nose_y = int(found.landmarks_f32[NOSE_TIP, 1])
        difference = np.abs(frame.astype(int) - original.astype(int))  # (H, W, 3)
        above_nose = difference[: nose_y - 4]
        assert np.percentile(above_nose, 99.5) <= 3 * GREY_LEVELS, index
        assert above_nose.mean() <= GREY_LEVELS / 3, index
        band = np.concatenate([difference[:, :24].ravel(), difference[:, -24:].ravel()])
        assert band.mean() <= GREY_LEVELS / 3, index
        mouth_area = difference[nose_y:].max(axis=2)
        changed_frames += int((mouth_area > 3 * GREY_LEVELS).sum() > 100)
    assert changed_frames == len(rendered)


def test_generate_with_the_wav2lip_engine_writes_a_valid_video(
    one_second_speech: Path, short_template_clip: Path, wav2lip_checkpoint: Path, tmp_path: Path
) -> None:
    output = tmp_path / "wav2lip.mp4"
    args = ["generate", "--audio", str(one_second_speech), "--video", str(short_template_clip)]
    args += ["-o", str(output), "--engine", "wav2lip", "--checkpoint", str(wav2lip_checkpoint)]
    env = {"TALKINGFACE_CACHE__DIR": str(tmp_path / "cache")}

    result = CliRunner().invoke(app, [*args, "--json"], env=env)

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["frame_count"] == round(SPEECH_S * FPS)
    assert summary["frames_without_face"] == 0
    facts = read_stream_facts(output)
    assert (facts.video_codec, facts.audio_codec) == ("h264", "aac")
    assert facts.frame_count == round(SPEECH_S * FPS)
    assert facts.video_duration_s == pytest.approx(SPEECH_S, abs=0.05)
    assert facts.audio_duration_s == pytest.approx(SPEECH_S, abs=0.05)
    _assert_only_the_mouth_region_changed(output, short_template_clip)


def test_generate_without_a_checkpoint_says_which_setting_to_set(
    one_second_speech: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    output = tmp_path / "none.mp4"
    args = ["generate", "--audio", str(one_second_speech), "--video", str(short_template_clip)]
    result = CliRunner().invoke(app, [*args, "-o", str(output), "--engine", "wav2lip", "--json"])

    assert result.exit_code != 0
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "CONFIG_INVALID"
    assert "engines.wav2lip.checkpoint" in error["message"]
    assert not output.exists()


def _submit(service: Service, audio: Path, video: Path, engine: str) -> str:
    with audio.open("rb") as a, video.open("rb") as v:
        response = service.http.post(
            "/v1/jobs",
            files={"audio": (audio.name, a), "video": (video.name, v)},
            data={"engine": engine},
        )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_a_wav2lip_job_renders_through_the_service_and_a_job_without_checkpoint_fails_clearly(
    service_factory: Callable[..., Service],
    one_second_speech: Path,
    short_template_clip: Path,
    wav2lip_checkpoint: Path,
    tmp_path: Path,
) -> None:
    # Given a server whose operator configured a checkpoint by setting, not by request
    service = service_factory(
        extra_env={
            **SERVICE_SETTINGS,
            "TALKINGFACE_ENGINES__WAV2LIP__CHECKPOINT": str(wav2lip_checkpoint),
        }
    )
    # When a client asks for engine wav2lip
    job_id = _submit(service, one_second_speech, short_template_clip, "wav2lip")
    done = service.wait_state(job_id, "succeeded", "failed", timeout_s=240)

    # Then the result is a valid video where only the mouth region changed
    assert done["state"] == "succeeded", (done.get("error"), done.get("attempts"))
    got = tmp_path / "got.mp4"
    got.write_bytes(service.http.get(done["result"]["url"]).content)
    facts = read_stream_facts(got)
    assert facts.frame_count == round(SPEECH_S * FPS)
    assert facts.video_duration_s == pytest.approx(SPEECH_S, abs=0.05)
    _assert_only_the_mouth_region_changed(got, short_template_clip)
    service.stop()

    # And on a server with no checkpoint configured the job fails, naming the setting
    bare = service_factory(extra_env=SERVICE_SETTINGS, data_dir=tmp_path / "bare-data")
    failed = bare.wait_state(
        _submit(bare, one_second_speech, short_template_clip, "wav2lip"), "succeeded", "failed"
    )
    assert failed["state"] == "failed", failed
    assert failed["error"]["code"] == "CONFIG_INVALID"
    assert "engines.wav2lip.checkpoint" in failed["error"]["message"]
    assert failed["attempt"] == 1  # a configuration error is not retried
