"""Faults at the service's edges: a server killed while a template is prepared, a submit-time
probe that crashes, a second server on the same data directory, a read-only results
directory, and URL inputs from a host that trickles bytes. Each returns a FaultRecord like
the Injector's kinds, and keeps what it saw for the report (`findings`)."""

from __future__ import annotations

import random
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from bench.chaos.injectors import FaultRecord
from bench.chaos.processes import ReadOnlyBind, ServerGroup
from bench.chaos.status_reads import StatusReads
from bench.chaos.template_traffic import TemplateTraffic
from bench.chaos.trickle import TrickleServer
from bench.chaos.workload import Api, Submission, Traffic

KINDS = (
    "server_kill_during_prepare",
    "probe_crash",
    "second_server",
    "results_readonly",
    "slow_url_inputs",
)
PREPARE_CATCH_S = 30.0  # how long to wait for a registered template's preparation to run
PROBE_CRASH_AFTER_S = 3.0  # status reads after a crashed probe still belong to its window
READ_ONLY_HOLD_S = 5.0
SLOW_SUBMISSIONS = 5  # at once, against api.max_url_downloads = MAX_URL_DOWNLOADS
MAX_URL_DOWNLOADS = 3
TRICKLE_S = (2.0, 6.0)
CRASH_MARK = "probe-fault-crash"  # probe_process._inject_fault: such a file's probe segfaults


def _now() -> datetime:
    return datetime.now(UTC)


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an error answer; empty strings where the body has none."""
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "").strip()


class ServiceFaults:
    """The five kinds above, on one campaign's server, traffic and status reads."""

    def __init__(
        self,
        api: Api,
        group: ServerGroup,
        workers: int,
        traffic: Traffic,
        templates: TemplateTraffic,
        reads: StatusReads,
        results: ReadOnlyBind,
        rng: random.Random,
    ) -> None:
        self.api = api
        self.group = group
        self.workers = workers
        self.traffic = traffic
        self.templates = templates
        self.reads = reads
        self.results = results
        self.rng = rng
        # no retries: raw answers (faults run one at a time, so this server is up)
        self.http = httpx.Client(base_url=group.servers[0].url, timeout=60.0)
        self.trickle = TrickleServer(traffic.inputs.directory)
        self.trickle.start()
        self.crash_files = self._crash_files()
        self.findings: dict[str, dict[str, Any]] = {  # Any: JSON
            "probe_crash": {"answers": Counter(), "messages": set(), "unclear": []},
            "second_server": {"exit_codes": Counter(), "messages": set(), "not_refused": []},
            "results_readonly": {"readyz": Counter(), "messages": set(), "said_ready": 0},
            "slow_url_inputs": {"answers": Counter(), "unclear": []},
            "server_kill_during_prepare": {"not_caught": 0},
        }

    def kinds(self) -> list[str]:
        return list(KINDS)

    def run(self, kind: str) -> FaultRecord | None:
        method: Callable[[], FaultRecord | None] = getattr(self, f"_{kind}")
        return method()

    def _running_job_ids(self) -> list[str]:
        listing = self.api.call("GET", "/v1/jobs", params={"state": "running", "limit": 500})
        return [job["id"] for job in listing.json()["items"]]

    # --- server_kill_during_prepare --------------------------------------------------------

    def _server_kill_during_prepare(self) -> FaultRecord | None:
        """Register a template, wait until a worker prepares it, SIGKILL the server, restart."""
        item = self.templates.register(has_face=True)
        if item is None:
            return None
        deadline = time.monotonic() + PREPARE_CATCH_S
        while time.monotonic() < deadline:
            workers = self.api.call("GET", "/v1/workers").json()
            if any(w["job_id"] == item.job_id for w in workers):
                break
            if self.templates.describe(item.template_id)["state"] != "preparing":
                self.findings["server_kill_during_prepare"]["not_caught"] += 1
                return None  # prepared before it could be caught: try again later
            time.sleep(0.05)
        else:
            self.findings["server_kill_during_prepare"]["not_caught"] += 1
            return None
        server = self.group.leader()  # its scheduler runs the preparation
        at = _now()
        server.kill()
        startup_s = server.start(self.workers, timeout_s=240.0)
        note = f"template {item.template_id[:8]}, restart took {startup_s:.1f} s"
        return FaultRecord("server_kill_during_prepare", at, _now(), [item.job_id], note)

    # --- probe_crash -----------------------------------------------------------------------

    def _crash_files(self) -> dict[str, str]:
        """Copies of a speech clip and a template whose names make their probe crash."""
        inputs = self.traffic.inputs
        audio = inputs.audio[0].name
        video = inputs.video[0].name
        names = {"audio": f"speech-{CRASH_MARK}.wav", "video": f"template-{CRASH_MARK}.mp4"}
        shutil.copyfile(inputs.directory / audio, inputs.directory / names["audio"])
        shutil.copyfile(inputs.directory / video, inputs.directory / names["video"])
        return names

    def _probe_crash(self) -> FaultRecord | None:
        """A submission (job audio, job video, or template) whose submit-time probe segfaults:
        a clear 4xx, and the server keeps serving (status reads in the window must not fail)."""
        inputs = self.traffic.inputs
        directory = inputs.directory
        target = self.rng.choice(["audio", "video", "template"])
        began = time.monotonic()
        at = _now()
        if target == "template":
            video = str(directory / self.crash_files["video"])
            response = self.http.post("/v1/templates", json={"video": video})
        else:
            body = {
                "audio": str(directory / inputs.audio[0].name),
                "video": str(directory / inputs.video[0].name),
            }
            body[target] = str(directory / self.crash_files[target])
            response = self.http.post("/v1/jobs", json=body)
            if response.status_code == 202:  # accepted: the audit must know the job
                submission = Submission(uuid.uuid4().hex, "v1", inputs.audio[0], 0, None)
                submission.job_id = response.json()["id"]
                with self.traffic.lock:
                    self.traffic.submissions.append(submission)
        code, message = _error_of(response)
        findings = self.findings["probe_crash"]
        findings["answers"][f"{target} {response.status_code} {code}"] += 1
        findings["messages"].add(message[:200])
        if not (400 <= response.status_code < 500 and message):
            findings["unclear"].append(f"{target}: HTTP {response.status_code} {message!r}")
        if not all(server.alive for server in self.group.servers):
            findings["unclear"].append("the server died after a crashed probe")
        time.sleep(PROBE_CRASH_AFTER_S)  # the reads just after belong to the window
        self.reads.mark("probe_crash", began, time.monotonic())
        note = f"{target}: HTTP {response.status_code} {code}"
        return FaultRecord("probe_crash", at, at, [], note)

    # --- second_server ---------------------------------------------------------------------

    def _second_server(self) -> FaultRecord | None:
        """A second `serve` (SQLite) on the same data dir must exit 2 naming the lock and
        the running servers' pids; their running jobs go on (the audit catches any lost or
        failed)."""
        running = self._running_job_ids()
        at = _now()
        done = self.group.servers[0].start_rival()
        output = (done.stderr + done.stdout).strip()
        message = output.splitlines()[-1] if output else ""
        findings = self.findings["second_server"]
        findings["exit_codes"][str(done.returncode)] += 1
        findings["messages"].add(message[:300])
        pids = [str(server.pid) for server in self.group.servers]
        names_holders = all(re.search(rf"\b{pid}\b", message) for pid in pids)
        names_holders = names_holders and "lock" in message.lower()
        if done.returncode != 2 or not names_holders:
            findings["not_refused"].append(f"exit {done.returncode}: {message[:300]!r}")
        if not all(server.alive for server in self.group.servers):
            findings["not_refused"].append("a running server is gone after the second started")
        return FaultRecord("second_server", at, at, running, f"exit {done.returncode}")

    # --- results_readonly ------------------------------------------------------------------

    def _results_readonly(self) -> FaultRecord | None:
        """The results directory read-only for READ_ONLY_HOLD_S: results finished meanwhile
        fail with STORAGE_UNAVAILABLE and are retried, dispatch waits, /readyz says not ready."""
        running = self._running_job_ids()
        at = _now()
        self.results.hold()
        findings = self.findings["results_readonly"]
        try:
            until = time.monotonic() + READ_ONLY_HOLD_S
            while time.monotonic() < until:
                response = self.http.get("/readyz")
                check = response.json().get("checks", {}).get("results", {})
                findings["readyz"][str(response.status_code)] += 1
                findings["messages"].add(str(check.get("message", ""))[:200])
                if response.status_code == 200:
                    findings["said_ready"] += 1
                time.sleep(1.0)
        finally:
            self.results.release()
        return FaultRecord("results_readonly", at, _now(), running, "bind mount remounted ro")

    # --- slow_url_inputs -------------------------------------------------------------------

    def _slow_url_inputs(self) -> FaultRecord | None:
        """SLOW_SUBMISSIONS jobs at once whose audio or template URL trickles a byte every
        0.5 s for a few seconds; past api.max_url_downloads the answer is DOWNLOADS_BUSY."""
        began = time.monotonic()
        at = _now()
        threads = [
            threading.Thread(target=self._submit_slow, name=f"chaos-slow-{n}")
            for n in range(SLOW_SUBMISSIONS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.reads.mark("slow_url_inputs", began, time.monotonic())
        answers = self.findings["slow_url_inputs"]["answers"]
        return FaultRecord("slow_url_inputs", at, _now(), [], f"answers so far {dict(answers)}")

    def _submit_slow(self) -> None:
        inputs = self.traffic.inputs
        audio = self.rng.choice(inputs.audio)
        video = self.rng.choice(inputs.video)
        trickle_s = round(self.rng.uniform(*TRICKLE_S), 1)
        directory = inputs.directory
        body = {"audio": str(directory / audio.name), "video": str(directory / video.name)}
        slow_field = self.rng.choice(["audio", "audio", "video"])
        body[slow_field] = self.trickle.url(
            audio.name if slow_field == "audio" else video.name, trickle_s
        )
        response = self.http.post("/v1/jobs", json=body)
        code, message = _error_of(response)
        findings = self.findings["slow_url_inputs"]
        findings["answers"][f"{response.status_code} {code}".strip()] += 1
        if response.status_code == 202:
            submission = Submission(uuid.uuid4().hex, "v1", audio, 0, None)
            submission.job_id = response.json()["id"]
            with self.traffic.lock:
                self.traffic.submissions.append(submission)
        elif response.status_code == 503 and code == "DOWNLOADS_BUSY" and message:
            pass  # the cap at work: an expected answer
        else:
            findings["unclear"].append(f"HTTP {response.status_code} {code}: {message[:200]!r}")

    # --- report ----------------------------------------------------------------------------

    def must_be_zero(self, windows: dict[str, dict[str, Any]]) -> dict[str, int]:  # Any: JSON
        """Figures that must be 0; `windows` is StatusReads.by_window_kind()."""
        return {
            "probe_crash_unclear_answers": len(self.findings["probe_crash"]["unclear"]),
            "probe_crash_status_read_failures": windows.get("probe_crash", {}).get("failures", 0),
            "second_server_not_refused": len(self.findings["second_server"]["not_refused"]),
            "results_readonly_readyz_said_ready": self.findings["results_readonly"]["said_ready"],
            "slow_url_unclear_answers": len(self.findings["slow_url_inputs"]["unclear"]),
            "slow_url_status_read_timeouts": windows.get("slow_url_inputs", {}).get("timeouts", 0),
        }

    def report(self) -> dict[str, Any]:  # Any: JSON
        """The findings as JSON: counters as dicts, message sets as sorted lists."""

        def plain(value: Any) -> Any:  # Any: a finding's value
            if isinstance(value, Counter):
                return dict(sorted(value.items()))
            if isinstance(value, set):
                return sorted(value)[:10]
            if isinstance(value, list):
                return value[:10]
            return value

        return {
            kind: {key: plain(value) for key, value in found.items()}
            for kind, found in self.findings.items()
        }

    def close(self) -> None:
        self.trickle.close()
        self.http.close()
