"""A real `talkingface serve` (API + scheduler + local workers) on a moto S3 server: inputs and
results in the bucket, Range downloads streamed from it, the checksum recorded and checked by
the CLI, HeyGem's local mirror, the janitor, and an S3 outage in the middle of an upload."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from talkingface.cli import app
from tests.integration.s3_fixtures import S3_SERVICE_ENV, MotoServer
from tests.integration.service_fixtures import Service, wait_until


def _s3_service(
    factory: Callable[..., Service], moto: MotoServer, bucket: str, **env: str
) -> Service:
    return factory(extra_env={**moto.env(bucket), **S3_SERVICE_ENV, **env})


def _keys(moto: MotoServer, bucket: str) -> list[str]:
    listed = moto.client().list_objects_v2(Bucket=bucket, Prefix="farm/")
    return sorted(item["Key"] for item in listed.get("Contents", []))


def _submit(server: Service, *args: str | Path) -> Result:
    env = {"TALKINGFACE_SERVER": server.url}
    return CliRunner().invoke(app, ["submit", *[str(a) for a in args]], env=env)


def test_a_job_runs_through_the_bucket_and_downloads_verified_with_ranges(
    moto_server: MotoServer,  # first: set up before the server, stopped after it
    service_factory: Callable[..., Service],
    tmp_path: Path,
    speech_wav: Path,
    short_template_clip: Path,
) -> None:
    # Given a server whose storage is an S3 bucket
    bucket = moto_server.new_bucket()
    service = _s3_service(service_factory, moto_server, bucket)
    output = tmp_path / "out.mp4"
    # When the CLI uploads the inputs, waits and downloads the result
    inputs = ("--audio", speech_wav, "--video", short_template_clip, "--idempotency-key", "k1")
    done = _submit(service, *inputs, "--wait", "-o", output)
    assert done.exit_code == 0, done.output
    job = service.http.get("/v1/jobs").json()["items"][0]
    job_id = job["id"]
    # Then the inputs and the result are in the bucket, no partial is left, and the
    # data directory keeps no copy of the result
    keys = _keys(moto_server, bucket)
    assert f"farm/results/{job_id}.mp4" in keys
    uploaded = [k for k in keys if k.startswith("farm/inputs/")]
    assert all(k.startswith(f"farm/inputs/{job_id}/") for k in uploaded)
    assert sorted(k.rsplit("/", 1)[1].split("_", 1)[0] for k in uploaded) == ["audio", "video"]
    assert not [k for k in keys if k.startswith("farm/partials/")]
    assert not (service.data_dir / "results" / f"{job_id}.mp4").exists()
    # and the job records the SHA-256 and size of what the CLI downloaded
    body = output.read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    assert job["result"]["sha256"] == digest and job["result"]["size_bytes"] == len(body)
    stored = moto_server.client().head_object(Bucket=bucket, Key=f"farm/results/{job_id}.mp4")
    assert stored["Metadata"]["sha256"] == digest

    # Range, suffix range, HEAD, If-None-Match and 416, streamed from the bucket
    url = f"/v1/jobs/{job_id}/result"
    part = service.http.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == body[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(body)}"
    tail = service.http.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == body[-10:]
    head = service.http.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(body)
    assert head.headers["etag"] == f'"{digest}"'
    expected_digest = base64.b64encode(bytes.fromhex(digest)).decode()
    assert head.headers["repr-digest"] == f"sha-256=:{expected_digest}:"
    assert service.http.get(url, headers={"If-None-Match": f'"{digest}"'}).status_code == 304
    past_end = service.http.get(url, headers={"Range": f"bytes={len(body) + 5}-"})
    assert past_end.status_code == 416

    # When the stored object is damaged, Then the CLI refuses the download and keeps nothing
    # (the same idempotency key gives the same, succeeded, job)
    moto_server.client().put_object(
        Bucket=bucket, Key=f"farm/results/{job_id}.mp4", Body=body[:-1] + b"\x00"
    )
    damaged = tmp_path / "damaged.mp4"
    refused = _submit(service, *inputs, "--wait", "-o", damaged)
    assert refused.exit_code != 0
    assert "RESULT_CHECKSUM_MISMATCH" in refused.output, refused.output
    assert not damaged.exists()


def test_a_worker_reads_uploaded_inputs_from_the_bucket_not_the_api_machine(
    moto_server: MotoServer,  # first: set up before the server, stopped after it
    service_factory: Callable[..., Service],
    speech_wav: Path,
    short_template_clip: Path,
) -> None:
    # Given a job submitted with uploads while dispatch is paused
    bucket = moto_server.new_bucket()
    service = _s3_service(service_factory, moto_server, bucket)
    assert service.http.post("/v1/queue/pause").status_code == 200
    with speech_wav.open("rb") as audio, short_template_clip.open("rb") as video:
        files = {"audio": ("a.wav", audio, "audio/wav"), "video": ("v.mp4", video, "video/mp4")}
        job = service.http.post("/v1/jobs", files=files).json()
    # When the API machine's copies are gone (as on a worker node that never had them)
    shutil.rmtree(service.data_dir / "inputs" / job["id"])
    assert service.http.post("/v1/queue/resume").status_code == 200
    # Then the worker fetches them from inputs/<job_id>/ and the job succeeds
    final = service.wait_state(job["id"], "succeeded", "failed", timeout_s=90)
    assert final["state"] == "succeeded", final
    assert len(final["attempts"]) == 1


def test_heygem_gets_a_local_mirror_of_a_result_in_the_bucket(
    moto_server: MotoServer,  # first: set up before the server, stopped after it
    service_factory: Callable[..., Service],
    tmp_path: Path,
    speech_wav: Path,
    short_template_clip: Path,
) -> None:
    # Given a HeyGem temp folder holding the inputs, and results stored in a bucket
    temp = tmp_path / "heygem"
    temp.mkdir()
    shutil.copy(speech_wav, temp / "voice.wav")
    shutil.copy(short_template_clip, temp / "face.mp4")
    bucket = moto_server.new_bucket()
    service = _s3_service(
        service_factory, moto_server, bucket, TALKINGFACE_API__HEYGEM_TEMP_DIR=str(temp)
    )
    body = {"audio_url": "voice.wav", "video_url": "face.mp4", "code": "c-1", "chaofen": 0}
    # When a face2face client submits and queries until done
    assert service.http.post("/easy/submit", json=body).json()["code"] == 10000

    def done() -> dict[str, Any] | None:
        reply: dict[str, Any] = service.http.get("/easy/query", params={"code": "c-1"}).json()
        return reply if reply["data"]["status"] in (2, 3) else None

    reply = wait_until(done, timeout_s=90, what="the HeyGem task to end")
    # Then the reply names <code>-r.mp4, a local file identical to the object in the bucket
    assert reply["data"]["status"] == 2, reply
    mirror = temp / reply["data"]["result"].lstrip("/")
    assert mirror.name == "c-1-r.mp4"
    job_id = service.http.get("/v1/jobs").json()["items"][0]["id"]
    stored = moto_server.client().get_object(Bucket=bucket, Key=f"farm/results/{job_id}.mp4")
    assert mirror.read_bytes() == stored["Body"].read()


def test_the_janitor_deletes_expired_results_and_inputs_from_the_bucket(
    moto_server: MotoServer,  # first: set up before the server, stopped after it
    service_factory: Callable[..., Service],
    speech_wav: Path,
    short_template_clip: Path,
) -> None:
    # Given results kept 2 s and a janitor every second
    bucket = moto_server.new_bucket()
    service = _s3_service(
        service_factory,
        moto_server,
        bucket,
        TALKINGFACE_API__RESULT_RETENTION_S="2",
        TALKINGFACE_API__JANITOR_INTERVAL_S="1",
    )
    submitted = _submit(service, "--audio", speech_wav, "--video", short_template_clip, "--wait")
    assert submitted.exit_code == 0, submitted.output
    assert _keys(moto_server, bucket)  # inputs and the result are in the bucket
    # When the retention passes, Then the job's objects are gone from the bucket
    wait_until(
        lambda: not _keys(moto_server, bucket),
        timeout_s=30,
        what=f"the janitor to empty the bucket (left: {json.dumps(_keys(moto_server, bucket))})",
    )


def test_an_s3_outage_during_the_upload_is_waited_out_and_the_job_succeeds(
    moto_server: MotoServer,  # first: set up before the server, stopped after it
    service_factory: Callable[..., Service],
    tmp_path: Path,
    speech_wav: Path,
    short_template_clip: Path,
) -> None:
    # Given a server on a bucket, with inputs given as server paths (read in place: the
    # outage then hits the result's upload, not the submission)
    roots = tmp_path / "roots"
    roots.mkdir()
    audio, video = roots / "a.wav", roots / "v.mp4"
    shutil.copy(speech_wav, audio)
    shutil.copy(short_template_clip, video)
    bucket = moto_server.new_bucket()
    service = _s3_service(
        service_factory,
        moto_server,
        bucket,
        TALKINGFACE_API__INPUT_ROOTS=json.dumps([str(roots)]),
    )
    # When S3 stops answering before the job runs, and stays down until the worker has
    # written its partial and is uploading it (plus 3 s)
    moto_server.pause()
    try:
        job = service.http.post("/v1/jobs", json={"audio": str(audio), "video": str(video)}).json()
        # the worker's upload has failed at least once and is retrying
        wait_until(
            lambda: "storage_retried" in service.log() and "/partials/" in service.log(),
            timeout_s=60,
            what="the worker's upload to hit the outage",
        )
        wait_until(
            lambda: service.job(job["id"])["stage"] == "upload",
            timeout_s=10,
            what="the job to show stage upload",
        )
        time.sleep(3.0)  # the outage lasts 3 s more: its length, not a synchronisation
    finally:
        moto_server.resume()
    # Then the upload is retried, the job succeeds on its first attempt, and nothing is lost
    final = service.wait_state(job["id"], "succeeded", "failed", timeout_s=90)
    assert final["state"] == "succeeded", final
    assert len(final["attempts"]) == 1
    body = service.http.get(f"/v1/jobs/{job['id']}/result").content
    assert hashlib.sha256(body).hexdigest() == final["result"]["sha256"]
