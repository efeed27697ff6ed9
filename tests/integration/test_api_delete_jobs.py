"""DELETE /v1/jobs/{id}: a finished job goes with its files and history; an unfinished one is
a 409 saying what to do; a HeyGem job's `<code>-r.mp4` goes only when it is that job's."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from talkingface.errors import ErrorCode, ErrorRecord, Stage
from talkingface.heygem_results import expose_result
from talkingface.jobs.outbox import Delivery
from talkingface.jobs.records import JobResult
from talkingface.jobs.states import AttemptOutcome
from talkingface.storage.local import LocalStorage
from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    api_fixture,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
)


def assert_error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    return message


def upload(api: ApiHarness) -> str:
    files = {
        "audio": ("a.wav", (api.input_root / "speech.wav").read_bytes()),
        "video": ("v.mp4", (api.input_root / "template.mp4").read_bytes()),
    }
    response = api.client.post("/v1/jobs", files=files)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def succeed_next(api: ApiHarness, video: Path) -> tuple[str, Path]:
    """Run the next queued job as the scheduler does: publish, expose (HeyGem), succeed."""
    claimed = api.store.claim_next("w1", lease_s=30)
    assert claimed is not None
    job, attempt = claimed
    storage = LocalStorage(api.settings.data_dir)
    partial = storage.partial_result_path(job.id, attempt.id)
    partial.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(video, partial)
    result = storage.publish_result(job.id, attempt.id)
    expose_result(api.store, api.settings.heygem_temp_dir, job.id, result)
    figures = JobResult(str(result), 1.0, 128, 128, 25.0, 25, 0, 0.5)
    assert api.store.succeed(job.id, attempt.id, figures)
    return job.id, result


def test_a_succeeded_job_is_deleted_with_its_uploads_result_partials_and_history(
    api: ApiHarness, template_clip: Path
) -> None:
    # Given a succeeded job from uploads, a leftover partial, and two webhook deliveries
    job_id = upload(api)
    kept = upload(api)
    _, result = succeed_next(api, template_clip)
    inputs = LocalStorage(api.settings.data_dir).inputs_dir(job_id)
    leftover = result.parent / f".{job_id}.old-attempt.partial.mp4"
    leftover.write_bytes(b"half")
    api.store.add_deliveries(
        [
            Delivery("d-sent", "webhook", job_id, "http://127.0.0.1:9/h", "job.succeeded", "{}"),
            Delivery("d-due", "webhook", job_id, "http://127.0.0.1:9/h", "job.succeeded", "{}"),
        ]
    )
    api.store.record_delivery_try("d-sent", delivered=True, error=None, retry_in_s=None)
    assert inputs.is_dir() and result.is_file()

    # When it is deleted
    response = api.client.delete(f"/v1/jobs/{job_id}")

    # Then the job, its files and its history are gone; the other job is untouched
    assert response.status_code == 204 and response.content == b""
    assert_error(api.client.get(f"/v1/jobs/{job_id}"), 404, "JOB_NOT_FOUND")
    assert_error(api.client.get(f"/v1/jobs/{job_id}/events"), 404, "JOB_NOT_FOUND")
    assert not inputs.exists() and not result.exists() and not leftover.exists()
    assert [item["id"] for item in api.client.get("/v1/jobs").json()["items"]] == [kept]
    with api.store.reading() as conn:
        counts = [
            conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE job_id = :id"), {"id": job_id}
            ).scalar_one()
            for table in ("attempts", "events")
        ]
    assert counts == [0, 0]
    # a delivery not yet made is kept: its receiver was promised the job's end
    assert [d.id for d in api.store.deliveries()] == ["d-due"]
    assert LocalStorage(api.settings.data_dir).inputs_dir(kept).is_dir()


def test_server_path_inputs_are_not_the_jobs_to_delete(api: ApiHarness) -> None:
    body = {"audio": "speech.wav", "video": "template.mp4"}
    job_id = api.client.post("/v1/jobs", json=body).json()["id"]
    assert api.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202

    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 204

    assert (api.input_root / "speech.wav").is_file() and (api.input_root / "template.mp4").is_file()


def test_a_failed_job_is_deleted(api: ApiHarness) -> None:
    job_id = upload(api)
    claimed = api.store.claim_next("w1", lease_s=30)
    assert claimed is not None
    error = ErrorRecord(ErrorCode.NO_FACE, Stage.TRACK, False, "No face found in v.mp4.")
    api.store.fail_attempt(
        job_id, claimed[1].id, error, outcome=AttemptOutcome.FAILED, retry_at=None
    )

    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert api.client.get(f"/v1/jobs/{job_id}").status_code == 404


@pytest.mark.parametrize("running", [False, True])
def test_an_unfinished_job_is_a_409_saying_to_cancel_or_wait(
    api: ApiHarness, running: bool
) -> None:
    job_id = upload(api)
    if running:
        assert api.store.claim_next("w1", lease_s=30) is not None

    message = assert_error(api.client.delete(f"/v1/jobs/{job_id}"), 409, "JOB_STATE")

    state = "running" if running else "queued"
    assert state in message and f"/v1/jobs/{job_id}/cancel" in message
    assert api.client.get(f"/v1/jobs/{job_id}").json()["state"] == state
    assert LocalStorage(api.settings.data_dir).inputs_dir(job_id).is_dir()


def test_an_unknown_job_is_a_404(api: ApiHarness) -> None:
    assert_error(api.client.delete(f"/v1/jobs/{'e' * 32}"), 404, "JOB_NOT_FOUND")


def test_a_templates_preparation_job_is_deleted_through_its_template(api: ApiHarness) -> None:
    meta = api.client.post(
        "/v1/templates", json={"video": str(api.input_root / "template.mp4")}
    ).json()
    assert api.client.post(f"/v1/jobs/{meta['job_id']}/cancel").status_code == 202

    message = assert_error(api.client.delete(f"/v1/jobs/{meta['job_id']}"), 409, "JOB_STATE")

    assert "DELETE /v1/templates/" in message
    assert api.client.get(f"/v1/templates/{meta['id']}").status_code == 200


# --- HeyGem -------------------------------------------------------------------------------


def heygem_submit(api: ApiHarness, code: str, audio: str) -> None:
    body = {"audio_url": audio, "video_url": "face.mp4", "code": code}
    answer = api.client.post("/easy/submit", json=body).json()
    assert answer["code"] == 10000, answer


def test_a_deleted_heygem_job_takes_its_exposed_video_but_never_a_newer_jobs(
    api: ApiHarness, template_clip: Path, short_template_clip: Path, speech_wav: Path
) -> None:
    temp = api.settings.heygem_temp_dir
    temp.mkdir(parents=True, exist_ok=True)
    shutil.copy(template_clip, temp / "face.mp4")
    shutil.copy(speech_wav, temp / "voice.wav")
    shutil.copy(speech_wav, temp / "voice2.wav")
    exposed = temp / "k1-r.mp4"

    # Given code k1 run twice: the newer job's video is the exposed file
    heygem_submit(api, "k1", "voice.wav")
    older, _ = succeed_next(api, template_clip)
    heygem_submit(api, "k1", "voice2.wav")
    newer, _ = succeed_next(api, short_template_clip)
    assert exposed.read_bytes() == short_template_clip.read_bytes()

    # When the older job is deleted, the exposed file (the newer job's) stays
    assert api.client.delete(f"/v1/jobs/{older}").status_code == 204
    assert exposed.read_bytes() == short_template_clip.read_bytes()
    assert api.client.get("/easy/query", params={"code": "k1"}).json()["data"]["status"] == 2

    # When the newer job is deleted, its exposed file goes with it
    assert api.client.delete(f"/v1/jobs/{newer}").status_code == 204
    assert not exposed.exists()
    assert api.client.get("/easy/query", params={"code": "k1"}).json()["code"] == 10004
    assert (temp / "face.mp4").is_file()  # the client's own inputs are not ours
