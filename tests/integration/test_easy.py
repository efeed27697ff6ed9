"""HeyGem face2face compatibility: /easy/submit and /easy/query as existing clients use them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from talkingface.errors import ErrorCode, StageTimeoutError
from talkingface.jobs.records import JobResult
from talkingface.jobs.states import AttemptOutcome
from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    api_fixture,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
)
from tests.media import read_stream_facts


def _temp_dir(api: ApiHarness, template_clip: Path, speech_wav: Path) -> Path:
    """The client's shared temp folder, holding its copies of the inputs."""
    temp = api.settings.heygem_temp_dir
    temp.mkdir(parents=True, exist_ok=True)
    shutil.copy(template_clip, temp / "face.mp4")
    shutil.copy(speech_wav, temp / "voice.wav")
    return temp


def _submit(api: ApiHarness, **body: Any) -> dict[str, Any]:
    response = api.client.post("/easy/submit", json=body)
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def _query(api: ApiHarness, code: str) -> dict[str, Any]:
    response = api.client.get("/easy/query", params={"code": code})
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def _finish(api: ApiHarness, template_clip: Path) -> str:
    """Run the queued job through the store as a worker would, with a real MP4 as result."""
    claimed = api.store.claim_next("w1", lease_s=30)
    assert claimed is not None
    job, attempt = claimed
    result = api.settings.data_dir / "results" / f"{job.id}.mp4"
    result.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template_clip, result)
    facts = read_stream_facts(result)
    assert api.store.succeed(
        job.id,
        attempt.id,
        JobResult(str(result), 2.0, facts.width, facts.height, 25.0, 50, 0, 1.25),
    )
    return job.id


def test_submit_success_is_exactly_what_face2face_sends(
    api: ApiHarness, template_clip: Path, speech_wav: Path
) -> None:
    _temp_dir(api, template_clip, speech_wav)

    reply = _submit(api, audio_url="voice.wav", video_url="face.mp4", code="task-1", pn=1)

    assert reply == {"code": 10000, "data": {}, "msg": 10000, "success": True}
    assert api.scheduler.wakes == 1
    query = _query(api, "task-1")
    assert query["code"] == 10000 and query["success"] is True
    assert query["data"]["status"] == 1 and query["data"]["progress"] == 0
    assert query["data"]["msg"].startswith("排队中")


def test_missing_fields_are_10002_naming_the_field(api: ApiHarness) -> None:
    full = {"audio_url": "a.wav", "video_url": "v.mp4", "code": "c1"}
    for field in ("audio_url", "video_url", "code"):
        body = {k: v for k, v in full.items() if k != field}
        reply = _submit(api, **body)
        assert reply == {"code": 10002, "data": {}, "msg": f"{field}参数缺失", "success": False}
    assert _query(api, "")["msg"] == "code参数缺失"


def test_a_raw_string_body_is_read_as_json(
    api: ApiHarness, template_clip: Path, speech_wav: Path
) -> None:
    _temp_dir(api, template_clip, speech_wav)
    body = json.dumps({"audio_url": "voice.wav", "video_url": "face.mp4", "code": "raw"})

    response = api.client.post("/easy/submit", content=body, headers={"Content-Type": "text/plain"})

    assert response.json()["code"] == 10000
    garbage = api.client.post("/easy/submit", content=b"{not json")
    assert garbage.status_code == 200 and garbage.json()["code"] == 10002


def test_flags_map_to_loop_and_are_recorded(
    api: ApiHarness, template_clip: Path, speech_wav: Path
) -> None:
    _temp_dir(api, template_clip, speech_wav)

    _submit(
        api,
        audio_url="voice.wav",
        video_url="face.mp4",
        code="flags",
        pn="0",
        chaofen="1",
        watermark_switch=1,
        digital_auth="0",
    )

    job = api.store.latest_with_key_prefix("heygem:flags:")
    assert job is not None and job.options.loop == "restart"
    recorded = [e for e in api.store.events(job.id) if e.kind == "heygem_submitted"]
    assert recorded[0].data == {
        "code": "flags",
        "pn": 0,
        "chaofen": 1,
        "watermark_switch": 1,
        "digital_auth": 0,
    }


def test_a_resubmitted_code_while_queued_returns_the_same_job(
    api: ApiHarness, template_clip: Path, speech_wav: Path
) -> None:
    _temp_dir(api, template_clip, speech_wav)
    body = {"audio_url": "voice.wav", "video_url": "face.mp4", "code": "again"}

    _submit(api, **body)
    _submit(api, **{**body, "video_url": str(api.settings.heygem_temp_dir / "face.mp4")})

    assert api.store.list_jobs()[1] == 1


def test_results_stay_readable_after_the_first_terminal_read(
    api: ApiHarness, template_clip: Path, speech_wav: Path
) -> None:
    temp = _temp_dir(api, template_clip, speech_wav)
    _submit(api, audio_url="voice.wav", video_url="face.mp4", code="done-1")
    _finish(api, template_clip)

    first, second = _query(api, "done-1"), _query(api, "done-1")

    assert first == second
    data = first["data"]
    assert data["status"] == 2 and data["progress"] == 100 and data["msg"] == "任务完成"
    assert data["result"] == "/done-1-r.mp4"
    assert (temp / "done-1-r.mp4").read_bytes() == template_clip.read_bytes()
    assert data["cost"] == 1.25 and data["video_duration"] == 2.0
    assert (data["width"], data["height"]) == (512, 512)


def test_a_finished_code_starts_a_new_job_only_when_the_inputs_differ(
    api: ApiHarness, template_clip: Path, speech_wav: Path
) -> None:
    _temp_dir(api, template_clip, speech_wav)
    body = {"audio_url": "voice.wav", "video_url": "face.mp4", "code": "again-done"}
    _submit(api, **body)
    first = _finish(api, template_clip)

    _submit(api, **body)  # same inputs: the finished job answers
    assert api.store.list_jobs()[1] == 1
    _submit(api, **{**body, "pn": 0})  # different: a new job
    latest = api.store.latest_with_key_prefix("heygem:again-done:")

    assert api.store.list_jobs()[1] == 2
    assert latest is not None and latest.id != first
    assert _query(api, "again-done")["data"]["status"] == 1


def test_a_failed_job_is_status_3_with_its_message(
    api: ApiHarness, template_clip: Path, speech_wav: Path
) -> None:
    _temp_dir(api, template_clip, speech_wav)
    _submit(api, audio_url="voice.wav", video_url="face.mp4", code="broken")
    claimed = api.store.claim_next("w1", lease_s=30)
    assert claimed is not None
    job, attempt = claimed
    error = StageTimeoutError("Stage render waited 120 s for its input.").to_record()
    api.store.fail_attempt(job.id, attempt.id, error, outcome=AttemptOutcome.FAILED, retry_at=None)

    data = _query(api, "broken")["data"]

    assert data["status"] == 3 and data["progress"] == 0 and data["result"] == ""
    assert data["msg"] == "Stage render waited 120 s for its input."


def test_unknown_and_unsafe_codes(api: ApiHarness) -> None:
    assert _query(api, "nobody") == {
        "code": 10004,
        "data": {},
        "msg": "任务不存在",
        "success": True,
    }
    for code in ("../escape", "a/b", "x" * 129):
        assert _query(api, code)["code"] == 10002
        reply = _submit(api, audio_url="a.wav", video_url="v.mp4", code=code)
        assert reply["code"] == 10002 and reply["msg"].startswith("code参数异常")


def test_bad_inputs_are_10002_with_the_reason_and_a_full_queue_is_busy(
    make_api: Any, template_clip: Path, speech_wav: Path
) -> None:
    api: ApiHarness = make_api(max_queued=1)
    _temp_dir(api, template_clip, speech_wav)

    missing = _submit(api, audio_url="nope.wav", video_url="face.mp4", code="m1")
    media = _submit(api, audio_url="face.mp4", video_url="voice.wav", code="m2")
    _submit(api, audio_url="voice.wav", video_url="face.mp4", code="m3")
    busy = _submit(api, audio_url="voice.wav", video_url="face.mp4", code="m4")

    assert missing["code"] == 10002 and "nope.wav" in missing["msg"]
    assert media["code"] == 10002 and missing["success"] is False
    assert busy == {"code": 10001, "data": {}, "msg": "忙碌中", "success": True}
    assert ErrorCode.INPUT_NOT_FOUND.value not in missing["msg"]  # a sentence, not a code
