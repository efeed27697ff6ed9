"""Template preparation is a job in the store: registration queues it, a template's state,
progress and error are its job's, it is canceled and retried like a render, and the API
process never loads a face or engine model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from talkingface.errors import ErrorCode, ErrorRecord, Stage
from talkingface.jobs.records import JobInputs, JobOptions, JobResult, TemplateOutcome
from talkingface.jobs.states import AttemptOutcome, JobKind, JobState
from talkingface.jobs.store import JobStore
from talkingface.jobs.template_rows import TemplateSpec
from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    api_fixture,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
)
from tests.integration.service_fixtures import Service, wait_until

# engines.base (the plug-in protocol and the engine names the API validates) loads nothing;
# every module that holds or loads a model, a face tracker or a template cache is listed
BIG_TAIL_BYTES = 64 << 20
ENGINE_PROTOCOL = "talkingface.engines.base"
FACE_AND_ENGINE_MODULES = (
    "talkingface.engines",  # every engine module but the protocol
    "talkingface.face",
    "talkingface.templates",
    "talkingface.pipeline.attempt",
    "talkingface.pipeline.preparation",
    "mediapipe",
    "tflite_runtime",
    "ai_edge_litert",
    "torch",
)


def _register(api: ApiHarness, name: str = "template.mp4") -> Any:
    return api.client.post("/v1/templates", json={"video": str(api.input_root / name)})


def _template(api: ApiHarness, template_id: str) -> dict[str, Any]:
    response = api.client.get(f"/v1/templates/{template_id}")
    assert response.status_code == 200, response.text
    meta: dict[str, Any] = response.json()
    return meta


def test_a_registered_template_is_a_queued_preparation_job_whose_state_it_shows(
    api: ApiHarness,
) -> None:
    registered = _register(api)
    assert registered.status_code == 202, registered.text
    meta = registered.json()
    assert meta["state"] == "preparing" and api.scheduler.wakes >= 1
    job = api.store.get(meta["job_id"])
    assert job.kind == JobKind.PREPARE_TEMPLATE and job.state == JobState.QUEUED
    assert Path(job.inputs.video_path).parent.name == meta["id"]
    assert api.client.get("/v1/jobs").json()["total"] == 0  # not a render job

    # a worker takes it and reports progress
    claimed = api.store.claim_next("w1", lease_s=30)
    assert claimed is not None and claimed[0].id == job.id
    attempt = claimed[1]
    api.store.heartbeat(
        job.id, attempt.id, stage="track", frames_done=10, frames_total=50, lease_s=30
    )
    running = _template(api, meta["id"])
    assert running["state"] == "preparing"
    assert running["progress"]["frames_done"] == 10 and running["progress"]["stage"] == "track"

    # it succeeds: the template is ready with what preparation found
    api.store.record_template_outcome(job.id, TemplateOutcome(1, 0, {"model": "generic"}))
    result = JobResult(job.inputs.video_path, 2.0, 512, 512, 25.0, 50, 0, 1.0)
    assert api.store.succeed(job.id, attempt.id, result)
    ready = _template(api, meta["id"])
    assert ready["state"] == "ready" and ready["face_count"] == 1
    assert ready["articulation"] == {"model": "generic"}

    # its job outlives the result retention (the template would lose its state), and
    # the same content registered again is the same template, with no second job
    api.store.purge_finished_before(datetime.now(UTC) + timedelta(days=365))
    again = _register(api)
    assert again.status_code == 200 and again.json()["job_id"] == job.id
    assert _template(api, meta["id"])["state"] == "ready"


def test_a_failed_preparation_leaves_the_template_failed_and_refused_by_jobs(
    api: ApiHarness,
) -> None:
    meta = _register(api).json()
    claimed = api.store.claim_next("w1", lease_s=30)
    assert claimed is not None
    error = ErrorRecord(ErrorCode.NO_FACE, Stage.TRACK, False, "No face found in template.mp4.")
    api.store.fail_attempt(
        meta["job_id"], claimed[1].id, error, outcome=AttemptOutcome.FAILED, retry_at=None
    )

    failed = _template(api, meta["id"])
    assert failed["state"] == "failed" and failed["error"]["code"] == "NO_FACE"
    body = {"audio": str(api.input_root / "speech.wav"), "template_id": meta["id"]}
    refused = api.client.post("/v1/jobs", json=body)
    assert refused.status_code == 422 and "No face found" in refused.text


def test_a_preparation_is_canceled_and_retried_through_its_job(api: ApiHarness) -> None:
    meta = _register(api).json()

    assert api.client.post(f"/v1/jobs/{meta['job_id']}/cancel").status_code == 202
    canceled = _template(api, meta["id"])
    assert canceled["state"] == "failed" and canceled["error"]["code"] == "CANCELED"
    assert api.client.post(f"/v1/jobs/{meta['job_id']}/retry").status_code in (200, 202)
    assert _template(api, meta["id"])["state"] == "preparing"


REGISTER_IN_THE_API_PROCESS = """
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from talkingface.api.app import create_app
from talkingface.config import Settings
from talkingface.jobs.store import JobStore

class IdleScheduler:
    def workers(self): return []
    def is_ready(self): return True
    def wake(self): pass
    def set_paused(self, paused): pass
    def is_paused(self): return False

root, video = Path(sys.argv[1]), Path(sys.argv[2])
settings = Settings(
    data_dir=root / "data", api={"input_roots": [video.parent], "min_free_disk_bytes": 0}
)
store = JobStore(f"sqlite:///{root / 'jobs.db'}")
store.migrate()
app = create_app(settings, store=store, scheduler=IdleScheduler())
with TestClient(app, base_url="http://localhost") as client:
    registered = client.post("/v1/templates", json={"video": str(video)})
    described = client.get(f"/v1/templates/{registered.json()['id']}")
    statuses = [registered.status_code, described.status_code]
print(json.dumps({"statuses": statuses, "modules": sorted(sys.modules)}))
"""


def test_the_api_process_registers_a_template_without_loading_face_or_engine_models(
    tmp_path: Path, template_clip: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", REGISTER_IN_THE_API_PROCESS, str(tmp_path), str(template_clip)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [202, 200]
    loaded = [
        name
        for name in report["modules"]
        if any(name.startswith(f"{m}.") for m in FACE_AND_ENGINE_MODULES)
        and name != ENGINE_PROTOCOL
    ]
    assert loaded == []


def test_registration_hashes_the_video_in_chunks_not_in_one_read(
    api: ApiHarness, tmp_path: Path
) -> None:
    big = tmp_path / "big.mp4"
    with big.open("wb") as out:
        out.write((api.input_root / "template.mp4").read_bytes())
        out.write(b"\0" * BIG_TAIL_BYTES)  # after the movie: the demuxer ignores it, the hash not
    registry = api.client.app.state.templates

    tracemalloc.start()
    try:
        meta, created = registry.register(big)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert created and meta["state"] == "preparing"
    assert peak_bytes < BIG_TAIL_BYTES // 4  # chunks, not the whole file in memory


def test_a_worker_fails_a_faceless_template_once_with_no_face(
    service_factory: Callable[..., Service], faceless_clip: Path, tmp_path: Path
) -> None:
    service = service_factory(extra_env={"TALKINGFACE_CACHE__DIR": str(tmp_path / "cache")})
    with faceless_clip.open("rb") as video:
        registered = service.http.post("/v1/templates", files={"video": ("none.mp4", video)})
    assert registered.status_code == 202, registered.text
    template_id = registered.json()["id"]

    def finished() -> dict[str, Any] | None:
        meta: dict[str, Any] = service.http.get(f"/v1/templates/{template_id}").json()
        return meta if meta["state"] != "preparing" else None

    meta = wait_until(finished, timeout_s=60, what="the faceless template's preparation to end")
    assert meta["state"] == "failed" and meta["error"]["code"] == "NO_FACE"
    assert meta["error"]["message"]
    preparation = service.job(meta["job_id"])
    assert [a["outcome"] for a in preparation["attempts"]] == ["failed"]  # not retried


def test_concurrent_registrations_of_the_same_content_make_one_template(
    store: JobStore,
) -> None:
    spec = TemplateSpec("ab" * 16, "template.mp4", 2.0, 512, 512, 25.0, False)
    inputs = JobInputs(audio_path="", video_path="/data/templates/x/template.mp4")
    results: list[tuple[str, bool]] = []

    def register() -> None:
        record, created = store.register_template(spec, inputs, JobOptions())
        results.append((record.job.id, created))

    threads = [threading.Thread(target=register) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 8 and sum(created for _, created in results) == 1
    assert len({job_id for job_id, _ in results}) == 1


def test_a_template_registered_before_the_store_kept_templates_is_adopted(
    make_api: Any, tmp_path: Path, template_clip: Path
) -> None:
    legacy = tmp_path / "data" / "templates" / ("cd" * 16)
    legacy.mkdir(parents=True)
    shutil.copy(template_clip, legacy / "template.mp4")
    meta = {"id": legacy.name, "state": "ready", "duration_s": 2.0, "width": 512}
    meta |= {"height": 512, "fps": 25.0, "is_still_image": False, "video": "template.mp4"}
    (legacy / "meta.json").write_text(json.dumps(meta), encoding="utf-8")

    api: ApiHarness = make_api()

    adopted = _template(api, legacy.name)
    assert adopted["state"] == "preparing" and adopted["width"] == 512
    assert api.store.get(adopted["job_id"]).kind == JobKind.PREPARE_TEMPLATE
    assert not (legacy / "meta.json").exists()
