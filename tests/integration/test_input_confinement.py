"""Inputs are confined when the worker opens them, not only at submit: a path swapped for a
symlink to a file outside the input roots fails the job, and the outside file is never read."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.service_fixtures import Service, wait_until

ServiceFactory = Callable[..., Service]


def _reads_are_recorded(directory: Path) -> bool:
    """Whether this file system updates access times (relatime does once atime < mtime)."""
    probe = directory / "atime-probe"
    probe.write_bytes(b"x" * 64)
    now = time.time()
    os.utime(probe, (now - 1000, now))
    before = probe.stat().st_atime
    probe.read_bytes()
    recorded = probe.stat().st_atime > before
    probe.unlink()
    return recorded


def _outside_file(tmp_path: Path, source: Path) -> Path:
    """A valid speech file outside every root, its access time set before its mtime so that
    any read of it shows."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.wav"
    secret.write_bytes(source.read_bytes())
    now = time.time()
    os.utime(secret, (now - 1000, now))
    return secret


def _swap_for_link(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


def _assert_never_read(secret: Path, tmp_path: Path) -> None:
    if not _reads_are_recorded(tmp_path):
        pytest.skip("this file system does not record reads (noatime); cannot check for one")
    assert secret.stat().st_atime < secret.stat().st_mtime, "the outside file was read"


def test_a_path_swapped_for_a_symlink_after_submit_fails_the_job_unread(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    # Given a job on two files inside the input roots, submitted while the queue is paused
    roots = tmp_path / "roots"
    roots.mkdir()
    (roots / "voice.wav").write_bytes(speech_wav.read_bytes())
    (roots / "face.mp4").write_bytes(short_template_clip.read_bytes())
    secret = _outside_file(tmp_path, speech_wav)
    service = service_factory(extra_env={"TALKINGFACE_API__INPUT_ROOTS": json.dumps([str(roots)])})
    assert service.http.post("/v1/queue/pause").status_code == 200
    submitted = service.http.post(
        "/v1/jobs", json={"audio": str(roots / "voice.wav"), "video": str(roots / "face.mp4")}
    )
    assert submitted.status_code == 202, submitted.text

    # When the audio is swapped for a symlink to a file outside the roots, then dispatched
    _swap_for_link(roots / "voice.wav", secret)
    assert service.http.post("/v1/queue/resume").status_code == 200
    done = service.wait_state(submitted.json()["id"], "failed", "succeeded")

    # Then the job fails at once with a clear, permanent error, and the file was not read
    assert done["state"] == "failed"
    error = done["error"]
    assert error["code"] == "PERMISSION_DENIED" and not error["retryable"], error
    assert "voice.wav" in error["message"] and "outside the input roots" in error["message"]
    assert len(done["attempts"]) == 1
    _assert_never_read(secret, tmp_path)


def test_a_heygem_temp_file_swapped_for_a_symlink_fails_the_task_unread(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    temp = tmp_path / "heygem-temp"
    temp.mkdir()
    (temp / "voice.wav").write_bytes(speech_wav.read_bytes())
    (temp / "face.mp4").write_bytes(short_template_clip.read_bytes())
    secret = _outside_file(tmp_path, speech_wav)
    service = service_factory(extra_env={"TALKINGFACE_API__HEYGEM_TEMP_DIR": str(temp)})
    assert service.http.post("/v1/queue/pause").status_code == 200
    body = {"audio_url": "voice.wav", "video_url": "face.mp4", "code": "swap-1"}
    assert service.http.post("/easy/submit", json=body).json()["code"] == 10000

    _swap_for_link(temp / "voice.wav", secret)
    assert service.http.post("/v1/queue/resume").status_code == 200

    def finished() -> dict[str, Any] | None:
        reply: dict[str, Any] = service.http.get("/easy/query", params={"code": "swap-1"}).json()
        return reply if reply["data"]["status"] in (2, 3) else None

    reply = wait_until(finished, timeout_s=90, what="the HeyGem task to end")
    assert reply["data"]["status"] == 3, reply
    assert "voice.wav" in reply["data"]["msg"] and "link" in reply["data"]["msg"], reply
    _assert_never_read(secret, tmp_path)


def test_an_opened_input_stays_pinned_when_its_path_is_swapped_during_the_attempt(
    tmp_path: Path,
) -> None:
    from talkingface.executors.confined_inputs import ConfinedInputs  # new in this change

    roots = tmp_path / "roots"
    roots.mkdir()
    voice = roots / "voice.wav"
    voice.write_bytes(b"the submitted bytes")
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"private bytes outside the roots")
    output = tmp_path / "results" / ".job.attempt.partial.mp4"
    output.parent.mkdir()

    with ConfinedInputs([roots], output) as inputs:
        opened = inputs.open("audio", str(voice))
        _swap_for_link(voice, secret)  # after the worker opened it

        assert opened.name == "voice.wav"
        assert opened.read_bytes() == b"the submitted bytes"
    assert list(output.parent.iterdir()) == []  # the pins go with the attempt
