"""Several `talkingface serve` processes on one PostgreSQL database: exactly one leads the
scheduler, the others serve the API, and a killed leader is replaced within its lease without
losing or repeating a job (real processes, real PostgreSQL, real signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from talkingface.cluster.leader_lock import LEADER_LOCK_KEY
from talkingface.samples import synth_speech, write_wav
from tests.integration.cluster_fixtures import (
    LEASE_S,
    Cluster,
    EventStream,
    cluster,
    cluster_view,
    leader_pid,
    sigkill,
)
from tests.integration.service_fixtures import Service, descendants_alive, free_port, wait_until

__all__ = ["cluster"]  # the fixture, imported for the tests below


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s of speech: long enough to kill its server mid-render."""
    path = tmp_path_factory.mktemp("cluster-media") / "long.wav"
    return write_wav(path, synth_speech(6.0, seed=17).samples_f32, 16000)


def _submit(service: Service, audio: Path, video: Path) -> str:
    with audio.open("rb") as a, video.open("rb") as v:
        response = service.http.post(
            "/v1/jobs", files={"audio": (audio.name, a), "video": (video.name, v)}
        )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _lock_holders(cluster: Cluster) -> list[int]:
    """Backend pids holding the leader lock, as PostgreSQL sees it."""
    rows = cluster.sql(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 "
        "AND objid = %s AND granted",
        LEADER_LOCK_KEY,
    )
    return [row[0] for row in rows]


def _attempts(cluster: Cluster, job_id: str) -> list[tuple[int, str, str, str | None]]:
    """(number, worker, outcome, error code) of each attempt of the job, from the store."""
    rows = cluster.sql(
        "SELECT number, worker, outcome, error_code FROM attempts WHERE job_id = %s "
        "ORDER BY number",
        job_id,
    )
    return [(int(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows]


def test_two_servers_elect_one_leader_and_the_follower_serves_jobs_and_every_event(
    cluster: Cluster, speech_wav: Path, short_template_clip: Path
) -> None:
    # Given two servers on one database
    first = cluster.start()
    second = cluster.start()

    # Then exactly one leads, both name it, and PostgreSQL shows one holder of the lock
    views = [cluster_view(first), cluster_view(second)]
    roles = sorted(view["this_process"]["role"] for view in views)
    assert roles == ["follower", "leader"], views
    leader = first if views[0]["this_process"]["role"] == "leader" else second
    follower = second if leader is first else first
    assert leader_pid(follower) == leader_pid(leader) == leader.process.pid
    assert len(_lock_holders(cluster)) == 1
    # and the follower shows the leader's workers and readiness, naming the leader
    workers = follower.http.get("/v1/workers").json()
    assert workers and all(w["scheduler_pid"] == leader.process.pid for w in workers)
    ready = follower.http.get("/readyz").json()
    assert ready["checks"]["scheduler"]["role"] == "follower"
    assert ready["checks"]["scheduler"]["leader"]["pid"] == leader.process.pid

    # When a job is submitted through the follower, its events followed there
    job_id = _submit(follower, speech_wav, short_template_clip)
    stream = EventStream(follower, job_id).start()
    done = follower.wait_state(job_id, "succeeded", "failed", timeout_s=120)

    # Then it ran under the leader's scheduler and succeeded once
    assert done["state"] == "succeeded", done
    attempts = _attempts(cluster, job_id)
    assert [a[2] for a in attempts] == ["succeeded"]
    assert attempts[0][1] == workers[0]["id"]  # a worker of the leader
    # and the follower's stream carried every stored event of the job, in order, once
    streamed = stream.wait(timeout_s=30)
    stored = [
        (int(r[0]), str(r[1]))
        for r in cluster.sql("SELECT id, kind FROM events WHERE job_id = %s ORDER BY id", job_id)
    ]
    assert streamed == stored
    assert streamed[-1][1] == "job_succeeded"


def test_sigkill_of_the_leader_hands_over_within_the_lease_and_its_jobs_finish(
    cluster: Cluster, long_speech: Path, speech_wav: Path, short_template_clip: Path
) -> None:
    # Given a leader rendering a long job with a second job queued behind it, and a follower
    leader = cluster.start()
    follower = cluster.start()
    assert leader_pid(follower) == leader.process.pid
    running_id = _submit(follower, long_speech, short_template_clip)
    queued_id = _submit(follower, speech_wav, short_template_clip)

    def rendering() -> bool:
        job = follower.job(running_id)
        return job["state"] == "running" and job["progress"]["frames_done"] > 0

    wait_until(rendering, timeout_s=90, what="the long job to render on the leader")
    assert follower.job(queued_id)["state"] == "queued"  # one worker: it waits its turn
    doomed_workers = [w["pid"] for w in leader.http.get("/v1/workers").json()]
    stream = EventStream(follower, running_id).start()

    # When the leader is killed outright
    killed_at = time.monotonic()
    sigkill(leader)

    # Then the follower leads within the lease
    wait_until(
        lambda: leader_pid(follower) == follower.process.pid,
        timeout_s=LEASE_S + 5,
        what="the follower to take the leadership over",
    )
    takeover_s = time.monotonic() - killed_at
    assert takeover_s < LEASE_S, f"takeover took {takeover_s:.1f} s"
    # and both jobs finish: the killed attempt recovered and retried, not lost, not repeated
    done = follower.wait_state(running_id, "succeeded", "failed", timeout_s=150)
    assert done["state"] == "succeeded", done
    attempts = _attempts(cluster, running_id)
    assert [(a[2], a[3]) for a in attempts] == [("lost", "WORKER_LOST"), ("succeeded", None)]
    queued = follower.wait_state(queued_id, "succeeded", "failed", timeout_s=150)
    assert queued["state"] == "succeeded", queued
    assert [a[2] for a in _attempts(cluster, queued_id)] == ["succeeded"]
    # and the killed leader's worker is gone (it stopped when its server did)
    wait_until(
        lambda: not descendants_alive(doomed_workers), timeout_s=30, what="the old worker to exit"
    )
    # and the follower's stream of the job saw its whole history across the change
    streamed = stream.wait(timeout_s=30)
    stored = cluster.sql("SELECT id, kind FROM events WHERE job_id = %s ORDER BY id", running_id)
    assert streamed == [(int(r[0]), str(r[1])) for r in stored]
    print(f"leader failover: {takeover_s:.2f} s (lease {LEASE_S:g} s)")


def test_a_stopped_leader_hands_its_running_job_over_at_once(
    cluster: Cluster, long_speech: Path, short_template_clip: Path
) -> None:
    # Given a leader rendering a job, and a follower
    leader = cluster.start()
    follower = cluster.start()
    job_id = _submit(follower, long_speech, short_template_clip)

    def rendering() -> bool:
        job = follower.job(job_id)
        return job["state"] == "running" and job["progress"]["frames_done"] > 0

    wait_until(rendering, timeout_s=90, what="the job to render on the leader")

    # When the leader is stopped (a rolling restart)
    leader.process.send_signal(signal.SIGTERM)
    assert leader.process.wait(timeout=60) == 128 + signal.SIGTERM

    # Then the follower leads at once, and the job is retried without waiting for its lease
    wait_until(
        lambda: leader_pid(follower) == follower.process.pid,
        timeout_s=LEASE_S + 5,
        what="the follower to take the leadership over",
    )
    done = follower.wait_state(job_id, "succeeded", "failed", timeout_s=150)
    assert done["state"] == "succeeded", done
    first = done["attempts"][0]
    assert first["error"]["code"] == "WORKER_LOST"
    assert "stopped leading" in first["error"]["message"]
    assert len(done["attempts"]) == 2


def test_a_leader_whose_session_drops_takes_the_lock_back_without_costing_its_job_a_retry(
    cluster: Cluster, long_speech: Path, short_template_clip: Path
) -> None:
    # Given a single server on PostgreSQL rendering a job
    server = cluster.start()
    job_id = _submit(server, long_speech, short_template_clip)

    def rendering() -> bool:
        job = server.job(job_id)
        return job["state"] == "running" and job["progress"]["frames_done"] > 0

    wait_until(rendering, timeout_s=90, what="the job to render")
    elected_at = cluster_view(server)["leader"]["elected_at"]

    # When its leader session is ended by the database (a restart, a dropped connection)
    assert len(_lock_holders(cluster)) == 1
    cluster.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
        "AND classid = 0 AND objid = %s AND granted",
        LEADER_LOCK_KEY,
    )

    # Then it takes the lock back as the same leader, and the job finishes in one attempt
    wait_until(
        lambda: len(_lock_holders(cluster)) == 1, timeout_s=LEASE_S + 5, what="the lock retaken"
    )
    done = server.wait_state(job_id, "succeeded", "failed", timeout_s=150)
    assert done["state"] == "succeeded", done
    assert [a[2] for a in _attempts(cluster, job_id)] == ["succeeded"]
    assert cluster_view(server)["leader"]["elected_at"] == elected_at
    assert "leader_suspended" in server.log() and "leader_resumed" in server.log()


def test_api_workers_serve_one_port_from_several_processes_with_one_leader(
    cluster: Cluster, speech_wav: Path, short_template_clip: Path
) -> None:
    # Given `serve --api-workers 2`
    group = cluster.start(api_workers=2)

    # Then two processes answer on its port, one of them leading, and a job succeeds
    seen = _pids_answering(group.url)
    assert sorted(seen.values()) == ["follower", "leader"], seen
    assert group.process.pid not in seen  # the supervisor serves nothing itself
    job_id = _submit(group, speech_wav, short_template_clip)
    assert group.wait_state(job_id, "succeeded", "failed", timeout_s=120)["state"] == "succeeded"

    # When the supervisor is stopped, every API process stops with it
    children = list(seen)
    group.process.send_signal(signal.SIGTERM)
    assert group.process.wait(timeout=60) == 128 + signal.SIGTERM
    assert descendants_alive(children) == []


def _pids_answering(url: str) -> dict[int, str]:
    """Pid → role of the processes answering on `url`, seen over new connections."""
    seen: dict[int, str] = {}

    def both_answered() -> bool:
        with httpx.Client(base_url=url, timeout=10) as fresh:  # a new connection each time
            view = fresh.get("/v1/cluster").json()
        seen[view["this_process"]["pid"]] = view["this_process"]["role"]
        return len(seen) == 2

    wait_until(both_answered, timeout_s=60, what=f"two processes to answer on {url}")
    return seen


def test_separate_servers_share_one_port_with_reuse_port_and_restart_one_at_a_time(
    cluster: Cluster,
) -> None:
    # Given two independent servers on one port (api.reuse_port)
    port = free_port()
    shared = {"TALKINGFACE_API__REUSE_PORT": "true"}
    first = cluster.start(port=port, extra_env=shared)
    second = cluster.start(port=port, extra_env=shared, wait_ready=False)

    # Then both answer on it, one of them leading
    seen = _pids_answering(first.url)
    assert set(seen) == {first.process.pid, second.process.pid}
    assert sorted(seen.values()) == ["follower", "leader"], seen

    # When one is stopped (a rolling restart), the port goes on answering from the other
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=60) == 128 + signal.SIGTERM
    with httpx.Client(base_url=second.url, timeout=10) as fresh:
        assert fresh.get("/v1/cluster").json()["this_process"]["pid"] == second.process.pid


def test_api_processes_stop_when_their_supervisor_is_killed(cluster: Cluster) -> None:
    group = cluster.start(api_workers=2, wait_ready=False)
    api_processes = list(_pids_answering(group.url))
    children = {child.pid for child in psutil.Process(group.process.pid).children()}
    assert set(api_processes) <= children

    sigkill(group)

    wait_until(
        lambda: not descendants_alive(api_processes),
        timeout_s=30,
        what="the API processes to stop without their supervisor",
    )


def test_a_follower_answers_with_the_leaders_alerts(cluster: Cluster) -> None:
    # Given a leader whose disk_free rule fires (a minimum no disk meets), and a follower
    firing = {
        "TALKINGFACE_API__MIN_FREE_DISK_BYTES": str(2**60),
        "TALKINGFACE_ALERTS__INTERVAL_S": "0.2",
    }
    leader = cluster.start(extra_env=firing, wait_ready=False)
    follower = cluster.start(extra_env=firing, wait_ready=False)
    wait_until(lambda: leader_pid(follower) == leader.process.pid, timeout_s=30, what="a leader")

    # Then the follower's /v1/alerts shows the leader's firing alert, not an empty list
    def rules(service: Service) -> list[str]:
        return [alert["rule"] for alert in service.http.get("/v1/alerts").json()["active"]]

    wait_until(lambda: rules(leader) == ["disk_free"], timeout_s=30, what="the alert to fire")
    wait_until(
        lambda: rules(follower) == ["disk_free"], timeout_s=10, what="the follower to show it"
    )


def test_api_workers_need_postgresql(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALKINGFACE_")}
    command = [sys.executable, "-m", "talkingface", "serve", "--api-workers", "2"]
    command += ["--port", str(free_port()), "--data-dir", str(tmp_path / "data")]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2, finished.stderr
    assert "CONFIG_INVALID" in finished.stderr and "db.url" in finished.stderr
