"""`make chaos`: a reliability campaign against a real `talkingface serve`, with a JSON report.

Usage: python -m bench.chaos [--jobs 240] [--store postgres|sqlite] [--workers 2]
       [--minutes 12] [--seed 1] [--report reliability-report.json] [--no-disk-full]
       [--executor local|ray] [--each-fault 4]

While the jobs flow (and templates are registered) it injects, at random moments and
repeatedly: SIGKILL and SIGSTOP of a worker, SIGKILL of the server and a restart, stage
faults carried by jobs (raise, block forever, raise with an empty message), a full data disk
(a tmpfs it mounts), a PostgreSQL restart (a private cluster it starts), deletion of the
template cache, and at the service's edges (service_faults.py): a server SIGKILL while a
template is being prepared, a submission whose submit-time probe crashes, a second server
on the same data directory, a read-only results directory, and URL inputs from a host that
trickles bytes. With `--executor ray` (ray_run.py) it runs on a two-node Ray cluster of its
own with two `serve` processes (a scheduler leader and a standby) on PostgreSQL, and adds
SIGKILL of a Ray node's raylet (a fresh node then joins) and of the scheduler leader. It
then checks that no job was lost, duplicated, hung or showed an empty
error, that every succeeded output plays at the right duration, that every template settled
(ready, or failed with a true error), that the edge faults got clear answers (a 4xx for the
crashed probe, exit 2 for the second server, /readyz not ready while results are read-only),
that status reads never timed out during slow downloads, and that nothing leaked. Exit 1 if
any of those is not 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from bench.chaos.audit import (
    TERMINAL,
    Footprint,
    Watcher,
    audit_jobs,
    check_mp4,
    footprint,
    leftover_temp_files,
    list_all_jobs,
    parse_at,
    percentile,
    recovery_seconds,
)
from bench.chaos.injectors import FaultRecord, Injector
from bench.chaos.processes import (
    MARKER_VAR,
    ChaosSetupError,
    PrivatePostgres,
    ReadOnlyBind,
    ServerGroup,
    ServerProcess,
    Tmpfs,
    marked_processes,
)
from bench.chaos.ray_run import (
    ADAPTED_KINDS,
    NOT_APPLICABLE_LOCALLY,
    RAY_TIMING,
    SERVER_START_S,
    RayFaults,
    RayNodes,
    ray_server_env,
    ray_servers,
)
from bench.chaos.service_faults import MAX_URL_DOWNLOADS, ServiceFaults
from bench.chaos.status_reads import StatusReads
from bench.chaos.template_traffic import TemplateTraffic
from bench.chaos.workload import Api, Submission, Traffic, prepare_inputs
from bench.service_process import free_port

# Short detection times so a campaign fits in minutes; the report states them.
TIMING = {
    "heartbeat_s": 0.5,
    "lost_after_beats": 3,
    "stall_s": 4.0,
    "kill_grace_s": 0.5,
    "timeout_base_s": 60.0,
    "timeout_per_input_s": 10.0,
}
QUEUE_TARGET = 6  # keep about this many jobs queued while submitting
SETTLE_S = 14.0  # idle time for the server's pooled threads to exit before a footprint
TEMPLATE_SHARE = 0.02  # per submit-loop turn: register a template (a prepare_template job)
SERVER_KILLS = ("server_kill", "server_kill_during_prepare", "leader_kill")
JANITOR_INTERVAL_S = 10  # below SETTLE_S: a pass runs before the end-of-run temp-file check
FAULT_INTERVAL_S = (2.0, 6.0)  # random pause between two faults


def server_env(
    root: Path, data_dir: Path, run_id: str, db_url: str | None, timing: dict[str, float]
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            MARKER_VAR: run_id,
            "TMPDIR": str(root / "tmp"),
            "TALKINGFACE_WORKERS__ALLOW_FAULTS": "true",
            "TALKINGFACE_WORKERS__RECYCLE_AFTER_JOBS": "25",
            "TALKINGFACE_RETRY__BACKOFF_BASE_S": "0.2",
            "TALKINGFACE_RETRY__BACKOFF_MAX_S": "1.0",
            "TALKINGFACE_CACHE__DIR": str(data_dir / "cache"),
            "TALKINGFACE_API__INPUT_ROOTS": json.dumps([str(root / "inputs")]),
            "TALKINGFACE_API__HEYGEM_TEMP_DIR": str(root / "inputs"),
            "TALKINGFACE_API__MIN_FREE_DISK_BYTES": str(16 << 20),
            "TALKINGFACE_API__MAX_QUEUED": "40",
            "TALKINGFACE_API__RETRY_AFTER_S": "1",
            "TALKINGFACE_API__URL_ALLOWED_NETWORKS": json.dumps(["127.0.0.1/32"]),
            "TALKINGFACE_API__MAX_URL_DOWNLOADS": str(MAX_URL_DOWNLOADS),
            # what a read-only results dir kept from being removed goes at the next pass
            "TALKINGFACE_API__JANITOR_INTERVAL_S": str(JANITOR_INTERVAL_S),
            "TALKINGFACE_LOGGING__LEVEL": "info",
            "TALKINGFACE_LOGGING__JSON_LINES": "true",
        }
    )
    env.update({f"TALKINGFACE_WORKERS__{k.upper()}": str(v) for k, v in timing.items()})
    if db_url:
        env["TALKINGFACE_DB__URL"] = db_url
    return env


@dataclass
class Campaign:
    args: argparse.Namespace
    root: Path
    rng: random.Random
    run_id: str

    def __post_init__(self) -> None:
        self.data_dir = self.root / "data"
        self.cache_dir = self.data_dir / "cache"
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        self.tmpfs: Tmpfs | None = None
        self.postgres: PrivatePostgres | None = None
        self.nodes: RayNodes | None = None
        self.ray_faults: RayFaults | None = None
        self.faults: list[FaultRecord] = []
        self.fault_errors: list[str] = []
        self.orphans_seen = 0
        self.orphans: list[str] = []  # what outlived a killed server, for the problems list
        self.warmup_ids: list[str] = []
        self.harness_errors: list[str] = []
        self.plan_done = threading.Event()  # every kind injected --each-fault times
        self.timing = {**TIMING, **(RAY_TIMING if self.args.executor == "ray" else {})}

    def setup(self) -> None:
        self.inputs = prepare_inputs(self.root / "inputs", self.rng)
        if not self.args.no_disk_full:
            self.tmpfs = Tmpfs(self.data_dir, self.args.disk_mb)
            self.tmpfs.mount()
        db_url = None
        if self.args.store == "postgres":
            self.postgres = PrivatePostgres(self.root / "pg")
            self.postgres.start()
            db_url = self.postgres.url
        env = server_env(self.root, self.data_dir, self.run_id, db_url, self.timing)
        if self.args.executor == "ray":
            self.nodes = RayNodes(self.root)
            self.nodes.start()
            env.update(ray_server_env(self.nodes.cluster))
            self.group = ray_servers(self.data_dir, self.root, env, self.nodes.address)
        else:
            server = ServerProcess(self.data_dir, free_port(), env, self.root / "server.log")
            self.group = ServerGroup([server])
        for server in self.group.servers:  # one at a time: the first one started leads
            server.start(self.args.workers, timeout_s=SERVER_START_S)
        self.api = Api([server.url for server in self.group.servers])
        self.traffic = Traffic(self.api, self.inputs, self.rng)
        self.templates = TemplateTraffic(self.api, self.inputs, self.rng)
        self.injector = Injector(
            self.api, self.group, self.args.workers, self.tmpfs, self.postgres, self.cache_dir
        )
        if self.nodes is not None:
            self.ray_faults = RayFaults(self.api, self.group, self.nodes, self.args.workers)
        self.reads = StatusReads(self.group.servers[0].url, self._recent_ids)
        self.results_bind = ReadOnlyBind(self.data_dir / "results")
        self.edges = ServiceFaults(
            self.api,
            self.group,
            self.args.workers,
            self.traffic,
            self.templates,
            self.reads,
            self.results_bind,
            self.rng,
        )

    def _recent_ids(self) -> tuple[str | None, str | None]:
        """The latest v1 job id and HeyGem code, for the status reads."""
        with self.traffic.lock:
            recent = self.traffic.submissions[-20:]
        job_ids = [s.job_id for s in recent if s.job_id]
        codes = [s.key for s in recent if s.route == "easy" and not s.refused]
        return (job_ids[-1] if job_ids else None, codes[-1] if codes else None)

    def settled_footprint(self) -> Footprint:
        """Idle footprint of the scheduler's server: wait until its thread count stops
        falling."""
        leader = self.group.leader()
        pid, url = leader.pid, leader.url
        assert pid is not None
        db_port = self.postgres.port if self.postgres else None
        sqlite_path = None if self.postgres else self.data_dir / "talkingface.db"
        time.sleep(SETTLE_S)
        last = footprint(url, pid, db_port, sqlite_path)
        for _ in range(20):
            time.sleep(1.0)
            now = footprint(url, pid, db_port, sqlite_path)
            if now == last:
                return now
            last = now
        return last

    def warm_up(self) -> Footprint:
        """One job of each template through the service, then the idle footprint to compare."""
        ids = self.warmup_ids
        for clip in self.inputs.video:
            body = {
                "audio": str(self.inputs.directory / self.inputs.audio[0].name),
                "video": str(self.inputs.directory / clip.name),
            }
            ids.append(self.api.call("POST", "/v1/jobs", json=body).json()["id"])
        self._wait_terminal(ids, timeout_s=300)
        return self.settled_footprint()

    def _wait_terminal(self, ids: list[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = [self.api.call("GET", f"/v1/jobs/{i}").json()["state"] for i in ids]
            if all(s in TERMINAL for s in states):
                return True
            time.sleep(0.5)
        return False

    def queued(self) -> int:
        reply = self.api.call("GET", "/v1/jobs", params={"state": "queued", "limit": 1})
        return int(reply.json()["total"])

    def guarded(self, loop: Callable[[threading.Event], None], stop: threading.Event) -> None:
        """Run a campaign thread; a crash stops the run and fails it, naming the error."""
        try:
            loop(stop)
        except Exception as exc:
            self.harness_errors.append(f"{type(exc).__name__}: {exc}")
            stop.set()

    def submit_loop(self, stop: threading.Event) -> None:
        """Keep jobs flowing until enough were submitted and every planned fault has struck."""
        while not stop.is_set() and (
            len(self.traffic.submissions) < self.args.jobs or not self.plan_done.is_set()
        ):
            if self.queued() < QUEUE_TARGET:
                self.traffic.submit_one()
                if self.rng.random() < TEMPLATE_SHARE:
                    self.templates.register()
            else:
                time.sleep(0.2)
            if self.rng.random() < 0.03:
                self.traffic.cancel_random()

    def fault_kinds(self) -> list[str]:
        ray_kinds = self.ray_faults.kinds() if self.ray_faults else []
        return self.injector.kinds() + self.edges.kinds() + ray_kinds

    def inject(self, kind: str) -> FaultRecord | None:
        if kind in self.edges.kinds():
            return self.edges.run(kind)
        if self.ray_faults and kind in self.ray_faults.kinds():
            return self.ray_faults.run(kind)
        return self.injector.run(kind)

    def fault_loop(self, submitting: threading.Thread, stop: threading.Event) -> None:
        kinds = self.fault_kinds()
        plan = []  # rounds of every kind in a random order: a short run still hits each once
        for _ in range(self.args.each_fault):
            plan += self.rng.sample(kinds, len(kinds))
        plan.reverse()  # popped from the end
        while submitting.is_alive() and not stop.wait(self.rng.uniform(*FAULT_INTERVAL_S)):
            if not plan:
                self.plan_done.set()
            kind = plan.pop() if plan else self.rng.choice(kinds)
            leader_actors = (
                self.ray_faults.actor_identities()
                if self.ray_faults and kind == "server_kill_during_prepare"
                else None
            )
            try:
                record = self.inject(kind)
            except ChaosSetupError as exc:  # e.g. the server did not come back: stop the run
                self.fault_errors.append(f"{kind}: {exc}")
                stop.set()
                return
            except Exception as exc:  # a fault that could not be injected is reported
                self.fault_errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                continue
            if record is None:
                plan.append(kind)  # nothing to hit now (no busy worker): try again later
                continue
            self.faults.append(record)
            print(f"  fault {record.kind:<13} at {record.at:%H:%M:%S} {record.note}", flush=True)
            if kind in SERVER_KILLS:
                self.orphans_seen = max(self.orphans_seen, self._orphans_after_restart())
            if self.ray_faults and leader_actors:  # the killed leader's actors must be gone
                self.ray_faults.check_orphans(leader_actors)

    def _orphans_after_restart(self) -> int:
        """Processes of a killed server (its workers, its probe server) still alive 10 s
        after the restart: every marked process outside the live servers' trees."""
        time.sleep(10.0)
        tree: set[int] = set()
        for server in self.group.servers:
            if server.pid is not None and server.alive:
                tree.add(server.pid)
                tree |= {p.pid for p in psutil.Process(server.pid).children(recursive=True)}
        orphans = [p for p in marked_processes(self.run_id) if p.pid not in tree]
        for process in orphans:
            try:
                self.orphans.append(f"{process.pid} {process.cmdline()[-3:]}")
            except psutil.Error:
                self.orphans.append(f"{process.pid} (gone)")
        return len(orphans)

    def run(self) -> dict[str, Any]:  # Any: JSON report
        began = time.monotonic()
        baseline = self.warm_up()
        print(f"warm-up done; idle footprint {baseline}", flush=True)
        watcher = Watcher(self.api, self.traffic.submissions)
        watcher.start()
        self.reads.start()
        stop = threading.Event()
        submitting = threading.Thread(
            target=self.guarded, args=(self.submit_loop, stop), name="submit", daemon=True
        )
        faulting = threading.Thread(
            target=self.guarded,
            args=(lambda halt: self.fault_loop(submitting, halt), stop),
            name="faults",
            daemon=True,  # Ctrl-C: teardown does not wait for a patient client's retries
        )
        submitting.start()
        faulting.start()
        deadline = began + self.args.minutes * 60
        for thread in (submitting, faulting):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        stop.set()  # the time limit: stop submitting and injecting
        submitting.join()
        faulting.join()
        self.injector.close()
        ids = [j["id"] for j in list_all_jobs(self.api)]
        drained = self._wait_terminal(ids, timeout_s=max(60.0, deadline - time.monotonic()))
        self.templates.wait_settled(timeout_s=60.0)
        watcher.check_once()
        watcher.stop()
        self.reads.stop()
        jobs = list_all_jobs(self.api)
        end_print = self.settled_footprint()
        return self.report(jobs, watcher, baseline, end_print, drained, time.monotonic() - began)

    def report(
        self,
        jobs: list[dict[str, Any]],  # Any: JSON
        watcher: Watcher,
        baseline: Footprint,
        end_print: Footprint,
        drained: bool,
        wall_s: float,
    ) -> dict[str, Any]:  # Any: JSON report
        submissions = self.traffic.submissions
        audio_s = {s.job_id: s.audio.duration_s for s in submissions if s.job_id}
        campaign_jobs = [j for j in jobs if j["id"] not in self.warmup_ids]
        outcome = audit_jobs(
            campaign_jobs,
            submissions,
            self.data_dir / "results",
            audio_s,
            self.timing,
            datetime.now(UTC),
            {j["id"] for j in jobs if j["state"] == "succeeded"},
        )
        easy_bad = self._check_easy_results(submissions)
        outcome.counts["bad_outputs"] += len(easy_bad)
        outcome.problems += easy_bad
        template_jobs = [  # their recovery counts too; read while the server still runs
            self.api.call("GET", f"/v1/jobs/{t.job_id}").json() for t in self.templates.registered
        ]
        templates, template_problems = self.templates.audit()
        read_only_failed = [  # a read-only results dir is retried (STORAGE_UNAVAILABLE)
            j["id"]
            for j in jobs
            if j["state"] == "failed"
            and j["error"]
            and (
                j["error"]["code"] == "STORAGE_UNAVAILABLE"
                or "read-only file system" in j["error"]["message"].lower()
            )
        ]
        exit_codes = [server.terminate() for server in self.group.servers]
        time.sleep(2.0)
        leaked_processes = marked_processes(self.run_id)
        leaked_actors = self._actors_left()
        actor_orphans = self.ray_faults.orphans if self.ray_faults else []
        temp = leftover_temp_files(self.data_dir, self.cache_dir, self.root / "tmp")
        leaked_threads, leaked_fds = end_print.leaks_since(baseline)
        leaked = {
            "temp_files": len(temp),
            "processes": len(leaked_processes) + self.orphans_seen + len(actor_orphans),
            "ray_actors": len(leaked_actors),
            "threads": sum(leaked_threads.values()),
            "fds": leaked_fds,
        }
        recoveries = recovery_seconds(self.faults + self._stage_faults(jobs), jobs + template_jobs)
        windows = self.reads.by_window_kind(percentile)
        edge_zero = self.edges.must_be_zero(windows)
        recovery = [seconds for _, seconds in recoveries]
        recovery_by_kind: dict[str, list[float]] = {}
        for kind, seconds in recoveries:
            recovery_by_kind.setdefault(kind, []).append(seconds)
        stage_kinds = Counter(s.fault_kind for s in submissions if s.fault_kind and s.job_id)
        by_kind = Counter(f.kind for f in self.faults) + stage_kinds
        figures_by_kind: dict[str, dict[str, list[float]]] = {}
        for fault in self.faults:
            for name, value in fault.figures.items():
                figures_by_kind.setdefault(fault.kind, {}).setdefault(name, []).append(value)
        counts = outcome.counts
        report: dict[str, Any] = {  # Any: JSON
            **counts,
            "empty_errors": len(watcher.empty_errors),
            "templates_unsettled": len(template_problems),
            "failed_for_read_only_results": len(read_only_failed),
            **edge_zero,
            # a SIGTERMed server stops gracefully and exits 128 + 15
            "servers_not_stopped_cleanly": sum(code != 143 for code in exit_codes),
            "executor": self.args.executor,
            "faults_injected_by_kind": dict(sorted(by_kind.items())),
            "faults_not_applicable": self._not_applicable(),
            "faults_never_injected": [k for k in self.fault_kinds() if not by_kind[k]],
            "faults_adapted": ADAPTED_KINDS if self.args.executor == "ray" else {},
            "fault_figures_by_kind": {
                kind: {
                    name: {"p50": percentile(v, 0.5), "max": percentile(v, 1.0), "all": v}
                    for name, v in sorted(figures.items())
                }
                for kind, figures in sorted(figures_by_kind.items())
            },
            "faults_not_injected": self.fault_errors,
            "harness_errors": self.harness_errors,
            "server_errors": dict(self.api.server_errors),
            "jobs_target": self.args.jobs,
            "leaked": leaked,
            "recovery_s_p50": percentile(recovery, 0.5),
            "recovery_s_p99": percentile(recovery, 0.99),
            "recovery_s_max": percentile(recovery, 1.0),
            "recoveries_measured": len(recovery),
            "recovery_s_by_kind": {
                kind: {"p50": percentile(values, 0.5), "max": percentile(values, 1.0)}
                for kind, values in sorted(recovery_by_kind.items())
            },
            "drained": drained,
            "store": self.args.store,
            "workers": self.args.workers,
            "real_media": self.inputs.real_media,
            "server_starts": sum(server.starts for server in self.group.servers),
            "server_exit_codes_on_sigterm": exit_codes,
            "api_failovers": self.api.failovers,
            "ray_nodes_replaced": self.nodes.replaced if self.nodes else None,
            "watcher_polls": watcher.polls,
            "watcher_errors": watcher.errors[:10],
            "templates": templates,
            "status_reads": {**self.reads.totals(), "by_fault_window": windows},
            "edge_faults": self.edges.report(),
            "wall_s": round(wall_s, 1),
            "settings": {**self.timing, "janitor_interval_s": JANITOR_INTERVAL_S},
            "footprint": {"baseline": asdict(baseline), "end": asdict(end_print)},
            "problems": outcome.problems
            + template_problems
            + [f"failed for a read-only results dir: {job_id}" for job_id in read_only_failed]
            + [f"{k} = {v}" for k, v in edge_zero.items() if v]
            + [f"empty error: {j}" for j in sorted(watcher.empty_errors)]
            + [f"server exit code on SIGTERM: {c} (not 143)" for c in exit_codes if c != 143]
            + [f"leaked temp file: {p}" for p in temp[:20]]
            + [f"leaked thread: {name} x{n}" for name, n in leaked_threads.items()]
            + [f"leaked process: {p.pid} {p.cmdline()[:4]}" for p in leaked_processes]
            + [f"process outlived its killed server by 10 s: {o}" for o in self.orphans[:10]]
            + [f"actor outlived its killed leader: {o}" for o in actor_orphans[:10]]
            + [f"actor left after the servers stopped: {a}" for a in leaked_actors[:10]],
        }
        return report

    def _not_applicable(self) -> dict[str, str]:
        """Fault kinds this run cannot inject, and why (none is dropped silently)."""
        if self.args.executor == "ray":
            return {}
        reasons = dict(NOT_APPLICABLE_LOCALLY)
        if self.tmpfs is None:
            reasons["disk_full"] = "--no-disk-full"
        if self.postgres is None:
            reasons["pg_restart"] = "--store sqlite"
        return reasons

    def _actors_left(self) -> list[str]:
        """Ray actor processes still alive 10 s after both servers stopped (Ray ends a
        driver's actors with it)."""
        if self.nodes is None:
            return []
        deadline = time.monotonic() + 10.0
        while True:
            actors = self.nodes.actor_processes()
            if not actors or time.monotonic() > deadline:
                return [str(a.pid) for a in actors]
            time.sleep(0.5)

    def _stage_faults(self, jobs: list[dict[str, Any]]) -> list[FaultRecord]:  # Any: JSON
        """Stage faults strike inside an attempt; its start stands for the fault's moment (a
        slight overestimate of the recovery: the fault strikes a few frames in)."""
        by_id = {job["id"]: job for job in jobs}
        records = []
        for submission in self.traffic.submissions:
            job = by_id.get(submission.job_id or "")
            if submission.fault_kind and job and job["attempts"]:
                at = parse_at(job["attempts"][0]["started_at"])
                records.append(FaultRecord(submission.fault_kind, at, at, [job["id"]]))
        return records

    def _check_easy_results(self, submissions: list[Submission]) -> list[str]:
        """HeyGem jobs: the query's result file plays at the audio's duration."""
        problems = []
        for submission in submissions:
            if submission.route != "easy" or submission.refused:
                continue
            reply = self.api.call("GET", "/easy/query", params={"code": submission.key}).json()
            data = reply.get("data") or {}
            if reply["code"] == 10004:
                problems.append(f"lost easy job {submission.key}")
            elif data.get("status") == 2:
                path = self.inputs.directory / str(data["result"]).lstrip("/")
                problem = check_mp4(path, submission.audio.duration_s)
                if problem:
                    problems.append(f"bad output easy {submission.key}: {problem}")
        return problems

    def teardown(self) -> None:
        if hasattr(self, "edges"):
            self.edges.close()
            self.results_bind.release()
        if hasattr(self, "group"):
            self.group.kill_all()
        if hasattr(self, "api"):
            self.api.close()
        if self.nodes:
            self.nodes.stop()
        if self.postgres:
            self.postgres.stop()
        if self.tmpfs:
            self.tmpfs.unmount()


MUST_BE_ZERO = (
    "lost",
    "duplicated",
    "empty_errors",
    "hung",
    "bad_outputs",
    "templates_unsettled",
    "servers_not_stopped_cleanly",
    "failed_for_read_only_results",
    "probe_crash_unclear_answers",
    "probe_crash_status_read_failures",
    "second_server_not_refused",
    "results_readonly_readyz_said_ready",
    "slow_url_unclear_answers",
    "slow_url_status_read_timeouts",
)


def failures(report: dict[str, Any]) -> list[str]:  # Any: JSON
    failed = [f"{key} = {report[key]}" for key in MUST_BE_ZERO if report[key]]
    failed += [f"leaked {k} = {v}" for k, v in report["leaked"].items() if v]
    if not report["drained"]:
        failed.append("jobs still unfinished at the time limit")
    if report["submitted"] < report["jobs_target"]:
        failed.append(f"only {report['submitted']} of {report['jobs_target']} jobs submitted")
    if report["harness_errors"]:
        failed.append(f"the campaign itself failed: {report['harness_errors']}")
    errors_500 = {k: v for k, v in report["server_errors"].items() if k.startswith("500")}
    if errors_500:
        failed.append(f"HTTP 500 answers: {errors_500}")
    if report["faults_never_injected"]:
        failed.append(
            f"fault kinds never injected (the run was too short for them): "
            f"{report['faults_never_injected']}; give it more --minutes"
        )
    if report["faults_not_injected"]:
        failed.append(f"faults that could not be injected: {report['faults_not_injected']}")
    return failed


def summary(report: dict[str, Any]) -> str:  # Any: JSON
    lines = [
        f"chaos campaign: {report['submitted']} jobs on {report['store']}, "
        f"{report['executor']} executor, {report['workers']} workers, {report['wall_s']} s",
        f"  succeeded {report['succeeded']}, failed {report['failed_by_code']}, "
        f"canceled {report['canceled']}, retried jobs {report['retried_jobs']}",
        f"  faults injected: {report['faults_injected_by_kind']}",
        f"  not applicable: {report['faults_not_applicable'] or 'none'}",
        f"  recovery by kind: {report['recovery_s_by_kind']}",
        "  fault timings: "
        + (
            "; ".join(
                f"{kind} {name} p50 {v['p50']} max {v['max']} s"
                for kind, figures in report["fault_figures_by_kind"].items()
                for name, v in figures.items()
            )
            or "none"
        ),
        f"  recovery p50 {report['recovery_s_p50']} s, p99 {report['recovery_s_p99']} s "
        f"({report['recoveries_measured']} faults)",
        f"  lost {report['lost']}, duplicated {report['duplicated']}, empty errors "
        f"{report['empty_errors']}, hung {report['hung']}, bad outputs {report['bad_outputs']}",
        f"  leaked {report['leaked']}; servers not stopped cleanly by SIGTERM "
        f"{report['servers_not_stopped_cleanly']} (exit codes "
        f"{report['server_exit_codes_on_sigterm']})",
        f"  templates {report['templates']['by_state']}, unsettled {report['templates_unsettled']}",
        "  edge faults: " + ", ".join(f"{k} {report[k]}" for k in MUST_BE_ZERO[7:]),
        f"  status reads in slow-URL windows: "
        f"{report['status_reads']['by_fault_window'].get('slow_url_inputs')}",
        f"  5xx answers seen by clients: {report['server_errors'] or 'none'}",
    ]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=240)
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=12.0, help="time limit of the run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="ray: a two-node Ray cluster and two servers (leader and standby) on PostgreSQL",
    )
    parser.add_argument(
        "--each-fault", type=int, default=4, help="inject every fault kind at least this often"
    )
    parser.add_argument("--disk-mb", type=int, default=384, help="size of the data tmpfs")
    parser.add_argument("--no-disk-full", action="store_true")
    parser.add_argument("--report", type=Path, default=Path("reliability-report.json"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    args = parse_args()
    if args.executor == "ray" and args.store != "postgres":
        print("chaos: --executor ray needs --store postgres (two servers share the store)")
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C: teardown still runs
    root = Path(tempfile.mkdtemp(prefix="talkingface-chaos-"))
    os.chmod(root, 0o755)  # the private PostgreSQL runs as the postgres user below it
    campaign = Campaign(args, root, random.Random(args.seed), uuid.uuid4().hex)
    try:
        campaign.setup()
        report = campaign.run()
    except ChaosSetupError as exc:
        print(f"chaos: setup failed: {exc}", file=sys.stderr)
        return 2
    finally:
        campaign.teardown()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(summary(report))
    problems = failures(report)
    for line in report["problems"][:40]:
        print(f"  ! {line}")
    print(f"report: {args.report}")
    if problems:
        print("FAILED: " + "; ".join(problems))
        return 1
    print("PASSED: every must-be-zero figure is zero")
    return 0


if __name__ == "__main__":
    sys.exit(main())
