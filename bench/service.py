"""Job-service figures: submit latency, status-query throughput, dispatch latency, overhead.

Usage: python bench/service.py [--jobs 20] [--queries 2000] [--seconds 3] [--size 256] [--json]
       [--server-env NAME=VALUE]…
Starts `talkingface serve` (SQLite, one worker) on a free loopback port with inputs made in
code, then measures, in one run:
- submit latency p50/p99 (multipart upload of a 3 s speech clip + 256 px template);
- status-query throughput: GET /v1/jobs/{id} from 4 client threads, requests/s;
- dispatch latency: submit → `attempt_started` event with an idle worker (p50/p99);
- cancel latency of a running job (request → canceled, server clock; target < 2 s);
- scheduler overhead per job: service wall time (job_created → job_succeeded, server clock)
  vs the same job through `run_attempt` in process (the work `talkingface generate` does),
  as a percentage of medians and as the median ratio of each service job to the direct run
  just before it (interleaved, so drift on a shared machine cancels); and the render alone
  in the worker (its processing_s) against the direct run, the worker process's own part.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.service_process

from bench.service_process import start_service
from talkingface.config import load_settings
from talkingface.engines.base import get_engine
from talkingface.media.encode import VideoWriter
from talkingface.pipeline.attempt import GenerateRequest, run_attempt
from talkingface.samples import (
    astronaut_photo,
    iter_template_frames_from_photo,
    synth_speech,
    write_wav,
)
from talkingface.vocabulary import JobId, JobTag


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def make_inputs(directory: Path, seconds: float, size_px: int) -> tuple[Path, Path]:
    speech = synth_speech(seconds, seed=4)
    audio = write_wav(directory / "speech.wav", speech.samples_f32, 16000)
    video = directory / "face.mp4"
    frames = iter_template_frames_from_photo(astronaut_photo(), frame_count=25, size_px=size_px)
    with VideoWriter(video, width=size_px, height=size_px, fps=25) as writer:
        for frame in frames:
            writer.write(frame)
    return audio, video


def submit(http: httpx.Client, audio: Path, video: Path) -> tuple[str, float]:
    started = time.perf_counter()
    with audio.open("rb") as a, video.open("rb") as v:
        response = http.post("/v1/jobs", files={"audio": a, "video": v})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return str(response.json()["id"]), elapsed


def wait_done(http: httpx.Client, job_id: str) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(0.25)  # light polling: the figures come from server-side event times


def event_times_s(http: httpx.Client, job_id: str) -> tuple[float, float]:
    """(dispatch latency, submit-to-success wall time) from the server's own event times."""
    events = http.get(f"/v1/jobs/{job_id}/events").json()

    def at(kind: str) -> datetime:
        return datetime.fromisoformat(next(e for e in events if e["kind"] == kind)["at"])

    created = at("job_created")
    dispatch = (at("attempt_started") - created).total_seconds()
    return dispatch, (at("job_succeeded") - created).total_seconds()


def query_throughput(url: str, job_id: str, total: int, threads: int = 4) -> float:
    per_thread = total // threads

    def hammer() -> None:
        with httpx.Client(base_url=url) as client:
            for _ in range(per_thread):
                client.get(f"/v1/jobs/{job_id}").raise_for_status()

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return per_thread * threads / (time.perf_counter() - started)


def cancel_latency_s(http: httpx.Client, audio: Path, video: Path) -> float | None:
    """Cancel request → job_canceled event (server clock) for a job that is rendering; None
    when the job finished before the cancel reached it (short jobs)."""
    job_id, _ = submit(http, audio, video)
    while True:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] == "running" and job["progress"]["frames_done"] > 0:
            break
        time.sleep(0.01)
    if http.post(f"/v1/jobs/{job_id}/cancel").status_code != 202:
        return None
    if wait_done(http, job_id)["state"] != "canceled":
        return None
    events = http.get(f"/v1/jobs/{job_id}/events").json()
    requested = next(e["at"] for e in events if e["kind"] == "cancel_requested")
    canceled = next(e["at"] for e in events if e["kind"] == "job_canceled")
    return (datetime.fromisoformat(canceled) - datetime.fromisoformat(requested)).total_seconds()


class DirectRunner:
    """The same job through run_attempt in this process: what `talkingface generate` does."""

    def __init__(self, audio: Path, video: Path, root: Path) -> None:
        self.settings = load_settings(cache={"dir": root / "direct-cache"})
        self.engine = get_engine("classic")
        self.engine.load("cpu")
        self.request = GenerateRequest(JobTag(JobId("direct")), audio, video, root / "direct.mp4")
        self.run_s()  # warm the template cache, as the service's worker has it

    def run_s(self) -> float:
        started = time.perf_counter()
        run_attempt(self.request, self.engine, self.settings)
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0, help="speech length per job")
    parser.add_argument("--size", type=int, default=256, help="template size in pixels")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the server and its worker only (the direct runs "
        "keep this process's): e.g. OMP_NUM_THREADS=1 to test a thread-count hypothesis",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="talkingface-bench-service-"))
    audio, video = make_inputs(root, args.seconds, args.size)
    production = {  # the test helper's fast timings would add heartbeat traffic
        "TALKINGFACE_WORKERS__HEARTBEAT_S": "5",
        "TALKINGFACE_WORKERS__STALL_S": "120",
        "TALKINGFACE_LOGGING__LEVEL": "warning",
        **dict(item.split("=", 1) for item in args.server_env),
    }
    service = start_service(root / "data", root / "server.log", workers=1, extra_env=production)
    try:
        figures = measure(service.url, service.http, audio, video, root, args)
    finally:
        service.stop()
    print(
        json.dumps(figures) if args.json else "\n".join(f"{k:32} {v}" for k, v in figures.items())
    )
    return 0


def measure(
    url: str, http: httpx.Client, audio: Path, video: Path, root: Path, args: argparse.Namespace
) -> dict[str, Any]:
    submit_s, dispatch_s, service_s, worker_s, direct_s = [], [], [], [], []
    first_id, _ = submit(http, audio, video)  # warm-up: the worker caches the template
    wait_done(http, first_id)
    direct = DirectRunner(audio, video, root)
    for _ in range(args.jobs):  # one at a time, alternating with a direct run of the same job
        direct_s.append(direct.run_s())
        job_id, latency = submit(http, audio, video)
        job = wait_done(http, job_id)
        assert job["state"] == "succeeded", job
        dispatch, wall = event_times_s(http, job_id)
        submit_s.append(latency)
        dispatch_s.append(dispatch)
        service_s.append(wall)
        worker_s.append(job["result"]["processing_s"])
    service_median, direct_median = statistics.median(service_s), statistics.median(direct_s)
    cancel_s = [c for c in (cancel_latency_s(http, audio, video) for _ in range(3)) if c]
    return {
        "jobs": args.jobs,
        "speech_s": args.seconds,
        "template_px": args.size,
        "submit_latency_ms_p50": round(percentile(submit_s, 0.5) * 1000, 1),
        "submit_latency_ms_p99": round(percentile(submit_s, 0.99) * 1000, 1),
        "dispatch_latency_ms_p50": round(percentile(dispatch_s, 0.5) * 1000, 1),
        "dispatch_latency_ms_p99": round(percentile(dispatch_s, 0.99) * 1000, 1),
        "status_queries_per_s": round(query_throughput(url, first_id, args.queries), 1),
        "cancel_running_ms_max": round(max(cancel_s) * 1000, 1) if cancel_s else None,
        "job_wall_s_service_p50": round(service_median, 3),
        "job_wall_s_direct_p50": round(direct_median, 3),
        "worker_processing_s_p50": round(statistics.median(worker_s), 3),
        "scheduler_overhead_pct": round(100 * (service_median - direct_median) / direct_median, 1),
        # the same as ratios of neighbours in time (each service job against the direct run
        # just before it), median: drift on a shared machine cancels out
        "service_vs_direct_ratio_p50": round(
            statistics.median(s / d for s, d in zip(service_s, direct_s, strict=True)), 3
        ),
        # the render alone, in the worker against in process: the part the worker process
        # itself adds (threads, affinity, caches), without dispatch and publishing
        "worker_vs_direct_ratio_p50": round(
            statistics.median(w / d for w, d in zip(worker_s, direct_s, strict=True)), 3
        ),
        # wall time not spent rendering in the worker: submit bookkeeping, dispatch, publish
        "service_minus_worker_ms_p50": round(
            statistics.median(w - p for w, p in zip(service_s, worker_s, strict=True)) * 1000, 1
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
