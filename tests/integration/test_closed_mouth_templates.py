"""Templates whose mouth never opens (closed-mouth photos, idle clips) render a talking mouth.

They used to fail with `INTERNAL: cannot reshape array of size 0` because no frame gave a
mouth interior to borrow; the interior is now synthesised.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from talkingface.config import load_settings
from talkingface.engines.base import get_engine
from talkingface.engines.mouth_frame import mouth_frame
from talkingface.engines.mouth_warp import MouthPose, plan_warp
from talkingface.face.track import FaceTracker
from talkingface.mouth_meter import MouthMeter
from talkingface.pipeline.attempt import GenerateRequest, GenerateResult, run_attempt
from talkingface.samples import astronaut_photo, synth_speech, write_wav
from talkingface.vocabulary import JobId, JobTag
from tests.media import read_frames, write_clip


def _closed_mouth(frame_rgb: np.ndarray) -> np.ndarray:
    """The same face with its lips pressed together (the engine's own warp, at gap 0)."""
    found = FaceTracker(fps=25.0).process(frame_rgb)
    assert found is not None
    height, width = frame_rgb.shape[:2]
    plan = plan_warp(mouth_frame(found.landmarks_f32), MouthPose(0.0, 0.0), width, height)
    assert plan is not None
    closed = frame_rgb.copy()
    region = cv2.remap(frame_rgb, plan.map_x, plan.map_y, cv2.INTER_LINEAR)
    closed[plan.y0 : plan.y0 + region.shape[0], plan.x0 : plan.x0 + region.shape[1]] = region
    return closed


@pytest.fixture(scope="module")
def closed_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("closed") / "closed.png"
    frame = _closed_mouth(cv2.resize(astronaut_photo(), (320, 320)))
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return path


def _generate(audio: Path, video: Path, tmp_path: Path) -> GenerateResult:
    request = GenerateRequest(
        JobTag(JobId(uuid.uuid4().hex[:12])), audio, video, tmp_path / "out.mp4"
    )
    return run_attempt(request, get_engine("classic"), load_settings(cache={"dir": tmp_path / "c"}))


def _openings(path: Path) -> np.ndarray:
    meter = MouthMeter()
    readings = [meter.read(frame) for frame in read_frames(path)]
    return np.array([np.nan if r is None else r.opening for r in readings])


def test_closed_mouth_photo_talks(closed_photo: Path, tmp_path: Path) -> None:
    speech = synth_speech(3.0, seed=5)
    audio = write_wav(tmp_path / "speech.wav", speech.samples_f32, 16000)
    result = _generate(audio, closed_photo, tmp_path)
    openings = _openings(result.output_path)

    template = cv2.cvtColor(cv2.imread(str(closed_photo)), cv2.COLOR_BGR2RGB)
    reading = MouthMeter().read(template)
    assert reading is not None and reading.opening < 0.02  # the template's lips are closed
    assert np.isfinite(openings).all()
    assert float(openings.max()) > 0.06  # and the output visibly opens them


def test_idle_clip_whose_mouth_never_opens_renders(closed_photo: Path, tmp_path: Path) -> None:
    still = cv2.cvtColor(cv2.imread(str(closed_photo)), cv2.COLOR_BGR2RGB)
    frames = [np.roll(still, shift=(i % 5) - 2, axis=1) for i in range(30)]  # slight sway
    idle = write_clip(tmp_path / "idle.mp4", frames)
    speech = synth_speech(2.0, seed=8)
    audio = write_wav(tmp_path / "speech.wav", speech.samples_f32, 16000)

    result = _generate(audio, idle, tmp_path)

    assert result.frame_count == 50 and result.frames_without_face == 0
    assert float(np.nanmax(_openings(result.output_path))) > 0.05


def test_talking_template_driven_by_a_fifth_of_a_second(shared_media: Path, tmp_path: Path) -> None:
    speech = synth_speech(1.0, seed=2)
    audio = write_wav(tmp_path / "short.wav", speech.samples_f32[4000:7200], 16000)  # 0.2 s
    result = _generate(
        audio, shared_media / "video_en_male_asian_suit_700x700_talking.mp4", tmp_path
    )
    assert result.frame_count == 5
