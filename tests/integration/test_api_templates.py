"""Registered templates through the v1 API: combined with an uploaded audio file, listed
newest first, deleted with their files and cached face data (refused while jobs use them),
and an unknown id is a 404 TEMPLATE_NOT_FOUND everywhere."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from talkingface.errors import ErrorCode, ErrorRecord, Stage
from talkingface.jobs.records import JobResult, TemplateOutcome
from talkingface.jobs.states import AttemptOutcome
from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    api_fixture,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
)
from tests.integration.service_fixtures import Service, wait_until

UNKNOWN = "0123456789abcdef" * 2


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["message"].strip()
    return error


def register(api: ApiHarness, name: str = "template.mp4") -> dict[str, Any]:
    response = api.client.post("/v1/templates", json={"video": str(api.input_root / name)})
    assert response.status_code in (200, 202), response.text
    meta: dict[str, Any] = response.json()
    return meta


def finish_preparation(api: ApiHarness, meta: dict[str, Any]) -> None:
    """What a worker does: claim the preparation job, record what it found, succeed."""
    claimed = api.store.claim_next("w1", lease_s=30)
    assert claimed is not None and claimed[0].id == meta["job_id"]
    job, attempt = claimed
    api.store.record_template_outcome(job.id, TemplateOutcome(1, 0, {"model": "generic"}))
    result = JobResult(job.inputs.video_path, 1.0, 128, 128, 25.0, 25, 0, 0.5)
    assert api.store.succeed(job.id, attempt.id, result)


def fail_next(api: ApiHarness, job_id: str) -> None:
    claimed = api.store.claim_next("w1", lease_s=30)
    assert claimed is not None and claimed[0].id == job_id
    error = ErrorRecord(ErrorCode.NO_FACE, Stage.TRACK, False, "No face found in template.mp4.")
    api.store.fail_attempt(
        job_id, claimed[1].id, error, outcome=AttemptOutcome.FAILED, retry_at=None
    )


def submit_upload(api: ApiHarness, template_id: str, **fields: str) -> Any:
    audio = (api.input_root / "speech.wav").read_bytes()
    return api.client.post(
        "/v1/jobs",
        files={"audio": ("interview take 3.wav", audio, "audio/wav")},
        data={"template_id": template_id, **fields},
    )


# --- template + uploaded audio --------------------------------------------------------------


def test_an_uploaded_audio_file_is_combined_with_a_registered_template(api: ApiHarness) -> None:
    meta = register(api)
    finish_preparation(api, meta)

    response = submit_upload(api, meta["id"], priority="3")

    assert response.status_code == 202, response.text
    job = response.json()
    assert job["priority"] == 3 and job["state"] == "queued"
    assert job["inputs"] == {
        "audio_name": "interview take 3.wav",
        "video_name": "template.mp4",
        "template_id": meta["id"],
    }
    stored = api.store.get(job["id"])
    template_dir = api.settings.data_dir / "templates" / meta["id"]
    assert Path(stored.inputs.video_path).parent == template_dir  # the stored template file
    audio = Path(stored.inputs.audio_path)
    assert audio.read_bytes() == (api.input_root / "speech.wav").read_bytes()
    assert api.scheduler.wakes >= 2  # registration, then the job


def test_a_template_still_being_prepared_is_accepted_as_json_submit_accepts_it(
    api: ApiHarness,
) -> None:
    meta = register(api)
    assert meta["state"] == "preparing"

    response = submit_upload(api, meta["id"])

    assert response.status_code == 202, response.text
    assert response.json()["inputs"]["template_id"] == meta["id"]


def test_a_failed_template_is_refused_for_an_uploaded_audio_too(api: ApiHarness) -> None:
    meta = register(api)
    fail_next(api, meta["job_id"])

    refused = submit_upload(api, meta["id"])

    assert refused.status_code == 422 and "No face found" in refused.text


@pytest.mark.parametrize(
    ("data", "files", "field", "words"),
    [
        ({}, {}, "video", "template_id"),  # neither a video nor a template
        ({"template_id": UNKNOWN}, {"video": ("t.mp4", b"x")}, "template_id", "not both"),
        ({"template_id": "ABC"}, {}, "template_id", "hex"),
    ],
)
def test_a_multipart_submit_names_what_is_wrong_with_the_template_fields(
    api: ApiHarness, data: dict[str, str], files: dict[str, Any], field: str, words: str
) -> None:
    audio = ("a.wav", (api.input_root / "speech.wav").read_bytes())
    response = api.client.post("/v1/jobs", files={"audio": audio, **files}, data=data)

    error = assert_error(response, 422, "INPUT_INVALID")
    assert field in error["message"] and words in error["message"]


# --- unknown ids ----------------------------------------------------------------------------


def test_an_unknown_template_id_is_template_not_found_everywhere(api: ApiHarness) -> None:
    body = {"audio": str(api.input_root / "speech.wav"), "template_id": UNKNOWN}
    answers = [
        api.client.post("/v1/jobs", json=body),
        submit_upload(api, UNKNOWN),
        api.client.get(f"/v1/templates/{UNKNOWN}"),
        api.client.get(f"/v1/templates/{UNKNOWN}/thumbnail"),
        api.client.delete(f"/v1/templates/{UNKNOWN}"),
    ]

    for response in answers:
        error = assert_error(response, 404, "TEMPLATE_NOT_FOUND")
        assert UNKNOWN in error["message"] and "GET /v1/templates" in error["message"]
    assert api.client.get("/v1/jobs").json()["total"] == 0
    uploads = api.settings.data_dir / "inputs"
    assert not uploads.exists() or not any(uploads.iterdir())  # the upload was not kept


# --- list ---------------------------------------------------------------------------------


def test_templates_are_listed_newest_first_in_pages(api: ApiHarness, template_clip: Path) -> None:
    for index in range(3):  # three different contents: three templates
        clip = api.input_root / f"t{index}.mp4"
        clip.write_bytes(template_clip.read_bytes() + bytes([index]) * 8)
    ids = [register(api, f"t{index}.mp4")["id"] for index in range(3)]

    first = api.client.get("/v1/templates", params={"limit": 2}).json()
    second = api.client.get("/v1/templates", params={"limit": 2, "offset": 2}).json()

    assert first["total"] == 3 and first["limit"] == 2 and first["offset"] == 0
    listed = [item["id"] for item in first["items"] + second["items"]]
    assert sorted(listed) == sorted(ids) and len(set(listed)) == 3
    created = [item["created_at"] for item in first["items"] + second["items"]]
    assert created == sorted(created, reverse=True)
    item = first["items"][0]
    assert item == api.client.get(f"/v1/templates/{item['id']}").json()  # the same object
    assert item["thumbnail_url"].endswith(f"/v1/templates/{item['id']}/thumbnail")
    assert api.client.get("/v1/templates", params={"limit": 0}).status_code == 422


# --- delete -------------------------------------------------------------------------------


def cache_entry(cache_dir: Path, name: str, content_sha256: str) -> Path:
    """A prepared-template entry as templates.TemplateCache writes one."""
    entry = cache_dir / name
    entry.mkdir(parents=True)
    (entry / "meta.json").write_text(json.dumps({"content_sha256": content_sha256}))
    (entry / "arrays.npz").write_bytes(b"\0" * 64)
    return entry


def test_a_template_in_use_is_refused_then_deleted_with_its_files_and_cached_faces(
    make_api: Any, tmp_path: Path
) -> None:
    api: ApiHarness = make_api()
    api.settings.cache.dir = tmp_path / "cache"
    meta = register(api)
    template_id = meta["id"]
    digest = hashlib.sha256((api.input_root / "template.mp4").read_bytes()).hexdigest()
    assert digest[:32] == template_id
    ours = cache_entry(api.settings.cache.dir, "a" * 32, digest)
    memo = api.settings.cache.dir / "hashes" / ("b" * 32)
    memo.parent.mkdir()
    memo.write_text(digest)
    other = cache_entry(api.settings.cache.dir, "c" * 32, "f" * 64)

    # Given its preparation still queued: the delete is refused, saying what to do
    error = assert_error(api.client.delete(f"/v1/templates/{template_id}"), 409, "TEMPLATE_IN_USE")
    assert "its own preparation" in error["message"] and "cancel" in error["message"]
    assert meta["job_id"] in error["message"]  # the job to wait for or cancel
    finish_preparation(api, meta)

    # Given two queued renders on it: refused, naming how many
    jobs = [submit_upload(api, template_id).json()["id"] for _ in range(2)]
    error = assert_error(api.client.delete(f"/v1/templates/{template_id}"), 409, "TEMPLATE_IN_USE")
    assert "2 queued or running jobs" in error["message"] and "wait" in error["message"]
    assert sorted(error["details"]["job_ids"]) == sorted(jobs)

    # When both have finished (one failed, one canceled) the delete goes through
    fail_next(api, jobs[0])
    assert api.client.post(f"/v1/jobs/{jobs[1]}/cancel").status_code == 202
    deleted = api.client.delete(f"/v1/templates/{template_id}")

    # Then the template, its files and its cached face data are gone; nothing else is
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(api.client.get(f"/v1/templates/{template_id}"), 404, "TEMPLATE_NOT_FOUND")
    assert not (api.settings.data_dir / "templates" / template_id).exists()
    assert not ours.exists() and not memo.exists() and other.exists()
    assert api.client.get("/v1/templates").json()["total"] == 0
    assert api.client.get(f"/v1/jobs/{meta['job_id']}").status_code == 404  # its preparation
    finished = api.client.get(f"/v1/jobs/{jobs[0]}").json()  # finished jobs keep their record
    assert finished["state"] == "failed" and finished["inputs"]["template_id"] == template_id


def test_a_template_registered_again_after_its_delete_is_a_new_template(api: ApiHarness) -> None:
    first = register(api)
    fail_next(api, first["job_id"])
    assert api.client.delete(f"/v1/templates/{first['id']}").status_code == 204

    again = api.client.post("/v1/templates", json={"video": str(api.input_root / "template.mp4")})

    assert again.status_code == 202, again.text  # created anew, not the deleted one
    assert again.json()["id"] == first["id"] and again.json()["job_id"] != first["job_id"]
    assert again.json()["state"] == "preparing"


# --- the real service ---------------------------------------------------------------------


def test_a_served_template_renders_an_uploaded_audio_and_is_deleted_after(
    service_factory: Callable[..., Service], template_clip: Path, speech_wav: Path, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    service = service_factory(extra_env={"TALKINGFACE_CACHE__DIR": str(cache_dir)})
    with template_clip.open("rb") as video:
        registered = service.http.post("/v1/templates", files={"video": ("me.mp4", video)})
    assert registered.status_code == 202, registered.text
    template_id = registered.json()["id"]

    def prepared() -> dict[str, Any] | None:
        meta: dict[str, Any] = service.http.get(f"/v1/templates/{template_id}").json()
        return meta if meta["state"] != "preparing" else None

    meta = wait_until(prepared, timeout_s=90, what="the template's preparation")
    assert meta["state"] == "ready", meta
    assert any(cache_dir.iterdir())  # its face data is cached

    with speech_wav.open("rb") as audio:
        submitted = service.http.post(
            "/v1/jobs",
            files={"audio": ("speech.wav", audio)},
            data={"template_id": template_id, "label": "served"},
        )
    assert submitted.status_code == 202, submitted.text
    job = service.wait_state(submitted.json()["id"], "succeeded", "failed")
    assert job["state"] == "succeeded", job
    assert job["label"] == "served" and job["inputs"]["template_id"] == template_id
    assert service.http.get(f"/v1/jobs/{job['id']}/result").content[4:8] == b"ftyp"

    deleted = service.http.delete(f"/v1/templates/{template_id}")

    assert deleted.status_code == 204, deleted.text
    assert not (service.data_dir / "templates" / template_id).exists()
    entries = [p for p in cache_dir.iterdir() if p.name != "hashes"] if cache_dir.exists() else []
    assert entries == []
    assert service.job(job["id"])["state"] == "succeeded"  # the finished job keeps its result
    assert service.http.get(f"/v1/jobs/{job['id']}/result").status_code == 200
