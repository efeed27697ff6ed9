"""A cancel (a worker's, or the CLI's Ctrl-C) stops an attempt where it is and publishes nothing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from talkingface.config import load_settings
from talkingface.engines.base import LipSyncEngine, get_engine
from talkingface.errors import JobCanceledError, Stage
from talkingface.pipeline.attempt import GenerateRequest, run_attempt
from talkingface.vocabulary import JobId, JobTag, Progress


@pytest.fixture(scope="module")
def engine() -> Iterator[LipSyncEngine]:
    loaded = get_engine("classic")
    loaded.load("cpu")
    yield loaded
    loaded.close()


@pytest.mark.parametrize(
    ("stage", "at_fraction"),
    [
        pytest.param(Stage.TRACK, 0.0, id="while-tracking-the-template"),
        pytest.param(Stage.RENDER, 1.0, id="after-the-last-frame"),
    ],
)
def test_a_cancel_stops_the_attempt_in_that_stage_and_leaves_no_output(
    tmp_path: Path,
    engine: LipSyncEngine,
    speech_wav: Path,
    template_clip: Path,
    stage: Stage,
    at_fraction: float,
) -> None:
    cancel = threading.Event()
    reports: list[Progress] = []

    def progress(report: Progress) -> None:
        reports.append(report)
        if report.stage == stage.value and report.frames_done >= at_fraction * report.frames_total:
            cancel.set()

    output = tmp_path / "out" / "out.mp4"
    request = GenerateRequest(
        tag=JobTag(JobId(uuid.uuid4().hex[:12])),
        audio_path=speech_wav,
        video_path=template_clip,
        output_path=output,
    )
    settings = load_settings(cache={"dir": tmp_path / "cache"})

    with pytest.raises(JobCanceledError) as raised:
        run_attempt(request, engine, settings, progress=progress, cancel=cancel)

    if stage is Stage.TRACK:  # it stopped there, not after tracking every frame
        assert raised.value.stage is Stage.TRACK
        assert all(r.frames_done < r.frames_total for r in reports if r.stage == "track")
        assert not [r for r in reports if r.stage != "track"]
    assert list(output.parent.iterdir()) == []
