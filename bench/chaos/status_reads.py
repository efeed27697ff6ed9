"""Status reads timed all through the run: a job's status, a HeyGem query and /readyz, each
with its own short timeout, so a fault that starves the API shows as latency or a timeout.

Faults that should leave the API alone (slow URL hosts, a crashing probe) mark a window;
the report gives, per window kind, the reads made in it, their p99 latency, the reads that
timed out and the reads that failed (no answer, or a 5xx other than /readyz's 503).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

READ_TIMEOUT_S = 5.0
READ_INTERVAL_S = 0.25


@dataclass(frozen=True, slots=True)
class Read:
    at: float  # time.monotonic() when the read began
    seconds: float
    outcome: str  # "ok", "timeout" or "failed: …"


class StatusReads(threading.Thread):
    """Cycles through three reads, one every READ_INTERVAL_S; `pick_ids` names a recent
    (job id, HeyGem code) to read, either may be None."""

    def __init__(self, url: str, pick_ids: Callable[[], tuple[str | None, str | None]]) -> None:
        super().__init__(name="chaos-status-reads", daemon=True)
        self.http = httpx.Client(base_url=url, timeout=READ_TIMEOUT_S)
        self.pick_ids = pick_ids
        self.reads: list[Read] = []
        self.windows: list[tuple[str, float, float]] = []  # (kind, start, end), monotonic
        self._stop_event = threading.Event()

    def run(self) -> None:
        turn = 0
        while not self._stop_event.wait(READ_INTERVAL_S):
            job_id, code = self.pick_ids()
            requests: list[tuple[str, dict[str, str]]] = [("/readyz", {})]
            if job_id:
                requests.append((f"/v1/jobs/{job_id}", {}))
            if code:
                requests.append(("/easy/query", {"code": code}))
            path, params = requests[turn % len(requests)]
            turn += 1
            self.reads.append(self._read(path, params))

    def _read(self, path: str, params: dict[str, str]) -> Read:
        began = time.monotonic()
        try:
            response = self.http.get(path, params=params)
        except httpx.TimeoutException:
            return Read(began, time.monotonic() - began, "timeout")
        except httpx.HTTPError as exc:
            return Read(began, time.monotonic() - began, f"failed: {type(exc).__name__}")
        seconds = time.monotonic() - began
        if response.status_code >= 500 and not (path == "/readyz" and response.status_code == 503):
            return Read(began, seconds, f"failed: HTTP {response.status_code} {path}")
        return Read(began, seconds, "ok")

    def mark(self, kind: str, start: float, end: float) -> None:
        self.windows.append((kind, start, end))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)
        self.http.close()

    def by_window_kind(
        self, percentile: Callable[[list[float], float], float | None]
    ) -> dict[
        str, dict[str, Any]  # Any: JSON
    ]:
        """Per window kind: reads, p50/p99 seconds, timeouts, failures (with a few examples)."""
        summary: dict[str, dict[str, Any]] = {}  # Any: JSON
        for kind in sorted({k for k, _, _ in self.windows}):
            spans = [(start, end) for k, start, end in self.windows if k == kind]
            inside = [r for r in self.reads if any(s <= r.at <= e for s, e in spans)]
            seconds = [r.seconds for r in inside]
            failed = [r.outcome for r in inside if r.outcome.startswith("failed")]
            summary[kind] = {
                "windows": len(spans),
                "window_s": round(sum(e - s for s, e in spans), 1),
                "reads": len(inside),
                "p50_s": percentile(seconds, 0.5),
                "p99_s": percentile(seconds, 0.99),
                "timeouts": sum(1 for r in inside if r.outcome == "timeout"),
                "failures": len(failed),
                "failure_examples": sorted(set(failed))[:5],
            }
        return summary

    def totals(self) -> dict[str, int]:
        return {
            "reads": len(self.reads),
            "timeouts": sum(1 for r in self.reads if r.outcome == "timeout"),
            "failures": sum(1 for r in self.reads if r.outcome.startswith("failed")),
        }
