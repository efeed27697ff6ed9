"""The ray executor on a real two-node Ray cluster on this machine (PostgreSQL on 127.0.0.1):
throughput with one node's actor against both nodes' actors on the same workload (jobs per
minute), and recovery after a node's raylet is killed mid-job.

    python -m bench.ray_cluster --jobs 8 --json bench-ray-cluster.json

On one machine both "nodes" share its cores: the two-node figure shows what a second actor
adds here, not what a second machine would.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ray_cluster_process import (
    SLOT,
    RayCluster,
    cluster_env,
    new_cluster_dir,
    ray_service_env,
    start_ray_service,
)
from bench.service import make_inputs, submit
from bench.service_process import Service, free_port, fresh_postgres_database, wait_until

DEADLINE_S = 600.0
FINISHED = ("succeeded", "failed", "canceled")


def run_batch(service: Service, audio: Path, video: Path, jobs: int) -> float:
    """Submit `jobs` at once; seconds until the last one succeeded."""
    started_s = time.monotonic()
    job_ids = [submit(service.http, audio, video)[0] for _ in range(jobs)]
    for job_id in job_ids:
        job = service.wait_state(job_id, "succeeded", "failed", timeout_s=DEADLINE_S)
        if job["state"] != "succeeded":
            raise RuntimeError(f"job {job_id} failed: {job.get('error')}")
    return time.monotonic() - started_s


def ready_actors(service: Service, count: int) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        workers = [w for w in service.http.get("/v1/workers").json() if w["state"] == "ready"]
        return workers if len(workers) == count else None

    workers: list[dict[str, Any]] = wait_until(ready, timeout_s=120, what=f"{count} actors")
    return workers


def throughput(
    cluster: RayCluster,
    url: str,
    work: Path,
    name: str,
    actors: int,
    resources: dict[str, float],
    inputs: tuple[Path, Path],
    jobs: int,
) -> dict[str, float]:
    env = ray_service_env(cluster, url, actors=actors, actor_resources=resources)
    service = start_ray_service(work / name, work / f"{name}.log", cluster.address, env)
    try:
        ready_actors(service, actors)
        run_batch(service, *inputs, actors)  # warm-up: every actor's first job
        elapsed_s = run_batch(service, *inputs, jobs)
    finally:
        service.stop()
    return {"seconds": round(elapsed_s, 2), "jobs_per_minute": round(60 * jobs / elapsed_s, 2)}


def node_kill_recovery(
    cluster: RayCluster, url: str, work: Path, inputs: tuple[Path, Path]
) -> dict[str, float]:
    """Two jobs, one per node; the second node's raylet is killed while its job renders."""
    second = cluster.nodes[1]
    env = ray_service_env(cluster, url, actors=2, actor_resources={SLOT: 1})
    service = start_ray_service(work / "kill", work / "kill.log", cluster.address, env)
    try:
        doomed = next(w for w in ready_actors(service, 2) if second.owns(w["pid"]))
        job_ids = [submit(service.http, *inputs)[0] for _ in range(2)]

        def doomed_job() -> str | None:
            for job_id in job_ids:
                job = service.job(job_id)
                if (
                    job["state"] == "running"
                    and job["progress"]["frames_done"] > 0
                    and job["attempts"][-1]["worker"] == doomed["id"]
                ):
                    return job_id
            return None

        job_id: str = wait_until(doomed_job, timeout_s=120, what="a job on the second node")
        raylet = second.raylet()
        assert raylet is not None
        killed_s = time.monotonic()
        raylet.send_signal(signal.SIGKILL)

        def retried_or_finished() -> dict[str, Any] | None:
            job = service.job(job_id)
            return job if len(job["attempts"]) == 2 or job["state"] in FINISHED else None

        job = wait_until(retried_or_finished, timeout_s=DEADLINE_S, what="the lost attempt's retry")
        if len(job["attempts"]) < 2:  # its worker outlived the raylet long enough to finish
            raise RuntimeError(
                f"the job on the second node {job['state']} before the raylet's death reached "
                "its worker: rerun with a longer --kill-seconds"
            )
        retried_s = time.monotonic() - killed_s
        job = service.wait_state(job_id, "succeeded", "failed", timeout_s=DEADLINE_S)
        done_s = time.monotonic() - killed_s
        assert job["state"] == "succeeded", job.get("error")
        assert job["attempts"][0]["error"]["code"] == "WORKER_LOST"
    finally:
        service.stop()
    return {"kill_to_retry_started_s": round(retried_s, 2), "kill_to_succeeded_s": round(done_s, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs per throughput batch")
    parser.add_argument("--seconds", type=float, default=4.0, help="speech per job")
    parser.add_argument("--size", type=int, default=256, help="template size in pixels")
    parser.add_argument(
        "--kill-seconds",
        type=float,
        default=16.0,
        help="speech of the node-kill jobs: long enough that the render outlasts the kill",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="tf-ray-bench-"))  # kept: the nodes' logs
    cluster = RayCluster(new_cluster_dir(), logs, f"127.0.0.1:{free_port()}", cluster_env())
    figures: dict[str, Any] = {"jobs": args.jobs, "speech_s": args.seconds, "size_px": args.size}
    with tempfile.TemporaryDirectory() as tmp, fresh_postgres_database("tf_ray_bench") as url:
        work = Path(tmp)
        inputs = make_inputs(work, args.seconds, args.size)
        try:
            cluster.start_node("head", head=True, num_cpus=1, resources={SLOT: 1, "head": 1})
            cluster.start_node("second", head=False, num_cpus=1, resources={SLOT: 1})
            one = throughput(cluster, url, work, "one", 1, {"head": 1}, inputs, args.jobs)
            two = throughput(cluster, url, work, "two", 2, {SLOT: 1}, inputs, args.jobs)
            figures["one_node"], figures["two_nodes"] = one, two
            figures["two_over_one"] = round(two["jobs_per_minute"] / one["jobs_per_minute"], 2)
            print(json.dumps(figures), flush=True)  # kept if the node kill goes wrong
            (work / "long").mkdir()
            long_inputs = make_inputs(work / "long", args.kill_seconds, args.size)
            figures["node_kill"] = node_kill_recovery(cluster, url, work, long_inputs)
        finally:
            cluster.stop()
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
