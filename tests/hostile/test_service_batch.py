"""One real `talkingface serve`: a batch of hostile files submitted with good jobs.

Every hostile submission ends with its own code and a message saying what is wrong, at submit
or as a failed job, while the good jobs beside it succeed: the service keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.corpus import HostileCase
from tests.integration.service_fixtures import Service, all_error_messages

SHELL_AUDIO_NAME = "$(touch pwned); `touch pwned` 'it' \"is\" a\nname.wav"
SHELL_VIDEO_NAME = "a;b|c&d>e.mp4"


def _post(service: Service, audio: tuple[str, Path], video: tuple[str, Path], **data: str) -> Any:
    (audio_name, audio_path), (video_name, video_path) = audio, video
    files = {
        "audio": (audio_name, audio_path.read_bytes()),
        "video": (video_name, video_path.read_bytes()),
    }
    return service.http.post("/v1/jobs", files=files, data=data)


def _accepted(response: Any) -> str:
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_hostile_files_end_with_their_own_error_while_good_jobs_succeed(
    service_factory: Callable[..., Service],
    hostile_cases: dict[str, HostileCase],
    good_speech: Path,
    short_template_clip: Path,
    face_leaves_clip: Path,
    two_face_clip: Path,
    vfr_clip: Path,
    zero_fps_clip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # the server's working directory, where `touch pwned` would land
    service = service_factory(workers=2)
    speech = (good_speech.name, good_speech)
    template = (short_template_clip.name, short_template_clip)

    # Given a good job whose upload names are shell syntax, submitted first
    good = _accepted(
        _post(service, (SHELL_AUDIO_NAME, good_speech), (SHELL_VIDEO_NAME, template[1]))
    )
    # and every hostile file, each beside a good other input
    refused: dict[str, Any] = {}
    failing: dict[str, str] = {}
    for case in hostile_cases.values():
        hostile = (case.path.name, case.path)
        response = _post(
            service, *((hostile, template) if case.role == "audio" else (speech, hostile))
        )
        if case.http_status is None:
            failing[case.name] = _accepted(response)
        else:
            refused[case.name] = response
    # and the templates that must work: a face leaving the frame, two faces, odd frame rates
    passing = {
        name: _accepted(_post(service, speech, (path.name, path)))
        for name, path in [
            ("face_leaves", face_leaves_clip),
            ("two_faces", two_face_clip),
            ("variable_fps", vfr_clip),
            ("zero_fps", zero_fps_clip),
        ]
    }
    strict = _accepted(
        _post(service, speech, (two_face_clip.name, two_face_clip), face_policy="strict")
    )
    assert service.http.get("/healthz").status_code == 200

    # Then each refused submission has its status, code and a message naming the problem
    for name, response in refused.items():
        case = hostile_cases[name]
        assert response.status_code == case.http_status, (name, response.text)
        error = response.json()["error"]
        assert error["code"] == case.code.value and case.says in error["message"], (name, error)
    # and each accepted hostile file fails once (not retried) with its code and message
    for name, job_id in failing.items():
        case = hostile_cases[name]
        job = service.wait_state(job_id, "succeeded", "failed", "canceled", timeout_s=120)
        assert job["state"] == "failed" and job["attempt"] == 1, (name, job)
        assert job["error"]["code"] == case.code.value, (name, job["error"])
        assert case.says in job["error"]["message"], (name, job["error"])
    strict_job = service.wait_state(strict, "succeeded", "failed", "canceled", timeout_s=120)
    assert strict_job["state"] == "failed" and strict_job["error"]["code"] == "MULTIPLE_FACES"
    assert "face" in strict_job["error"]["message"]

    # and the good jobs succeed, faceless frames passed through and counted
    done = {
        name: service.wait_state(job_id, "succeeded", "failed", "canceled", timeout_s=180)
        for name, job_id in {**passing, "good": good}.items()
    }
    assert {name: job["state"] for name, job in done.items()} == dict.fromkeys(done, "succeeded")
    results = {name: job["result"] for name, job in done.items()}
    assert all(r["fps"] == 25.0 and r["frame_count"] == 25 for r in results.values()), results
    assert 8 <= results["face_leaves"]["frames_without_face"] <= 15
    assert results["good"]["frames_without_face"] == 0
    assert results["two_faces"]["frames_without_face"] == 0
    assert service.http.get(results["good"]["url"]).status_code == 200

    # and no message is empty, and no name reached a shell
    for job_id in [*failing.values(), strict, *passing.values(), good]:
        assert all(message.strip() for message in all_error_messages(service.job(job_id)))
    assert not (tmp_path / "pwned").exists()
    assert not list(service.data_dir.rglob("pwned"))
