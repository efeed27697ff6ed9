"""The submit-time probe of untrusted media runs outside the server: a file that crashes or
hangs the media reader costs one probe and a clear refusal, never the server.

The faults are the probe child's test-only hook (workers.allow_faults, which the service
fixtures turn on): a file whose name holds `probe-fault-crash` makes its probe process kill
itself with SIGSEGV, `probe-fault-hang` makes it hang.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from tests.integration.service_fixtures import Service

ServiceFactory = Callable[..., Service]


def _submit(service: Service, audio: Path, video: Path) -> Any:  # Any: an httpx response
    with audio.open("rb") as a, video.open("rb") as v:
        files = {"audio": (audio.name, a), "video": (video.name, v)}
        return service.http.post("/v1/jobs", files=files)


def _renamed(source: Path, directory: Path, name: str) -> Path:
    directory.mkdir(exist_ok=True)
    return Path(shutil.copy(source, directory / name))


def _assert_still_serving(service: Service, speech_wav: Path, clip: Path) -> None:
    assert service.process.poll() is None, service.log()[-2000:]
    assert service.http.get("/readyz").status_code == 200
    accepted = _submit(service, speech_wav, clip)  # and a sound file is still probed
    assert accepted.status_code == 202, accepted.text


def test_a_probe_that_crashes_refuses_the_input_and_the_server_keeps_serving(
    service_factory: ServiceFactory, tmp_path: Path, speech_wav: Path, short_template_clip: Path
) -> None:
    service = service_factory()
    assert service.http.post("/v1/queue/pause").status_code == 200  # nothing needs to run
    crashing = _renamed(speech_wav, tmp_path / "media", "speech-probe-fault-crash.wav")

    refused = _submit(service, crashing, short_template_clip)

    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "INPUT_INVALID_MEDIA" and error["stage"] == "probe"
    assert "could not be read safely" in error["message"]
    assert "speech-probe-fault-crash.wav" in error["message"]
    assert service.http.get("/v1/jobs").json()["total"] == 0
    _assert_still_serving(service, speech_wav, short_template_clip)


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # a worker that ended while we looked
        return ""


def test_the_probe_server_is_started_with_the_server_not_at_the_first_submission(
    service_factory: ServiceFactory,
) -> None:
    service = service_factory()

    # no submission yet: the fork server probe children come from already runs
    children = psutil.Process(service.process.pid).children(recursive=True)
    assert any("multiprocessing.forkserver" in _cmdline(c) for c in children), [
        _cmdline(c) for c in children
    ]


def test_a_probe_that_hangs_is_stopped_at_its_time_limit_and_the_server_keeps_serving(
    service_factory: ServiceFactory, tmp_path: Path, speech_wav: Path, short_template_clip: Path
) -> None:
    service = service_factory(extra_env={"TALKINGFACE_LIMITS__PROBE_TIMEOUT_S": "2"})
    assert service.http.post("/v1/queue/pause").status_code == 200
    hanging = _renamed(short_template_clip, tmp_path / "media", "face-probe-fault-hang.mp4")

    refused = _submit(service, speech_wav, hanging)

    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "INPUT_INVALID_MEDIA"
    assert "longer than 2 s (limits.probe_timeout_s)" in error["message"]
    # a HeyGem client, its files in the shared temp folder, gets the refusal in its envelope
    temp = service.data_dir / "temp"
    _renamed(speech_wav, temp, "speech.wav")
    _renamed(hanging, temp, hanging.name)
    body = {"audio_url": "speech.wav", "video_url": hanging.name, "code": "hang-1"}
    reply = service.http.post("/easy/submit", json=body).json()
    assert reply["code"] == 10002, reply
    assert reply["msg"].startswith("参数异常: ") and "limits.probe_timeout_s" in reply["msg"]
    _assert_still_serving(service, speech_wav, short_template_clip)
