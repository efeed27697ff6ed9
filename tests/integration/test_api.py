"""The v1 HTTP API over a real SQLite store, real media probes and a fake scheduler."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from talkingface.errors import ErrorCode, ErrorRecord, Stage
from talkingface.jobs.records import JobResult
from talkingface.jobs.states import AttemptOutcome, JobState
from talkingface.samples import synth_speech, write_wav
from talkingface.storage.local import LocalStorage
from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    CountingServer,
    api_fixture,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
    media_server_fixture,
)


def submit_paths(
    api: ApiHarness,
    audio: str = "speech.wav",
    video: str = "template.mp4",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Any:
    body = {"audio": str(api.input_root / audio), "video": str(api.input_root / video), **extra}
    return api.client.post("/v1/jobs", json=body, headers=headers)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"].strip()
    return error


def make_failed(api: ApiHarness, job_id: str) -> None:
    claimed = api.store.claim_next("w1", lease_s=30)
    assert claimed is not None and claimed[0].id == job_id
    error = ErrorRecord(ErrorCode.NO_FACE, Stage.TRACK, False, "No face found in template.mp4.")
    api.store.fail_attempt(
        job_id, claimed[1].id, error, outcome=AttemptOutcome.FAILED, retry_at=None
    )


def make_succeeded(api: ApiHarness, job_id: str, content: bytes) -> Path:
    claimed = api.store.claim_next("w1", lease_s=30)
    assert claimed is not None and claimed[0].id == job_id
    storage = LocalStorage(api.settings.data_dir)
    partial = storage.partial_result_path(job_id, claimed[1].id)
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(content)
    path = storage.publish_result(job_id, claimed[1].id)
    result = JobResult(str(path), 2.0, 512, 512, 25.0, 50, 0, 1.5)
    assert api.store.succeed(job_id, claimed[1].id, result)
    return path


# --- submit -------------------------------------------------------------------------------


def test_submit_by_path_inside_root_queues_the_job_and_wakes_the_scheduler(api: ApiHarness) -> None:
    response = submit_paths(api, priority=5)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "queued" and job["priority"] == 5 and job["attempt"] == 0
    assert job["progress"] == {"fraction": 0.0, "frames_done": 0, "frames_total": 0, "eta_s": None}
    assert job["error"] is None and job["result"] is None and job["attempts"] == []
    stored = api.store.get(job["id"])
    assert stored.state is JobState.QUEUED
    assert stored.inputs.audio_path == str(api.input_root / "speech.wav")
    assert stored.inputs.input_duration_s is not None and 2.9 < stored.inputs.input_duration_s < 3.1
    assert api.scheduler.wakes == 1


def test_relative_path_is_resolved_inside_the_input_root(api: ApiHarness) -> None:
    response = api.client.post("/v1/jobs", json={"audio": "speech.wav", "video": "template.mp4"})
    assert response.status_code == 202, response.text


def test_a_job_shows_the_engine_it_runs_on(api: ApiHarness) -> None:
    default = submit_paths(api).json()
    chosen = api.client.post(
        "/v1/jobs", json={"audio": "speech.wav", "video": "template.mp4", "engine": "wav2lip"}
    ).json()
    assert default["engine"] == "classic"  # the server's default
    assert api.client.get(f"/v1/jobs/{chosen['id']}").json()["engine"] == "wav2lip"


def test_path_outside_the_roots_is_refused_naming_the_field(
    api: ApiHarness, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes((api.input_root / "speech.wav").read_bytes())
    error = assert_error(
        api.client.post("/v1/jobs", json={"audio": str(outside), "video": "template.mp4"}),
        422,
        "PERMISSION_DENIED",
    )
    assert error["message"].startswith("audio:") and "input roots" in error["message"]


def test_dot_dot_is_refused(api: ApiHarness) -> None:
    body = {"audio": "speech.wav", "video": "../inputs/template.mp4"}
    error = assert_error(api.client.post("/v1/jobs", json=body), 422, "PERMISSION_DENIED")
    assert error["message"].startswith("video:") and ".." in error["message"]


def test_symlink_escaping_the_root_is_refused(api: ApiHarness, tmp_path: Path) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes((api.input_root / "speech.wav").read_bytes())
    (api.input_root / "link.wav").symlink_to(secret)
    body = {"audio": str(api.input_root / "link.wav"), "video": "template.mp4"}
    error = assert_error(api.client.post("/v1/jobs", json=body), 422, "PERMISSION_DENIED")
    assert error["message"].startswith("audio:")


def test_server_paths_need_configured_roots(make_api: Any) -> None:
    api = make_api(input_roots=[])
    error = assert_error(submit_paths(api), 422, "PERMISSION_DENIED")
    assert "api.input_roots" in error["message"] and error["message"].startswith("audio:")


def test_missing_file_is_input_not_found(api: ApiHarness) -> None:
    error = assert_error(submit_paths(api, video="nope.mp4"), 422, "INPUT_NOT_FOUND")
    assert error["message"].startswith("video:")


def test_garbage_media_is_refused_at_submit(api: ApiHarness) -> None:
    assert_error(submit_paths(api, audio="garbage.wav"), 422, "INPUT_INVALID_MEDIA")
    assert api.store.list_jobs()[1] == 0


def test_multipart_upload_stores_files_under_the_jobs_inputs_dir(api: ApiHarness) -> None:
    with (
        (api.input_root / "speech.wav").open("rb") as audio,
        (api.input_root / "template.mp4").open("rb") as video,
    ):
        files = {"audio": ("../../speech.wav", audio, "audio/wav"), "video": ("t.mp4", video)}
        response = api.client.post("/v1/jobs", files=files, data={"priority": "3"})
    assert response.status_code == 202, response.text
    job = api.store.get(response.json()["id"])
    assert job.priority == 3
    inputs_dir = api.settings.data_dir / "inputs" / job.id
    assert Path(job.inputs.audio_path).parent == inputs_dir
    assert Path(job.inputs.audio_path).read_bytes() == (api.input_root / "speech.wav").read_bytes()
    assert sorted(p.name for p in inputs_dir.iterdir()) == ["audio_speech.wav", "video_t.mp4"]


def test_oversized_upload_is_413_and_leaves_no_file(make_api: Any) -> None:
    api = make_api(max_upload_bytes=1000)
    with (api.input_root / "speech.wav").open("rb") as audio:
        files = {"audio": ("speech.wav", audio), "video": ("t.mp4", b"x" * 10)}
        response = api.client.post("/v1/jobs", files=files)
    assert_error(response, 413, "INPUT_TOO_LARGE")
    inputs = api.settings.data_dir / "inputs"
    assert not inputs.exists() or list(inputs.rglob("*")) == []


def test_multipart_without_a_file_names_the_field(api: ApiHarness) -> None:
    response = api.client.post("/v1/jobs", files={"audio": ("a.wav", b"RIFF")})
    error = assert_error(response, 422, "INPUT_INVALID")
    assert "video" in error["message"]


def test_same_idempotency_key_returns_the_same_job(api: ApiHarness) -> None:
    first = submit_paths_with_key(api, "k-1")
    second = submit_paths_with_key(api, "k-1")
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
    assert api.store.list_jobs()[1] == 1


def submit_paths_with_key(api: ApiHarness, key: str) -> Any:
    body = {"audio": "speech.wav", "video": "template.mp4"}
    return api.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})


def test_an_empty_idempotency_key_is_422_and_creates_nothing(api: ApiHarness) -> None:
    for key in ("", "   "):
        error = assert_error(submit_paths_with_key(api, key), 422, "INPUT_INVALID")
        assert "Idempotency-Key" in error["message"] and "empty" in error["message"]
    assert api.store.list_jobs()[1] == 0


def test_a_key_reused_with_other_inputs_is_422_naming_the_key(api: ApiHarness) -> None:
    shutil.copy(api.input_root / "speech.wav", api.input_root / "other.wav")
    headers = {"Idempotency-Key": "order-7"}
    first = submit_paths(api, headers=headers)
    changed = [
        submit_paths(api, audio="other.wav", headers=headers),
        submit_paths(api, priority=5, headers=headers),
        submit_paths(api, loop="restart", headers=headers),
    ]
    again = submit_paths(api, headers=headers)

    assert first.status_code == 202
    for response in changed:
        error = assert_error(response, 422, "INPUT_INVALID")
        assert "'order-7'" in error["message"] and first.json()["id"] in error["message"]
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert api.store.list_jobs()[1] == 1


def test_a_key_reused_with_other_uploaded_bytes_is_422(
    api: ApiHarness, speech_wav: Path, template_clip: Path, tmp_path: Path
) -> None:
    other = write_wav(tmp_path / "other.wav", synth_speech(1.0, seed=5).samples_f32, 16000)

    def upload(audio: Path) -> Any:
        files = {
            "audio": ("a.wav", audio.read_bytes()),
            "video": ("v.mp4", template_clip.read_bytes()),
        }
        return api.client.post("/v1/jobs", files=files, headers={"Idempotency-Key": "up-1"})

    first, same, changed = upload(speech_wav), upload(speech_wav), upload(other)

    assert (first.status_code, same.status_code) == (202, 200)
    assert same.json()["id"] == first.json()["id"]
    assert "'up-1'" in assert_error(changed, 422, "INPUT_INVALID")["message"]
    assert api.store.list_jobs()[1] == 1
    saved = [p.name for p in (api.settings.data_dir / "inputs").iterdir()]
    assert saved == [first.json()["id"]]  # the refused and repeated uploads are not kept


def test_racing_submissions_with_one_key_and_other_inputs_make_one_job(api: ApiHarness) -> None:
    start = threading.Barrier(8)

    def submit(priority: int) -> int:
        start.wait(timeout=30)
        headers = {"Idempotency-Key": "race-key"}
        return int(submit_paths(api, priority=priority, headers=headers).status_code)

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(submit, range(8)))

    assert statuses == [202] + [422] * 7
    assert api.store.list_jobs()[1] == 1


def test_full_queue_answers_429_with_retry_after(make_api: Any) -> None:
    api = make_api(max_queued=1, retry_after_s=7)
    assert submit_paths(api).status_code == 202
    response = submit_paths(api)
    assert_error(response, 429, "QUEUE_FULL")
    assert response.headers["Retry-After"] == "7"


def test_malformed_json_is_422_with_a_message(api: ApiHarness) -> None:
    response = api.client.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 422, "INPUT_INVALID")


def test_wrong_types_are_422_naming_the_field(api: ApiHarness) -> None:
    cases = [
        ({"audio": "speech.wav", "video": "template.mp4", "priority": "high"}, "priority"),
        ({"audio": "speech.wav", "video": "template.mp4", "priority": 101}, "priority"),
        ({"audio": "speech.wav", "video": "template.mp4", "loop": "sideways"}, "loop"),
        ({"audio": "speech.wav", "video": "template.mp4", "colour": "red"}, "colour"),
        ({"audio": "speech.wav", "video": "template.mp4", "engine": "nope"}, "engine"),
        ({"audio": "speech.wav", "video": "template.mp4", "fault": "crash"}, "fault"),
        ({"video": "template.mp4"}, "audio"),
        ([1, 2], "body"),
    ]
    for body, field in cases:
        error = assert_error(api.client.post("/v1/jobs", json=body), 422, "INPUT_INVALID")
        assert field in error["message"], (body, error)


def test_fault_is_accepted_when_faults_are_enabled(make_api: Any) -> None:
    api = make_api(workers={"allow_faults": True})
    body = {"audio": "speech.wav", "video": "template.mp4", "fault": "crash"}
    response = api.client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    assert api.store.get(response.json()["id"]).options.fault == "crash"


# --- URL inputs ---------------------------------------------------------------------------


def test_url_input_is_downloaded_when_private_hosts_are_allowed(
    make_api: Any, media_server: CountingServer
) -> None:
    api = make_api(allow_private_url_hosts=True)
    port = media_server.server_address[1]
    body = {"audio": f"http://127.0.0.1:{port}/speech.wav", "video": "template.mp4"}
    response = api.client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job = api.store.get(response.json()["id"])
    downloaded = Path(job.inputs.audio_path)
    assert downloaded.parent == api.settings.data_dir / "inputs" / job.id
    assert downloaded.read_bytes() == (api.input_root / "speech.wav").read_bytes()


def test_loopback_url_is_refused_before_any_connection(
    api: ApiHarness, media_server: CountingServer
) -> None:
    port = media_server.server_address[1]
    body = {"audio": f"http://127.0.0.1:{port}/speech.wav", "video": "template.mp4"}
    error = assert_error(api.client.post("/v1/jobs", json=body), 422, "PERMISSION_DENIED")
    assert error["message"].startswith("audio:")
    assert media_server.connections == 0


def test_missing_url_is_input_not_found(make_api: Any, media_server: CountingServer) -> None:
    api = make_api(allow_private_url_hosts=True)
    port = media_server.server_address[1]
    body = {"audio": "speech.wav", "video": f"http://127.0.0.1:{port}/missing.mp4"}
    error = assert_error(api.client.post("/v1/jobs", json=body), 422, "INPUT_NOT_FOUND")
    assert "404" in error["message"]
    assert list((api.settings.data_dir / "inputs").glob("*")) == []


# --- reading, listing, cancel, retry --------------------------------------------------------


def test_unknown_job_is_404_everywhere(api: ApiHarness) -> None:
    for method, path in [
        ("GET", "/v1/jobs/nope"),
        ("POST", "/v1/jobs/nope/cancel"),
        ("POST", "/v1/jobs/nope/retry"),
        ("GET", "/v1/jobs/nope/result"),
        ("GET", "/v1/jobs/nope/events"),
    ]:
        assert_error(api.client.request(method, path), 404, "JOB_NOT_FOUND")


def test_list_filters_by_state_and_paginates(api: ApiHarness) -> None:
    ids = [submit_paths(api).json()["id"] for _ in range(3)]
    api.client.post(f"/v1/jobs/{ids[0]}/cancel")
    page = api.client.get("/v1/jobs", params={"limit": 1, "offset": 1}).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)
    assert [item["id"] for item in page["items"]] == [ids[1]]  # newest first
    queued = api.client.get("/v1/jobs", params={"state": "queued"}).json()
    assert queued["total"] == 2 and {item["id"] for item in queued["items"]} == set(ids[1:])
    assert_error(api.client.get("/v1/jobs", params={"state": "lost"}), 422, "INPUT_INVALID")


def test_cancel_of_a_queued_job_is_immediate_and_terminal_cancel_is_409(api: ApiHarness) -> None:
    job_id = submit_paths(api).json()["id"]
    response = api.client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    assert response.json()["state"] == "canceled"
    assert response.json()["error"]["code"] == "CANCELED"
    assert api.scheduler.wakes == 2
    error = assert_error(api.client.post(f"/v1/jobs/{job_id}/cancel"), 409, "JOB_STATE")
    assert "canceled" in error["message"]


def test_retry_requeues_a_failed_job_and_refuses_a_queued_one(api: ApiHarness) -> None:
    job_id = submit_paths(api).json()["id"]
    assert_error(api.client.post(f"/v1/jobs/{job_id}/retry"), 409, "JOB_STATE")
    make_failed(api, job_id)
    failed = api.client.get(f"/v1/jobs/{job_id}").json()
    assert failed["state"] == "failed" and failed["error"]["code"] == "NO_FACE"
    assert failed["attempts"][0]["outcome"] == "failed"
    assert failed["attempts"][0]["error"]["message"] == "No face found in template.mp4."
    response = api.client.post(f"/v1/jobs/{job_id}/retry")
    assert response.status_code == 202
    assert response.json()["state"] == "queued" and response.json()["error"] is None


def test_events_list_the_jobs_history(api: ApiHarness) -> None:
    job_id = submit_paths(api).json()["id"]
    api.client.post(f"/v1/jobs/{job_id}/cancel")
    kinds = [event["kind"] for event in api.client.get(f"/v1/jobs/{job_id}/events").json()]
    assert kinds == ["job_created", "job_canceled"]


# --- results ------------------------------------------------------------------------------


def test_the_result_shows_every_stored_figure_and_a_url_never_the_server_path(
    api: ApiHarness,
) -> None:
    job_id = submit_paths(api).json()["id"]
    make_succeeded(api, job_id, b"mp4")
    stored = api.store.get(job_id).result
    assert stored is not None

    shown = api.client.get(f"/v1/jobs/{job_id}").json()["result"]

    assert shown == {**stored.figures(), "url": shown["url"], "receipt": None}  # no evaluate
    assert shown["url"].endswith(f"/v1/jobs/{job_id}/result")
    assert stored.path not in json.dumps(shown)


def test_result_supports_range_requests(api: ApiHarness) -> None:
    job_id = submit_paths(api).json()["id"]
    assert_error(api.client.get(f"/v1/jobs/{job_id}/result"), 409, "JOB_STATE")
    content = bytes(range(256)) * 8
    make_succeeded(api, job_id, content)
    job = api.client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "succeeded" and job["progress"]["fraction"] == 1.0
    assert job["result"]["url"].endswith(f"/v1/jobs/{job_id}/result")
    assert (job["result"]["width"], job["result"]["fps"]) == (512, 25.0)
    whole = api.client.get(f"/v1/jobs/{job_id}/result")
    assert whole.status_code == 200 and whole.content == content
    assert whole.headers["content-type"] == "video/mp4"
    part = api.client.get(f"/v1/jobs/{job_id}/result", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(content)}"


# --- operations ---------------------------------------------------------------------------


def test_healthz_and_workers(api: ApiHarness) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    workers = api.client.get("/v1/workers").json()
    assert workers == [
        {
            "id": "w1",
            "pid": 4242,
            "scheduler_host": socket.gethostname(),  # one server: the scheduler is its own
            "scheduler_pid": os.getpid(),
            "state": "ready",
            "job_id": None,
            "attempt_id": None,
            "jobs_done": 0,
            "uptime_s": 0.0,
            "node": None,
        }
    ]


def test_readyz_reports_each_check(api: ApiHarness) -> None:
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert set(ready.json()["checks"]) == {"store", "workers", "results", "disk"}
    api.scheduler.ready = False
    not_ready = api.client.get("/readyz")
    assert not_ready.status_code == 503
    checks = not_ready.json()["checks"]
    assert checks["workers"]["ok"] is False and checks["store"]["ok"] is True


def test_readyz_fails_when_the_disk_is_below_the_minimum(make_api: Any) -> None:
    api = make_api(min_free_disk_bytes=2**62)
    response = api.client.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["disk"]["ok"] is False


def test_stats_count_jobs_by_state(api: ApiHarness) -> None:
    submit_paths(api)
    stats = api.client.get("/v1/stats").json()
    assert stats["jobs_total"] == 1


def test_unknown_route_is_a_json_error(api: ApiHarness) -> None:
    assert_error(api.client.get("/v2/nothing"), 404, "HTTP_404")


def test_openapi_documents_the_operations(api: ApiHarness) -> None:
    document = api.client.get("/openapi.json").json()
    operation_ids = {
        op["operationId"] for path in document["paths"].values() for op in path.values()
    }
    assert {
        "submit_job",
        "read_job",
        "list_jobs",
        "cancel_job",
        "retry_job",
        "download_result",
    } <= operation_ids
    assert "JobCreate" in document["components"]["schemas"]
    assert api.client.get("/docs").status_code == 200


def test_openapi_shows_the_test_only_fault_field_only_where_faults_are_allowed(
    make_api: Any,
) -> None:
    def job_create(api: ApiHarness) -> dict[str, Any]:
        document = api.client.get("/openapi.json").json()
        schema: dict[str, Any] = document["components"]["schemas"]["JobCreate"]
        return schema

    production = job_create(make_api())
    testing = job_create(make_api(workers={"allow_faults": True}))

    assert '"fault"' not in json.dumps(production)  # ("default" contains "fault")
    assert {"audio", "video", "priority", "callback_url"} <= set(production["properties"])
    assert set(testing["properties"]) == set(production["properties"]) | {"fault"}
    assert "allow_faults" in testing["properties"]["fault"]["description"]


def test_request_id_is_echoed(api: ApiHarness) -> None:
    response = api.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


def test_unexpected_errors_are_500_with_a_message(api: ApiHarness) -> None:
    def broken() -> list[Any]:
        raise RuntimeError()

    api.scheduler.workers = broken  # type: ignore[method-assign]
    error = assert_error(api.client.get("/v1/workers"), 500, "INTERNAL")
    assert "RuntimeError" in error["message"]


# --- storage ------------------------------------------------------------------------------


def test_storage_sanitises_names_and_finds_orphans(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    saved = storage.save_upload("job1", "audio", "../../\x00evil\n.wav", [b"abc"], max_bytes=10)
    assert saved == storage.inputs_dir("job1") / "audio_evil.wav"
    storage.save_upload("gone", "video", None, [b"x"], max_bytes=10)
    partial = storage.partial_result_path("job1", "att1")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"mp4")
    stale = storage.partial_result_path("job1", "att0")
    stale.write_bytes(b"old")
    assert storage.publish_result("job1", "att1").read_bytes() == b"mp4"
    assert not partial.exists()
    assert storage.orphan_paths({"job1"}) == [stale]  # a fresh inputs dir may be a submit
    orphans = storage.orphan_paths({"job1"}, min_age_s=0)
    assert orphans == sorted([storage.inputs_dir("gone"), stale])
    storage.delete_job_files("job1")
    assert not storage.inputs_dir("job1").exists() and not storage.result_path("job1").exists()
    assert not stale.exists()


def test_process_endpoint_names_the_threads_and_counts_descriptors(api: ApiHarness) -> None:
    started = threading.Event()
    finish = threading.Event()

    def linger() -> None:
        started.set()
        finish.wait(10)

    thread = threading.Thread(target=linger, name="leaky-test-thread")
    thread.start()
    started.wait(5)
    try:
        seen = api.client.get("/v1/process").json()
    finally:
        finish.set()
        thread.join()
    assert seen["threads"]["leaky-test-thread"] == 1
    assert seen["open_fds"] > 0 and seen["rss_bytes"] > 0 and seen["native_threads"] >= 2
    after = api.client.get("/v1/process").json()
    assert "leaky-test-thread" not in after["threads"]


# --- a keyless loopback server and the operator's browser --------------------------------


def test_a_foreign_host_name_is_refused_without_keys_dns_rebinding(api: ApiHarness) -> None:
    # evil.example made to resolve to 127.0.0.1: the browser sends its own name as Host
    refused = api.client.get("/v1/jobs", headers={"Host": "evil.example:8383"})
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "FORBIDDEN_ORIGIN" and "api.trusted_hosts" in error["message"]
    easy = api.client.get("/easy/query", params={"code": "x"}, headers={"Host": "evil.example"})
    assert easy.status_code == 403 and easy.json()["code"] == 9999 and easy.json()["msg"]
    for local in ("localhost", "127.0.0.1:8383", "[::1]:8383", "LOCALHOST"):
        assert api.client.get("/v1/jobs", headers={"Host": local}).status_code == 200, local


def test_a_web_page_of_another_site_cannot_pause_the_queue(api: ApiHarness) -> None:
    forged = api.client.post("/v1/queue/pause", headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and not api.scheduler.is_paused()
    # desktop apps (Origin: null, file://) and local pages pass
    for origin in ("null", "file://", "http://localhost:3000", "http://127.0.0.1:8383"):
        allowed = api.client.post("/v1/queue/pause", headers={"Origin": origin})
        assert allowed.status_code == 200, origin
    assert api.scheduler.is_paused()


def test_trusted_hosts_and_api_keys_open_the_browser_guard(make_api: Any) -> None:
    trusted = make_api(trusted_hosts=["studio.lan"])
    assert trusted.client.get("/v1/jobs", headers={"Host": "studio.lan:8383"}).status_code == 200
    assert trusted.client.get("/v1/jobs", headers={"Host": "other.lan"}).status_code == 403
    keyed = make_api(keys=["k" * 16])
    answer = keyed.client.get(
        "/v1/jobs", headers={"Host": "evil.example", "Authorization": "Bearer " + "k" * 16}
    )
    assert answer.status_code == 200  # a browser page cannot know the key
