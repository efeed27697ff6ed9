"""The quality receipt in chromium: a job submitted with `evaluate` on a server whose sync
floor no result reaches shows its receipt (flag, figures, contact sheet) on the job page, and
the job list flags it and filters to flagged results, in English and Chinese."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bench.service_process import Service, start_service
from playwright.sync_api import Page, expect

from talkingface.samples import synth_speech, write_wav
from tests.integration.service_fixtures import submit_upload

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def flagging_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Measures every job (so workers load the evaluation's models at start), and flags any
    sync correlation under 0.99: every real result."""
    base = tmp_path_factory.mktemp("receipts")
    env = {
        "TALKINGFACE_EVALUATE__DEFAULT": "true",
        "TALKINGFACE_EVALUATE__LOW_SYNC_FLOOR": "0.99",
        "TALKINGFACE_WORKERS__STALL_S": "30",  # the fast settings' 3 s is for stall tests
    }
    service = start_service(base / "data", base / "server.log", extra_env=env)
    yield service
    service.stop()


def test_a_flagged_receipt_shows_on_the_job_page_and_in_the_filtered_list(
    flagging_server: Service,
    open_page: Callable[..., Page],
    shoot: Callable[[Page, str], Path],
    short_template_clip: Path,
    tmp_path: Path,
) -> None:
    audio = write_wav(tmp_path / "speech.wav", synth_speech(1.5, seed=6).samples_f32, 16000)
    job_id = submit_upload(flagging_server, audio, short_template_clip, label="receipt check")["id"]
    done = flagging_server.wait_state(job_id, "succeeded", "failed", timeout_s=120)
    assert done["state"] == "succeeded", done["attempts"]
    assert done["result"]["receipt"]["low_sync"], done["result"]["receipt"]

    page = open_page(flagging_server, f"/#/jobs/{job_id}")
    receipt = page.locator("#job-receipt")
    expect(receipt).to_contain_text("Quality receipt")
    expect(receipt.locator(".low-sync")).to_have_text("low sync")
    expect(receipt).to_contain_text("floor 0.99")
    expect(receipt).to_contain_text("SyncNet LSE: not configured")
    sheet = receipt.get_by_role("link", name="contact sheet")
    expect(sheet).to_have_attribute("href", re.compile(f"/v1/jobs/{job_id}/quality/sheet.png$"))
    assert page.request.get(sheet.get_attribute("href") or "").status == 200
    shoot(page, "receipt")

    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_label("Low sync only").check()
    expect(page).to_have_url(re.compile(r"low_sync=true"))
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(row.locator(".low-sync")).to_have_text("low sync")
    expect(page.locator("tbody tr")).to_have_count(1)
    page.get_by_label("Language").select_option("zh")
    expect(row.locator(".low-sync")).to_have_text("同步偏低")
    shoot(page, "jobs-low-sync-zh")
    page.get_by_label("语言").select_option("en")
