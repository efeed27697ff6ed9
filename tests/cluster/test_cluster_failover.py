"""The whole one-machine cluster at once: a moto S3 server, PostgreSQL, a two-node Ray cluster
and two `talkingface serve --executor ray` processes (data dirs of their own; one database,
bucket and Ray address). Jobs submitted through the follower run on the leader's actors with
their inputs and results in the bucket; an S3 outage in the middle of an upload is waited out;
and a SIGKILLed leader is replaced by the follower within its lease, which creates its own
actors and retries the lost attempt. The leader kill runs last: it leaves one server."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from bench.service_process import Service, wait_until

from tests.cluster.conftest import ServePair
from tests.integration.cluster_fixtures import LEASE_S, leader_pid, sigkill
from tests.integration.s3_fixtures import MotoServer

pytestmark = pytest.mark.cluster
DEADLINE_S = 120.0
TAKEOVER_MARGIN_S = 2.0  # a loaded 2-core machine: the election runs every 0.5 s


def _upload(service: Service, audio: Path, video: Path, **fields: str) -> str:
    with audio.open("rb") as a, video.open("rb") as v:
        response = service.http.post(
            "/v1/jobs", files={"audio": (audio.name, a), "video": (video.name, v)}, data=fields
        )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _ready_workers(service: Service, owner_pid: int) -> list[dict[str, Any]]:
    """Two ready actors, both created by the server whose pid is `owner_pid`."""

    def ready() -> list[dict[str, Any]] | None:
        workers = service.http.get("/v1/workers").json()
        mine = [w for w in workers if w["state"] == "ready" and _owner(w["id"]) == owner_pid]
        return mine if len(mine) == 2 else None

    workers: list[dict[str, Any]] = wait_until(
        ready, timeout_s=DEADLINE_S, what=f"two ready actors of the server {owner_pid}"
    )
    return workers


def _owner(worker_id: str) -> int:
    """The pid of the server that created an actor (its ids are ray-<pid>-<n>)."""
    return int(worker_id.split("-")[1])


def _check_result(service: Service, moto: MotoServer, bucket: str, job: dict[str, Any]) -> None:
    """The result downloads whole through `service`, and it and the object in the bucket match
    the SHA-256 the job recorded."""
    body = service.http.get(f"/v1/jobs/{job['id']}/result").content
    digest = hashlib.sha256(body).hexdigest()
    assert digest == job["result"]["sha256"] and len(body) == job["result"]["size_bytes"]
    stored = moto.client().get_object(Bucket=bucket, Key=f"farm/results/{job['id']}.mp4")
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == digest


def test_jobs_submitted_through_the_follower_run_through_the_bucket(
    cluster_moto: MotoServer, serve_pair: ServePair, speech_wav: Path, short_template_clip: Path
) -> None:
    leader, follower = serve_pair.leader, serve_pair.follower
    # Given a follower that knows the leader, whose two actors are ready
    assert leader_pid(follower) == leader.process.pid
    _ready_workers(leader, leader.process.pid)
    # When two jobs are uploaded to the follower
    job_ids = [_upload(follower, speech_wav, short_template_clip) for _ in range(2)]
    # Then both succeed on the leader's actors, on their first attempt
    for job_id in job_ids:
        job = follower.wait_state(job_id, "succeeded", "failed", timeout_s=DEADLINE_S)
        assert job["state"] == "succeeded", job.get("error")
        (attempt,) = job["attempts"]
        assert _owner(attempt["worker"]) == leader.process.pid
        # and their inputs and result are in the bucket, the result verified through both
        listed = cluster_moto.client().list_objects_v2(
            Bucket=serve_pair.bucket, Prefix=f"farm/inputs/{job_id}/"
        )
        assert len(listed.get("Contents", [])) == 2, listed
        _check_result(follower, cluster_moto, serve_pair.bucket, job)
        _check_result(leader, cluster_moto, serve_pair.bucket, job)


def test_an_s3_outage_during_an_actors_upload_is_waited_out(
    cluster_moto: MotoServer, serve_pair: ServePair, speech_wav: Path, short_template_clip: Path
) -> None:
    follower = serve_pair.follower
    # Given inputs as server paths (read in place: the outage then hits the result's upload)
    audio, video = serve_pair.input_root / "a.wav", serve_pair.input_root / "v.mp4"
    shutil.copy(speech_wav, audio)
    shutil.copy(short_template_clip, video)
    # When S3 stops answering before the job runs, and stays down until the actor is
    # uploading its result (plus 3 s)
    cluster_moto.pause()
    try:
        response = follower.http.post("/v1/jobs", json={"audio": str(audio), "video": str(video)})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        wait_until(
            lambda: follower.job(job_id)["stage"] == "upload",
            timeout_s=DEADLINE_S,
            what="the job to reach its upload",
        )
        # the actor's upload has failed at least once and is retrying (its log reaches the
        # leader's through Ray)
        wait_until(
            lambda: "storage_retried" in serve_pair.leader.log(),
            timeout_s=60,
            what="the actor's upload to hit the outage",
        )
        time.sleep(3.0)  # the outage lasts 3 s more: its length, not a synchronisation
    finally:
        cluster_moto.resume()
    # Then the upload is retried, the job succeeds on its first attempt, and nothing is lost
    job = follower.wait_state(job_id, "succeeded", "failed", timeout_s=DEADLINE_S)
    assert job["state"] == "succeeded", job.get("error")
    assert len(job["attempts"]) == 1
    _check_result(follower, cluster_moto, serve_pair.bucket, job)


def test_sigkill_of_the_leader_hands_over_within_the_lease_and_the_job_completes(
    cluster_moto: MotoServer, serve_pair: ServePair, speech_wav: Path, short_template_clip: Path
) -> None:
    leader, follower = serve_pair.leader, serve_pair.follower
    # Given a job held mid-render on one of the leader's actors (the test-only hang fault
    # of its first attempt), submitted through the follower
    actors = {w["id"]: w["pid"] for w in _ready_workers(leader, leader.process.pid)}
    job_id = _upload(follower, speech_wav, short_template_clip, fault="hang@1")

    def rendering() -> dict[str, Any] | None:
        job = follower.job(job_id)
        progressing = job["state"] == "running" and job["progress"]["frames_done"] > 0
        return job if progressing else None

    running = wait_until(rendering, timeout_s=DEADLINE_S, what="the job to render on the leader")
    doomed_actor = running["attempts"][-1]["worker"]
    assert doomed_actor in actors

    # When the leader is killed outright
    killed_at = time.monotonic()
    sigkill(leader)

    # Then the follower leads within the lease (plus a margin for a loaded machine)
    wait_until(
        lambda: leader_pid(follower) == follower.process.pid,
        timeout_s=LEASE_S + 10,
        what="the follower to take the leadership over",
    )
    takeover_s = time.monotonic() - killed_at
    assert takeover_s <= LEASE_S + TAKEOVER_MARGIN_S, f"takeover took {takeover_s:.1f} s"
    # and creates two actors of its own (the old leader's went with it: Ray ends a dead
    # driver's actors, which frees their slots)
    _ready_workers(follower, follower.process.pid)
    actors_s = time.monotonic() - killed_at
    wait_until(
        lambda: not any(psutil.pid_exists(pid) for pid in actors.values()),
        timeout_s=30,
        what="the old leader's actors to exit",
    )
    # and the job completes: the killed attempt lost, retried once on a new actor, not repeated
    job = follower.wait_state(job_id, "succeeded", "failed", timeout_s=DEADLINE_S)
    done_s = time.monotonic() - killed_at
    assert job["state"] == "succeeded", job.get("error")
    first, retry = job["attempts"]
    assert first["worker"] == doomed_actor
    assert first["outcome"] == "lost" and first["error"]["code"] == "WORKER_LOST"
    assert retry["outcome"] == "succeeded" and _owner(retry["worker"]) == follower.process.pid
    _check_result(follower, cluster_moto, serve_pair.bucket, job)
    print(
        f"leader failover: leads after {takeover_s:.2f} s (lease {LEASE_S:g} s), "
        f"its actors ready after {actors_s:.1f} s, the job done after {done_s:.1f} s"
    )
