"""Template registrations during the campaign (POST /v1/templates), each of new content so
each queues a prepare_template job, and the end-of-run check that every one has settled.

A share of the templates shows no face (a moving gradient): their preparation must fail with
a true error. Every other template must end ready.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bench.chaos.workload import TEMPLATE_SIZE_PX, Api, Inputs, read_frames, write_template

REGISTERED_S = 6.0  # long enough that a preparation is caught running
FACELESS_SHARE = 0.2
FPS = 25.0


@dataclass
class Registered:
    template_id: str
    job_id: str
    has_face: bool
    file_name: str


@dataclass
class TemplateTraffic:
    """Makes template files of new content and registers them; remembers what it registered."""

    api: Api
    inputs: Inputs
    rng: random.Random
    registered: list[Registered] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # registrations answered with an error
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._faces = [
            read_frames(self.inputs.directory / clip.name, 500, TEMPLATE_SIZE_PX)
            for clip in self.inputs.video
        ]
        self._made = 0

    def make(self, has_face: bool) -> Path:
        """A new template file: frames of a campaign template (or a gradient without a face)
        played forward and back, one corner marked with a serial so the bytes are new."""
        with self.lock:
            self._made += 1
            serial = self._made
        count = int(REGISTERED_S * FPS)
        if has_face:
            source = self.rng.choice(self._faces)
            cycle = source + source[::-1]
            frames = [cycle[i % len(cycle)].copy() for i in range(count)]
        else:
            ramp = np.linspace(0, 255, TEMPLATE_SIZE_PX, dtype=np.float32)
            frames = [
                np.repeat(((ramp + 4 * i) % 256).astype(np.uint8)[None, :, None], 3, axis=2)
                .repeat(TEMPLATE_SIZE_PX, axis=0)
                .copy()
                for i in range(count)
            ]
        mark = np.array([serial % 256, (serial >> 8) % 256, 255], dtype=np.uint8)
        frames[0][:16, :16] = mark
        name = f"registered_{serial}{'' if has_face else '_faceless'}.mp4"
        write_template(self.inputs.directory / name, frames, FPS)
        return self.inputs.directory / name

    def register(self, has_face: bool | None = None) -> Registered | None:
        """Register one new template; None if the service refused it (noted in `refused`)."""
        if has_face is None:
            has_face = self.rng.random() >= FACELESS_SHARE
        path = self.make(has_face)
        response = self.api.call("POST", "/v1/templates", json={"video": str(path)})
        if response.status_code not in (200, 202):
            with self.lock:
                self.refused.append(f"HTTP {response.status_code}: {response.text[:200]}")
            return None
        meta = response.json()
        registered = Registered(meta["id"], meta["job_id"], has_face, path.name)
        with self.lock:
            self.registered.append(registered)
        return registered

    def describe(self, template_id: str) -> dict[str, Any]:  # Any: JSON
        response = self.api.call("GET", f"/v1/templates/{template_id}")
        response.raise_for_status()
        meta: dict[str, Any] = response.json()  # Any: JSON
        return meta

    def wait_settled(self, timeout_s: float) -> None:
        """Until no registered template is preparing, or the time is up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = [self.describe(r.template_id)["state"] for r in list(self.registered)]
            if "preparing" not in states:
                return
            time.sleep(1.0)

    def audit(self) -> tuple[dict[str, Any], list[str]]:  # Any: JSON
        """(figures, problems): states at the end; a template still preparing, failed with an
        empty error or failed although it shows a face, or whose API does not answer, is a
        problem (counted in `templates_unsettled`)."""
        states: dict[str, int] = {}
        problems: list[str] = []
        errors: dict[str, int] = {}
        for item in self.registered:
            try:
                meta = self.describe(item.template_id)
                thumbnail = self.api.call("GET", f"/v1/templates/{item.template_id}/thumbnail")
            except Exception as exc:  # the public API must answer for every template
                problems.append(f"template {item.template_id}: {type(exc).__name__}: {exc}")
                continue
            state = meta["state"]
            states[state] = states.get(state, 0) + 1
            error = meta.get("error") or {}
            message = str(error.get("message") or "").strip()
            if state == "failed":
                code = str(error.get("code", "?"))
                errors[code] = errors.get(code, 0) + 1
            if state == "preparing":
                problems.append(f"template {item.template_id} still preparing")
            elif state == "failed" and not message:
                problems.append(f"template {item.template_id} failed with an empty error")
            elif state == "failed" and item.has_face:
                problems.append(f"template {item.template_id} (with a face) failed: {message}")
            elif state == "ready" and not item.has_face:
                problems.append(f"template {item.template_id} (no face) reported ready")
            elif state == "ready" and thumbnail.status_code != 200:
                problems.append(f"template {item.template_id} ready without a thumbnail")
        figures = {
            "registered": len(self.registered),
            "with_face": sum(1 for r in self.registered if r.has_face),
            "by_state": dict(sorted(states.items())),
            "failed_by_code": dict(sorted(errors.items())),
            "refused_at_register": self.refused[:10],
        }
        return figures, problems
