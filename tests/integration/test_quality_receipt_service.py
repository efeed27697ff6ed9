"""A job with `evaluate` through a real server: its receipt in the API and the CLI, the
low_sync flag under a floor, the list filter, the metric; a job without it has none."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from talkingface.neural.syncnet import SyncNet
from talkingface.samples import synth_speech, write_wav
from tests.integration.service_fixtures import Service, submit_upload


def _talkingface(env: dict[str, str], *args: str | Path) -> str:
    """Run the CLI; its stdout, stripped (a failure fails the test with its stderr)."""
    completed = subprocess.run(
        [sys.executable, "-m", "talkingface", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_a_job_with_evaluate_stores_its_receipt_and_is_flagged_under_the_floor(
    service_factory: Callable[..., Service], short_template_clip: Path, tmp_path: Path
) -> None:
    # Given a server with a (random) SyncNet and an LSE-C floor no clip can reach
    torch.manual_seed(0)
    checkpoint = tmp_path / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), checkpoint)
    audio = write_wav(tmp_path / "speech.wav", synth_speech(1.2, seed=4).samples_f32, 16000)
    service = service_factory(
        extra_env={
            "TALKINGFACE_EVALUATE__SYNCNET_CHECKPOINT": str(checkpoint),
            "TALKINGFACE_EVALUATE__LOW_LSE_C_FLOOR": "1000",
            # the fast settings' 3 s stall limit is for the stall tests; on a loaded machine
            # one SyncNet batch alone can take that long
            "TALKINGFACE_WORKERS__STALL_S": "30",
        }
    )

    # When one job asks for its figures (through the CLI) and one does not
    cli = {**os.environ, "TALKINGFACE_SERVER": service.url}
    measured = {
        "id": _talkingface(cli, "submit", "-a", audio, "-v", short_template_clip, "--evaluate")
    }
    plain = submit_upload(service, audio, short_template_clip)
    done = service.wait_state(measured["id"], "succeeded", "failed", timeout_s=120)
    other = service.wait_state(plain["id"], "succeeded", "failed", timeout_s=120)

    # Then the first succeeded on its first attempt with a measured, flagged receipt
    errors = [attempt["error"] for attempt in done["attempts"]]
    assert done["state"] == "succeeded" and done["attempt"] == 1, errors
    receipt = done["result"]["receipt"]
    assert receipt["state"] == "measured" and receipt["lse"] == "measured", receipt
    assert receipt["figures"]["frame_count"] == 30  # 1.2 s at 25 fps
    assert receipt["figures"]["lse_window_count"] == 25
    assert receipt["low_sync"] and "LSE-C" in receipt["low_sync_reasons"][0]
    sheet = service.http.get(receipt["sheet_url"])
    assert sheet.status_code == 200 and sheet.content[:4] == b"\x89PNG"
    assert other["state"] == "succeeded" and other["result"]["receipt"] is None
    flagged = service.http.get("/v1/jobs", params={"low_sync": "true"}).json()["items"]
    assert [job["id"] for job in flagged] == [measured["id"]]
    metrics = service.http.get("/metrics").text
    assert re.search(
        r'^talkingface_quality_receipts_total\{outcome="low_sync"\} 1\.0$', metrics, re.M
    )
    shown = _talkingface(cli, "jobs", "receipt", measured["id"])
    assert "LOW SYNC: SyncNet LSE-C" in shown and "SyncNet LSE-D" in shown
    assert receipt["sheet_url"] in shown
