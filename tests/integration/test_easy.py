"""HeyGem face2face compatibility: /easy/submit and /easy/query as existing clients use them."""

from __future__ import annotations

import functools
import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from talkingface.errors import ErrorCode, StageTimeoutError, StoreUnavailableError
from talkingface.heygem_results import expose_result
from talkingface.jobs.records import JobResult
from talkingface.jobs.states import AttemptOutcome
from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    api_fixture,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
)
from tests.integration.service_fixtures import wait_until
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


def _finish(api: ApiHarness, video: Path, *, expose: bool = True) -> str:
    """Run the queued job as the scheduler does (publish, expose for HeyGem, record success),
    with the real MP4 `video` as its result; expose=False leaves the temp folder untouched
    (an exposure that did not happen)."""
    claimed = api.store.claim_next("w1", lease_s=30)
    assert claimed is not None
    job, attempt = claimed
    result = api.settings.data_dir / "results" / f"{job.id}.mp4"
    result.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(video, result)
    if expose:
        expose_result(api.store, api.settings.heygem_temp_dir, job.id, result)
    facts = read_stream_facts(result)
    assert api.store.succeed(
        job.id,
        attempt.id,
        JobResult(
            str(result), facts.video_duration_s, facts.width, facts.height, 25.0, 50, 0, 1.25
        ),
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
    assert data["cost"] == 1.25 and data["video_duration"] == round(
        read_stream_facts(template_clip).video_duration_s, 3
    )
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


def test_a_created_job_is_a_success_even_when_its_audit_event_cannot_be_written(
    api: ApiHarness, template_clip: Path, speech_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store that goes away right after the job is created (a database restart)
    _temp_dir(api, template_clip, speech_wav)

    def store_gone(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailableError("The job store cannot be reached (test).")

    monkeypatch.setattr(api.store, "add_event", store_gone)

    reply = _submit(api, audio_url="voice.wav", video_url="face.mp4", code="pg-blip")

    # Then the client is told what is true: its job exists and runs
    assert reply["code"] == 10000, reply
    assert api.store.latest_with_key_prefix("heygem:pg-blip:") is not None


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


# --- a code reused: the result belongs to the job the query describes (issue 9) -------------


def test_a_reused_code_answers_with_the_new_jobs_video(
    api: ApiHarness, template_clip: Path, short_template_clip: Path, speech_wav: Path
) -> None:
    # Given code dup1 finished once (a 2 s video), then resubmitted with other audio
    temp = _temp_dir(api, template_clip, speech_wav)
    shutil.copy(speech_wav, temp / "voice2.wav")
    _submit(api, audio_url="voice.wav", video_url="face.mp4", code="dup1")
    _finish(api, template_clip)
    first = _query(api, "dup1")["data"]
    _submit(api, audio_url="voice2.wav", video_url="face.mp4", code="dup1")
    assert _query(api, "dup1")["data"]["status"] == 1  # the new job, not the old result

    # When the second job finishes with a 1 s video
    _finish(api, short_template_clip)
    second = _query(api, "dup1")["data"]

    # Then the file the reply names is the second job's video, as its figures say
    assert second["status"] == 2 and first["video_duration"] != second["video_duration"]
    exposed = temp / second["result"].lstrip("/")
    assert read_stream_facts(exposed).video_duration_s == pytest.approx(second["video_duration"])
    assert exposed.read_bytes() == short_template_clip.read_bytes()


def test_queries_racing_a_resubmit_never_name_another_jobs_video(
    api: ApiHarness, template_clip: Path, short_template_clip: Path, speech_wav: Path
) -> None:
    temp = _temp_dir(api, template_clip, speech_wav)
    videos = [template_clip, short_template_clip]
    by_duration = {round(read_stream_facts(v).video_duration_s, 3): v.read_bytes() for v in videos}
    checked: list[float] = []
    wrong: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            reply = _query(api, "race")["data"]
            if reply.get("status") != 2:
                continue
            content = (temp / reply["result"].lstrip("/")).read_bytes()
            if _query(api, "race")["data"] != reply:
                continue  # a resubmission came between: the reply may be about an older job
            checked.append(reply["video_duration"])
            if content != by_duration[reply["video_duration"]]:
                wrong.append(f"a reply for {reply['video_duration']} s named another video")

    pollers = [threading.Thread(target=poll) for _ in range(3)]
    for poller in pollers:
        poller.start()
    try:
        for round_number in range(4):
            shutil.copy(speech_wav, temp / f"voice{round_number}.wav")
            _submit(api, audio_url=f"voice{round_number}.wav", video_url="face.mp4", code="race")
            video = videos[round_number % 2]
            _finish(api, video)
            duration = round(read_stream_facts(video).video_duration_s, 3)
            wait_until(
                functools.partial(_last_is, checked, duration),
                timeout_s=60,
                what=f"a checked reply for the {duration} s job",
            )
    finally:
        stop.set()
        for poller in pollers:
            poller.join(timeout=30)

    assert wrong == []
    assert set(checked) == set(by_duration)


def _last_is(values: list[float], expected: float) -> bool:
    return bool(values) and values[-1] == expected


def test_a_success_whose_video_was_not_exposed_never_names_the_previous_file(
    api: ApiHarness, template_clip: Path, short_template_clip: Path, speech_wav: Path
) -> None:
    temp = _temp_dir(api, template_clip, speech_wav)
    shutil.copy(speech_wav, temp / "voice2.wav")
    _submit(api, audio_url="voice.wav", video_url="face.mp4", code="stale")
    _finish(api, template_clip)
    _submit(api, audio_url="voice2.wav", video_url="face.mp4", code="stale")

    _finish(api, short_template_clip, expose=False)  # stale-r.mp4 still holds the first video
    data = _query(api, "stale")["data"]

    assert data["status"] == 3 and data["result"] == ""
    assert "stale-r.mp4" in data["msg"]


def test_a_deleted_result_file_is_status_3_saying_so_never_a_500(
    api: ApiHarness, template_clip: Path, speech_wav: Path
) -> None:
    temp = _temp_dir(api, template_clip, speech_wav)
    _submit(api, audio_url="voice.wav", video_url="face.mp4", code="gone")
    job_id = _finish(api, template_clip)
    stored = api.settings.data_dir / "results" / f"{job_id}.mp4"

    stored.unlink()  # the server's copy removed: the client's file still holds the video
    kept = _query(api, "gone")
    (temp / "gone-r.mp4").unlink()  # the client's copy removed too
    gone = _query(api, "gone")

    assert kept["data"]["status"] == 2
    assert (temp / "gone-r.mp4").exists() is False
    assert gone["code"] == 10000 and gone["success"] is True
    assert gone["data"]["status"] == 3 and gone["data"]["result"] == ""
    assert "gone-r.mp4" in gone["data"]["msg"] and "重新提交" in gone["data"]["msg"]
    assert "/v1/jobs" not in gone["data"]["msg"]  # nothing left to download there


def test_a_deleted_exposed_file_points_to_the_stored_copy(
    api: ApiHarness, template_clip: Path, speech_wav: Path
) -> None:
    temp = _temp_dir(api, template_clip, speech_wav)
    _submit(api, audio_url="voice.wav", video_url="face.mp4", code="moved")
    job_id = _finish(api, template_clip)

    (temp / "moved-r.mp4").unlink()
    data = _query(api, "moved")["data"]

    assert data["status"] == 3 and f"/v1/jobs/{job_id}/result" in data["msg"]
    assert api.client.get(f"/v1/jobs/{job_id}/result").content == template_clip.read_bytes()


# --- one code, one live job (issue 9) --------------------------------------------------------


def test_twenty_racing_submissions_of_one_code_make_one_job(
    api: ApiHarness, template_clip: Path, speech_wav: Path
) -> None:
    temp = _temp_dir(api, template_clip, speech_wav)
    for number in range(20):
        shutil.copy(speech_wav, temp / f"voice{number}.wav")
    start = threading.Barrier(20)

    def submit(number: int) -> dict[str, Any]:
        start.wait(timeout=30)
        return _submit(api, audio_url=f"voice{number}.wav", video_url="face.mp4", code="herd")

    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(submit, range(20)))

    assert replies == [{"code": 10000, "data": {}, "msg": 10000, "success": True}] * 20
    assert api.store.list_jobs()[1] == 1  # the others were folded into the live job


def test_a_v1_key_in_the_heygem_namespace_is_refused_and_the_code_stays_free(
    api: ApiHarness, template_clip: Path, speech_wav: Path
) -> None:
    _temp_dir(api, template_clip, speech_wav)
    body = {"audio": "speech.wav", "video": "template.mp4"}

    v1 = api.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "heygem:c1:x"})
    easy = _submit(api, audio_url="voice.wav", video_url="face.mp4", code="c1")

    assert v1.status_code == 422
    error = v1.json()["error"]
    assert error["code"] == "INPUT_INVALID"
    assert "heygem:" in error["message"] and "Idempotency-Key" in error["message"]
    assert easy["code"] == 10000
    job = api.store.latest_with_key_prefix("heygem:c1:")
    assert job is not None and job.inputs.audio_path.endswith("voice.wav")
    assert api.store.list_jobs()[1] == 1
