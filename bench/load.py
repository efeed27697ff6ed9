"""Load figures for the HTTP API of a real `talkingface serve`: bursts, polling, SSE, reports.

Usage: python bench/load.py [--db sqlite|postgresql] [--json PATH] [--clients 200]
       [--streams 100] [--seconds 15] [--max-queued 50] [--submits 200]

Starts `talkingface serve` (one worker, dispatch paused so submitted jobs stay queued,
api.max_queued small) on a free loopback port and drives it from this process with asyncio
httpx clients, in phases:
1. burst: `--submits` submissions at once from `--burst-clients` clients (POST /v1/jobs with
   server paths, every fifth one POST /easy/submit), up to and past api.max_queued. Every
   reply must be 202/200 or 429 with Retry-After (/easy: 200 with code 10000 or 10001).
   Then the store is read back through the API: accepted jobs all there (lost = 0), refused
   ones never created (refused_but_created = 0), refused HeyGem codes unknown to
   /easy/query.
2. poll: `--clients` clients polling GET /v1/jobs/{id} and /easy/query for `--seconds`.
3. sse: `--streams` event streams held open (GET /v1/jobs/{id}/events, text/event-stream)
   while the polling goes on; each must still be open at the end.
4. ops: the polling plus clients reading the list, stats, queue and metrics endpoints.
5-6. reads (bench/reads_phase.py): GET /v1/jobs/{id} and /easy/query from a separate lean load
   process (bench/read_load.py: the httpx clients above cost more CPU than the server),
   against the one `serve` process and then against `--api-processes` API processes on one
   port, in the same run: reads/s, p50/p99, CPU per read and the ratio N/1.
A probe reads /healthz twice a second in phases 2-4: the wait of a request that reads
nothing (sync routes share one thread pool, so it queues behind the store reads).

Per endpoint: requests, req/s, latency p50/p90/p99/max (ms; SSE: time to the first message),
replies by status. Per phase: the server's CPU % (its process, and with its worker children)
and peak RSS, and this client's CPU % (both share the machine's cores). `--json PATH` writes
the same figures as JSON. A check that fails is listed at the end and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.service_process

from bench.reads_phase import compare_reads, print_reads
from bench.service import make_inputs, percentile
from bench.service_process import Service, fresh_postgres_database, start_service

EASY_EVERY = 5  # one submission in five goes through /easy/submit
HEALTH_PROBE_S = 0.5
SAMPLE_S = 0.2  # resource sampling interval
CHILDREN_EVERY_S = 1.0  # how often the server's child processes are listed again
CLIENT_TIMEOUT_S = 30.0
SSE_OPEN_TIMEOUT_S = 30.0
TLS_CONTEXT = ssl.create_default_context()  # loopback http: never used, built once


@dataclass
class Endpoint:
    """Latencies and reply statuses of one endpoint within one phase."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    def record(self, started: float, status: str) -> None:
        self.latencies_s.append(time.perf_counter() - started)
        self.statuses[status] += 1

    def figures(self, seconds: float) -> dict[str, Any]:  # Any: JSON-safe values
        ms = [1000 * s for s in self.latencies_s] or [0.0]
        return {
            "requests": len(self.latencies_s),
            "per_s": round(len(self.latencies_s) / seconds, 1),
            "p50_ms": round(percentile(ms, 0.50), 1),
            "p90_ms": round(percentile(ms, 0.90), 1),
            "p99_ms": round(percentile(ms, 0.99), 1),
            "max_ms": round(max(ms), 1),
            "statuses": dict(sorted(self.statuses.items())),
        }


class Phase:
    """One phase's endpoints, server resources and checks."""

    def __init__(self, name: str, sampler: ResourceSampler) -> None:
        self.name = name
        self.endpoints: dict[str, Endpoint] = {}
        self.checks: dict[str, Any] = {}  # Any: counts and flags
        self.sampler = sampler

    def endpoint(self, name: str) -> Endpoint:
        return self.endpoints.setdefault(name, Endpoint())

    async def timed(self, name: str, send: Awaitable[httpx.Response]) -> httpx.Response | None:
        """Await `send` (a request not yet started), recording its latency and status."""
        started = time.perf_counter()
        try:
            response = await send
        except httpx.HTTPError as exc:
            self.endpoint(name).record(started, type(exc).__name__)
            return None
        self.endpoint(name).record(started, str(response.status_code))
        return response

    @contextlib.contextmanager
    def measured(self) -> Iterator[None]:
        print(f"phase {self.name}: running", file=sys.stderr, flush=True)
        self.sampler.begin()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds = time.perf_counter() - started
            self.resources = self.sampler.end()

    def figures(self) -> dict[str, Any]:  # Any: JSON-safe values
        requests = sum(len(e.latencies_s) for e in self.endpoints.values())
        cpu_ms = self.resources["server_cpu_pct"] * 10 * self.seconds
        return {
            "name": self.name,
            "seconds": round(self.seconds, 2),
            **self.resources,
            # the server's CPU per HTTP request (held SSE streams add to it): the figure least
            # moved by other load on the machine
            "server_cpu_ms_per_request": round(cpu_ms / max(requests, 1), 2),
            "endpoints": {k: v.figures(self.seconds) for k, v in self.endpoints.items()},
            "checks": self.checks,
        }


class ResourceSampler:
    """Samples the server process and its children (RSS, CPU time) from a thread."""

    def __init__(self, pid: int) -> None:
        self.server = psutil.Process(pid)
        self.client = psutil.Process()
        self.cpu_s: dict[int, float] = {}  # last CPU seconds seen per process
        self.base_cpu: dict[int, float] = {}
        self.peak_main = self.peak_total = 0
        self.client_base = self.started = 0.0
        self.machine_base = psutil.cpu_times()
        self.processes, self.listed_at = [self.server], -CHILDREN_EVERY_S
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        if time.monotonic() - self.listed_at > CHILDREN_EVERY_S:  # a /proc scan: not each time
            with contextlib.suppress(psutil.Error):
                self.processes = [self.server, *self.server.children(recursive=True)]
            self.listed_at = time.monotonic()
        main_rss, total_rss = 0, 0
        for process in self.processes:
            try:
                with process.oneshot():
                    rss, times = process.memory_info().rss, process.cpu_times()
            except psutil.Error:
                continue
            total_rss += rss
            if process.pid == self.server.pid:
                main_rss = rss
            with self.lock:
                self.cpu_s[process.pid] = times.user + times.system
        with self.lock:
            self.peak_main = max(self.peak_main, main_rss)
            self.peak_total = max(self.peak_total, total_rss)

    def begin(self) -> None:
        self.sample()
        with self.lock:
            self.base_cpu = dict(self.cpu_s)
            self.peak_main = self.peak_total = 0
        times = self.client.cpu_times()
        self.client_base = times.user + times.system
        self.machine_base = psutil.cpu_times()
        self.started = time.perf_counter()
        self.sample()

    def end(self) -> dict[str, Any]:  # Any: JSON-safe values
        self.sample()
        wall = time.perf_counter() - self.started
        times = self.client.cpu_times()
        pid = self.server.pid
        machine = psutil.cpu_times()
        machine_all = sum(machine) - sum(self.machine_base)
        machine_idle = machine.idle + machine.iowait
        machine_idle -= self.machine_base.idle + self.machine_base.iowait
        with self.lock:
            used = {p: s - self.base_cpu.get(p, 0.0) for p, s in self.cpu_s.items()}
            return {
                "server_cpu_pct": round(100 * used.get(pid, 0.0) / wall, 1),
                "server_and_workers_cpu_pct": round(100 * sum(used.values()) / wall, 1),
                "server_rss_mb_peak": round(self.peak_main / 2**20, 1),
                "server_and_workers_rss_mb_peak": round(self.peak_total / 2**20, 1),
                "client_cpu_pct": round(
                    100 * (times.user + times.system - self.client_base) / wall, 1
                ),
                # every process on the machine, 100 = all cores busy (other load skews figures)
                "machine_busy_pct": round(100 * (1 - machine_idle / max(machine_all, 1e-9)), 1),
            }

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


@dataclass
class Burst:
    """What phase 1 left in the store: accepted job ids and HeyGem codes."""

    job_ids: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    refused_codes: list[str] = field(default_factory=list)


def is_refusal(response: httpx.Response) -> bool:
    return response.status_code == 429 and response.headers.get("retry-after", "").isdigit()


def own_client(url: str) -> httpx.AsyncClient:
    """One client, one connection, as a separate program has (httpx scans every connection
    of a pool on each request: one pool for hundreds of connections is the bottleneck).
    They share one TLS context: httpx would build one per client (~25 ms of CPU each)."""
    return httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT_S, verify=TLS_CONTEXT)


async def burst_phase(
    http: httpx.AsyncClient, phase: Phase, audio: Path, video: Path, args: argparse.Namespace
) -> Burst:
    """Submissions past api.max_queued at once; then the store must hold exactly the accepted."""
    burst, unexpected = Burst(), []

    async def submit_v1(client: httpx.AsyncClient, index: int) -> None:
        body = {"audio": str(audio), "video": str(video)}
        reply = await phase.timed("POST /v1/jobs", client.post("/v1/jobs", json=body))
        if reply is not None and reply.status_code in (200, 201, 202):
            burst.job_ids.append(reply.json()["id"])
        elif reply is None or not is_refusal(reply):
            unexpected.append(f"v1 #{index}: {reply and (reply.status_code, reply.text[:200])}")

    async def submit_easy(client: httpx.AsyncClient, index: int) -> None:
        code = f"load-{index}"
        body = {"audio_url": str(audio), "video_url": str(video), "code": code}
        reply = await phase.timed("POST /easy/submit", client.post("/easy/submit", json=body))
        heygem = reply.json().get("code") if reply is not None else None
        if reply is not None and reply.status_code == 200 and heygem == 10000:
            burst.codes.append(code)
        elif reply is not None and reply.status_code == 200 and heygem == 10001:
            burst.refused_codes.append(code)
        else:
            unexpected.append(f"easy {code}: {reply and reply.text[:200]}")

    async def one_client(first: int) -> None:
        async with own_client(str(http.base_url)) as client:
            for index in range(first, args.submits, args.burst_clients):
                easy = index % EASY_EVERY == EASY_EVERY - 1
                await (submit_easy if easy else submit_v1)(client, index)

    with phase.measured():
        await asyncio.gather(*(one_client(i) for i in range(args.burst_clients)))
    listed = (await http.get("/v1/jobs", params={"limit": 500})).json()
    stored = {job["id"] for job in listed["items"]}
    found = [await http.get("/easy/query", params={"code": c}) for c in burst.codes]
    ghosts = [await http.get("/easy/query", params={"code": c}) for c in burst.refused_codes]
    queued = (await http.get("/v1/queue")).json()["queued"]
    accepted = len(burst.job_ids) + len(burst.codes)
    phase.checks = {
        "accepted": accepted,
        "refused": args.submits - accepted - len(unexpected),
        "unexpected_replies": unexpected[:5],
        "unexpected_count": len(unexpected),
        "stored_total": listed["total"],
        "lost": sum(1 for i in burst.job_ids if i not in stored)
        + sum(1 for r in found if r.json()["code"] != 10000),
        "refused_but_created": listed["total"]
        - accepted
        + sum(1 for r in ghosts if r.json()["code"] != 10004),
        "queued": queued,
        "max_queued": args.max_queued,
    }
    return burst


async def poll_forever(
    url: str, phase: Phase, burst: Burst, stop: asyncio.Event, seed: int
) -> None:
    """One client: GET a random job (four times in five) or HeyGem code, back to back."""
    rng = random.Random(seed)
    async with own_client(url) as http:
        while not stop.is_set():
            if burst.codes and rng.randrange(EASY_EVERY) == 0:
                code = rng.choice(burst.codes)
                await phase.timed("GET /easy/query", http.get("/easy/query", params={"code": code}))
            else:
                job = rng.choice(burst.job_ids)
                await phase.timed("GET /v1/jobs/{id}", http.get(f"/v1/jobs/{job}"))


async def probe_health(url: str, phase: Phase, stop: asyncio.Event) -> None:
    async with own_client(url) as http:
        while not stop.is_set():
            await phase.timed("GET /healthz (probe)", http.get("/healthz"))
            await asyncio.sleep(HEALTH_PROBE_S)


OPS_PATHS = ("/v1/jobs?limit=50", "/v1/stats", "/v1/queue", "/metrics")


async def read_ops_forever(url: str, phase: Phase, stop: asyncio.Event, first: int) -> None:
    index = first
    async with own_client(url) as http:
        while not stop.is_set():
            path = OPS_PATHS[index % len(OPS_PATHS)]
            await phase.timed(f"GET {path.split('?')[0]}", http.get(path))
            index += 1


@dataclass
class Stream:
    """One held event stream: whether it opened, how many messages, whether it ended early."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    messages: int = 0
    keepalives: int = 0
    ended: str | None = None  # why it ended before we closed it


async def hold_stream(
    url: str, phase: Phase, job_id: str, stream: Stream, stop: asyncio.Event
) -> None:
    started = time.perf_counter()
    headers = {"Accept": "text/event-stream"}
    try:
        path = f"/v1/jobs/{job_id}/events"
        async with own_client(url) as http, http.stream("GET", path, headers=headers) as reply:
            if reply.status_code != 200:
                phase.endpoint("GET /v1/jobs/{id}/events (SSE)").record(
                    started, str(reply.status_code)
                )
                stream.ended = f"HTTP {reply.status_code}"
                return
            async for line in reply.aiter_lines():
                if line.startswith("event:"):
                    stream.messages += 1
                    if not stream.opened.is_set():
                        phase.endpoint("GET /v1/jobs/{id}/events (SSE)").record(started, "200")
                        stream.opened.set()
                elif line.startswith(": keep-alive"):
                    stream.keepalives += 1
            stream.ended = "the server closed the stream"
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
    except httpx.HTTPError as exc:
        if not stream.opened.is_set():
            phase.endpoint("GET /v1/jobs/{id}/events (SSE)").record(started, type(exc).__name__)
        stream.ended = type(exc).__name__


async def run_load(
    phase: Phase,
    url: str,
    burst: Burst,
    args: argparse.Namespace,
    extra: Callable[[asyncio.Event], list[Awaitable[None]]] = lambda _: [],
) -> None:
    """`--clients` pollers, the health probe and `extra` tasks for `--seconds`."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(poll_forever(url, phase, burst, stop, seed))
        for seed in range(args.clients)
    ]
    tasks.append(asyncio.create_task(probe_health(url, phase, stop)))
    tasks += [asyncio.ensure_future(t) for t in extra(stop)]
    with phase.measured():
        await asyncio.sleep(args.seconds)
        stop.set()
        await asyncio.gather(*tasks)


async def sse_phase(url: str, phase: Phase, burst: Burst, args: argparse.Namespace) -> None:
    closing = asyncio.Event()
    streams = [Stream() for _ in range(args.streams)]
    held = [
        asyncio.create_task(
            hold_stream(url, phase, burst.job_ids[i % len(burst.job_ids)], s, closing)
        )
        for i, s in enumerate(streams)
    ]
    opening = asyncio.gather(*(s.opened.wait() for s in streams))
    started = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(opening, SSE_OPEN_TIMEOUT_S)
    open_s = time.perf_counter() - started
    await run_load(phase, url, burst, args)
    still_open = sum(1 for s in streams if s.opened.is_set() and s.ended is None)
    closing.set()
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    phase.checks = {
        "streams": args.streams,
        "all_open_after_s": round(open_s, 2),
        "opened": sum(1 for s in streams if s.opened.is_set()),
        "open_at_end": still_open,
        "ended_early": dict(Counter(s.ended for s in streams if s.ended)),
        "messages": sum(s.messages for s in streams),
        "keepalives": sum(s.keepalives for s in streams),
    }


async def drive(
    service: Service, audio: Path, video: Path, args: argparse.Namespace
) -> tuple[list[Any], Burst]:
    sampler = ResourceSampler(service.process.pid)
    phases: list[Phase] = []
    burst = Burst()
    try:
        async with own_client(service.url) as http:
            (await http.post("/v1/queue/pause")).raise_for_status()
            phases.append(Phase("1 burst", sampler))
            burst = await burst_phase(http, phases[-1], audio, video, args)
            if not burst.job_ids or args.reads_only:
                return [p.figures() for p in phases], burst
            phases.append(Phase("2 poll", sampler))
            await run_load(phases[-1], service.url, burst, args)
            phases.append(Phase("3 poll + sse", sampler))
            await sse_phase(service.url, phases[-1], burst, args)
            phases.append(Phase("4 poll + ops", sampler))
            ops = phases[-1]
            await run_load(
                ops,
                service.url,
                burst,
                args,
                lambda stop: [
                    read_ops_forever(service.url, ops, stop, i) for i in range(args.ops_clients)
                ],
            )
    finally:
        sampler.stop()
    return [p.figures() for p in phases], burst


def failed_checks(phases: list[dict[str, Any]]) -> list[str]:
    failures = []
    for phase in phases:
        checks = phase["checks"]
        name = phase["name"]
        for key in ("lost", "refused_but_created", "unexpected_count"):
            if checks.get(key):
                failures.append(f"{name}: {key} = {checks[key]}")
        if "queued" in checks and checks["queued"] > checks["max_queued"]:
            failures.append(f"{name}: {checks['queued']} queued, over api.max_queued")
        if "streams" in checks and checks["open_at_end"] != checks["streams"]:
            failures.append(f"{name}: {checks['open_at_end']}/{checks['streams']} streams open")
        for endpoint, figures in phase["endpoints"].items():
            bad = {s: n for s, n in figures["statuses"].items() if s not in ("200", "202", "429")}
            if bad:
                failures.append(f"{name}: {endpoint} replied {bad}")
    return failures


def failed_reads(reads: dict[str, Any] | None) -> list[str]:
    if reads is None:
        return ["reads: no job was accepted to read"]
    failures = []
    for key in ("one_process", "n_processes"):
        bad = {s: n for s, n in reads[key]["statuses"].items() if not s.endswith(" 200")}
        if bad:
            failures.append(f"reads {key}: replies {bad}")
    return failures


def print_table(phases: list[dict[str, Any]]) -> None:
    head = f"{'endpoint':34} {'requests':>8} {'req/s':>7} {'p50':>7} {'p90':>7} {'p99':>7}"
    head += f" {'max':>7}  replies (ms columns)"
    for phase in phases:
        print(
            f"\n== {phase['name']} ({phase['seconds']} s): server CPU {phase['server_cpu_pct']} % "
            f"({phase['server_and_workers_cpu_pct']} % with workers), RSS peak "
            f"{phase['server_rss_mb_peak']} MB ({phase['server_and_workers_rss_mb_peak']} MB "
            f"with workers); client CPU {phase['client_cpu_pct']} %; machine busy "
            f"{phase['machine_busy_pct']} % of {os.cpu_count()} cores; server CPU per request "
            f"{phase['server_cpu_ms_per_request']} ms"
        )
        print(head)
        for endpoint, f in phase["endpoints"].items():
            statuses = " ".join(f"{s}:{n}" for s, n in f["statuses"].items())
            print(
                f"{endpoint:34} {f['requests']:>8} {f['per_s']:>7} {f['p50_ms']:>7} "
                f"{f['p90_ms']:>7} {f['p99_ms']:>7} {f['max_ms']:>7}  {statuses}"
            )
        if phase["checks"]:
            print("checks: " + json.dumps(phase["checks"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--clients", type=int, default=200, help="concurrent pollers")
    parser.add_argument("--streams", type=int, default=100, help="SSE streams held in phase 3")
    parser.add_argument("--ops-clients", type=int, default=8, help="list/stats/metrics readers")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of phases 2-4")
    parser.add_argument("--max-queued", type=int, default=50)
    parser.add_argument("--submits", type=int, default=200, help="phase 1 submissions")
    parser.add_argument("--burst-clients", type=int, default=100)
    parser.add_argument("--read-seconds", type=float, default=10.0, help="length of phases 5-6")
    parser.add_argument("--read-connections", type=int, default=64, help="phases 5-6")
    parser.add_argument(
        "--api-processes", type=int, default=os.cpu_count() or 2, help="API processes, phase 6"
    )
    parser.add_argument("--reads-only", action="store_true", help="phases 1, 5 and 6 only")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="talkingface-bench-load-"))
    inputs = root / "inputs"
    inputs.mkdir()
    audio, video = make_inputs(inputs, 2.0, 128)
    env = {
        "TALKINGFACE_API__MAX_QUEUED": str(args.max_queued),
        "TALKINGFACE_API__INPUT_ROOTS": json.dumps([str(inputs)]),
        "TALKINGFACE_WORKERS__HEARTBEAT_S": "5",  # production timings, not the tests' fast ones
        "TALKINGFACE_WORKERS__STALL_S": "120",
        "TALKINGFACE_WORKERS__ALLOW_FAULTS": "false",
        "TALKINGFACE_LOGGING__LEVEL": "warning",
    }
    with contextlib.ExitStack() as cleanup:
        if args.db == "postgresql":
            env["TALKINGFACE_DB__URL"] = cleanup.enter_context(fresh_postgres_database("tf_load"))
        service = start_service(root / "data", root / "server.log", workers=1, extra_env=env)
        cleanup.callback(service.stop)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            phases, burst = runner.run(drive(service, audio, video, args))
        reads = None
        if burst.job_ids:
            reads = compare_reads(
                service,
                burst.job_ids,
                burst.codes,
                root,
                processes=args.api_processes,
                connections=args.read_connections,
                seconds=args.read_seconds,
            )
    report = {
        "db": args.db,
        "cpu_count": os.cpu_count(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "phases": phases,
        "reads": reads,
        "failed_checks": failed_checks(phases) + failed_reads(reads),
    }
    print_table(phases)
    if reads is not None:
        print_reads(reads)
    for failure in report["failed_checks"]:
        print(f"FAILED {failure}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if report["failed_checks"] else 0


if __name__ == "__main__":
    sys.exit(main())
