"""The job service end to end: a real server process, real workers, real signals, real databases."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from bench.chaos.processes import Tmpfs

from talkingface.samples import synth_speech, write_wav
from tests.integration.service_fixtures import (
    Service,
    all_error_messages,
    descendants_alive,
    json_lines,
    submit_upload,
    wait_until,
)
from tests.media import read_stream_facts

ServiceFactory = Callable[..., Service]


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s of speech: long enough to interrupt mid-render."""
    path = tmp_path_factory.mktemp("service-media") / "long.wav"
    return write_wav(path, synth_speech(8.0, seed=11).samples_f32, 16000)


def _running_with_progress(service: Service, job_id: str) -> dict[str, Any]:
    def moving() -> dict[str, Any] | None:
        job = service.job(job_id)
        return job if job["state"] == "running" and job["progress"]["frames_done"] > 0 else None

    result: dict[str, Any] = wait_until(moving, timeout_s=60, what=f"job {job_id} rendering")
    return result


def _worker_pid_of(service: Service, job_id: str) -> int:
    workers = service.http.get("/v1/workers").json()
    pids = [w["pid"] for w in workers if w.get("job_id") == job_id]
    assert pids, workers
    return int(pids[0])


def _assert_clean(service: Service) -> None:
    """No partial results left in the data dir; every error message non-empty."""
    partials = list((service.data_dir / "results").glob(".*partial*"))
    assert partials == []
    jobs = service.http.get("/v1/jobs", params={"limit": 500}).json()["items"]
    for listed in jobs:
        job = service.job(listed["id"])
        assert all(message.strip() for message in all_error_messages(job)), job


def test_happy_path_over_http_on_sqlite(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    service = service_factory()
    job = submit_upload(service, speech_wav, short_template_clip)

    done = service.wait_state(job["id"], "succeeded", "failed")

    assert done["state"] == "succeeded", done
    assert done["attempt"] == 1 and done["progress"]["fraction"] == 1.0
    assert done["result"]["duration_s"] == pytest.approx(3.0, abs=0.05)
    response = service.http.get(done["result"]["url"])
    assert response.status_code == 200
    (tmp_path / "got.mp4").write_bytes(response.content)
    facts = read_stream_facts(tmp_path / "got.mp4")
    assert facts.video_codec == "h264" and facts.audio_codec == "aac"
    ranged = service.http.get(done["result"]["url"], headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and ranged.content == response.content[:100]
    _assert_clean(service)


def test_happy_path_over_http_on_postgresql(
    fresh_postgres_url: str,  # first: set up before the server, so dropped after it stops
    service_factory: ServiceFactory,
    speech_wav: Path,
    short_template_clip: Path,
) -> None:
    service = service_factory(extra_env={"TALKINGFACE_DB__URL": fresh_postgres_url})
    job = submit_upload(service, speech_wav, short_template_clip)

    done = service.wait_state(job["id"], "succeeded", "failed")

    assert done["state"] == "succeeded", done
    assert service.http.get("/v1/stats").json()["by_state"]["succeeded"] == 1


def test_twenty_jobs_at_once_all_succeed(
    service_factory: ServiceFactory, short_template_clip: Path, tmp_path: Path
) -> None:
    service = service_factory(workers=2)
    audio = write_wav(tmp_path / "short.wav", synth_speech(1.5, seed=2).samples_f32, 16000)
    ids = [submit_upload(service, audio, short_template_clip)["id"] for _ in range(20)]

    finals = [service.wait_state(job_id, "succeeded", "failed", timeout_s=180) for job_id in ids]

    assert [job["state"] for job in finals] == ["succeeded"] * 20
    assert all(job["result"]["duration_s"] == pytest.approx(1.5, abs=0.05) for job in finals)
    _assert_clean(service)


def test_sigkill_of_a_worker_mid_job_is_retried_and_succeeds(
    service_factory: ServiceFactory, long_speech: Path, short_template_clip: Path
) -> None:
    service = service_factory()
    job = submit_upload(service, long_speech, short_template_clip)
    _running_with_progress(service, job["id"])

    os.kill(_worker_pid_of(service, job["id"]), signal.SIGKILL)
    done = service.wait_state(job["id"], "succeeded", "failed")

    assert done["state"] == "succeeded", done
    assert done["attempt"] == 2
    first = done["attempts"][0]
    assert first["outcome"] == "lost"
    assert first["error"]["code"] == "WORKER_LOST"
    assert "signal 9" in first["error"]["message"]
    _assert_clean(service)


def test_a_hanging_worker_is_detected_retried_and_then_failed_with_a_specific_message(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path
) -> None:
    service = service_factory(extra_env={"TALKINGFACE_RETRY__MAX_RETRIES": "1"})
    job = submit_upload(service, speech_wav, short_template_clip, fault="hang")

    done = service.wait_state(job["id"], "succeeded", "failed", timeout_s=120)

    assert done["state"] == "failed"
    assert [a["outcome"] for a in done["attempts"]] == ["stalled", "stalled"]
    assert done["error"]["code"] == "STALLED"
    assert "No progress for" in done["error"]["message"]
    # the service keeps serving: a normal job afterwards succeeds on a fresh worker
    after = submit_upload(service, speech_wav, short_template_clip)
    assert service.wait_state(after["id"], "succeeded", "failed")["state"] == "succeeded"
    _assert_clean(service)


def test_a_worker_that_stops_heartbeating_is_declared_lost(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path
) -> None:
    service = service_factory(extra_env={"TALKINGFACE_RETRY__MAX_RETRIES": "0"})
    job = submit_upload(service, speech_wav, short_template_clip, fault="silent_hang")

    done = service.wait_state(job["id"], "succeeded", "failed", timeout_s=60)

    assert done["state"] == "failed"
    assert done["error"]["code"] == "WORKER_LOST"
    assert "no heartbeat" in done["error"]["message"]


def test_missing_input_fails_at_once_without_retry(
    service_factory: ServiceFactory,
    long_speech: Path,
    speech_wav: Path,
    short_template_clip: Path,
    tmp_path: Path,
) -> None:
    roots = tmp_path / "inputs"
    roots.mkdir()
    audio = roots / "speech.wav"
    audio.write_bytes(speech_wav.read_bytes())
    video = roots / "face.mp4"
    video.write_bytes(short_template_clip.read_bytes())
    service = service_factory(extra_env={"TALKINGFACE_API__INPUT_ROOTS": f'["{roots}"]'})
    # Given the only worker is busy, a job whose input disappears before it runs
    busy = submit_upload(service, long_speech, short_template_clip)
    _running_with_progress(service, busy["id"])
    response = service.http.post("/v1/jobs", json={"audio": str(audio), "video": str(video)})
    assert response.status_code == 202, response.text
    audio.unlink()

    done = service.wait_state(response.json()["id"], "succeeded", "failed")

    assert done["state"] == "failed"
    assert done["error"]["code"] == "INPUT_NOT_FOUND" and done["error"]["retryable"] is False
    assert done["attempt"] == 1 and len(done["attempts"]) == 1


def test_cancel_of_queued_and_running_jobs(
    service_factory: ServiceFactory, long_speech: Path, short_template_clip: Path
) -> None:
    service = service_factory()
    running = submit_upload(service, long_speech, short_template_clip)
    queued = submit_upload(service, long_speech, short_template_clip)
    _running_with_progress(service, running["id"])
    old_pid = _worker_pid_of(service, running["id"])

    assert service.http.post(f"/v1/jobs/{queued['id']}/cancel").status_code == 202
    assert service.job(queued["id"])["state"] == "canceled"  # at once
    assert service.http.post(f"/v1/jobs/{running['id']}/cancel").status_code == 202
    done = service.wait_state(running["id"], "canceled", "succeeded", "failed", timeout_s=5)

    assert done["state"] == "canceled"
    assert done["attempts"][-1]["outcome"] == "canceled"
    wait_until(lambda: not descendants_alive([old_pid]), timeout_s=10, what="the old worker gone")
    wait_until(
        lambda: any(w["state"] == "ready" for w in service.http.get("/v1/workers").json()),
        timeout_s=60,
        what="a replacement worker",
    )
    _assert_clean(service)


def test_every_accepted_cancel_of_a_short_running_job_ends_canceled(
    service_factory: ServiceFactory, short_template_clip: Path, tmp_path: Path
) -> None:
    """Issue 9: a 202 cancel that reaches a job in its last moments (the worker's success
    already on its way) still ends the job canceled, with no result to download."""
    service = service_factory()
    audio = write_wav(tmp_path / "short.wav", synth_speech(1.0, seed=9).samples_f32, 16000)
    accepted = 0
    for _ in range(6):
        job = submit_upload(service, audio, short_template_clip)
        wait_until(
            lambda j=job["id"]: service.job(j)["state"] != "queued",
            timeout_s=60,
            what="the job to start",
        )
        if service.http.post(f"/v1/jobs/{job['id']}/cancel").status_code != 202:
            continue  # it had already finished: a 409, nothing promised
        accepted += 1
        done = service.wait_state(job["id"], "canceled", "succeeded", "failed", timeout_s=30)
        assert done["state"] == "canceled", done
        assert done["result"] is None
        assert service.http.get(f"/v1/jobs/{job['id']}/result").status_code == 409
        assert not (service.data_dir / "results" / f"{job['id']}.mp4").exists()
    assert accepted > 0
    _assert_clean(service)


def test_server_sigkill_and_restart_mid_job_completes_the_job(
    service_factory: ServiceFactory, long_speech: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    service = service_factory(data_dir=data_dir)
    job = submit_upload(service, long_speech, short_template_clip)
    _running_with_progress(service, job["id"])
    worker_pids = service.worker_pids()

    service.stop(signal.SIGKILL)
    wait_until(
        lambda: not descendants_alive(worker_pids), timeout_s=20, what="orphaned workers to exit"
    )
    restarted = service_factory(data_dir=data_dir)
    done = restarted.wait_state(job["id"], "succeeded", "failed")

    assert done["state"] == "succeeded", done
    assert done["attempts"][0]["error"]["code"] == "WORKER_LOST"
    assert "server stopped" in done["attempts"][0]["error"]["message"]
    _assert_clean(restarted)


def test_stopping_the_server_leaves_no_worker_processes(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path
) -> None:
    service = service_factory(workers=2)
    pids = service.worker_pids()
    assert len(pids) == 2

    service.stop(signal.SIGTERM)

    assert service.process.returncode == 143  # 128 + SIGTERM, after a graceful stop
    wait_until(lambda: not descendants_alive(pids), timeout_s=20, what="workers to exit")


def _cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "talkingface", *args, "--server", service.url]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_cli_submit_wait_downloads_the_result_and_exit_codes_say_how_it_ended(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    service = service_factory()
    output = tmp_path / "result.mp4"

    ok = _cli(
        service,
        "submit",
        "-a",
        str(speech_wav),
        "-v",
        str(short_template_clip),
        "--wait",
        "-o",
        str(output),
    )
    failed = _cli(service, "submit", "-a", str(speech_wav), "-v", str(speech_wav), "--wait")
    bare = _cli(service, "submit", "-a", str(speech_wav), "-v", str(short_template_clip))

    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(output.resolve())
    assert read_stream_facts(output).frame_count == 75
    assert failed.returncode == 2, failed.stderr  # refused at submit: no picture in the template
    assert "INPUT_INVALID_MEDIA" in failed.stderr
    job_id = bare.stdout.strip()
    assert bare.returncode == 0 and len(job_id) == 32
    service.wait_state(job_id, "succeeded", "failed")
    shown = _cli(service, "jobs", "show", job_id)
    assert json.loads(shown.stdout)["state"] == "succeeded"
    listed = _cli(service, "jobs", "list")
    assert job_id[:8] in listed.stdout and "2 of 2" in listed.stdout  # the short id
    stats = _cli(service, "stats", "--json")
    assert json.loads(stats.stdout)["by_state"]["succeeded"] == 2
    missing = _cli(service, "jobs", "cancel", "0" * 32)
    assert missing.returncode == 2 and "JOB_NOT_FOUND" in missing.stderr


def test_cli_submit_wait_exits_1_with_the_error_when_the_job_fails(
    service_factory: ServiceFactory, speech_wav: Path, faceless_clip: Path
) -> None:
    service = service_factory()

    failed = _cli(service, "submit", "-a", str(speech_wav), "-v", str(faceless_clip), "--wait")

    assert failed.returncode == 1
    assert "NO_FACE" in failed.stderr and "No face found" in failed.stderr


def test_cli_without_a_server_says_where_it_tried(tmp_path: Path, speech_wav: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "talkingface",
        "jobs",
        "list",
        "--server",
        "http://127.0.0.1:9",
    ]

    completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert completed.returncode == 1
    assert "Cannot reach the talkingface server at http://127.0.0.1:9" in completed.stderr


def test_an_attempt_past_its_time_limit_is_killed_and_recorded_as_timed_out(
    service_factory: ServiceFactory, long_speech: Path, short_template_clip: Path
) -> None:
    service = service_factory(
        extra_env={
            "TALKINGFACE_WORKERS__TIMEOUT_BASE_S": "1",
            "TALKINGFACE_WORKERS__TIMEOUT_PER_INPUT_S": "0",
            "TALKINGFACE_RETRY__MAX_RETRIES": "0",
        }
    )
    job = submit_upload(service, long_speech, short_template_clip, fault="hang")

    done = service.wait_state(job["id"], "failed", "succeeded", timeout_s=60)

    assert done["attempts"][0]["outcome"] == "timed_out"
    assert done["error"]["code"] == "STAGE_TIMEOUT"
    assert "over its limit of 1 s" in done["error"]["message"]
    # the error line of the log carries the job, attempt, stage, inputs and elapsed time;
    # the scheduler writes it just after the store records the failure, so wait for it
    failures = wait_until(
        lambda: [r for r in json_lines(service.log()) if r.get("event") == "job_failed"],
        timeout_s=20,
        what="the job_failed log line",
    )
    line = failures[-1]
    assert line["job_id"] == job["id"] and line["attempt"] == 1
    assert line["code"] == "STAGE_TIMEOUT" and line["message"]
    assert line["audio_path"].endswith("long.wav") and line["elapsed_s"] >= 1.0


def test_the_janitor_removes_orphans_at_start_and_expired_results(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    results = data_dir / "results"
    results.mkdir(parents=True)
    orphan_partial = results / ".deadbeef.0ff1ce.partial.mp4"
    orphan_partial.write_bytes(b"left by a crash")
    orphan_inputs = data_dir / "inputs" / ("f" * 32)
    orphan_inputs.mkdir(parents=True)
    (orphan_inputs / "speech.wav").write_bytes(b"x")
    old = time.time() - 7200
    os.utime(orphan_inputs, (old, old))

    service = service_factory(
        data_dir=data_dir,
        extra_env={
            "TALKINGFACE_API__RESULT_RETENTION_S": "2",
            "TALKINGFACE_API__JANITOR_INTERVAL_S": "0.5",
        },
    )
    wait_until(lambda: not orphan_partial.exists(), timeout_s=20, what="the orphan partial gone")
    wait_until(lambda: not orphan_inputs.exists(), timeout_s=20, what="orphan inputs gone")
    job = submit_upload(service, speech_wav, short_template_clip)
    done = service.wait_state(job["id"], "succeeded", "failed")
    result_file = data_dir / "results" / f"{job['id']}.mp4"
    assert done["state"] == "succeeded" and result_file.exists()

    # past the retention time the job, its result and its inputs are deleted
    wait_until(lambda: not result_file.exists(), timeout_s=30, what="the expired result gone")
    assert service.http.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert not (data_dir / "inputs" / job["id"]).exists()


def test_a_heygem_client_gets_its_video_in_the_shared_temp_folder(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    temp = tmp_path / "heygem-temp"
    temp.mkdir()
    (temp / "voice.wav").write_bytes(speech_wav.read_bytes())
    (temp / "face.mp4").write_bytes(short_template_clip.read_bytes())
    service = service_factory(extra_env={"TALKINGFACE_API__HEYGEM_TEMP_DIR": str(temp)})
    body = {
        "audio_url": "voice.wav",
        "video_url": "face.mp4",
        "code": "uuid-1",
        "pn": 1,
        "chaofen": 0,
        "watermark_switch": 0,
    }

    # the desktop client: JSON body, then a query every 2 s until status 2
    submitted = service.http.post("/easy/submit", json=body).json()
    assert submitted == {"code": 10000, "data": {}, "msg": 10000, "success": True}
    missing = service.http.post("/easy/submit", json={**body, "audio_url": ""})
    assert missing.status_code == 200 and missing.json()["msg"] == "audio_url参数缺失"
    statuses = []
    reply: dict[str, Any] = {}
    for _ in range(30):
        reply = service.http.get("/easy/query", params={"code": "uuid-1"}).json()
        statuses.append(reply["data"]["status"])
        if reply["data"]["status"] in (2, 3):
            break
        time.sleep(2.0)  # the desktop client's polling interval
    assert statuses[0] == 1 or statuses == [2]
    assert reply["data"]["status"] == 2, reply
    result = temp / reply["data"]["result"].lstrip("/")
    assert result.name == "uuid-1-r.mp4"
    facts = read_stream_facts(result)
    assert facts.video_codec == "h264" and facts.audio_codec == "aac"
    again = service.http.get("/easy/query", params={"code": "uuid-1"}).json()
    assert again["data"]["status"] == 2  # not deleted by the first terminal read
    # the ComfyUI node: a raw string body, then polling until status 2
    raw = json.dumps({**body, "code": "comfy-1"})
    comfy = service.http.post("/easy/submit", content=raw, headers={"Content-Type": "text/plain"})
    assert comfy.json()["code"] == 10000

    def comfy_done() -> dict[str, Any] | None:
        data: dict[str, Any] = service.http.get("/easy/query", params={"code": "comfy-1"}).json()
        return data if data["data"]["status"] == 2 else None

    wait_until(comfy_done, timeout_s=60, what="the ComfyUI task")
    assert (temp / "comfy-1-r.mp4").stat().st_size > 0


def test_a_reused_heygem_code_serves_the_second_jobs_video_while_clients_poll(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    """Issue 9: code dup1 reused with audio of another length; every reply that says done
    names a file holding the video the reply describes, even while the code is resubmitted."""
    temp = tmp_path / "heygem-temp"
    temp.mkdir()
    (temp / "face.mp4").write_bytes(short_template_clip.read_bytes())
    (temp / "first.wav").write_bytes(speech_wav.read_bytes())  # 3 s
    write_wav(temp / "second.wav", synth_speech(1.6, seed=5).samples_f32, 16000)
    service = service_factory(extra_env={"TALKINGFACE_API__HEYGEM_TEMP_DIR": str(temp)})
    checked: list[tuple[float, float]] = []  # (the reply's video_duration, the file's)
    stop = threading.Event()

    def query() -> dict[str, Any]:
        reply: dict[str, Any] = service.http.get("/easy/query", params={"code": "dup1"}).json()
        return reply

    def poll() -> None:  # a client polling throughout, resubmission included
        while not stop.is_set():
            reply = query()
            if reply["data"].get("status") != 2:
                continue
            duration = read_stream_facts(temp / reply["data"]["result"].lstrip("/"))
            if query() == reply:  # else a resubmission came between: no claim to check
                checked.append((reply["data"]["video_duration"], duration.video_duration_s))

    def done_with(seconds: float) -> bool:
        data = query()["data"]
        return data.get("status") == 2 and abs(data["video_duration"] - seconds) < 0.2

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for audio, seconds in (("first.wav", 3.0), ("second.wav", 1.6)):
            body = {"audio_url": audio, "video_url": "face.mp4", "code": "dup1"}
            assert service.http.post("/easy/submit", json=body).json()["code"] == 10000
            wait_until(lambda s=seconds: done_with(s), timeout_s=120, what=f"the {seconds} s job")
            wait_until(
                lambda s=seconds: sum(abs(said - s) < 0.2 for said, _ in checked) >= 3,
                timeout_s=30,
                what=f"replies about the {seconds} s job checked",
            )
            facts = read_stream_facts(temp / "dup1-r.mp4")
            assert abs(facts.video_duration_s - seconds) < 0.2, (audio, facts)
    finally:
        stop.set()
        poller.join(timeout=30)

    assert all(abs(said - found) < 0.05 for said, found in checked), checked


def test_pause_reorder_and_resume_the_queue(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path
) -> None:
    service = service_factory()
    # Given dispatching is paused, submissions still queue and nothing starts
    assert _cli(service, "queue", "pause").returncode == 0
    first = submit_upload(service, speech_wav, short_template_clip)
    second = submit_upload(service, speech_wav, short_template_clip)
    queue = service.http.get("/v1/queue").json()
    assert queue["paused"] is True and [i["id"] for i in queue["items"]] == [
        first["id"],
        second["id"],
    ]
    assert all(i["estimated_start_s"] is None for i in queue["items"])
    # When the second job gets a higher priority, it moves to the front
    moved = _cli(service, "jobs", "prioritize", second["id"], "10")
    assert moved.returncode == 0, moved.stderr
    queue = service.http.get("/v1/queue").json()
    assert [i["id"] for i in queue["items"]] == [second["id"], first["id"]]
    assert service.job(first["id"])["state"] == "queued"
    # Then after resume both run, the prioritized one first
    assert _cli(service, "queue", "resume").returncode == 0
    done = [service.wait_state(j["id"], "succeeded", "failed") for j in (first, second)]
    assert [d["state"] for d in done] == ["succeeded", "succeeded"]
    started = {d["id"]: d["attempts"][0]["started_at"] for d in done}
    assert started[second["id"]] < started[first["id"]]
    # and a running or finished job's priority can no longer change
    late = service.http.patch(f"/v1/jobs/{first['id']}", json={"priority": 5})
    assert late.status_code == 409 and late.json()["error"]["code"] == "JOB_STATE"
    bad = service.http.patch(f"/v1/jobs/{first['id']}", json={"priority": 500})
    assert bad.status_code == 422


def _read_sse(
    service: Service, job_id: str, last_event_id: str | None = None
) -> list[dict[str, Any]]:
    """Every message of the job's event stream until the server ends it."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    messages: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with service.http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "event" in current:
                    messages.append(current)
                current = {}
            elif line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(":")
                current[key] = json.loads(value) if key == "data" else value.strip()
    return messages


def test_live_progress_over_server_sent_events_resumes_after_a_reconnect(
    service_factory: ServiceFactory, long_speech: Path, short_template_clip: Path
) -> None:
    service = service_factory()
    job = submit_upload(service, long_speech, short_template_clip)

    messages = _read_sse(service, job["id"])

    kinds = [m["event"] for m in messages]
    assert kinds[0] == "job_created" and kinds[-1] == "job_succeeded"
    assert "attempt_started" in kinds
    progress = [m["data"] for m in messages if m["event"] == "progress"]
    assert any(p["state"] == "running" and p["frames_done"] > 0 for p in progress)
    ids = [int(m["id"]) for m in messages if "id" in m]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    # a client that saw attempt_started reconnects: it gets every later transition, no repeats
    seen = next(m["id"] for m in messages if m["event"] == "attempt_started")
    resumed = [m for m in _read_sse(service, job["id"], last_event_id=seen) if "id" in m]
    assert resumed and all(int(m["id"]) > int(seen) for m in resumed)
    assert [m["event"] for m in resumed] == [
        m["event"] for m in messages if "id" in m and int(m["id"]) > int(seen)
    ]


def test_api_keys_guard_every_route_but_healthz_and_easy_takes_a_query_key(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path
) -> None:
    # bound to every interface (0.0.0.0) with keys; the test talks to it over loopback only
    service = service_factory(
        extra_env={"TALKINGFACE_API__KEYS": '["s3cret-key"]', "TALKINGFACE_API__HOST": "0.0.0.0"}
    )
    bearer = {"Authorization": "Bearer s3cret-key"}

    assert service.http.get("/healthz").status_code == 200
    refused = service.http.get("/v1/jobs")
    assert refused.status_code == 401 and refused.json()["error"]["message"]
    assert (
        service.http.get("/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert service.http.get("/v1/jobs", headers=bearer).status_code == 200
    assert service.http.get("/v1/jobs", headers={"X-API-Key": "s3cret-key"}).status_code == 200
    easy = service.http.get("/easy/query", params={"code": "nobody"})
    assert easy.status_code == 401 and easy.json()["code"] == 9999 and easy.json()["msg"]
    keyed = service.http.get("/easy/query", params={"code": "nobody", "api_key": "s3cret-key"})
    assert keyed.json()["code"] == 10004
    assert service.http.get("/v1/jobs", params={"api_key": "s3cret-key"}).status_code == 401
    # the CLI sends the key from TALKINGFACE_API_KEY
    env = {**os.environ, "TALKINGFACE_API_KEY": "s3cret-key"}
    listed = subprocess.run(
        [sys.executable, "-m", "talkingface", "jobs", "list", "--server", service.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert listed.returncode == 0, listed.stderr


def test_serving_beyond_loopback_without_keys_is_refused_before_binding(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "talkingface", "serve", "--host", "0.0.0.0"]
    command += ["--data-dir", str(tmp_path / "data")]

    completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert completed.returncode == 2
    assert "CONFIG_INVALID" in completed.stderr and "api.keys" in completed.stderr


def _scrape(service: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    response = service.http.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_parse_and_move_when_jobs_run(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path
) -> None:
    service = service_factory()
    before = _scrape(service)
    assert before[("talkingface_jobs", (("state", "succeeded"),))] == 0
    assert before[("talkingface_workers", (("state", "ready"),))] == 1
    assert before[("talkingface_disk_free_bytes", ())] > 0

    job = submit_upload(service, speech_wav, short_template_clip)
    service.wait_state(job["id"], "succeeded")
    after = _scrape(service)

    assert after[("talkingface_jobs", (("state", "succeeded"),))] == 1
    assert after[("talkingface_attempts_total", (("code", ""), ("outcome", "succeeded")))] == 1
    assert after[("talkingface_job_duration_seconds_count", ())] == 1
    assert after[("talkingface_queue_wait_seconds_count", ())] == 1
    assert after[("talkingface_frames_rendered_total", ())] == 75
    assert after[("talkingface_queue_depth", ())] == 0
    assert after[("process_resident_memory_bytes", ())] > 0


class _Receiver(ThreadingHTTPServer):
    """A webhook receiver of the test's own on loopback: fails the first call, then accepts."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if not receiver.calls else 200
                receiver.calls.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)


def test_a_webhook_is_signed_retried_and_recorded_on_the_job(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path
) -> None:
    receiver = _Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        service = service_factory(
            extra_env={
                "TALKINGFACE_API__ALLOW_PRIVATE_URL_HOSTS": "true",
                "TALKINGFACE_WEBHOOKS__SECRET": "hook-secret",
                "TALKINGFACE_WEBHOOKS__BACKOFF_BASE_S": "0.2",
            }
        )
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        job = submit_upload(service, speech_wav, short_template_clip, callback_url=url)
        service.wait_state(job["id"], "succeeded")

        def delivered() -> list[Any]:
            events = service.http.get(f"/v1/jobs/{job['id']}/events").json()
            return [e for e in events if e["kind"] == "webhook_delivered"]

        wait_until(delivered, timeout_s=30, what="the webhook to be delivered")
    finally:
        receiver.shutdown()
        receiver.server_close()
    events = service.http.get(f"/v1/jobs/{job['id']}/events").json()
    attempts = [e["data"] for e in events if e["kind"] == "webhook_attempted"]
    assert [a.get("status") for a in attempts] == [500, 200]
    headers, body, _ = receiver.calls[-1]
    expected = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    assert headers["X-Talkingface-Signature"] == expected
    payload = json.loads(body)
    assert payload["event"] == "job.succeeded" and payload["job_id"] == job["id"]
    assert payload["result"]["duration_s"] == pytest.approx(3.0, abs=0.05)


def test_a_callback_url_to_a_private_host_is_refused_atsubmit_upload(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path
) -> None:
    service = service_factory()
    with speech_wav.open("rb") as a, short_template_clip.open("rb") as v:
        response = service.http.post(
            "/v1/jobs",
            files={"audio": a, "video": v},
            data={"callback_url": "http://127.0.0.1:9/hook"},
        )
    assert response.status_code == 422
    assert "callback_url" in response.json()["error"]["message"]


def test_a_batch_interrupted_half_way_and_re_run_completes_without_duplicates(
    service_factory: ServiceFactory, short_template_clip: Path, tmp_path: Path
) -> None:
    service = service_factory()
    work = tmp_path / "batch"
    work.mkdir()
    write_wav(work / "speech.wav", synth_speech(1.0, seed=9).samples_f32, 16000)
    (work / "face.mp4").write_bytes(short_template_clip.read_bytes())
    lines = ["audio,video,output,priority"]
    lines += [f"speech.wav,face.mp4,out/{n:02d}.mp4,0" for n in range(30)]
    manifest = work / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "talkingface",
        "batch",
        str(manifest),
        "--server",
        service.url,
        "--concurrency",
        "4",
        "--report",
        str(work / "report.csv"),
    ]

    # Given a batch stopped (SIGTERM) once about a third of its rows are submitted
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(
        lambda: service.http.get("/v1/jobs", params={"limit": 1}).json()["total"] >= 10,
        timeout_s=60,
        what="ten rows submitted",
    )
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert first.returncode == 143  # 128 + SIGTERM
    # When it is run again
    second = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

    # Then every row succeeded, each with one job and one result file
    assert second.returncode == 0, second.stderr
    assert "30 succeeded" in second.stdout
    assert service.http.get("/v1/jobs", params={"limit": 1}).json()["total"] == 30
    outputs = sorted((work / "out").glob("*.mp4"))
    assert len(outputs) == 30 and all(p.stat().st_size > 0 for p in outputs)
    report = (work / "report.csv").read_text(encoding="utf-8").splitlines()
    assert len(report) == 31 and all(",succeeded," in line for line in report[1:])


def test_an_alert_fires_once_and_resolves_once(
    service_factory: ServiceFactory,
    speech_wav: Path,
    short_template_clip: Path,
    faceless_clip: Path,
) -> None:
    service = service_factory(
        extra_env={
            "TALKINGFACE_ALERTS__INTERVAL_S": "0.3",
            "TALKINGFACE_ALERTS__FAILURE_MIN_JOBS": "1",
            "TALKINGFACE_ALERTS__FAILURE_RATE_MAX": "0.5",
        }
    )

    def alerts() -> dict[str, Any]:
        data: dict[str, Any] = service.http.get("/v1/alerts").json()
        return data

    assert alerts()["active"] == []
    failing = submit_upload(service, speech_wav, faceless_clip)
    service.wait_state(failing["id"], "failed")
    wait_until(lambda: alerts()["active"], timeout_s=20, what="the failure-rate alert")
    assert [a["rule"] for a in alerts()["active"]] == ["failure_rate"]
    assert "1 of 1 jobs failed" in alerts()["active"][0]["message"]
    for _ in range(2):  # two successes bring the rate to 1/3, under the limit
        ok = submit_upload(service, speech_wav, short_template_clip)
        service.wait_state(ok["id"], "succeeded")
    wait_until(lambda: not alerts()["active"], timeout_s=20, what="the alert to resolve")

    history = [(h["rule"], h["state"]) for h in alerts()["history"]]
    assert history == [("failure_rate", "firing"), ("failure_rate", "resolved")]
    fired = [r for r in json_lines(service.log()) if r.get("event") == "alert_firing"]
    assert len(fired) == 1


def test_a_registered_template_is_prepared_once_and_used_by_id(
    service_factory: ServiceFactory, speech_wav: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    roots = tmp_path / "in"
    roots.mkdir()
    (roots / "voice.wav").write_bytes(speech_wav.read_bytes())
    service = service_factory(extra_env={"TALKINGFACE_API__INPUT_ROOTS": f'["{roots}"]'})

    with short_template_clip.open("rb") as video:
        first = service.http.post("/v1/templates", files={"video": ("me.mp4", video)})
    assert first.status_code == 202, first.text
    template_id = first.json()["id"]

    def ready() -> dict[str, Any] | None:
        meta: dict[str, Any] = service.http.get(f"/v1/templates/{template_id}").json()
        return meta if meta["state"] != "preparing" else None

    meta = wait_until(ready, timeout_s=60, what="the template to be prepared")
    assert meta["state"] == "ready" and meta["face_count"] == 1
    assert meta["duration_s"] == pytest.approx(1.0, abs=0.05)
    thumbnail = service.http.get(meta["thumbnail_url"])
    assert thumbnail.status_code == 200 and thumbnail.content[:2] == b"\xff\xd8"  # JPEG
    with short_template_clip.open("rb") as video:
        again = service.http.post("/v1/templates", files={"video": ("copy.mp4", video)})
    assert again.status_code == 200 and again.json()["id"] == template_id

    job = service.http.post(
        "/v1/jobs", json={"audio": str(roots / "voice.wav"), "template_id": template_id}
    )
    assert job.status_code == 202, job.text
    done = service.wait_state(job.json()["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done
    unknown = service.http.post(
        "/v1/jobs", json={"audio": str(roots / "voice.wav"), "template_id": "0" * 32}
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "TEMPLATE_NOT_FOUND"
    both = service.http.post(
        "/v1/jobs", json={"audio": "a", "video": "b", "template_id": template_id}
    )
    assert both.status_code == 422


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Tmpfs]:
    """A 64 MiB tmpfs for the data directory (the chaos campaign's), to fill for real."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk = Tmpfs(tmp_path / "small-disk", size_mb=64)
    disk.mount()
    yield disk
    disk.unmount()


def test_a_full_disk_holds_dispatch_and_the_job_runs_when_space_is_back(
    service_factory: ServiceFactory, small_disk: Tmpfs, speech_wav: Path, short_template_clip: Path
) -> None:
    service = service_factory(
        data_dir=small_disk.mount_point,
        extra_env={"TALKINGFACE_API__MIN_FREE_DISK_BYTES": str(16 << 20)},
    )
    assert service.http.post("/v1/queue/pause").status_code == 200
    job = submit_upload(service, speech_wav, short_template_clip)
    small_disk.fill()
    assert service.http.get("/readyz").json()["checks"]["disk"]["ok"] is False
    assert service.http.post("/v1/queue/resume").status_code == 200

    wait_until(
        lambda: "dispatch_held_disk_low" in service.log(), timeout_s=30, what="dispatch held"
    )
    time.sleep(1.0)  # several scheduler ticks: nothing starts while the disk is full
    held = service.job(job["id"])
    assert held["state"] == "queued" and held["attempts"] == []

    small_disk.drain()
    done = service.wait_state(job["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done["error"]
    assert "dispatch_resumed_disk" in service.log()
