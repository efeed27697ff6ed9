"""What the campaign checks: the must-be-zero figures, output validity, recovery times, leaks."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import httpx
import psutil
from bench.chaos.injectors import FaultRecord
from bench.chaos.workload import Api, Submission
from bench.service import percentile as nearest_rank

TERMINAL = {"succeeded", "failed", "canceled"}


def parse_at(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def error_messages(job: dict[str, Any]) -> list[str]:  # Any: JSON
    found = [job["error"]["message"]] if job.get("error") else []
    found += [a["error"]["message"] for a in job.get("attempts", []) if a.get("error")]
    return found


class Watcher(threading.Thread):
    """Polls every job once a second during the run: an empty error shown even once counts."""

    def __init__(self, api: Api, submissions: list[Submission]) -> None:
        super().__init__(name="chaos-watcher", daemon=True)
        self.api = api
        self.submissions = submissions
        self.empty_errors: set[str] = set()
        self.polls = 0
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(1.0):
            try:
                self.check_once()
            except (httpx.HTTPError, KeyError, ValueError) as exc:  # down longer than Api waits
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def check_once(self) -> None:
        for job in list_all_jobs(self.api):
            if any(not message.strip() for message in error_messages(job)):
                self.empty_errors.add(job["id"])
        for submission in list(self.submissions):
            if submission.route != "easy" or submission.refused:
                continue
            reply = self.api.call("GET", "/easy/query", params={"code": submission.key}).json()
            data = reply.get("data") or {}
            if data.get("status") == 3 and not str(data.get("msg") or "").strip():
                self.empty_errors.add(f"easy:{submission.key}")
            if reply["code"] != 10000 and not str(reply.get("msg") or "").strip():
                self.empty_errors.add(f"easy:{submission.key}")
        self.polls += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)


def list_all_jobs(api: Api) -> list[dict[str, Any]]:  # Any: JSON
    jobs: list[dict[str, Any]] = []
    while True:
        page = api.call("GET", "/v1/jobs", params={"limit": 500, "offset": len(jobs)}).json()
        jobs += page["items"]
        if not page["items"] or len(jobs) >= page["total"]:
            return jobs


def check_mp4(path: Path, expected_s: float) -> str | None:
    """None if `path` is a playable H.264 + AAC MP4 within one frame of `expected_s`."""
    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            if video.codec_context.name != "h264" or video.codec_context.pix_fmt != "yuv420p":
                return f"video is {video.codec_context.name}/{video.codec_context.pix_fmt}"
            if not container.streams.audio or container.streams.audio[0].codec_context.name != (
                "aac"
            ):
                return "no AAC audio stream"
            fps = float(video.average_rate or 25)
            frames = sum(1 for _ in container.decode(video=0))
    except (av.FFmpegError, OSError, IndexError) as exc:
        return f"unreadable: {type(exc).__name__}: {exc}"
    duration_s = frames / fps
    if abs(duration_s - expected_s) > 1.0 / fps + 1e-3:
        return f"duration {duration_s:.3f} s, audio {expected_s:.3f} s"
    return None


@dataclass
class Outcome:
    """The figures the report is made of."""

    counts: dict[str, Any] = field(default_factory=dict)  # Any: JSON
    problems: list[str] = field(default_factory=list)  # one line per must-be-zero violation


def attempt_deadline_s(settings: dict[str, float], input_s: float) -> float:
    """The scheduler's limit for one attempt plus the time it may take to notice and kill it."""
    limit = settings["timeout_base_s"] + settings["timeout_per_input_s"] * input_s
    noticing = settings["heartbeat_s"] * (settings["lost_after_beats"] + 1)
    return limit + noticing + settings["kill_grace_s"] + 10.0  # + restart of a killed server


def audit_jobs(
    jobs: list[dict[str, Any]],  # Any: JSON
    submissions: list[Submission],
    results_dir: Path,
    audio_s_by_job: dict[str, float],
    timing: dict[str, float],
    now: datetime,
    published_ids: set[str],
) -> Outcome:
    """Lost, duplicated, hung and bad outputs from the store's view at the end of the run."""
    outcome = Outcome()
    by_id = {job["id"]: job for job in jobs}
    accepted = [s for s in submissions if s.job_id]
    lost = [s.job_id for s in accepted if s.job_id not in by_id]
    easy = [s for s in submissions if s.route == "easy" and not s.refused]
    extra_jobs = max(0, len(jobs) - len(accepted) - len(easy))
    twice = [j["id"] for j in jobs if sum(a["outcome"] == "succeeded" for a in j["attempts"]) > 1]
    succeeded = [j for j in jobs if j["state"] == "succeeded"]
    stray = sorted(  # a result file for a job that did not succeed
        p.name
        for p in results_dir.glob("*.mp4")
        if p.stem not in published_ids and not p.name.startswith(".")
    )
    hung = [j["id"] for j in jobs if j["state"] not in TERMINAL]
    for job in jobs:
        limit_s = attempt_deadline_s(timing, audio_s_by_job.get(job["id"], 2.0))
        for attempt in job["attempts"]:
            end = parse_at(attempt["ended_at"]) if attempt["ended_at"] else now
            if (end - parse_at(attempt["started_at"])).total_seconds() > limit_s:
                hung.append(f"{job['id']}#{attempt['number']}")
    bad = {}
    for job in succeeded:
        if job["id"] in audio_s_by_job:  # easy jobs are checked through their HeyGem result
            problem = check_mp4(results_dir / f"{job['id']}.mp4", audio_s_by_job[job["id"]])
            if problem:
                bad[job["id"]] = problem
    failed = Counter(j["error"]["code"] for j in jobs if j["state"] == "failed" and j["error"])
    outcome.counts = {
        "submitted": len(submissions),
        "refused_at_submit": sum(1 for s in submissions if s.refused),
        "jobs_in_store": len(jobs),
        "succeeded": len(succeeded),
        "failed_by_code": dict(sorted(failed.items())),
        "canceled": sum(1 for j in jobs if j["state"] == "canceled"),
        "attempts": sum(len(j["attempts"]) for j in jobs),
        "retried_jobs": sum(1 for j in jobs if len(j["attempts"]) > 1),
        "lost": len(lost),
        "duplicated": extra_jobs + len(twice) + len(stray),
        "hung": len(hung),
        "bad_outputs": len(bad),
    }
    for name, items in (
        ("lost", lost),
        ("succeeded twice", twice),
        ("stray result files", stray),
        ("hung", hung),
    ):
        if items:
            outcome.problems.append(f"{name}: {items[:10]}")
    if extra_jobs:
        outcome.problems.append(f"{extra_jobs} more jobs in the store than were accepted")
    outcome.problems += [f"bad output {job_id}: {why}" for job_id, why in bad.items()]
    return outcome


def recovery_seconds(
    faults: list[FaultRecord], jobs: list[dict[str, Any]]
) -> list[tuple[str, float]]:
    """Per fault: from injection until every job it hit runs again or has ended.

    A job has recovered at its first attempt start, or its end, after the fault began. A fault
    that hit no running job (cache deleted, disk filled while idle) has recovered when the
    next attempt of any job starts.
    """
    by_id = {job["id"]: job for job in jobs}

    def resumed_at(job: dict[str, Any], after: datetime) -> datetime | None:  # Any: JSON
        moments = [parse_at(a["started_at"]) for a in job["attempts"]]
        if job["state"] in TERMINAL:
            moments.append(parse_at(job["updated_at"]))
        later = [m for m in moments if m > after]
        return min(later) if later else None

    every_start = sorted(parse_at(a["started_at"]) for j in jobs for a in j["attempts"])
    durations: list[tuple[str, float]] = []  # (fault kind, seconds)
    for fault in faults:
        ends: list[datetime] = []
        for job_id in fault.affected_job_ids:
            if job_id in by_id:
                moment = resumed_at(by_id[job_id], fault.at)
                if moment is not None:
                    ends.append(moment)
        if not fault.affected_job_ids:
            ends = [next((s for s in every_start if s > fault.at), fault.until)][:1]
        if ends:
            durations.append((fault.kind, max((max(ends) - fault.at).total_seconds(), 0.0)))
    return durations


def percentile(values: list[float], fraction: float) -> float | None:
    """The benches' nearest-rank percentile in seconds to the millisecond; None for none."""
    return round(nearest_rank(values, fraction), 3) if values else None


POOL_THREADS = ("AnyIO worker thread",)  # a request pool that grows and shrinks by itself


@dataclass(frozen=True, slots=True)
class Footprint:
    """The server's threads by name and its descriptors, DB connections counted apart."""

    threads: dict[str, int]
    fds: int
    db_connections: int

    def leaks_since(self, baseline: Footprint) -> tuple[dict[str, int], int]:
        """Threads (by name, pools excepted) and descriptors that are here and were not."""
        threads = {
            name: count - baseline.threads.get(name, 0)
            for name, count in self.threads.items()
            if name not in POOL_THREADS and count > baseline.threads.get(name, 0)
        }
        fds = (self.fds - self.db_connections) - (baseline.fds - baseline.db_connections)
        return threads, max(0, fds)


def footprint(url: str, pid: int, db_port: int | None, sqlite_path: Path | None) -> Footprint:
    """The footprint of the server at `url`, whose pid is `pid` (asked directly: a client
    that fails over could get another server's answer). `db_connections` counts what the
    store's connection pool holds, which may grow up to the pool's size: TCP connections to
    PostgreSQL, or descriptors of the SQLite files."""
    seen = httpx.get(f"{url}/v1/process", timeout=30.0).json()
    assert seen["pid"] == pid, f"{url} is pid {seen['pid']}, not {pid}"
    process = psutil.Process(pid)
    db = 0
    if db_port is not None:
        db = sum(
            1
            for conn in process.net_connections(kind="tcp")
            if conn.raddr and conn.raddr.port == db_port
        )
    if sqlite_path is not None:
        db = sum(1 for f in process.open_files() if f.path.startswith(str(sqlite_path)))
    return Footprint(seen["threads"], seen["open_fds"], db)


def leftover_temp_files(data_dir: Path, cache_dir: Path, tmp_dir: Path) -> list[str]:
    """Partial results, staging files and anything left in the server's TMPDIR."""
    found = [str(p) for p in (data_dir / "results").glob("*.partial*")]
    found += [str(p) for p in cache_dir.rglob("*.tmp-*")] if cache_dir.exists() else []
    found += [str(p) for p in data_dir.rglob("*.partial-*")]
    found += [str(p) for p in tmp_dir.iterdir()] if tmp_dir.exists() else []
    return sorted(set(found))
